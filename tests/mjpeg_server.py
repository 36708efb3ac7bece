"""A stand-in MJPEG camera for tests: JPEG frames as ``multipart/x-mixed-replace`` over HTTP on
127.0.0.1, looping a list of frames at a set rate, like the MJPEG endpoint of an IP camera.

    with MjpegCamera(jpegs, fps=60) as cam:   # serving at once
        cam.url                               # http://127.0.0.1:PORT/video.mjpg
        cam.stop()                            # camera gone: connections dropped, port closed
        cam.start()                           # back on the same URL
        cam.freeze()                          # connections stay open, nothing is sent (resume())
        cam.sent                              # frames sent so far, over all connections
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import av
import cv2

BOUNDARY = b"frame"


def jpeg_frames(path: str, limit: int | None = None, quality: int = 80) -> list[bytes]:
    """The frames of a video file as JPEG bytes (at most ``limit``)."""
    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            frames.append(buf.tobytes())
            if limit is not None and len(frames) >= limit:
                break
    return frames


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MjpegCamera:
    """See the module docstring. Each connection starts at the first frame."""

    def __init__(self, frames: list[bytes], fps: float, path: str = "/video.mjpg") -> None:
        self.frames = frames
        self.period = 1.0 / fps
        self.path = path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.sent = 0
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._frozen = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.split("?")[0] != camera.path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                camera._stream(self)

        # the port was free or is ours from before: SO_REUSEADDR (the default) rebinds it
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._running.set()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        index = 0
        next_at = time.monotonic()
        try:
            while self._running.is_set():
                if self._frozen.is_set():
                    time.sleep(0.02)
                    next_at = time.monotonic()
                    continue
                jpeg = self.frames[index % len(self.frames)]
                handler.wfile.write(
                    b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
                )
                index += 1
                with self._lock:
                    self.sent += 1
                next_at += self.period
                time.sleep(max(0.0, next_at - time.monotonic()))
        except OSError:  # the client went away
            pass

    def stop(self) -> None:
        """The camera goes away: open streams end, new connections are refused."""
        self._running.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def freeze(self) -> None:
        self._frozen.set()

    def resume(self) -> None:
        self._frozen.clear()

    def __enter__(self) -> MjpegCamera:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
