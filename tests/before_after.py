"""Issue 23's before/after check: does this checkout behave as another one (the code before a
restructuring) does? Not a test: it needs a second checkout and the shared models and media.

    git worktree add /tmp/before 325f854
    STREAMREC_MODELS=... STREAMREC_MEDIA=... python tests/before_after.py /tmp/before

Each checkout runs its own code (on ``PYTHONPATH``, with this interpreter) and makes its own data:

- ``hamilton``: a gallery of Lin-Manuel Miranda and Alex Lacamoire enrolled with ``streamrec
  gallery add``, then ``streamrec run`` on the Hamilton clip (the small models, FP32): the event
  files must be byte-identical once ``captured`` (the wall-clock time of a read) is taken out.
- ``api``: a recorded request set on the REST and CompreFace APIs of a fresh gallery (enrol,
  list, recognize, rename, merge, unknown people, erase, bad input): status codes and bodies
  must be the same (times aside, see :func:`_normal`; CompreFace image ids, made of a
  sample's creation time, are numbered in order of appearance).

Exit 0 when both agree; else what differs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cli_helpers import SMALL  # this script's folder is first on sys.path

HERE = Path(__file__).resolve().parent.parent
PEOPLE = {
    "Lin-Manuel Miranda": "lin-manuel-miranda.png",
    "Alex Lacamoire": "alex-lacamoire.png",
}
CLIP = "face_recognition/short_hamilton_clip.mp4"
NO_FACE = "../insightface/view.jpg"  # a landscape (from face_recognition/)


def _media() -> Path:
    media = os.environ.get("STREAMREC_MEDIA")
    if not media or not Path(media, CLIP).is_file():
        sys.exit("set STREAMREC_MEDIA (and STREAMREC_MODELS) to the shared media and models")
    return Path(media)


def _env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout)}


def _streamrec(checkout: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(checkout / "run.py"), *args],
        env=_env(checkout),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        sys.exit(f"{checkout}: streamrec {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def hamilton_events(checkout: Path, work: Path) -> list[str]:
    """The event lines of ``streamrec run`` on the Hamilton clip, without ``captured``."""
    media = _media() / "face_recognition"
    gallery, events = work / "gallery.db", work / "events.jsonl"
    for name, photo in PEOPLE.items():
        _streamrec(checkout, "gallery", "add", name, str(media / photo), "--gallery", str(gallery),
                   *SMALL)
    _streamrec(checkout, "run", "--source", str(_media() / CLIP), "--gallery", str(gallery),
               "--events", str(events), "--no-progress", *SMALL)
    lines = []
    for line in events.read_text().splitlines():
        event = json.loads(line)
        event.pop("captured", None)
        lines.append(json.dumps(event))
    return lines


# ------------------------------------------------------------------------- the API session

def _library(analyzer: Any, store: Any, status: Any) -> Any:
    """The face library as the checkout builds it (with the Recognition service, or before)."""
    import inspect

    from streamrec.service import api

    if "analyzer" in inspect.signature(api.FaceLibrary).parameters:  # before issue 23
        return api.FaceLibrary(analyzer, store, status, lambda: None)  # type: ignore[call-arg]
    from streamrec.recognition import Recognition

    return api.FaceLibrary(Recognition(analyzer, store), status)


def api_answers(out: Path) -> None:
    """Run the recorded request set on this process's streamrec; write the answers to ``out``."""
    import cv2
    import requests

    from streamrec.analyzer import FaceAnalyzer
    from streamrec.config import HttpConfig, load_config
    from streamrec.models.alignment import align
    from streamrec.service import api, compreface
    from streamrec.service.http import WebServer
    from streamrec.service.metrics import Metrics
    from streamrec.service.status import LiveStatus

    media = _media() / "face_recognition"
    cfg = load_config(None, [s for s in SMALL if s != "--set"] + ["models.download=false"])
    analyzer = FaceAnalyzer.from_config(cfg)
    status = LiveStatus()
    store = analyzer.open_gallery(out.parent / "api.db")
    for label, photo in (("unknown-1", "biden.jpg"), ("unknown-2", "alex-lacamoire.png")):
        image = cv2.imread(str(media / photo))
        face = analyzer.analyze(image)[0]
        crop = align(image, face.kps, analyzer.embedder.input_size)
        store.add_unknown(label, face.embedding[None], [crop], [0.9], "camera door")
    server = WebServer(status, Metrics(), "127.0.0.1", 0, None, HttpConfig(port=0))
    library = _library(analyzer, store, status)
    api.mount(server.app, library)
    compreface.mount(server.app, library)
    answers: list[dict[str, Any]] = []

    def ask(method: str, path: str, photos: tuple[str, ...] = (), field: str = "file",
            **kwargs: Any) -> Any:
        files = [(field, (Path(p).name, (media / p).read_bytes(), "image/jpeg")) for p in photos]
        r = requests.request(method, f"{base}{path}", files=files or None, timeout=120, **kwargs)
        try:
            body: Any = r.json()
        except ValueError:
            body = {"content-type": r.headers.get("content-type"), "bytes": len(r.content) > 0}
        answers.append({"request": f"{method} {path} {list(photos)} {kwargs}",
                        "status": r.status_code, "body": _normal(body)})
        return body

    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        ask("GET", "/api/people")
        ask("POST", "/api/people", ("obama.jpg", "obama2.jpg"), "files",
            data={"name": "Barack Obama"})
        ask("POST", "/api/people", ("lin-manuel-miranda.png",), data={"name": "Lin"})
        ask("POST", "/api/people", ("alex-lacamoire.png",), data={"name": "Alex"})
        ask("POST", "/api/people", ("obama.jpg",), data={"name": "Barack Obama"})  # duplicate
        ask("POST", "/api/people", ("biden.jpg",), data={"name": "../etc"})  # bad name
        ask("POST", "/api/people", (), data={"name": "Nobody"})  # no photo
        ask("POST", "/api/people", ("two_people.jpg",), data={"name": "Two"})  # two faces
        ask("POST", "/api/people", (NO_FACE,), data={"name": "Nobody"})
        ask("POST", "/api/people", ("obama3.jpg", NO_FACE), "files", data={"name": "Barack Obama"})
        ask("GET", "/api/people")
        ask("GET", "/api/people/1")
        ask("GET", "/api/people/1/samples")
        ask("GET", "/api/people/99")
        for photo in ("obama.jpg", "lin-manuel-miranda.png", "biden.jpg", "alex-lacamoire.png",
                      "two_people.jpg", NO_FACE):
            ask("POST", "/api/recognize", (photo,))
        ask("POST", "/api/recognize", data={"file": "not an image"})
        ask("PATCH", "/api/people/2", json={"name": "Lin-Manuel Miranda"})
        ask("PATCH", "/api/people/2", json={"name": "Barack Obama"})  # taken
        ask("POST", "/api/people/3/merge", json={"into": 2})
        ask("GET", "/api/unknowns")
        ask("POST", "/api/unknowns/4/name", json={"name": "Joe Biden"})
        ask("GET", "/api/unknowns")
        ask("GET", "/api/people")
        # CompreFace
        ask("POST", "/api/v1/recognition/recognize", ("obama2.jpg",))
        ask("POST", "/api/v1/recognition/recognize", ("obama.jpg",),
            params={"face_plugins": "calculator", "prediction_count": 2})
        ask("POST", "/api/v1/recognition/recognize", (NO_FACE,))
        ask("POST", "/api/v1/recognition/recognize", ("two_people.jpg",))
        ask("POST", "/api/v1/recognition/faces", ("biden.jpg",), params={"subject": "Joe Biden"})
        ask("POST", "/api/v1/recognition/faces", ("two_people.jpg",), params={"subject": "Two"})
        ask("POST", "/api/v1/recognition/faces", (NO_FACE,), params={"subject": "Nobody"})
        faces = ask("GET", "/api/v1/recognition/faces")
        ask("GET", "/api/v1/recognition/faces", params={"subject": "Joe Biden"})
        image_id = faces["faces"][0]["image_id"] if faces.get("faces") else "none"
        ask("GET", f"/api/v1/recognition/faces/{image_id}/img")
        ask("DELETE", f"/api/v1/recognition/faces/{image_id}")
        ask("DELETE", "/api/v1/recognition/faces", params={"subject": "Joe Biden"})
        ask("DELETE", "/api/people/1")
        ask("DELETE", "/api/people/1")
        ask("GET", "/api/people")
    finally:
        server.stop()
        store.close()
    text = json.dumps(answers, indent=1, sort_keys=True)
    # an image_id is made of its sample's creation time: the same in the two answers by order
    for n, uid in enumerate(dict.fromkeys(UUID.findall(text)), 1):
        text = text.replace(uid, f"<image-{n}>")
    out.write_text(text)


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _normal(value: Any) -> Any:
    """``value`` with times (ISO strings, epoch seconds) as ``<time>``."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and TIME.match(value):
        return "<time>"
    if isinstance(value, float) and value > 1e9:
        return "<time>"
    return value


def api_lines(checkout: Path, work: Path) -> list[str]:
    out = work / "api.json"
    proc = subprocess.run(
        [sys.executable, __file__, "--api-answers", str(out)],
        env=_env(checkout), capture_output=True, text=True, timeout=1200,
    )
    if proc.returncode != 0:
        sys.exit(f"{checkout}: the API session failed:\n{proc.stderr[-3000:]}")
    return out.read_text().splitlines()


def compare(what: str, before: list[str], after: list[str]) -> bool:
    if before == after:
        print(f"{what}: identical ({len(after)} lines)")
        return True
    print(f"{what}: DIFFERENT")
    sys.stdout.writelines(difflib.unified_diff(
        [x + "\n" for x in before], [x + "\n" for x in after], "before", "after", n=2
    ))
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", nargs="?", type=Path, help="the checkout to compare with")
    parser.add_argument("--only", choices=["hamilton", "api"], help="one comparison")
    parser.add_argument("--api-answers", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.api_answers is not None:
        api_answers(args.api_answers)
        return 0
    if args.before is None:
        parser.error("give the checkout to compare with")
    ok = True
    with tempfile.TemporaryDirectory(prefix="before-after-") as tmp:
        for what, run in (("hamilton", hamilton_events), ("api", api_lines)):
            if args.only not in (None, what):
                continue
            sides = []
            for side, checkout in (("before", args.before.resolve()), ("after", HERE)):
                work = Path(tmp, what, side)
                work.mkdir(parents=True)
                sides.append(run(checkout, work))
            ok = compare(what, *sides) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
