"""Video sources: files, http(s) URLs, RTSP cameras and webcams, all iterated the same way.

``open_source(uri)`` picks the kind from the URI and opens it at once, so mistakes surface at
start as SourceError (except network streams, which are retried in the background). Iterating a
source yields ``Frame`` records, and ``Gap`` records on live sources when the stream was lost.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from ..errors import SourceError
from ..redact import redact, redact_url, register_url, split_userinfo
from .base import Gap, Source, SourceOptions, SourceStats
from .live import LiveSource
from .pyav import FileSource, StreamSource
from .webcam import WebcamSource

__all__ = [
    "FileSource",
    "Gap",
    "LiveSource",
    "Source",
    "SourceOptions",
    "SourceStats",
    "StreamSource",
    "WebcamSource",
    "open_source",
    "redact",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WEBCAM_INDEX = re.compile(r"^(?:webcam:)?(\d+)$")
_KINDS = "a file path, http(s)://, rtsp(s)://, a webcam index (0, webcam:0) or /dev/video*"


def _encoded_userinfo(uri: str) -> str:
    """``uri`` with its user name and password percent-encoded, as FFmpeg parses them: a
    password may hold ``/ ? # @`` or spaces (already encoded parts stay as they are)."""
    parts = split_userinfo(uri)
    if parts is None:
        return uri
    rest, user, password = parts
    scheme, _, tail = rest.partition("://")
    secret = ":" + quote(password, safe="") if password else ""
    return f"{scheme}://{quote(user, safe='')}{secret}@{tail}"


def open_source(
    uri: str,
    options: SourceOptions | None = None,
    name: str | None = None,
    live_http: bool = False,
) -> Source:
    """Open a video source; ``name`` is its display name (default: the URI, credentials hidden).

    - ``0``, ``webcam:0``, ``/dev/video0``, ``webcam:/dev/video0``: webcam (live)
    - ``rtsp://``, ``rtsps://``: RTSP camera (live, retried in the background, never raises)
    - ``http://``, ``https://``: with ``live_http`` a live stream (MJPEG, HLS; retried in the
      background, never raises), else a recording read every frame, in order
    - ``file://`` and plain paths: every frame, in order
    """
    options = options or SourceOptions()
    uri = uri.strip()
    if not uri:
        raise SourceError(f"empty video source: give {_KINDS}")
    register_url(uri)  # its credentials are masked wherever they appear from now on
    shown = redact_url(uri)
    webcam = _WEBCAM_INDEX.match(uri)
    if webcam:
        index = int(webcam.group(1))
        return WebcamSource(index, name or f"webcam:{index}", options)
    device = uri.removeprefix("webcam:")
    if device.startswith("/dev/"):
        return WebcamSource(device, name or device, options)
    if device != uri:
        raise SourceError(f"bad webcam {uri!r}: use webcam:<index> or webcam:/dev/video<N>")
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return FileSource(uri, name or uri, options)
    kind = scheme.group(1).lower()
    if kind == "file":
        path = unquote(urlsplit(uri).path)
        return FileSource(path, name or path, options)
    if kind not in ("http", "https", "rtsp", "rtsps"):
        raise SourceError(f"unsupported video source {shown}: '{kind}://' is not {_KINDS}")
    uri = _encoded_userinfo(uri)
    try:
        host = urlsplit(uri).hostname
        urlsplit(uri).port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise SourceError(f"bad URL {shown}: {exc}") from None
    if not host:
        raise SourceError(f"bad URL {shown}: no host")
    if kind.startswith("rtsp") or live_http:
        return StreamSource(uri, name or shown, options)
    return FileSource(uri, name or shown, options)
