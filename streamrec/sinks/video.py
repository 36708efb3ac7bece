"""H.264 video file writer (MP4 / MKV / MOV by extension) through PyAV, with the input's audio."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.container
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


@dataclass(frozen=True)
class AudioInput:
    """The input whose first audio stream goes into the annotated video."""

    uri: str
    #: the input's time (s) of media time 0, the first video frame (``FileSource.origin``)
    origin: float = 0.0
    #: FFmpeg options to open it with (as its video was opened)
    options: dict[str, str] = field(default_factory=dict)
    #: PyAV's (open, read) timeouts in seconds, for network inputs
    timeout: tuple[float, float] | None = None


def _container_holds(fmt: str, stream: av.AudioStream) -> bool:
    """Whether a ``fmt`` container can take ``stream``'s packets as they are (a trial header)."""
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as trial:
            trial.add_stream_from_template(stream)
            trial.start_encoding()
        return True
    except (ValueError, av.FFmpegError):
        return False


class AudioTrack:
    """The input's first audio stream, muxed into an output on the video's clock: output time
    0 is the input's time ``origin + start`` (``start``: the first written frame's media time);
    audio before it is left out. Its packets are copied as they are, or re-encoded as AAC when
    the container cannot hold the codec (WMA into MP4). Interleaved with the video as it is
    written: ``until(t)`` muxes what starts before output time ``t``."""

    def __init__(self, audio: AudioInput, out: av.container.OutputContainer) -> None:
        self._input = av.open(audio.uri, options=audio.options, timeout=audio.timeout)
        try:
            if not self._input.streams.audio:
                raise LookupError("no audio stream")
            self._stream = src = self._input.streams.audio[0]
            self._copy = _container_holds(out.format.name, src)
            if self._copy:
                self._out: av.AudioStream = out.add_stream_from_template(src)
            else:
                layout = "mono" if src.channels == 1 else "stereo"
                self._out = out.add_stream("aac", rate=src.rate, layout=layout)
        except BaseException:
            self._input.close()
            raise
        self._mux = out.mux
        self.origin = audio.origin
        self._shift = 0.0
        self._items: Iterator[tuple[float, av.Packet | av.AudioFrame]] = iter(())
        self._pending: tuple[float, av.Packet | av.AudioFrame] | None = None
        self._samples: int | None = None  # re-encoding: samples written, from the first one's pts

    def start(self, at: float) -> None:
        """Output time 0 is media time ``at``: seek there."""
        self._shift = self.origin + at
        tb = self._stream.time_base
        if self._shift > 0 and tb:
            self._input.seek(max(0, round(self._shift / tb)), stream=self._stream)
        self._items = self._read()

    def _read(self) -> Iterator[tuple[float, av.Packet | av.AudioFrame]]:
        """(output time, packet or decoded frame) in order, from output time 0 on."""
        tb = self._stream.time_base
        for packet in self._input.demux(self._stream):
            if packet.pts is None or tb is None:
                continue
            if self._copy:
                items: list[tuple[float, av.Packet | av.AudioFrame]] = [
                    (float(packet.pts * tb) - self._shift, packet)
                ]
            else:
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet: a moment of silence
                items = [(f.time - self._shift, f) for f in frames if f.time is not None]
            yield from ((t, item) for t, item in items if t >= 0)

    def until(self, t: float) -> None:
        """Mux the audio that starts before output time ``t``."""
        while True:
            if self._pending is None:
                self._pending = next(self._items, None)
                if self._pending is None:
                    return
            when, item = self._pending
            if when >= t:
                return
            self._pending = None
            if isinstance(item, av.Packet):
                shift = round(self._shift / item.time_base)
                pts = (item.pts or 0) - shift
                item.dts = pts if item.dts is None else item.dts - shift
                item.pts = pts
                item.stream = self._out
                self._mux(item)
            else:
                rate = self._out.rate
                if self._samples is None:
                    self._samples = round(when * rate)
                item.pts, item.time_base = self._samples, Fraction(1, rate)
                self._samples += item.samples
                self._mux(self._out.encode(item))

    def close(self) -> None:
        """Flush the encoder (when re-encoding) and close the input."""
        try:
            if not self._copy:
                self._mux(self._out.encode(None))
        finally:
            self._input.close()


