"""Progress bars of the long commands (``run``, ``gallery import``, ``gallery add --from-video``,
``eval``): tqdm on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress_bar(enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar (``total``, ``unit``, ``desc`` ... as tqdm takes them); a silent one when not
    ``enabled`` or when stderr is not a terminal (a pipe, a log file, a test)."""
    return tqdm(disable=None if enabled else True, leave=False, **options)
