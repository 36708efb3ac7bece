"""The gallery: enrolled people (store, matcher, sub-centers, index), enrolment, unknown people."""

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery, GalleryPolicy, Recognizer, open_existing

__all__ = ["Gallery", "GalleryPolicy", "Matcher", "Recognizer", "open_existing"]
