"""Drawing of boxes, names and scores on frames."""

from __future__ import annotations

import cv2
import numpy as np

KNOWN = (60, 200, 60)  # BGR green
UNKNOWN = (40, 160, 240)  # BGR orange


def label_for(name: str | None, score: float | None) -> str:
    shown = name or "unknown"
    return f"{shown} {score:.2f}" if score is not None and name else shown


def draw_face(
    image: np.ndarray,
    box: np.ndarray,
    name: str | None,
    score: float | None,
    known: bool | None = None,
) -> None:
    """Draw one box with its label in place on a BGR image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    x1, y1 = max(0, min(w - 1, x1)), max(0, min(h - 1, y1))
    x2, y2 = max(0, min(w - 1, x2)), max(0, min(h - 1, y2))
    color = KNOWN if (known if known is not None else name is not None) else UNKNOWN
    thick = max(1, round(min(h, w) / 360))
    cv2.rectangle(image, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
    text = label_for(name, score)
    scale = max(0.4, min(h, w) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
    cv2.rectangle(image, (x1, ty - th - base), (x1 + tw + 4, ty + base // 2), color, -1)
    cv2.putText(
        image,
        text,
        (x1 + 2, ty - base // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thick,
        cv2.LINE_AA,
    )
