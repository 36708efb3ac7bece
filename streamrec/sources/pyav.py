"""Sources decoded by FFmpeg through PyAV: files and recordings over http(s) (every frame), and
live network streams: RTSP cameras, MJPEG (``multipart/x-mixed-replace``) and HLS over http(s)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from pathlib import Path

import av
import av.container
import av.error
import av.video
import numpy as np

from ..errors import SourceError
from ..records import Frame
from ..telemetry import CameraState
from .base import LOG, Gap, ItemBuffer, Source, SourceOptions, describe_error, redact
from .live import Grab, LiveSource, StallError

Opened = tuple[av.container.InputContainer, av.video.stream.VideoStream]

#: demuxer errors in a row after which a damaged file is given up
MAX_READ_ERRORS = 32
#: FFmpeg renders text files (.txt, .nfo ...) as ANSI-art "video" with these; not camera footage
TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})
#: containers whose timestamps are made up (MJPEG over HTTP: a frame counter at 25 fps), so a
#: live stream in them is timed by the wall clock
UNTIMED_FORMATS = frozenset({"mpjpeg"})


def open_video(
    uri: str, ffmpeg_options: dict[str, str], timeout: tuple[float, float] | None, threads: int
) -> Opened:
    """Open ``uri`` and its first video stream with threaded decoding.

    Raises the FFmpeg error as is (callers word it), or SourceError when there is no video.
    """
    container = av.open(uri, options=ffmpeg_options, timeout=timeout)
    try:
        if not container.streams.video:
            raise SourceError(f"no video stream in {redact(uri)}")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise SourceError(f"no decoder for the video codec of {redact(uri)}")
        if stream.codec_context.name in TEXT_CODECS:
            raise SourceError(f"not a readable video (a text file): {redact(uri)}")
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        return container, stream
    except BaseException:
        container.close()
        raise


def video_origin(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float:
    """The input's time (s) of the video stream's first frame: media time 0 of its frames.

    The video stream's own start, not the container's, which may come from an audio track that
    starts earlier (the annotated video, and so the events, would be ahead by the difference).
    """
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return (container.start_time or 0) / 1e6


def _reason(exc: av.error.FFmpegError) -> str:
    if isinstance(exc, av.error.InvalidDataError):
        return "invalid data"
    return describe_error(exc).lower()


def decode_video(
    opened: Opened, damage: Callable[[str], None], stall_timeout: float | None = None
) -> Generator[av.VideoFrame, None, None]:
    """Decode the stream, skipping damaged packets (each one reported to ``damage``).

    Files (``stall_timeout`` None): unreadable data is reported and reading goes on after it
    (gives up after ``MAX_READ_ERRORS`` in a row); a read timeout ends the file. Live streams:
    read errors propagate (the caller reconnects) and ``StallError`` is raised when no frame was
    decoded for ``stall_timeout`` seconds, even if packets keep coming.
    """
    container, stream = opened
    codec = stream.codec_context
    last_frame = time.monotonic()
    read_errors = 0
    while True:
        try:
            for packet in container.demux(stream):
                read_errors = 0
                try:
                    frames = codec.decode(packet)
                except av.error.FFmpegError as exc:
                    damage(f"{_reason(exc)}, skipped")
                    frames = []
                for frame in frames:
                    if frame.is_corrupt:
                        damage("decoded with errors (concealed)")
                    last_frame = time.monotonic()
                    yield frame
                if stall_timeout is not None and time.monotonic() - last_frame > stall_timeout:
                    raise StallError(f"no frame for {stall_timeout:g} s")
            return
        except (av.error.TimeoutError, av.error.ExitError) as exc:
            if stall_timeout is not None:
                raise StallError(f"no data for {stall_timeout:g} s") from exc
            damage(f"read timed out ({_reason(exc)}), stopped")
            return
        except av.error.FFmpegError as exc:
            if stall_timeout is not None:
                raise
            read_errors += 1
            if not isinstance(exc, av.error.InvalidDataError) or read_errors > MAX_READ_ERRORS:
                damage(f"read error ({_reason(exc)}), stopped")
                return
            damage(f"unreadable data ({_reason(exc)}), skipped")


#: pixel formats whose first plane is the luma (Y) at full size
_PLANAR_LUMA = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)


#: planar formats whose luma is limited range unless the frame says otherwise
_LIMITED_LUMA = frozenset({"yuv420p", "yuv422p", "yuv444p", "nv12", "nv21"})
#: ``AVCOL_RANGE_JPEG``: luma codes black..white as 0..255 (otherwise 16..235, "limited")
_FULL_RANGE = 2


class AvPicture:
    """A decoded PyAV frame, converted to BGR only when a stage asks (``records.Picture``)."""

    __slots__ = ("_turns", "frame")

    def __init__(self, frame: av.VideoFrame, autorotate: bool) -> None:
        self.frame = frame
        self._turns = round(frame.rotation / 90) % 4 if autorotate else 0

    @property
    def width(self) -> int:
        return self.frame.height if self._turns % 2 else self.frame.width

    @property
    def height(self) -> int:
        return self.frame.width if self._turns % 2 else self.frame.height

    def _upright(self, image: np.ndarray) -> np.ndarray:
        if self._turns:
            image = np.rot90(image, self._turns)  # rotation is counter-clockwise, as np.rot90
        return np.ascontiguousarray(image)

    def bgr(self) -> np.ndarray:
        return self._upright(self.frame.to_ndarray(format="bgr24"))

    def plane(self) -> tuple[np.ndarray, bool]:
        """The Y plane (a view) and whether it is limited range; other pixel formats are
        converted to full-range grey."""
        if self.frame.format.name not in _PLANAR_LUMA:
            return self._upright(self.frame.to_ndarray(format="gray")), False
        plane = self.frame.planes[0]
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        grey = self._upright(rows[: self.frame.height, : self.frame.width])
        limited = self.frame.color_range != _FULL_RANGE and self.frame.format.name in _LIMITED_LUMA
        return grey, limited


def _open_error(exc: BaseException, shown: str) -> SourceError:
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, av.error.FileNotFoundError):
        return SourceError(f"video file not found: {shown}")
    if isinstance(exc, (av.error.InvalidDataError, av.error.EOFError)):
        return SourceError(f"not a readable video (not a video file, or damaged): {shown}")
    return SourceError(f"cannot open video {shown}: {describe_error(exc)}")


class FileSource(Source):
    """A video file or a recording over http(s): every frame, in order, decoded ahead by a
    reader thread.

    Damaged packets are skipped and recorded in ``stats.damage``; a file that ends early
    (truncated) is reported there too.
    """

    def __init__(self, uri: str, name: str, options: SourceOptions) -> None:
        super().__init__(name, options)
        self.uri = uri  # as FFmpeg opens it (the audio of the annotated video is read from it)
        shown = redact(uri)
        network = "://" in uri
        if not network:
            path = Path(uri)
            if not path.exists():
                raise SourceError(f"video file not found: {shown}")
            if path.is_dir():
                raise SourceError(f"is a directory, not a video file: {shown}")
        #: how FFmpeg opened it (the audio of the annotated video is opened the same way)
        self.ffmpeg_options = {"reconnect": "1"} if network else {}
        self.ffmpeg_options.update(options.ffmpeg_options)
        self.timeout = (options.open_timeout, options.stall_timeout) if network else None
        try:
            self._opened = open_video(
                uri, self.ffmpeg_options, self.timeout, options.decoder_threads
            )
        except (av.error.FFmpegError, OSError, SourceError) as exc:
            raise _open_error(exc, shown) from None
        container, stream = self._opened
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.origin = video_origin(container, stream)
        self._span = (options.start, options.end)
        self._last_time: float | None = None
        self._exact_total = bool(stream.frames) and not options.start and options.end is None
        self.total_frames = self._span_frames(stream.frames or self._estimate_frames())
        self._buffer: ItemBuffer[Frame] = ItemBuffer(options.prefetch, newest_wins=False)
        if options.start:
            self._seek(options.start)
        self._frames = decode_video(self._opened, self._damage)
        try:
            first = self._read_frame()  # decoded now, so an undecodable file fails at open
        except BaseException:
            container.close()
            raise
        if first is None:
            container.close()
            if options.start and not self.stats.damage:
                raise SourceError(
                    f"no video frame at or after {options.start:g} s (--start) in {shown}"
                )
            detail = f" ({self.stats.damage[0]})" if self.stats.damage else ""
            raise SourceError(f"no video frame could be decoded from {shown}{detail}")
        self.width, self.height = first.width, first.height
        self._buffer.put(first)
        self.stats.state = CameraState.RUNNING
        self._start(self._run)

    def _estimate_frames(self) -> int | None:
        """Frame count from the duration, for containers that do not store it (mkv, wmv)."""
        container, stream = self._opened
        if self.fps is None:
            return None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / 1e6
        else:
            return None
        return round(seconds * self.fps) or None

    def _span_frames(self, frames: int | None) -> int | None:
        """Frames within the span (the whole file's when it has none)."""
        start, end = self._span
        if frames is None or not self.fps:
            return frames
        last = frames if end is None else min(frames, math.ceil(end * self.fps))
        return max(0, last - math.ceil(start * self.fps - 1e-6))

    def _seek(self, start: float) -> None:
        """Jump to the key frame before ``start``; the frames before it are decoded and skipped.
        The index of the first frame read is then its frame number in the file."""
        container = self._opened[0]
        try:
            container.seek(round((self.origin + start) * 1e6))  # in AV_TIME_BASE units
        except av.error.FFmpegError as exc:  # not seekable (a stream): decode from the start
            LOG.info("%s: cannot seek (%s), decoding up to %g s", self.name, exc, start)
        self._index = -1  # set from the first frame's time

    def _media_time(self, frame: av.VideoFrame) -> float:
        """Seconds since the video stream's first frame (the annotated video's clock)."""
        if frame.time is not None:
            return frame.time - self.origin
        if self._last_time is not None and self.fps:
            return self._last_time + 1 / self.fps
        return self._index / self.fps if self.fps and self._index >= 0 else 0.0

    def _read_frame(self) -> Frame | None:
        start, end = self._span
        while True:
            frame = next(self._frames, None)
            if frame is None:
                return None
            t = self._media_time(frame)
            if end is not None and t >= end - 1e-6:
                return None
            if not start or t >= start - 1e-6:  # after a seek: from the key frame before it
                break
        if self._index < 0:  # after a seek: the frame's number in the file
            self._index = round(t * self.fps) if self.fps else 0
        self._last_time = t
        wall = time.time()
        index = self._counted(wall)
        return Frame(self.name, index, t, AvPicture(frame, self.options.autorotate), wall)

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            while not self._closed.is_set():
                frame = self._read_frame()
                if frame is None:
                    self._check_complete()
                    if not self._closed.is_set():
                        self.stats.state = CameraState.FINISHED
                    break
                if not self._buffer.put(frame):
                    break
        except BaseException as exc:  # a bug: re-raised in the consumer
            LOG.exception("%s: reader thread failed", self.name)
            error = exc
        finally:
            self._frames.close()
            self._opened[0].close()
            self._buffer.finish(error)

    def _check_complete(self) -> None:
        expected, read = self.total_frames, self.stats.frames
        if expected and read < expected * 0.98 - 1:
            approx = "" if self._exact_total else "~"
            self._damage(
                f"end of stream, {read} of {approx}{expected} frames decoded (truncated or damaged)"
            )

    def _next_item(self) -> Frame | Gap | None:
        return self._buffer.get()

    def _wake(self) -> None:
        self._buffer.close()


class StreamSource(LiveSource[Opened]):
    """A live network stream: an RTSP camera, or an MJPEG or HLS stream over http(s).

    Never fails at start: an unreachable camera is retried in the background (``stats.state``
    ``CONNECTING``, ``stats.last_error`` says why). FFmpeg's own reconnect options are not used:
    a lost or stalled stream is reopened by ``LiveSource`` with its backoff, and counted.
    """

    def __init__(self, uri: str, name: str, options: SourceOptions) -> None:
        super().__init__(name, options)
        self._uri = uri
        self._rtsp = uri.lower().startswith("rtsp")
        self._start_capture()

    def _connect(self) -> Opened:
        o = self.options
        # socket I/O timeout in microseconds (RTSP, and HTTP through its TCP layer)
        ffmpeg_options = {"timeout": str(int(o.stall_timeout * 1e6))}
        if self._rtsp:
            ffmpeg_options |= {"rtsp_transport": o.rtsp_transport, "allowed_media_types": "video"}
        ffmpeg_options |= o.ffmpeg_options
        # PyAV's own timeouts interrupt a blocked open or read as a second line of defence
        timeout = (o.open_timeout, o.stall_timeout + 1.0)
        return open_video(self._uri, ffmpeg_options, timeout, o.decoder_threads)

    def _hint(self, exc: Exception) -> str | None:
        # a camera that cannot stream RTP over its RTSP connection refuses the TCP SETUP:
        # 400 Bad Request, or 461 Unsupported Transport (FFmpeg: "4XX Client Error")
        reason = describe_error(exc)
        refused = "400 Bad Request" in reason or "4XX Client Error" in reason
        if self._rtsp and self.options.rtsp_transport == "tcp" and refused:
            return (
                "the camera refused RTSP over TCP: set 'rtsp_transport: udp' in its camera "
                "entry (or live.rtsp_transport: udp, e.g. --set live.rtsp_transport=udp)"
            )
        return None

    def _read(self, conn: Opened) -> Generator[Grab, None, None]:
        autorotate = self.options.autorotate
        timed = conn[0].format.name not in UNTIMED_FORMATS
        sized = False
        for frame in decode_video(conn, self._damage, self.options.stall_timeout):
            picture = AvPicture(frame, autorotate)
            if not sized:
                self.width, self.height = picture.width, picture.height
                rate = conn[1].average_rate or conn[1].guessed_rate
                self.fps = float(rate) if rate and timed else None
                sized = True
            yield picture, frame.time if timed else None

    def _disconnect(self, conn: Opened) -> None:
        try:
            conn[0].close()
        except Exception as exc:
            LOG.debug("%s: closing the stream failed: %s", self.name, describe_error(exc))
