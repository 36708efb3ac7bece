"""The face history on the Faces page and its REST routes (issue 25 phase B), in a real browser
(Debian chromium + chromedriver through Selenium) against a real server, with the small real
models and real photos: search by face, merge suggestions, per-group review with a multi-select,
"not this person", names shown as text."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from face_helpers import single_face
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_faces_page import (  # noqa: F401  (browser: a fixture)
    CHROMEDRIVER,
    CHROMIUM,
    HOSTILE,
    browser,
    click,
    find,
    loaded_face,
    status_text,
    wait_for,
)

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.gallery.store import Gallery
from streamrec.history.feed import GuardedPeople
from streamrec.history.store import HistoryStore, history_folder
from streamrec.recognition import Recognition
from streamrec.records import TrackSighting
from streamrec.service import api, history_api
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

TOKEN = "history-page-token"
SHOTS = Path(os.environ.get("STREAMREC_SCREENSHOTS", "/tmp/streamrec-screenshots"))

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"{CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver) not installed",
)

#: (label, photo, hours ago): Biden seen as two unknown labels on two days, Alex as a third,
#: Obama named (wrongly, for the test) "Lin", and a hostile name
SIGHTINGS = [
    ("unknown-1", "knn_examples/train/biden/biden.jpg", 30),
    ("unknown-1", "biden.jpg", 5),
    ("unknown-3", "knn_examples/train/biden/biden2.jpg", 2),
    ("unknown-2", "alex-lacamoire.png", 1),
    ("Lin", "obama.jpg", 3),
    (HOSTILE, "lin-manuel-miranda.png", 4),
]


@pytest.fixture
def site(analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path) -> Iterator[tuple]:
    photos = media_dir / "face_recognition"
    gallery: Gallery = analyzer.open_gallery(tmp_path / "faces.db")
    store = HistoryStore(history_folder(gallery.path), analyzer.recognizer)
    now = time.time()
    for label, photo, hours in SIGHTINGS:
        embedding, crop = single_face(analyzer, photos / photo)
        if label.startswith("unknown-"):
            gallery.add_unknown(label, embedding[None], [crop], [0.9], "camera door")
        t = now - hours * 3600
        store.add([TrackSighting("door", t, t + 4, embedding, crop, 0.9, label, None)])
    server = WebServer(LiveStatus(), Metrics(), "127.0.0.1", 0, TOKEN, HttpConfig(port=0))
    people = GuardedPeople(gallery, store)
    library = api.FaceLibrary(Recognition(analyzer, gallery, people=people), LiveStatus())
    api.mount(server.app, library, history=True)
    history_api.mount(server.app, library, store)
    with server:
        yield server, gallery, store
    store.close()
    gallery.close()


def test_search_route_answers_best_first_with_crops(site, media_dir: Path) -> None:
    server, _, _ = site
    base = f"http://127.0.0.1:{server.port}/api"
    photo = media_dir / "face_recognition" / "knn_examples" / "train" / "biden" / "biden2.jpg"
    files = {"file": ("q.jpg", photo.read_bytes(), "image/jpeg")}
    assert requests.post(f"{base}/search", files=files, timeout=60).status_code == 401
    auth = {"authorization": f"Bearer {TOKEN}"}
    hits = requests.post(f"{base}/search", files=files, headers=auth, timeout=60).json()
    assert [h["label"] for h in hits[:3]] == ["unknown-3", "unknown-1", "unknown-1"], hits
    assert hits[0]["similarity"] > 0.99 and hits[0]["camera"] == "door"
    url = f"http://127.0.0.1:{server.port}/{hits[0]['crop']}"
    crop = requests.get(url, headers=auth, timeout=60)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    view = media_dir / "insightface" / "view.jpg"
    none = requests.post(
        f"{base}/search", files={"file": ("v.jpg", view.read_bytes())}, headers=auth, timeout=60
    )
    assert none.status_code == 400 and "No face" in none.json()["detail"]
    junk = requests.post(
        f"{base}/search", files={"file": ("x.jpg", b"not an image")}, headers=auth, timeout=60
    )
    assert junk.status_code == 400
    since = {"since": str(time.time() - 2.5 * 3600)}
    recent = requests.post(
        f"{base}/search", files=files, data=since, headers=auth, timeout=60
    ).json()
    assert "unknown-1" not in [h["label"] for h in recent[:2]]  # both of unknown-1 are older
    assert requests.get(f"{base}/sightings/999/crop", headers=auth, timeout=60).status_code == 404


def test_history_review_on_the_faces_page(
    site,
    analyzer: FaceAnalyzer,
    browser: WebDriver,  # noqa: F811  (the fixture of test_faces_page)
    media_dir: Path,
) -> None:
    server, gallery, store = site
    browser.get(f"http://127.0.0.1:{server.port}/faces?token={TOKEN}")
    title = browser.title

    def groups(d: WebDriver) -> dict[str, object]:
        rows = d.find_elements(By.CSS_SELECTOR, "#groups .group")
        return {r.find_element(By.CSS_SELECTOR, ".name").text: r for r in rows}

    wait_for(browser, "the history's groups", lambda d: len(groups(d)) == 5)
    assert set(groups(browser)) == {"unknown-1", "unknown-2", "unknown-3", "Lin", HOSTILE}
    assert browser.title == title  # a name is text, never HTML
    wait_for(browser, "the group faces", lambda d: all(
        loaded_face(d, r) for r in groups(d).values()))  # fmt: skip
    bars = groups(browser)["unknown-1"].find_elements(By.CSS_SELECTOR, ".bars span")
    assert len(bars) == 14  # sightings per day, two weeks

    # a merge suggestion: unknown-3 is unknown-1 (Biden), with its evidence; one click merges
    suggestion = wait_for(
        browser, "a merge suggestion", lambda d: find(d, "#suggestions .suggestion")
    )
    assert "unknown-3 looks like unknown-1" in suggestion.text and "similarity" in suggestion.text
    assert "unknown-2" not in suggestion.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView()", find(browser, "#history"))
    browser.save_screenshot(str(SHOTS / "history-review.png"))
    suggestion.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(browser, "unknown-3 merged", lambda d: not any(
        u.label == "unknown-3" for u in gallery.unknowns()))  # fmt: skip

    # search by face: the results, best first, with a "not this person" button
    obama = media_dir / "face_recognition" / "obama2.jpg"
    browser.find_element(By.ID, "search-file").send_keys(str(obama))
    browser.find_element(By.ID, "search-submit").click()
    hit = wait_for(browser, "search results", lambda d: find(d, "#hits .hit"))
    assert hit.find_element(By.CSS_SELECTOR, ".name").text == "Lin"
    wait_for(browser, "the hit's face", lambda d: loaded_face(d, find(d, "#hits .hit")))
    browser.execute_script("arguments[0].scrollIntoView()", find(browser, "#history"))
    browser.save_screenshot(str(SHOTS / "history-search.png"))
    hit.find_element(By.CSS_SELECTOR, "button.warn").click()
    wait_for(browser, "the rejection", lambda d: store.sightings("Lin") == [])

    # assign: tick Alex's face (unknown-2) and give it his name
    (alex,) = store.sightings("unknown-2")
    box = f'#groups .pick input[data-id="{alex.id}"]'
    wait_for(browser, "Alex's box", lambda d: click(find(d, box)))
    browser.find_element(By.ID, "assign-name").send_keys("Alex")
    browser.find_element(By.CSS_SELECTOR, "#bulk-assign button").click()
    wait_for(
        browser, "the assignment", lambda d: [s.id for s in store.sightings("Alex")] == [alex.id]
    )

    # reprocess: Biden is enrolled now; his unknown group matched again is his
    embedding, _ = single_face(analyzer, media_dir / "face_recognition" / "biden.jpg")
    gallery.add("Joe Biden", embedding[None], ["photo"])

    def reprocess(d: WebDriver) -> bool:
        row = groups(d).get("unknown-1")
        return row is not None and click(
            row.find_element(By.XPATH, ".//button[text()='Reprocess']")
        )

    wait_for(browser, "the Reprocess button", reprocess)
    wait_for(browser, "unknown-1 matched again", lambda d: store.sightings("Joe Biden") != [])
    wait_for(browser, "the report", lambda d: "matched again (" in status_text(d))

    # multi-select: tick two faces, delete them
    def ticks(d: WebDriver) -> list:
        return d.find_elements(By.CSS_SELECTOR, "#groups .pick input")

    def two_ids(d: WebDriver) -> list[int] | None:
        """The first two boxes' sighting ids, read together (a redraw may replace them)."""
        ids = [int(t.get_attribute("data-id")) for t in ticks(d)[:2]]
        return ids if len(ids) == 2 else None

    before = len(store)
    chosen = wait_for(browser, "the faces to tick", two_ids)
    for sid in chosen:  # a redraw may replace the boxes: each is looked up until clicked
        wait_for(
            browser,
            f"box {sid}",
            lambda d, sid=sid: click(find(d, f'#groups .pick input[data-id="{sid}"]')),
        )
    assert "2 selected" in browser.find_element(By.ID, "picked").text
    browser.find_element(By.ID, "bulk-delete").click()
    wait_for(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    wait_for(browser, "two sightings deleted", lambda d: len(store) == before - 2)
    assert all(store.sighting(i) is None for i in chosen)
