"""streamrec: real-time face recognition for video streams."""

from streamrec.gallery.matcher import Matcher
from streamrec.gallery.store import Gallery

from .analyzer import FaceAnalyzer, read_image
from .config import Config, load_config
from .errors import StreamrecError
from .records import Detections, Event, Face, Frame

__all__ = [
    "Config",
    "Detections",
    "Event",
    "Face",
    "FaceAnalyzer",
    "Frame",
    "Gallery",
    "Matcher",
    "StreamrecError",
    "load_config",
    "read_image",
]
__version__ = "0.1.0"
