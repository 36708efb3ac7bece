"""The Faces page in a real browser (Debian chromium driven by Selenium through the Debian
chromedriver), against a real server with the small real models and real photos."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.gallery.enroll import embed_single_face
from streamrec.gallery.store import Gallery
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
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

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
        embedding, crop = embed_single_face(analyzer, photos / photo)
        gallery.add_unknown(label, embedding[None], [crop], [0.9], "camera door")
    _, lin = embed_single_face(analyzer, photos / "lin-manuel-miranda.png")
    status.identified("stage", 3, "Someone Else", 0.45, None, lin)
    server = WebServer(status, Metrics(), "127.0.0.1", 0, TOKEN, HttpConfig(port=0))
    library = api.FaceLibrary(analyzer, gallery, status, lambda: None)
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
    embedding, crop = embed_single_face(analyzer, media_dir / "face_recognition/obama.jpg")
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
