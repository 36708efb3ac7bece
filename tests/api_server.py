"""The face library's REST APIs (native and CompreFace) on a real :class:`WebServer` on
127.0.0.1 and a free port, over a gallery of the small real recognizer: ``served(analyzer,
folder)`` gives the factory the API tests use as their ``serve`` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.gallery.store import Gallery
from streamrec.recognition import Recognition
from streamrec.service import api, compreface
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus


@dataclass
class Served:
    """A real WebServer with the face library mounted, on 127.0.0.1 and a free port."""

    server: WebServer
    gallery: Gallery
    status: LiveStatus
    reloads: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@contextmanager
def served(analyzer: FaceAnalyzer, folder: Path) -> Iterator[Callable[..., Served]]:
    """A factory of started servers (``token``, ``gallery=False``: without one, ``**http``:
    HttpConfig fields), all stopped at the end."""
    started: list[Served] = []

    def start(token: str | None = None, gallery: bool = True, **http: Any) -> Served:
        status = LiveStatus()
        store = analyzer.open_gallery(folder / f"gallery{len(started)}.db")
        server = WebServer(status, Metrics(), "127.0.0.1", 0, token, HttpConfig(port=0, **http))
        s = Served(server, store, status)
        recognition = Recognition(analyzer, store if gallery else None)
        # the running pipeline's place: every change is handed over at once
        recognition.subscribe(lambda change: s.reloads.append(change.revision))
        library = api.FaceLibrary(recognition, status)
        api.mount(server.app, library)
        compreface.mount(server.app, library)
        server.start()
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.server.stop()
            s.gallery.close()
