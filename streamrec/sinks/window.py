"""The optional ``--display`` window for annotated frames (a desktop OpenCV build and a display)."""

from __future__ import annotations

import os
from collections.abc import Callable

import cv2
import numpy as np

from streamrec.errors import StreamrecError
from streamrec.records import Frame


class Window:
    def __init__(self, title: str) -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise StreamrecError(
                "--display needs a display and a desktop OpenCV build (pip install "
                "opencv-python); run without --display on a headless machine"
            ) from None

    def write(self, image: np.ndarray, frame: Frame) -> None:
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def window_output(title: str) -> Callable[[Frame], Window]:
    """Factory of the window (opened at the first frame); refuses at once without a display."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise StreamrecError("--display needs a display (DISPLAY is not set); run without it")
    return lambda frame: Window(title)
