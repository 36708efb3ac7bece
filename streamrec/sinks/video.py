"""H.264 video file writer (MP4 / MKV / MOV by extension) through PyAV."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamrec.files import private_file
from streamrec.records import Frame
from streamrec.sinks.events import SinkError

log = logging.getLogger(__name__)

# H.264 encoders in order of preference; "h264" lets FFmpeg pick its default H.264 encoder.
H264_ENCODERS = ("libx264", "libopenh264", "h264")


def exact_rate(fps: float | Fraction) -> Fraction:
    """The exact frame rate for ``fps``: NTSC-style rates (29.97, 23.976, 59.94 ...) become
    N*1000/1001, so that a 29.97 fps input is written as 30000/1001 and not 2997/100."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        if not fps > 0:
            raise ValueError(f"frame rate must be positive, got {fps}")
        ntsc = fps * 1001 / 1000
        if abs(fps - round(fps)) < 1e-6:
            rate = Fraction(round(fps))
        elif abs(ntsc - round(ntsc)) < 5e-4 * ntsc:
            rate = Fraction(round(ntsc) * 1000, 1001)
        else:
            rate = Fraction(fps).limit_denominator(10_000)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return rate


def _h264_encoder(name: str) -> str | None:
    """The encoder's real name if ``name`` is a usable H.264 (YUV) encoder in this build."""
    try:
        codec = av.Codec(name, "w")
    except Exception:  # unknown name, or a decoder without an encoder
        return None
    if codec.canonical_name != "h264" or codec.name == "libx264rgb":
        return None
    return str(codec.name)


def pick_h264_encoder(requested: str) -> str:
    """``requested`` if this PyAV build has it, else the first available H.264 encoder."""
    found = _h264_encoder(requested)
    if found:
        return found
    if requested in av.codecs_available:
        raise SinkError(f"video codec {requested} is not an H.264 encoder (use libx264)")
    for name in H264_ENCODERS:
        found = _h264_encoder(name)
        if found:
            log.warning("video encoder %s is not in this PyAV build, using %s", requested, found)
            return found
    raise SinkError(f"no H.264 encoder in this PyAV build (wanted {requested})")


class VideoWriter:
    """Writes BGR frames as an H.264 (yuv420p) video; the container follows the extension.

    Frames get pts 0, 1, 2 ... in a time base of 1/fps, so the file has exactly the frames
    and the frame rate it was given. yuv420p needs even sizes: an odd width or height is
    padded by one replicated pixel column/row (the file is then 1 px wider/taller).
    ``close()`` flushes the encoder and finalises the container; call it on every exit path
    (or use ``with``). A plain MP4 is unreadable if the process is killed before ``close()``;
    use ``.mkv`` when hard kills are expected.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | Fraction,
        codec: str = "libx264",
        crf: int = 23,
        preset: str = "veryfast",
        threads: int = 2,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.rate = exact_rate(fps)
        self.frames = 0
        self._lock = threading.Lock()
        self._closed = False
        encoder = pick_h264_encoder(codec)
        # libx264 options; other encoders use their own defaults (bitrate based).
        options = {"crf": str(crf), "preset": preset} if encoder.startswith("libx264") else {}
        try:
            private_file(self.path)  # faces and names on every frame: 0600 from the start
            self._container = av.open(str(self.path), mode="w")
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise SinkError(f"cannot write video {self.path}: {exc}") from None
        try:
            stream = self._container.add_stream(encoder, rate=self.rate, options=options)
            if not isinstance(stream, av.VideoStream):
                raise SinkError(f"{encoder} is not a video encoder")
            stream.width = self.width + self.width % 2
            stream.height = self.height + self.height % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = 1 / self.rate
            stream.codec_context.thread_count = threads
            stream.codec_context.open()  # fail here, not at the first frame, on bad options
        except Exception as exc:
            self._container.close()
            raise SinkError(f"cannot encode {encoder} into {self.path}: {exc}") from None
        self._stream = stream
        self._padded = np.zeros((stream.height, stream.width, 3), np.uint8)
        log.info(
            "writing %s: %dx%d @ %s fps, %s %s",
            self.path,
            self.width,
            self.height,
            self.rate,
            encoder,
            " ".join(f"{k}={v}" for k, v in options.items()),
        )

    def write(self, image: np.ndarray) -> None:
        """Encode one H x W x 3 uint8 BGR image as the next frame."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected a {self.height}x{self.width}x3 uint8 image, "
                f"got {image.shape} {image.dtype}"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError(f"video {self.path} is already closed")
            frame = av.VideoFrame.from_ndarray(self._pad(image), format="bgr24")
            frame.pts = self.frames
            frame.time_base = 1 / self.rate
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames += 1

    def _pad(self, image: np.ndarray) -> np.ndarray:
        h, w = self.height, self.width
        if self._padded.shape[:2] == (h, w):
            return image
        buf = self._padded
        buf[:h, :w] = image
        if buf.shape[1] > w:
            buf[:h, w] = image[:, w - 1]
        if buf.shape[0] > h:
            buf[h] = buf[h - 1]
        return buf

    def close(self) -> None:
        """Flush the encoder and finalise the file; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            finally:
                self._container.close()
        log.info("wrote %s: %d frames", self.path, self.frames)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



def video_output(path: str, fps: float | None) -> Callable[[Frame], VideoWriter]:
    """Factory of the annotated-video writer, opened at the first frame (size known then)."""
    # the source's rate as the container states it (e.g. 2997/100 stays 2997/100)
    rate = Fraction(fps or 25.0).limit_denominator(1001)

    def make(frame: Frame) -> VideoWriter:
        return VideoWriter(path, frame.width, frame.height, rate, threads=1)

    return make
