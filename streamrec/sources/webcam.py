"""Webcams through OpenCV (V4L2 on Linux): live, reopened when they stop delivering."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator

import cv2
import numpy as np

from ..errors import SourceError
from .base import LOG, SourceOptions, describe_error
from .live import Grab, LiveSource


class WebcamSource(LiveSource[cv2.VideoCapture]):
    """A camera by index (``0``) or device path (``/dev/video0``).

    Opened at once: a camera that does not exist raises SourceError. A camera that stops
    delivering later (unplugged, or a read that fails after the driver's own timeout, 10 s for
    V4L2) is reopened in the background. ``api`` picks the OpenCV backend (``cv2.CAP_*``).
    """

    def __init__(
        self, device: int | str, name: str, options: SourceOptions, api: int | None = None
    ) -> None:
        super().__init__(name, options)
        self._device = device
        if api is None:
            is_path = isinstance(device, str) and device.startswith("/dev/")
            api = cv2.CAP_V4L2 if is_path else cv2.CAP_ANY
        self._api = api
        try:
            capture = self._connect()
        except OSError as exc:
            raise SourceError(f"cannot open webcam {device}: {exc}") from None
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or None
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or None
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
        self._start_capture(capture)

    def _connect(self) -> cv2.VideoCapture:
        with _quiet_opencv():  # its [ WARN ] lines for a missing camera: ours says it once
            capture = cv2.VideoCapture(self._device, self._api)
        if not capture.isOpened():
            capture.release()
            raise OSError("no such camera, or it is in use")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: fresher frames
        return capture

    def _read(self, conn: cv2.VideoCapture) -> Generator[Grab, None, None]:
        while True:
            ok, image = conn.read()
            if not ok or image is None:
                raise OSError("camera stopped delivering frames")
            yield np.ascontiguousarray(image), None

    def _disconnect(self, conn: cv2.VideoCapture) -> None:
        try:
            conn.release()
        except cv2.error as exc:
            LOG.debug("%s: releasing the camera failed: %s", self.name, describe_error(exc))


_opencv_log = threading.Lock()


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own log (stderr, process-wide) at errors only while a camera is opened."""
    logging = cv2.utils.logging
    with _opencv_log:
        previous = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
        try:
            yield
        finally:
            logging.setLogLevel(previous)
