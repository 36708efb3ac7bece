"""The face history: every track leaves a sighting; search it by face, group the unknown
people, name them back in time, and learn from "not this person".

- :mod:`.store` — :class:`~.store.HistoryStore`, the sightings (SQLite + float16 vectors +
  per-slot search data + private crop files) with retention, caps and erase;
- :mod:`.naming` — naming back in time (relabel an identity, once);
- :mod:`.writer` — :class:`~.writer.HistoryWriter`, the bounded queue the pipeline feeds;
- :mod:`.search` — search by face: exact top-k on the memory-mapped matrix (:mod:`.ann`
  beyond a size);
- :mod:`.grouping` — incremental DBSCAN of unknown sightings and merge suggestions;
- :mod:`.negatives` — "not this person": the negatives store, the rule and a matcher that
  applies it.

How the running product uses it (wired in phase B, on the Recognition service of issue 23):

- *sightings*: the match stage's ``track_end`` must carry what the track's identity record holds
  at its end (``TrackIdentity.mean``, ``best_crop``, ``best_quality``, first/last capture times)
  as a :class:`~.records.TrackSighting`; a sink puts it in a ``HistoryWriter`` over
  ``HistoryStore(history_folder(cfg.gallery), recognizer, HistoryPolicy(...))`` (the
  ``history`` config section: ``retention_days``, ``max_sightings``, ``max_bytes``,
  ``queue_size``, ``ann_min_size``);
- *search* (CLI, ``POST /api/search``, Faces page): ``store.search(embedding, k, since, until,
  camera)`` -> :class:`~.records.Hit` (sighting id = crop id, ``store.crop_path(id)``);
- *naming back in time*: after ``Gallery.promote``/``merge``/``rename``, ``naming.relabel(store,
  old, new)`` -> one :class:`~.records.Relabelled` = one ``identified`` event with ``retroactive:
  true``; on enrolment ``grouping.matching_unknowns(store, templates, threshold)`` gives the
  unknown identities to name too;
- *grouping*: ``UnknownGroups.for_threshold(dim, threshold)`` fed with the unknown sightings
  (``store.labelled(unknown_only=True)``), ``rebuild`` after purges; ``suggestions()`` for the
  Faces page;
- *not this person*: ``NegativeStore(store).reject(sighting_id)``, then the matcher snapshot
  becomes ``GuardedMatcher(matcher, NegativeStore(store).all())``;
- *erase*: ``store.erase(labels)`` with every label the person had, beside ``Gallery.remove``.
"""
