"""WebhookEventSink against a real HTTP server on 127.0.0.1 that fails, rejects and stalls."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from streamrec.records import Event
from streamrec.sinks import SinkError, WebhookEventSink

WAIT = 20.0  # seconds before a wait_until gives up (the failure case only)


def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Endpoint:
    """An HTTP server that answers the first ``fail_first`` POSTs with 503, events with
    ``"reject": true`` with 400, and blocks while ``gate`` is clear."""

    def __init__(self, port: int = 0, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests = 0
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()  # a request is blocked on the gate
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests += 1
                if not endpoint.gate.is_set():
                    endpoint.waiting.set()
                    endpoint.gate.wait(WAIT)
                if endpoint.requests <= endpoint.fail_first:
                    status = 503
                elif body.get("reject"):
                    status = 400
                elif body.get("redirect"):
                    status = 302
                else:
                    status = 200
                    endpoint.received.append(body)
                    endpoint.headers.append(dict(self.headers))
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook?token=secret"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.received]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def endpoints() -> Iterator[list[Endpoint]]:
    made: list[Endpoint] = []
    try:
        yield made
    finally:
        for e in made:
            e.close()


def event(seq: int, **fields: Any) -> Event:
    return Event(
        "identified", "cam", seq, seq, seq / 25.0, camera="cam1", fields={"seq": seq, **fields}
    )


def test_retries_5xx_and_delivers_everything_in_order(endpoints: list[Endpoint]) -> None:
    server = Endpoint(fail_first=3)
    endpoints.append(server)
    sink = WebhookEventSink(
        server.url, headers={"Authorization": "Bearer x"}, backoff=0.01, retries=5
    )
    for i in range(30):
        sink.write(event(i))
    sink.close(timeout=WAIT)  # drains
    assert server.seqs() == list(range(30))
    assert server.requests == 33
    assert sink.delivered == 30 and sink.failed == 0 and sink.pending == 0
    headers = server.headers[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer x"
    assert server.received[0]["camera"] == "cam1"
    sink.close()  # idempotent
    with pytest.raises(RuntimeError):
        sink.write(event(99))


def test_gives_up_on_4xx_and_after_retries(
    endpoints: list[Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    server = Endpoint()
    endpoints.append(server)
    with caplog.at_level(logging.INFO):
        sink = WebhookEventSink(server.url, backoff=0.01, retries=2)
        sink.write(event(0))
        sink.write(event(1, reject=True))
        sink.write(event(2, redirect=True))  # not followed as a GET
        wait_until(lambda: sink.pending == 0, "the events to be handled")
        assert server.seqs() == [0] and server.requests == 3  # no retry of the 400 / 302
        server.fail_first = server.requests + 3  # more failures than retries
        sink.write(event(3))
        sink.write(event(4))
        sink.close(timeout=WAIT)
    assert server.seqs() == [0, 4]
    assert sink.failed == 3 and sink.delivered == 2
    # one error for the burst (400, 302, then 503s past the retries), then the count
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "rejected with HTTP 400" in errors[0], errors
    assert "delivering again (3 event(s) given up meanwhile)" in caplog.text
    assert sink.health()["errors"] == 3
    assert "secret" not in caplog.text  # the query string is not logged


def test_endpoint_down_at_start(
    endpoints: list[Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with caplog.at_level(logging.WARNING):
        sink = WebhookEventSink(f"http://127.0.0.1:{port}/", backoff=0.05, retries=50)
        for i in range(5):
            sink.write(event(i))
        wait_until(lambda: "retrying with backoff" in caplog.text, "a connection failure")
        server = Endpoint(port=port)
        endpoints.append(server)
        sink.close(timeout=WAIT)
    assert server.seqs() == list(range(5))


def test_full_buffer_drops_oldest(endpoints: list[Endpoint]) -> None:
    server = Endpoint()
    endpoints.append(server)
    server.gate.clear()
    sink = WebhookEventSink(server.url, buffer_max=5)
    sink.write(event(0))
    assert server.waiting.wait(WAIT)  # event 0 is being delivered, the buffer is empty
    for i in range(1, 11):
        sink.write(event(i))
    assert sink.dropped == 5 and sink.pending == 6
    server.gate.set()
    sink.close(timeout=WAIT)
    assert server.seqs() == [0, 6, 7, 8, 9, 10]


def test_close_times_out_on_a_dead_endpoint(
    endpoints: list[Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    server = Endpoint(fail_first=10**6)
    endpoints.append(server)
    sink = WebhookEventSink(server.url, backoff=5.0, retries=10)
    for i in range(3):
        sink.write(event(i))
    with caplog.at_level(logging.ERROR):
        sink.close(timeout=0.3)  # the retry sleep is interrupted
    assert "3 events were not delivered before close" in caplog.text


@pytest.mark.parametrize("url", ["ftp://host/x", "localhost:8080/hook", "", "http:///path"])
def test_rejects_bad_urls(url: str) -> None:
    with pytest.raises(SinkError, match="webhook URL must be"):
        WebhookEventSink(url)
