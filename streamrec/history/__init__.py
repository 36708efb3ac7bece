"""The face history: every track leaves a sighting; search it by face, group the unknown
people, name them back in time, and learn from "not this person".

- :mod:`.store` — :class:`~.store.HistoryStore`, the sightings (SQLite + float16 vectors +
  private crop files) with retention, caps, relabel, reject and erase;
- :mod:`.writer` — :class:`~.writer.HistoryWriter`, the bounded queue the pipeline feeds;
- :mod:`.search` — exact top-k on the memory-mapped matrix (:mod:`.ann` beyond a size);
- :mod:`.grouping` — incremental DBSCAN of unknown sightings and merge suggestions;
- :mod:`.negatives` — the "not this person" rule and a matcher that applies it.
"""
