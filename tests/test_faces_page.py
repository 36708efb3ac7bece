"""The Faces page in a real browser (Debian chromium driven by Selenium through the Debian
chromedriver), against a real server with the small real models and real photos."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from face_helpers import single_face

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.enrolment import enroll_images
from streamrec.gallery.store import Gallery, Person
from streamrec.recognition import Recognition
from streamrec.service import api, compreface
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "page-test-token"
HOSTILE = '<img src=x onerror="document.title=1">'
WAIT = 30  # seconds any one thing may take to show up (a loaded machine)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"{CHROMIUM} and {CHROMEDRIVER} (Debian chromium, chromium-driver) not installed",
)


@pytest.fixture
def site(
    analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> Iterator[tuple[WebServer, Gallery, LiveStatus]]:
    """A server with a gallery holding two unknown people and one recent recognition."""
    photos = media_dir / "face_recognition"
    status = LiveStatus()
    gallery = analyzer.open_gallery(tmp_path / "gallery.db")
    for label, photo in (("unknown-1", "biden.jpg"), ("unknown-2", "alex-lacamoire.png")):
        embedding, crop = single_face(analyzer, photos / photo)
        gallery.add_unknown(label, embedding[None], [crop], [0.9], "camera door")
    _, lin = single_face(analyzer, photos / "lin-manuel-miranda.png")
    status.add_recognition("stage", "Someone Else", 0.45, 3, crop=lin)
    server = WebServer(status, Metrics(), "127.0.0.1", 0, TOKEN, HttpConfig(port=0))
    library = api.FaceLibrary(Recognition(analyzer, gallery), status)
    api.mount(server.app, library)
    compreface.mount(server.app, library)
    with server:
        yield server, gallery, status
    gallery.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    # the driver's path is given, so Selenium Manager (which downloads drivers) never runs
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, what: str, check: Callable[[WebDriver], Any]) -> Any:
    """``check``'s first true value; the page redraws its lists, so an element found a moment
    ago may be gone (stale): that is asked again."""
    wait = WebDriverWait(
        driver, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(check, f"no {what} in {WAIT} s")


def find(driver: WebDriver, css: str) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0] if found else None


def card(driver: WebDriver, name: str) -> WebElement | None:
    """The person's card in the people grid (matched on the text it shows)."""
    for c in driver.find_elements(By.CSS_SELECTOR, "#people .person"):
        if c.find_element(By.CSS_SELECTOR, ".name").text == name:
            return c
    return None


def loaded_face(driver: WebDriver, element: WebElement | None) -> bool:
    """The element shows a face image that the browser fetched and decoded (112x112)."""
    if element is None:
        return False
    img = element.find_elements(By.CSS_SELECTOR, "img.face")
    return (
        bool(img)
        and driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", img[0]
        )
        == 112
    )


def click(element: WebElement | None) -> bool:
    """Click it if it is there (for ``wait_for``: a redrawn element is looked up again)."""
    if element is None:
        return False
    element.click()
    return True


def status_text(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "status").text


