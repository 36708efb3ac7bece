"""A name is never a path (issue 21, items 1 and 8): one name rule at every entry (CLI, REST,
CompreFace), crops in numbered folders, people addressed by id, and galleries of older versions
(names the rule refuses now, ``unknown-N`` crop folders) still work.

The property test throws random unicode names at the command line, the native API and the
CompreFace API and checks that no file outside the data folder changes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from cli_helpers import SMALL, streamrec
from face_helpers import single_face
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from streamrec import cli
from streamrec.analyzer import FaceAnalyzer
from streamrec.config import HttpConfig
from streamrec.errors import GalleryError
from streamrec.gallery.crops import CropFolders
from streamrec.gallery.store import Gallery, GalleryPolicy, validate_name
from streamrec.recognition import Recognition
from streamrec.service import api, compreface
from streamrec.service.http import WebServer
from streamrec.service.metrics import Metrics
from streamrec.service.status import LiveStatus

CF = "/api/v1/recognition"


def tree(root: Path, skip: Path | None = None) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root`` (except ``skip``): kind, mode and content hash."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if skip is not None and p == skip:
                continue
            st_ = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p.relative_to(root))] = ("d" if p.is_dir() else "f", st_.st_mode, digest)
    return out


@dataclass
class Sandbox:
    """A data folder (gallery, crops, events) deep inside ``root``, with other files around
    it (a victim folder, a victim file) that no name may reach."""

    root: Path
    data: Path

    @property
    def gallery(self) -> Path:
        return self.data / "gallery.db"

    @property
    def crops(self) -> Path:
        return self.data / "crops"

    @property
    def events(self) -> Path:
        return self.data / "events.jsonl"

    def config(self) -> Path:
        path = self.root / "config.yaml"
        if path.exists():
            return path
        path.write_text(
            yaml.safe_dump(
                {
                    "gallery": str(self.gallery),
                    "unknowns": {"crops_dir": str(self.crops)},
                    "events": {"jsonl": str(self.events)},
                }
            )
        )
        return path

    def outside(self) -> dict[str, tuple[str, int, str]]:
        return tree(self.root, skip=self.data)


def make_sandbox(root: Path, depth: int = 10) -> Sandbox:
    data = root.joinpath(*[f"d{i}" for i in range(depth)], "data")
    (data / "crops").mkdir(parents=True)
    (data / "events.jsonl").write_text('{"event": "track_end", "name": "Someone"}\n')
    for folder in (root / "victim", data.parent / "victim", data.parent.parent / "victim"):
        folder.mkdir(parents=True)
        (folder / "precious.txt").write_text("must survive")
    (root / "victim.txt").write_text("must survive")
    sandbox = Sandbox(root, data)
    sandbox.config()
    return sandbox


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path / "sandbox")


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "..", ".", "...", "../../victim", "a/b", "a\\b", "/etc", "x\x00y", "line\nbreak", "tab\tx",
        " Lead", "Trail ", "\u2028", "nbsp\u00a0", "", "   ", "x" * 101, "unknown-3",
    ],
)  # fmt: skip
def test_the_name_rule_refuses_path_like_and_invisible_names(name: str) -> None:
    with pytest.raises(GalleryError):
        validate_name(name)


@pytest.mark.parametrize("name", ["Jane Roe", "José Pérez", "李小龙", "O'Brien", "%2F", "a.b"])
def test_the_name_rule_keeps_real_names_as_they_are(name: str) -> None:
    assert validate_name(name) == name


# -- the command line ----------------------------------------------------------------------------


def test_cli_refuses_path_like_names_and_touches_nothing_outside(sandbox: Sandbox) -> None:
    """``erase '../../victim'`` deleted a folder outside the crops folder and ``erase '..'``
    deleted the gallery and the events (issue 21, item 1): now exit 2, nothing touched."""
    cfg = sandbox.config()
    before = sandbox.outside()
    data_before = tree(sandbox.data)
    for name in ("../victim", "../../victim", "..", ".", "/" + str(sandbox.root / "victim")):
        proc = streamrec("erase", name, "--config", str(cfg), *SMALL, check=False)
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "name" in proc.stderr, proc.stderr
    proc = streamrec("gallery", "add", "../victim", "x.jpg", "--config", str(cfg), check=False)
    assert proc.returncode == 2 and "path separator" in proc.stderr, proc.stderr
    assert sandbox.outside() == before
    assert tree(sandbox.data) == data_before


# -- the REST APIs ---------------------------------------------------------------------------------


@dataclass
class Site:
    base: str
    gallery: Gallery

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def site(analyzer: FaceAnalyzer, sandbox: Sandbox) -> Iterator[Site]:
    cfg = yaml.safe_load(sandbox.config().read_text())
    gallery = analyzer.open_gallery(sandbox.gallery)
    gallery.policy = GalleryPolicy(crops_dir=Path(cfg["unknowns"]["crops_dir"]))
    gallery.crops = CropFolders(sandbox.crops, 5)
    status = LiveStatus()
    server = WebServer(status, Metrics(), "127.0.0.1", 0, None, HttpConfig(port=0))
    from streamrec.config import load_config
    from streamrec.privacy import erase_files

    config = load_config(sandbox.config())
    library = api.FaceLibrary(
        Recognition(analyzer, gallery), status, lambda labels: erase_files(config, labels, [])
    )
    api.mount(server.app, library)
    compreface.mount(server.app, library)
    with server:
        yield Site(f"http://127.0.0.1:{server.port}", gallery)
    gallery.close()


def photo_upload(media_dir: Path, field: str = "file") -> dict[str, Any]:
    path = media_dir / "face_recognition/obama.jpg"
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_rest_and_compreface_refuse_path_like_names(
    site: Site, sandbox: Sandbox, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    """``DELETE /api/people/{name}`` and CompreFace ``DELETE /faces?subject=`` after creating
    a person named '../../victim' deleted a folder outside the crops folder: such a person
    cannot be created any more (400), through any entry."""
    before = sandbox.outside()
    for name in ("../../victim", "..", "Ghost/samples/1", " x", "a\nb"):
        r = requests.post(
            site.url("/api/people"), data={"name": name}, files=photo_upload(media_dir, "files")
        )
        assert r.status_code == 400, (name, r.status_code, r.text)
        r = requests.post(
            site.url(f"{CF}/faces"), params={"subject": name}, files=photo_upload(media_dir)
        )
        assert r.status_code == 400 and r.json()["code"] == 26, (name, r.text)
        r = requests.delete(site.url(f"{CF}/faces"), params={"subject": name})
        assert r.status_code == 200 and r.json() == {"deleted": 0}
    assert site.gallery.people() == []
    # renaming, naming an unknown: the same rule
    obama = photo_upload(media_dir, "files")
    r = requests.post(site.url("/api/people"), data={"name": "Barack Obama"}, files=obama)
    pid = r.json()["id"]
    r = requests.patch(site.url(f"/api/people/{pid}"), json={"name": "../victim"})
    assert r.status_code == 400 and "path separator" in r.json()["detail"]
    embedding, crop = single_face(analyzer, media_dir / "face_recognition/biden.jpg")
    site.gallery.add_unknown("unknown-1", embedding[None], [crop], [0.9])
    (unknown,) = requests.get(site.url("/api/unknowns")).json()
    r = requests.post(site.url(f"/api/unknowns/{unknown['id']}/name"), json={"name": ".."})
    assert r.status_code == 400
    assert [p.name for p in site.gallery.people()] == ["Barack Obama"]
    assert sandbox.outside() == before


def legacy_person(gallery: Gallery, name: str, embedding: np.ndarray) -> int:
    """A person whose name an older version accepted (written around the rule)."""
    with sqlite3.connect(gallery.path) as db:
        cur = db.execute(
            "INSERT INTO people (name, created, confirmed) VALUES (?, ?, 1)", (name, time.time())
        )
        pid = int(cur.lastrowid or 0)
        db.execute(
            "INSERT INTO embeddings (person_id, vector, source, created) VALUES (?, ?, 'old', 0)",
            (pid, np.asarray(embedding, np.float32).tobytes()),
        )
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
    return pid


def test_names_of_older_galleries_are_addressed_by_id_never_as_paths(
    site: Site, sandbox: Sandbox, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    """A person named 'Ghost/samples/1' could not be erased, and DELETE of the person
    'Barack Obama/samples/2' deleted Obama's sample 2 (issue 21, item 8): people are
    addressed by id, and names an older version accepted still work."""
    photos = media_dir / "face_recognition"
    r = requests.post(
        site.url("/api/people"),
        data={"name": "Barack Obama"},
        files=[("files", (n, (photos / n).read_bytes(), "image/jpeg"))
               for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")],
    )  # fmt: skip
    obama = r.json()["id"]
    samples_before = requests.get(site.url(f"/api/people/{obama}/samples")).json()
    biden, _ = single_face(analyzer, photos / "biden.jpg")
    ghost = legacy_person(site.gallery, "Ghost/samples/1", biden)
    lookalike = legacy_person(site.gallery, "Barack Obama/samples/2", biden)
    dots = legacy_person(site.gallery, "../../victim", biden)
    before = sandbox.outside()

    listed = {p["name"]: p["id"] for p in requests.get(site.url("/api/people")).json()}
    assert listed["Ghost/samples/1"] == ghost and listed["../../victim"] == dots
    found = requests.get(site.url("/api/people"), params={"name": "Ghost/samples/1"}).json()
    assert [p["id"] for p in found] == [ghost]
    for pid in (ghost, lookalike):
        r = requests.delete(site.url(f"/api/people/{pid}"))
        assert r.status_code == 200, r.text
    assert requests.get(site.url(f"/api/people/{obama}/samples")).json() == samples_before
    # renamed to a valid name, then erased through CompreFace by its subject
    r = requests.patch(site.url(f"/api/people/{dots}"), json={"name": "Victor Dots"})
    assert r.status_code == 200
    r = requests.delete(site.url(f"{CF}/faces"), params={"subject": "Victor Dots"})
    assert r.json() == {"deleted": 1}
    assert [p["name"] for p in requests.get(site.url("/api/people")).json()] == ["Barack Obama"]
    assert sandbox.outside() == before


def test_cli_erases_a_name_an_older_version_accepted(
    sandbox: Sandbox, analyzer: FaceAnalyzer, media_dir: Path
) -> None:
    with analyzer.open_gallery(sandbox.gallery) as gallery:
        embedding, _ = single_face(analyzer, media_dir / "face_recognition/biden.jpg")
        legacy_person(gallery, "../victim", embedding)
    sandbox.events.write_text('{"event": "identified", "name": "../victim"}\n')
    before = sandbox.outside()
    out = streamrec("erase", "../victim", "--config", str(sandbox.config()), *SMALL).stdout
    assert "removed 1 sample(s)" in out and "removed 1 event(s)" in out
    assert sandbox.outside() == before
    assert sandbox.events.read_text() == ""


def test_crop_folders_are_numbered_and_older_ones_migrate(
    sandbox: Sandbox, analyzer: FaceAnalyzer
) -> None:
    """Crop folders are named by the identity's number; the ``unknown-N`` folders of older
    versions are renamed (and trimmed to max_crops) when the gallery is opened; a symbolic
    link planted as a crop folder is never followed."""
    old = sandbox.crops / "unknown-3"
    old.mkdir()
    for i in range(9):
        (old / f"20240101-000000-{i}-1.jpg").write_bytes(b"\xff\xd8old")
    planted = sandbox.crops / "5"
    planted.symlink_to(sandbox.root / "victim")
    before = sandbox.outside()
    policy = GalleryPolicy(max_crops=5, crops_dir=sandbox.crops)
    with Gallery(sandbox.gallery, analyzer.recognizer, policy) as gallery:
        assert not old.exists()
        assert len(list((sandbox.crops / "3").iterdir())) == 5
        crop = np.zeros((112, 112, 3), np.uint8)
        assert gallery.add_unknown("unknown-7", np.ones((1, analyzer.embedder.dim)), [crop], [0.5])
        (kept,) = (sandbox.crops / "7").iterdir()
        assert kept.name.startswith("q0.5000-")
        gallery.add_unknown("unknown-5", np.ones((1, analyzer.embedder.dim)), [crop], [0.5])
        gallery.remove("unknown-5")  # its "folder" is a link elsewhere: only the link goes
    assert not planted.is_symlink()
    assert sorted(p.name for p in sandbox.crops.iterdir()) == ["3", "7"]
    assert sandbox.outside() == before


# -- the property: whatever the name, nothing outside the data folder changes -------------------

#: pieces of hostile names, mixed with any unicode text
NASTY = ["/", "..", ".", "\x00", "\n", "%2F", "\\", " ", "../", "/..", "\t", "\u2028", "\u202e"]
HOSTILE = st.lists(
    st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=4)), min_size=1, max_size=6
).map("".join)
#: and names made of letters, digits and spaces (many valid: they must work, and stay data)
WORDS = st.text(st.characters(categories=["L", "N", "Zs", "Pd"]), min_size=1, max_size=12)
NAMES = st.one_of(HOSTILE, WORDS)


def run_cli(*args: str) -> int:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(args))
    assert "Traceback" not in err.getvalue() and "unexpected error" not in err.getvalue(), (
        args,
        err.getvalue(),
    )
    return code


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=NAMES)
@example(name="-:")  # a name may start with "-": the command line takes it after "--"
@example(name="../../victim")
@example(name="..")
def test_no_name_changes_a_file_outside_the_data_folder(
    name: str,
    site: Site,
    sandbox: Sandbox,
    analyzer: FaceAnalyzer,
    media_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # never run hostile names at code that would let them reach a path
    with pytest.raises(GalleryError):
        validate_name("../" + name)
    monkeypatch.setattr(cli, "_analyzer", lambda cfg: analyzer)
    cfg = str(sandbox.config())
    photo = str(media_dir / "face_recognition/obama.jpg")
    before = sandbox.outside()
    valid = True
    try:
        validate_name(name)
    except GalleryError:
        valid = False
    event("a valid name" if valid else "a refused name")

    site.gallery.add_unknown(
        f"unknown-{site.gallery.next_unknown_index()}", np.ones((1, analyzer.embedder.dim))
    )
    label = site.gallery.unknowns()[-1].label
    codes = [  # "--": a name may start with "-"
        run_cli("gallery", "add", "--config", cfg, "--", name, photo),
        run_cli("unknowns", "name", "--config", cfg, "--", label, name),
        run_cli("gallery", "merge", "--config", cfg, "--", label, name),
        run_cli("gallery", "remove", "--config", cfg, "--", name),
        run_cli("erase", "--config", cfg, "--", name),
    ]
    if not valid:
        assert codes == [2] * 5, codes
    upload = photo_upload(media_dir, "files")
    r = requests.post(site.url("/api/people"), data={"name": name}, files=upload)
    assert r.status_code in ((201, 409) if valid else (400, 422)), (name, r.status_code, r.text)
    for person in requests.get(site.url("/api/people"), params={"name": name}).json():
        assert person["name"] == name
        requests.patch(site.url(f"/api/people/{person['id']}"), json={"name": name + "/x"})
        assert requests.delete(site.url(f"/api/people/{person['id']}")).status_code == 200
    r = requests.post(
        site.url(f"{CF}/faces"), params={"subject": name}, files=photo_upload(media_dir)
    )
    assert r.status_code == (201 if valid else 400), (name, r.status_code, r.text)
    requests.get(site.url(f"{CF}/faces"), params={"subject": name})
    r = requests.delete(site.url(f"{CF}/faces"), params={"subject": name})
    assert r.status_code == 200
    assert sandbox.outside() == before
    assert all(p.name.isdigit() for p in sandbox.crops.iterdir())