class VideoWriter:
    """Writes BGR frames as an H.264 (yuv420p) video; the container follows the extension.

    A frame written with its :class:`~streamrec.records.Frame` is placed at its media time
    (the first one at 0, in a time base of 1/fps; a gap, e.g. frames a camera dropped, stays a
    gap); without it, frames get pts 0, 1, 2 ..., so the file has exactly the frames and the
    frame rate it was given. With ``audio``, the input's audio goes along on the same clock.
    yuv420p needs even sizes: an odd width or height is padded by one replicated pixel
    column/row (the file is then 1 px wider/taller). ``close()`` flushes the encoder and
    finalises the container; call it on every exit path (or use ``with``). A plain MP4 is
    unreadable if the process is killed before ``close()``; use ``.mkv`` when hard kills are
    expected.
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
        audio: AudioInput | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.rate = exact_rate(fps)
        self.frames = 0
        self._pts = -1  # of the last frame
        self._t0: float | None = None  # media time of the first frame
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
        self._audio: AudioTrack | None = None
        if audio is not None:
            try:
                self._audio = AudioTrack(audio, self._container)
            except LookupError:
                pass  # the input has no audio
            except (OSError, ValueError, av.FFmpegError) as exc:
                log.warning("%s: the input's audio is left out: %s", self.path, exc)
        log.info(
            "writing %s: %dx%d @ %s fps, %s %s",
            self.path,
            self.width,
            self.height,
            self.rate,
            encoder,
            " ".join(f"{k}={v}" for k, v in options.items()),
        )

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        """Encode one H x W x 3 uint8 BGR image: at ``frame``'s media time, else next."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected a {self.height}x{self.width}x3 uint8 image, "
                f"got {image.shape} {image.dtype}"
            )
        with self._lock:
            if self._closed:
                raise RuntimeError(f"video {self.path} is already closed")
            t = frame.time if frame is not None else float((self._pts + 1) / self.rate)
            if self._t0 is None:
                self._t0 = t
                self._with_audio(lambda a: a.start(t))
            self._pts = max(round((t - self._t0) * self.rate), self._pts + 1)
            self._with_audio(lambda a: a.until(float(self._pts / self.rate)))
            out = av.VideoFrame.from_ndarray(self._pad(image), format="bgr24")
            out.pts = self._pts
            out.time_base = 1 / self.rate
            self._container.mux(self._stream.encode(out))
            self.frames += 1

    def _with_audio(self, step: Callable[[AudioTrack], None]) -> None:
        """Audio is a bonus: when it fails, the video goes on without it (said once)."""
        if self._audio is None:
            return
        try:
            step(self._audio)
        except (OSError, ValueError, av.FFmpegError) as exc:
            log.warning("%s: the input's audio stops here: %s", self.path, exc)
            audio, self._audio = self._audio, None
            audio.close()

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
                self._container.mux(self._stream.encode(None))
                self._with_audio(lambda a: a.until(float((self._pts + 1) / self.rate)))
                self._with_audio(AudioTrack.close)
            finally:
                self._container.close()
        log.info("wrote %s: %d frames", self.path, self.frames)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_output(
    path: str, fps: float | None, audio: AudioInput | None = None
) -> Callable[[Frame], VideoWriter]:
    """Factory of the annotated-video writer, opened at the first frame (size known then)."""
    # the source's rate as the container states it (e.g. 2997/100 stays 2997/100)
    rate = Fraction(fps or 25.0).limit_denominator(1001)

    def make(frame: Frame) -> VideoWriter:
        return VideoWriter(path, frame.width, frame.height, rate, threads=1, audio=audio)

    return make
