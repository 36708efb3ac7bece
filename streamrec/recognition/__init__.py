"""Who is this face: the :class:`Recognition` service (one per process; the name is decided in
:mod:`streamrec.recognition.service`) and the faces it finds."""

from streamrec.recognition.faces import FaceCountError, FoundFace, NewSample, only_face
from streamrec.recognition.service import GalleryChange, People, Recognition

__all__ = [
    "FaceCountError",
    "FoundFace",
    "GalleryChange",
    "NewSample",
    "People",
    "Recognition",
    "only_face",
]
