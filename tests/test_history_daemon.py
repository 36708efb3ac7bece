"""The face history in ``streamrec serve`` (issue 25 phase B): a real daemon on a real RTSP
camera keeps the sightings, serves them and the Faces page's history section, and enrolling a
person through the API names their past with one retroactive event."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rtsp_server
from cli_helpers import SMALL, streamrec
from test_daemon import (  # noqa: F401  (clip, daemon: fixtures)
    LIN,
    Daemon,
    api_post,
    clip,
    daemon,
    listed,
    stage_config,
    unknown_events,
    wait_for,
)

from streamrec.analyzer import FaceAnalyzer


def test_serve_keeps_the_history_and_names_the_past(
    clip: Path,  # noqa: F811
    analyzer: FaceAnalyzer,
    media_dir: Path,
    tmp_path: Path,
    daemon: Callable[[dict[str, Any]], Daemon],  # noqa: F811
) -> None:
    gallery = tmp_path / "people.db"
    analyzer.open_gallery(gallery).close()  # nobody enrolled: he is unknown first
    with rtsp_server.RtspStream(clip) as cam:
        d = daemon(stage_config(gallery, cam))
        wait_for("a face on the stage", lambda: unknown_events(d.events()), 120, d)
        code, page = d.get("/faces")
        assert code == 200 and b'data-history="1"' in page
        # tracks end as the clip loops: their sightings are served
        sightings = wait_for("a sighting", lambda: listed(d, "/api/sightings"), 120, d)
        assert all(s["camera"] == "stage" for s in sightings)
        assert d.get(f"/{sightings[0]['crop']}")[0] == 200

        photo = media_dir / "face_recognition/lin-manuel-miranda.png"

        def his_unknown_past() -> list[dict[str, Any]]:
            """His sightings stored as an unknown-N (how fast depends on the machine's load:
            a track is stored when it ends)."""
            with photo.open("rb") as f:
                r = api_post(d, "/api/search", files={"file": f})
            assert r.status_code == 200, r.text
            return [h for h in r.json() if (h["label"] or "").startswith("unknown-")]

        wait_for("his past as an unknown", his_unknown_past, 120, d)
        with photo.open("rb") as f:
            r = api_post(d, "/api/people", data={"name": LIN}, files={"files": f})
        assert r.status_code == 201, r.text

        def retroactive() -> list[dict[str, Any]]:
            return [e for e in d.events() if e.get("retroactive") and e["name"] == LIN]

        (event,) = wait_for("his past named", retroactive, 60, d)
        assert event["event"] == "identified" and event["previous"].startswith("unknown-")
        assert event["camera"] == "stage" and event["sightings"] >= 1
        code, _ = d.terminate()
        assert code == 0, d.log()[-3000:]
        assert len(retroactive()) == 1  # once per identity, not per sighting nor per look

    folder = tmp_path / "people.history"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    out = streamrec("history", "list", "--label", LIN, "--json", "--gallery", str(gallery), *SMALL)
    assert len(json.loads(out.stdout)) >= event["sightings"]
