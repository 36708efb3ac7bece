"""The one rule for a person's name, and the labels of unknown people (``unknown-N``)."""

from __future__ import annotations

import re

from streamrec.errors import GalleryError

#: the label of an unconfirmed person
UNKNOWN_LABEL = re.compile(r"^unknown-(\d+)$")
_NAME_MAX = 100


class InvalidName(GalleryError):
    """A name refused by :func:`validate_name` (exit 2 on the command line, 400 over HTTP)."""


def validate_name(name: str, *, label: bool = False) -> str:
    """The one rule for a person's name, at every entry (CLI, REST, CompreFace, the Faces page,
    naming an unknown, renaming, merging): 1..100 printable characters, no path separator
    (``/``, ``\\``), not ``.`` or ``..``, no space at either end, and not ``unknown-N`` (the
    labels of unknown people; ``label=True`` checks such a label). A name is refused, never
    altered: it is shown, matched and erased exactly as given. Names never reach a path
    (folders are numbered), so this is a second line of defence and a guard against names
    that look alike.
    """
    if not isinstance(name, str):
        raise InvalidName("a person's name must be text")
    if not name.strip():
        raise InvalidName("a person's name must not be empty")
    if len(name) > _NAME_MAX:
        raise InvalidName(f"a person's name must be at most {_NAME_MAX} characters")
    if not name.isprintable():
        raise InvalidName(
            "a person's name must not contain control characters (line breaks, tabs, NUL ...)"
        )
    if name != name.strip():
        raise InvalidName("a person's name must not start or end with a space")
    if "/" in name or "\\" in name:
        raise InvalidName("a person's name must not contain a path separator (/ or \\)")
    if set(name) == {"."}:
        raise InvalidName("a person's name must not be made of dots only ('.', '..')")
    if bool(UNKNOWN_LABEL.match(name)) != label:
        raise InvalidName(
            f"'{name}' is the label of an unconfirmed person (unknown-N): name the person otherwise"
            if not label
            else f"not an unconfirmed person's label (unknown-N): {name!r}"
        )
    return name


def label_key(label: str) -> tuple[int, str]:
    """Sort key of labels: ``unknown-N`` by N, others after them."""
    m = UNKNOWN_LABEL.match(label)
    return (int(m.group(1)) if m else 1 << 62, label)


def ref(person: int | str) -> str:
    """A person given by id or name, as messages show it."""
    return f"#{person}" if isinstance(person, int) else f"'{person}'"
