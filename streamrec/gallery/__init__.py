"""The gallery: enrolled people (store, matcher, sub-centers, index), enrolment, unknown people."""

from streamrec.gallery.store import Gallery, GalleryPolicy, Matcher, Recognizer, open_existing

__all__ = ["Gallery", "GalleryPolicy", "Matcher", "Recognizer", "open_existing"]
