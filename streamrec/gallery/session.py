"""The gallery as one run or daemon uses it: opened once, read for matching, fed unknown people.

A session without a gallery file (``gallery: null``) still groups unknown people within the run
and can save their crops (``unknowns.crops_dir``); it just matches nobody and persists nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamrec.errors import StreamrecError
from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery, GalleryPolicy, Recognizer
from streamrec.gallery.unknowns import UnknownBook, save_crops

if TYPE_CHECKING:
    from streamrec.config import Config

log = logging.getLogger("streamrec.gallery")


class GallerySession:
    """``cfg.gallery`` opened once (or no gallery), for the matcher and the unknown people."""

    def __init__(self, cfg: Config, recognizer: Recognizer) -> None:
        self.cfg = cfg
        self.dim = recognizer.dim
        self.gallery: Gallery | None = None
        if cfg.gallery:
            if not Path(cfg.gallery).is_file():
                raise StreamrecError(
                    f"gallery not found: {cfg.gallery} (enrol people with 'streamrec gallery')"
                )
            self.gallery = Gallery(cfg.gallery, recognizer, GalleryPolicy.from_config(cfg))

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()

    def __enter__(self) -> GallerySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def revision(self) -> int:
        return self.gallery.revision if self.gallery is not None else 0

    def matcher(self) -> Matcher:
        """The confirmed people as they are in the file now."""
        return self.gallery.matcher() if self.gallery is not None else Matcher.empty(self.dim)

    def people(self) -> int:
        return len(self.gallery.people()) if self.gallery is not None else 0

    def unknown_book(self, threshold: float) -> UnknownBook | None:
        """The run's book of unknown people (``unknowns.enabled``); with ``unknowns.persist`` it
        continues the unknown-N identities of earlier runs (after purging expired ones)."""
        unk = self.cfg.unknowns
        if not unk.enabled:
            return None
        book = UnknownBook(
            unk.threshold if unk.threshold is not None else threshold, max_crops=unk.max_crops
        )
        if self.gallery is None or not unk.persist:
            return book
        if unk.retention_days:
            purged = self.gallery.purge(unk.retention_days)
            if purged:
                log.info("purged %d unconfirmed people past retention", purged)
        known = self.gallery.unknown_matcher()
        book.next_index = self.gallery.next_unknown_index()
        for label in known.names:
            rows = known.templates[known.owners == known.names.index(label)]
            book.seed(label, rows.sum(axis=0))
        return book

    def save_unknowns(self, book: UnknownBook) -> None:
        """Write the best crops of the run's unknown people; with ``persist``, keep them."""
        unk = self.cfg.unknowns
        crops: dict[str, list[str]] = {}
        if unk.crops_dir:
            crops = save_crops(book, unk.crops_dir, time.strftime("%Y%m%d-%H%M%S"))
        if self.gallery is None or not unk.persist:
            return
        for label, ident in book.identities.items():
            if ident.means:
                qualities = [q for _, q in ident.crops][: len(crops.get(label, []))]
                self.gallery.add_unknown(
                    label, np.stack(ident.means), crops.get(label, []), qualities or None
                )
