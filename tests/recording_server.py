"""An HTTP server on 127.0.0.1 that records each request as a client sent it (method, path,
query, headers, multipart parts) and answers with a canned response: to check that a client
under test (Double Take's detector, the CompreFace SDK) sends exactly what it should."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    parts: list[Part] = field(default_factory=list)

    def part(self, name: str) -> Part:
        found = [p for p in self.parts if p.name == name]
        assert len(found) == 1, f"expected one part {name!r}, got {[p.name for p in self.parts]}"
        return found[0]

    def json(self) -> Any:
        return json.loads(self.body)


def multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = []
    for item in message.iter_parts():
        assert isinstance(item, Message)
        payload = item.get_payload(decode=True)
        parts.append(
            Part(
                str(item.get_param("name", header="content-disposition")),
                item.get_filename(),
                item.get("Content-Type"),
                payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


Answer = tuple[int, Any] | Callable[[Request], tuple[int, Any]]


class RecordingServer:
    """Records requests; answers each with ``answer``: (status, JSON body), or a function of
    the request giving them."""

    def __init__(self, answer: Answer = (200, {})) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    length = int(self.headers.get("Content-Length") or 0)
                    return self.rfile.read(length) if length else b""
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)

            def _record(self) -> None:
                body = self._body()
                url = urlsplit(self.path)
                kind = self.headers.get("Content-Type") or ""
                parts = multipart(kind, body) if kind.startswith("multipart/") else []
                request = Request(
                    self.command,
                    url.path,
                    url.query,
                    parse_qs(url.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    parts,
                )
                with server._lock:
                    server.requests.append(request)
                    answer = server.answer
                status, reply = answer(request) if callable(answer) else answer
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _record

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.port = int(self._server.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def recording(answer: Answer = (200, {})) -> Iterator[RecordingServer]:
    server = RecordingServer(answer)
    server.start()
    try:
        yield server
    finally:
        server.stop()
