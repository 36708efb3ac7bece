"""streamrec: real-time face recognition for video streams.

The public names below are imported on first use (``import streamrec`` stays cheap: no model
runtime, OpenCV or FFmpeg until they are needed)::

    import streamrec

    analyzer = streamrec.FaceAnalyzer(detector="det_500m.onnx", recognizer="w600k_mbf.onnx")
    faces = analyzer.analyze(streamrec.read_image("photo.jpg"))
    for event in streamrec.process("clip.mp4", gallery="gallery.db"):
        print(event.time, event.event, event.fields)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamrec.version import __version__ as __version__

#: public name -> the module that defines it
_EXPORTS = {
    "AnnotatedFrame": "streamrec.processing",
    "Config": "streamrec.config",
    "ConfigError": "streamrec.errors",
    "Detections": "streamrec.records",
    "Event": "streamrec.records",
    "EventSink": "streamrec.sinks.events",
    "Face": "streamrec.records",
    "FaceAnalyzer": "streamrec.analyzer",
    "Frame": "streamrec.records",
    "Gallery": "streamrec.gallery.store",
    "Matcher": "streamrec.gallery.matcher",
    "Recognition": "streamrec.recognition",
    "StreamrecError": "streamrec.errors",
    "Summary": "streamrec.pipeline.summary",
    "VideoEvents": "streamrec.processing",
    "draw_face": "streamrec.sinks.draw",
    "load_config": "streamrec.config",
    "process": "streamrec.processing",
    "read_image": "streamrec.media",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*_EXPORTS, "__version__"})


if TYPE_CHECKING:  # for type checkers: the names as they are imported on first use
    from streamrec.analyzer import FaceAnalyzer as FaceAnalyzer
    from streamrec.config import Config as Config
    from streamrec.config import load_config as load_config
    from streamrec.errors import ConfigError as ConfigError
    from streamrec.errors import StreamrecError as StreamrecError
    from streamrec.gallery.matcher import Matcher as Matcher
    from streamrec.gallery.store import Gallery as Gallery
    from streamrec.media import read_image as read_image
    from streamrec.pipeline.summary import Summary as Summary
    from streamrec.processing import AnnotatedFrame as AnnotatedFrame
    from streamrec.processing import VideoEvents as VideoEvents
    from streamrec.processing import process as process
    from streamrec.recognition import Recognition as Recognition
    from streamrec.records import Detections as Detections
    from streamrec.records import Event as Event
    from streamrec.records import Face as Face
    from streamrec.records import Frame as Frame
    from streamrec.sinks.draw import draw_face as draw_face
    from streamrec.sinks.events import EventSink as EventSink