def test_faces_page_enrol_name_delete(site, browser: WebDriver, media_dir: Path) -> None:
    server, gallery, _ = site
    photos = media_dir / "face_recognition"
    browser.get(f"http://127.0.0.1:{server.port}/faces?token={TOKEN}")

    # the unknown people and the recent recognition are listed with their faces
    def unknown_rows(d: WebDriver) -> list[WebElement]:
        return d.find_elements(By.CSS_SELECTOR, "#unknowns .unknown")

    rows = wait_for(
        browser, "unknown people", lambda d: len(unknown_rows(d)) == 2 and unknown_rows(d)
    )
    assert [r.find_element(By.CSS_SELECTOR, ".name").text for r in rows] == [
        "unknown-1",
        "unknown-2",
    ]
    wait_for(
        browser, "the unknowns' faces", lambda d: all(loaded_face(d, r) for r in unknown_rows(d))
    )
    recent = wait_for(browser, "a recent recognition", lambda d: find(d, "#recent .recent"))
    assert recent.find_element(By.CSS_SELECTOR, ".name").text == "Someone Else"
    wait_for(browser, "the recent face", lambda d: loaded_face(d, recent))

    # enrol a person by uploading a photo; the card shows the thumbnail
    browser.find_element(By.ID, "enrol-name").send_keys("Barack Obama")
    browser.find_element(By.ID, "enrol-files").send_keys(str(photos / "obama.jpg"))
    browser.find_element(By.ID, "enrol-submit").click()
    obama = wait_for(browser, "Barack Obama's card", lambda d: card(d, "Barack Obama"))
    wait_for(browser, "Barack Obama's thumbnail", lambda d: loaded_face(d, card(d, "Barack Obama")))
    assert "1 sample" in obama.text
    assert "Barack Obama: 1 sample" in status_text(browser)
    assert [p.name for p in gallery.people()] == ["Barack Obama"]

    # name an unknown group
    row = unknown_rows(browser)[0]
    row.find_element(By.CSS_SELECTOR, ".name-form input").send_keys("Joe Biden")
    row.find_element(By.CSS_SELECTOR, ".name-form button").click()
    wait_for(browser, "Joe Biden's card", lambda d: card(d, "Joe Biden"))
    wait_for(browser, "unknown-1 to go", lambda d: len(unknown_rows(d)) == 1)
    assert unknown_rows(browser)[0].find_element(By.CSS_SELECTOR, ".name").text == "unknown-2"
    assert gallery.tombstoned("unknown-1")

    # "this is X" on a recent recognition enrols its face
    recent = find(browser, "#recent .recent")
    assert recent is not None
    recent.find_element(By.CSS_SELECTOR, ".this-is input").send_keys("Lin-Manuel Miranda")
    recent.find_element(By.CSS_SELECTOR, ".this-is button").click()
    wait_for(browser, "Lin-Manuel Miranda's card", lambda d: card(d, "Lin-Manuel Miranda"))

    # a person's samples; deleting the person (after the confirmation)
    card(browser, "Barack Obama").click()
    wait_for(browser, "the samples", lambda d: find(d, "#samples .sample"))
    assert browser.find_element(By.ID, "person-name").text == "Barack Obama"
    wait_for(browser, "a sample's face", lambda d: loaded_face(d, find(d, "#samples .sample")))
    browser.find_element(By.ID, "person-delete").click()
    wait_for(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    wait_for(browser, "the card to go", lambda d: card(d, "Barack Obama") is None)
    assert not browser.find_element(By.ID, "person").is_displayed()
    assert "Barack Obama deleted" in status_text(browser)
    assert sorted(p.name for p in gallery.people()) == ["Joe Biden", "Lin-Manuel Miranda"]


def test_names_are_text_and_the_page_fits_a_phone(
    site, browser: WebDriver, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    server, gallery, _ = site
    embedding, crop = single_face(analyzer, media_dir / "face_recognition/obama.jpg")
    gallery.add(HOSTILE, embedding[None], ["photo"], [crop])
    browser.set_window_size(390, 844)
    browser.get(f"http://127.0.0.1:{server.port}/faces?token={TOKEN}")
    hostile = wait_for(browser, "the person's card", lambda d: card(d, HOSTILE))
    assert hostile.find_element(By.CSS_SELECTOR, ".name").text == HOSTILE
    assert not browser.find_elements(By.CSS_SELECTOR, "img[src='x']")
    assert browser.title == "streamrec faces"  # the onerror never ran
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= browser.execute_script("return window.innerWidth"), "scrolls sideways"
    # the live view links here, keeping the token
    browser.get(f"http://127.0.0.1:{server.port}/?token={TOKEN}")
    link = wait_for(browser, "the Faces link", lambda d: find(d, "#faces-link"))
    assert link.get_attribute("href").endswith(f"/faces?token={TOKEN}")


# -- issue 20, items 8 and 12 ---------------------------------------------------------------------


class Requests:
    """ASGI middleware (outermost) that records every request's path and answer status."""

    def __init__(self, app: Any, seen: list[tuple[str, str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, sending)


@dataclass
class Library:
    server: WebServer
    gallery: Gallery
    status: LiveStatus
    seen: list[tuple[str, str, int]]

    @property
    def page(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/faces?token={TOKEN}"

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in list(self.seen) if m == method and p == path)


@pytest.fixture
def library(analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path) -> Iterator[Library]:
    """People enrolled from real photos: Barack Obama (2 photos), Barack (1), Alex Lacamoire
    (2); unknown-1 (46 sightings of another face), unknown-2 (Biden)."""
    photos = media_dir / "face_recognition"
    status = LiveStatus()
    gallery = analyzer.open_gallery(tmp_path / "gallery.db")
    for name, files in (
        ("Barack Obama", ["obama.jpg", "obama2.jpg"]),
        ("Barack", ["obama3.jpg"]),
        ("Alex Lacamoire", ["alex-lacamoire.png", "knn_examples/train/alex_lacamoire/img1.jpg"]),
    ):
        enroll_images(Recognition(analyzer, gallery), name, [photos / f for f in files])
    lin, lin_face = single_face(analyzer, photos / "lin-manuel-miranda.png")
    rng = np.random.default_rng(0)
    sightings = lin[None] + rng.normal(0, 0.02, (46, lin.size)).astype(np.float32)
    gallery.add_unknown("unknown-1", sightings, [lin_face] * 46, [0.93] * 46, "camera stage")
    biden, biden_face = single_face(analyzer, photos / "biden.jpg")
    gallery.add_unknown("unknown-2", biden[None], [biden_face], [0.9], "camera door")
    seen: list[tuple[str, str, int]] = []
    server = WebServer(status, Metrics(), "127.0.0.1", 0, TOKEN, HttpConfig(port=0))
    server.app.add_middleware(Requests, seen=seen)
    library = api.FaceLibrary(Recognition(analyzer, gallery), status)
    api.mount(server.app, library)
    compreface.mount(server.app, library)
    with server:
        yield Library(server, gallery, status, seen)
    gallery.close()


def next_refresh(driver: WebDriver, lib: Library) -> None:
    """Wait until the page has redrawn from fresh data twice (its own polling)."""
    start = lib.count("GET", "/api/people")
    wait_for(driver, "two refreshes", lambda d: lib.count("GET", "/api/people") >= start + 2)


def test_no_401_no_favicon_and_no_stale_image_after_delete_and_merge(
    library: Library, browser: WebDriver, tmp_path: Path
) -> None:
    """favicon.ico answered 401 with a token; thumbnails of people deleted or merged away
    were fetched after they had gone (404)."""
    browser.get(library.page)
    wait_for(
        browser, "three people", lambda d: len(d.find_elements(By.CSS_SELECTOR, ".person")) == 3
    )
    wait_for(
        browser,
        "their thumbnails",
        lambda d: all(loaded_face(d, c) for c in d.find_elements(By.CSS_SELECTOR, ".person")),
    )

    # merge Barack into Barack Obama from his panel: it asks first
    wait_for(browser, "Barack's panel", lambda d: click(card(d, "Barack")))
    wait_for(browser, "his samples", lambda d: find(d, "#samples .sample"))
    Select(browser.find_element(By.ID, "merge-into")).select_by_visible_text("Barack Obama")
    browser.find_element(By.CSS_SELECTOR, "#merge-person button").click()
    ask = wait_for(browser, "the question", lambda d: d.find_element(By.ID, "ask").is_displayed())
    assert ask and "Merge Barack into Barack Obama?" in browser.find_element(By.ID, "ask-text").text
    assert [p.name for p in library.gallery.people()] == [
        "Alex Lacamoire",
        "Barack",
        "Barack Obama",
    ]
    browser.find_element(By.ID, "ask-yes").click()
    wait_for(browser, "Barack to go", lambda d: card(d, "Barack") is None)
    obama = wait_for(browser, "the merged card", lambda d: card(d, "Barack Obama"))
    wait_for(browser, "3 samples", lambda d: "3 samples" in card(d, "Barack Obama").text)
    assert library.gallery.labels("Barack Obama") == ["Barack Obama", "Barack"]
    assert obama is not None

    # delete Alex from his panel
    wait_for(browser, "Alex's panel", lambda d: click(card(d, "Alex Lacamoire")))
    wait_for(
        browser,
        "his samples",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#samples .sample")) == 2,
    )
    browser.find_element(By.ID, "person-delete").click()
    wait_for(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    wait_for(browser, "Alex to go", lambda d: card(d, "Alex Lacamoire") is None)

    # merge an unknown into another one
    def merge_unknown(d: WebDriver) -> bool:  # again if the list was redrawn meanwhile (stale)
        rows = d.find_elements(By.CSS_SELECTOR, "#unknowns .unknown")
        if len(rows) != 2:
            return False
        form = rows[1].find_element(By.CSS_SELECTOR, ".merge-form")
        Select(form.find_element(By.CSS_SELECTOR, "select")).select_by_visible_text("unknown-1")
        form.find_element(By.CSS_SELECTOR, "button").click()
        return True

    wait_for(browser, "the merge form", merge_unknown)
    wait_for(browser, "the question", lambda d: d.find_element(By.ID, "ask").is_displayed())
    browser.find_element(By.ID, "ask-yes").click()
    wait_for(
        browser,
        "one unknown left",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#unknowns .unknown")) == 1,
    )
    next_refresh(browser, library)
    browser.save_screenshot(str(tmp_path / "after-delete-and-merge.png"))

    failed = [(m, p, s) for m, p, s in library.seen if s >= 400]
    assert failed == [], failed
    assert not [p for _, p, _ in library.seen if p == "/favicon.ico"]
    assert ("GET", "/icon.svg", 200) in library.seen


def test_a_naming_conflict_is_a_warning_that_asks_before_anything_happens(
    library: Library, browser: WebDriver, tmp_path: Path
) -> None:
    browser.get(library.page)
    alex = wait_for(browser, "Alex's card", lambda d: card(d, "Alex Lacamoire"))
    wait_for(browser, "his thumbnail", lambda d: loaded_face(d, card(d, "Alex Lacamoire")))
    thumbnail = alex.find_element(By.CSS_SELECTOR, "img.face").get_attribute("src")
    wait_for(browser, "unknown-1", lambda d: find(d, "#unknowns .unknown"))

    def name_it() -> None:
        def submit(d: WebDriver) -> bool:  # again if the list was redrawn meanwhile (stale)
            row = find(d, "#unknowns .unknown")
            if row is None:
                return False
            field = row.find_element(By.CSS_SELECTOR, ".name-form input")
            field.clear()
            field.send_keys("Alex Lacamoire")
            row.find_element(By.CSS_SELECTOR, ".name-form button").click()
            return True

        wait_for(browser, "the name form", submit)
        wait_for(browser, "the question", lambda d: d.find_element(By.ID, "ask").is_displayed())

    name_it()
    question = browser.find_element(By.ID, "ask-text").text
    assert "Alex Lacamoire is enrolled already (2 samples)" in question
    assert "Merge unknown-1 (46 sightings) into Alex Lacamoire?" in question
    assert browser.find_element(By.ID, "status").get_attribute("class") == "bad"  # not success
    browser.save_screenshot(str(tmp_path / "conflict.png"))
    assert [u.label for u in library.gallery.unknowns()] == ["unknown-1", "unknown-2"]
    browser.find_element(By.ID, "ask-no").click()  # nothing happens
    wait_for(
        browser, "the question to go", lambda d: not d.find_element(By.ID, "ask").is_displayed()
    )
    assert "nothing changed" in status_text(browser)
    assert [u.label for u in library.gallery.unknowns()] == ["unknown-1", "unknown-2"]

    name_it()
    browser.find_element(By.ID, "ask-yes").click()
    wait_for(
        browser,
        "unknown-1 to go",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#unknowns .unknown")) == 1,
    )
    # his two enrolled photos stay; the 46 sightings of another face are dropped, and the
    # status says so in the warning colour
    wait_for(browser, "the outcome", lambda d: "Alex Lacamoire: 2 samples" in status_text(d))
    assert "dropped" in status_text(browser)
    assert browser.find_element(By.ID, "status").get_attribute("class") == "bad"
    samples = library.gallery.samples("Alex Lacamoire")
    assert len(samples) == 2 and all(s.enrolled for s in samples)
    alex = card(browser, "Alex Lacamoire")
    assert (
        alex is not None
        and alex.find_element(By.CSS_SELECTOR, "img.face").get_attribute("src") == thumbnail
    )


def test_thumbnail_choice_and_no_black_tiles(
    library: Library, browser: WebDriver, analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    # sightings without a stored face join Barack Obama (merged from an unknown)
    obama, _ = single_face(analyzer, media_dir / "face_recognition/obama-720p.jpg")
    library.gallery.add_unknown("unknown-3", np.stack([obama] * 3))
    library.gallery.merge("unknown-3", "Barack Obama")
    browser.get(library.page)
    wait_for(browser, "Obama's thumbnail", lambda d: loaded_face(d, card(d, "Barack Obama")))
    wait_for(browser, "Obama's panel", lambda d: click(card(d, "Barack Obama")))
    wait_for(
        browser,
        "two sample tiles",
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#samples .sample")) == 2,
    )
    note = browser.find_element(By.ID, "samples-note")
    assert note.is_displayed() and "3 more samples without a stored face" in note.text
    assert not browser.find_elements(By.XPATH, "//*[contains(text(), 'no face')]")
    wait_for(browser, "the tiles' faces", lambda d: all(
        loaded_face(d, t) for t in d.find_elements(By.CSS_SELECTOR, "#samples .sample")))
    chosen = ""

    def pick(d: WebDriver) -> bool:  # again if the list was redrawn meanwhile (stale)
        nonlocal chosen
        tiles = d.find_elements(By.CSS_SELECTOR, "#samples .sample")
        current = [t for t in tiles if "thumb" in t.get_attribute("class")]
        other = [t for t in tiles if "thumb" not in t.get_attribute("class")]
        assert len(current) == 1 and len(other) == 1
        chosen = other[0].find_element(By.CSS_SELECTOR, "img.face").get_attribute("src")
        other[0].find_element(By.CSS_SELECTOR, ".use-thumbnail").click()
        return True

    wait_for(browser, "the other tile", pick)
    wait_for(
        browser,
        "the new thumbnail",
        lambda d: (
            card(d, "Barack Obama").find_element(By.CSS_SELECTOR, "img.face").get_attribute("src")
            == chosen
        ),
    )
    wait_for(
        browser,
        "the tile marked",
        lambda d: "thumbnail (chosen)" in d.find_element(By.ID, "samples").text,
    )
    person = library.gallery.person("Barack Obama")
    assert isinstance(person, Person) and person.thumbnail_chosen
    browser.save_screenshot(str(tmp_path / "person.png"))


def test_recent_recognitions_are_grouped_by_identity_newest_first(
    library: Library, browser: WebDriver, analyzer: FaceAnalyzer, media_dir: Path, tmp_path: Path
) -> None:
    """ "Recent recognitions" was a 4,200 px list of repeated unknowns."""
    _, face = single_face(analyzer, media_dir / "face_recognition/biden.jpg")
    for i in range(60):
        if i % 3:
            library.status.add_unknown("door", "unknown-5", i, crop=face)
        else:
            library.status.add_recognition("stage", "Someone Else", 0.5, i, crop=face)
    library.status.add_unknown("hall", "unknown-6", 99, crop=face)  # the newest
    browser.get(library.page)
    rows = wait_for(browser, "three groups",
                    lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent .recent")) == 3
                    and d.find_elements(By.CSS_SELECTOR, "#recent .recent"))  # fmt: skip
    assert [r.find_element(By.CSS_SELECTOR, ".name").text for r in rows] == [
        "unknown-6", "unknown-5", "Someone Else"
    ]  # fmt: skip
    assert [r.find_element(By.CSS_SELECTOR, ".count").text for r in rows] == ["1×", "40×", "20×"]
    height = browser.execute_script("return document.getElementById('recent').offsetHeight")
    assert height < 600, height
    wait_for(
        browser,
        "their faces",
        lambda d: all(
            loaded_face(d, r) for r in d.find_elements(By.CSS_SELECTOR, "#recent .recent")
        ),
    )
    browser.save_screenshot(str(tmp_path / "recent.png"))

    # the live view's list shows the faces too
    browser.get(f"http://127.0.0.1:{library.server.port}/?token={TOKEN}")
    wait_for(
        browser,
        "thumbnails in the live list",
        lambda d: (
            len(
                [
                    i
                    for i in d.find_elements(By.CSS_SELECTOR, "#recent li img.face")
                    if d.execute_script(
                        "return arguments[0].complete && arguments[0].naturalWidth", i
                    )
                ]
            )
            >= 20
        ),
    )
    browser.save_screenshot(str(tmp_path / "live.png"))
