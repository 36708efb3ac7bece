"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class StreamrecError(Exception):
    """A problem the user can fix (bad input, missing model, bad config); no traceback."""

    exit_code = 2


class ConfigError(StreamrecError):
    """Invalid configuration: the message names the file, the key and what is allowed."""


class ModelError(StreamrecError):
    """A model file is missing, corrupt, or of an unsupported layout."""


class MediaError(StreamrecError):
    """An image or video cannot be read."""


class SourceError(MediaError):
    """A video source cannot be opened (missing file, not a video, bad URL, no camera)."""


class GalleryError(StreamrecError):
    """The gallery file is unusable (other recognizer, newer schema, unknown person)."""
