"""A real RTSP camera for tests: Debian's rtsp-server-perl plus an ffmpeg publisher looping a clip.

rtsp-server-perl listens on two TCP ports (clients, publishers; both configurable, defaults 554
and 5545) and relays RTP over UDP only: publishing and reading must use UDP transport (a TCP
SETUP gets "400 Bad Request"). Its RTP ports start at ``--rtp_start_port`` but fall back to the
hard-coded 20000 whenever no stream is mounted, so the launcher below also sets that package
variable: servers of parallel tests never share RTP ports.

    with RtspStream(clip) as cam:         # or: with rtsp_stream(clip) as url: ...
        cam.url                           # rtsp://127.0.0.1:PORT/stream
        cam.stop()                        # camera gone (server and publisher killed)
        cam.start()                       # back on the same URL
        cam.pause_publisher()             # stream silent: a stall for readers (resume_publisher)
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

SERVER = "/usr/bin/rtsp-server-perl"
# Runs the Debian script with the RTP fallback port moved to ours (see the module docstring).
_LAUNCHER = (
    f'use RTSP::Server; $RTSP::Server::RTP_START_PORT = shift @ARGV; do "{SERVER}"; die $@ if $@;'
)
_RTP_PORTS = 128  # UDP ports reserved per server: 2 per published stream and per reader
_BIND_ATTEMPTS = 5  # server starts when its TCP port was taken meanwhile (see start_server)


def unavailable() -> str | None:
    """Why RTSP tests cannot run here, or None (use with pytest.skip)."""
    if not Path(SERVER).exists():
        return "rtsp-server-perl is not installed (apt-get install rtsp-server-perl)"
    if shutil.which("ffmpeg") is None:
        return "ffmpeg is not installed (apt-get install ffmpeg)"
    return None


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp_range(count: int) -> int:
    """An even port starting ``count`` free UDP ports on 127.0.0.1."""
    for _ in range(100):
        base = random.randrange(30000, 60000 - count, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port range for the RTSP server")


def describe_status(url: str, timeout: float = 2.0) -> int | None:
    """RTSP status code of a DESCRIBE of ``url`` (200: the stream is served), None if no server."""
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            line = s.makefile("rb").readline().decode(errors="replace").split()
    except OSError:
        return None
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RtspStream:
    """rtsp-server-perl on free loopback ports with ``clip`` published (looped) at ``path``."""

    def __init__(self, clip: str | Path, transport: str = "udp", path: str = "/stream") -> None:
        if transport != "udp":
            raise ValueError("rtsp-server-perl relays RTP over UDP only: use transport='udp'")
        self.clip = Path(clip)
        self.transport = transport
        self.path = path
        self.client_port = _free_tcp_port()
        self.source_port = _free_tcp_port()
        self.rtp_start_port = _free_udp_range(_RTP_PORTS)
        self._server: subprocess.Popen[bytes] | None = None
        self._publisher: subprocess.Popen[bytes] | None = None
        self._told = False  # its URL was asked for: its ports are kept
        self._logdir = tempfile.TemporaryDirectory(prefix="rtsp-test-")

    @property
    def url(self) -> str:
        """What readers open."""
        self._told = True
        return self._address()

    def _address(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}{self.path}"

    @property
    def publish_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.source_port}{self.path}"

    def _log(self, name: str) -> Path:
        return Path(self._logdir.name) / f"{name}.log"

    def _wait_until(
        self, what: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                log = self._log(what).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{what} exited with {proc.returncode}: {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:g} s")
            time.sleep(0.1)

    def start_server(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts readers.

        A port found free may be taken before the server binds it (another process's outgoing
        connection gets it as its ephemeral port): then the server is started again, on new
        ports if nobody has asked for its URL yet, else on the same ones."""
        if self._server is not None and self._server.poll() is None:
            return
        for attempt in range(_BIND_ATTEMPTS):
            start = self._log("server").stat().st_size if self._log("server").exists() else 0
            try:
                self._start_server(timeout)
                return
            except RuntimeError:
                text = self._log("server").read_bytes()[start:].decode(errors="replace")
                if "Address already in use" not in text or attempt == _BIND_ATTEMPTS - 1:
                    raise
            if self._told:
                time.sleep(0.5)  # the same ports: give their holder a moment
            else:
                self.client_port, self.source_port = _free_tcp_port(), _free_tcp_port()

    def _start_server(self, timeout: float) -> None:
        args = [
            "perl", "-e", _LAUNCHER, str(self.rtp_start_port),
            "--clientport", str(self.client_port), "--serverport", str(self.source_port),
            "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
            "--rtp_start_port", str(self.rtp_start_port), "--loglevel", "2",
        ]  # fmt: skip
        with self._log("server").open("ab") as log:
            self._server = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until(
            "server", self._server, lambda: describe_status(self._address()) is not None, timeout
        )

    def start_publisher(self, timeout: float = 30.0) -> None:
        """Start publishing the clip (looped, real-time) and wait until readers can play it."""
        if self._publisher is not None and self._publisher.poll() is None:
            return
        args = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
            "-re", "-stream_loop", "-1", "-i", str(self.clip),
            "-map", "0:v:0", "-c", "copy",
            "-f", "rtsp", "-rtsp_transport", self.transport, self.publish_url,
        ]  # fmt: skip
        with self._log("publisher").open("ab") as log:
            self._publisher = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until(
            "publisher", self._publisher, lambda: describe_status(self._address()) == 200, timeout
        )

    def pause_publisher(self) -> None:
        """Freeze the publisher (SIGSTOP): the session stays up but no packet flows, as with a
        hung camera; readers see a stall."""
        if self._publisher is not None:
            self._publisher.send_signal(signal.SIGSTOP)

    def resume_publisher(self) -> None:
        if self._publisher is not None:
            self._publisher.send_signal(signal.SIGCONT)

    def start(self) -> None:
        self.start_server()
        self.start_publisher()

    def stop_publisher(self) -> None:
        """Stop publishing cleanly (ffmpeg sends TEARDOWN: the server unmounts the stream).

        Not SIGKILL: rtsp-server-perl unmounts only on TEARDOWN, a killed publisher would leave
        a dead mount that refuses the next publisher."""
        _stop(self._publisher)
        self._publisher = None

    def stop(self) -> None:
        """Kill publisher and server: to readers the camera is gone."""
        self.stop_publisher()
        _stop(self._server)
        self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RtspStream:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.stop()
        self._logdir.cleanup()


@contextmanager
def rtsp_stream(clip: str | Path, transport: str = "udp") -> Iterator[str]:
    """The URL of a live RTSP stream of ``clip`` for the duration of the ``with`` block."""
    with RtspStream(clip, transport) as stream:
        yield stream.url
