"""Known models and packs, and resolution of a model name to a verified local file.

A model name resolves, in order: an explicit path; ``models.dir`` from the config; the
directory in ``$STREAMREC_MODELS``; the user cache (``~/.cache/streamrec/models``, or under
``$XDG_CACHE_HOME``); a download of its pack from the official URL (or
``$STREAMREC_MODEL_MIRROR``) with a progress bar and a sha256 check. Known files are verified
against their pinned sha256 wherever they are found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from ..errors import ModelError

log = logging.getLogger("streamrec.models")

OFFICIAL_BASE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7"


def cache_dir() -> Path:
    """The user cache for models (``$XDG_CACHE_HOME/streamrec/models``, default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "streamrec" / "models"


@dataclass(frozen=True)
class ModelInfo:
    file: str
    kind: Literal["detector", "recognizer"]
    sha256: str | None
    size: int | None = None
    #: cosine threshold for recognizers (see README "Thresholds")
    threshold: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Pack:
    name: str
    detector: str
    recognizer: str

    @property
    def archive(self) -> str:
        return f"{self.name}.zip"


MODELS: dict[str, ModelInfo] = {
    m.file: m
    for m in (
        ModelInfo(
            "det_10g.onnx",
            "detector",
            "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
            16_923_827,
            description="SCRFD-10G with keypoints (buffalo_l)",
        ),
        ModelInfo(
            "det_2.5g.onnx",
            "detector",
            "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
            description="SCRFD-2.5G with keypoints (buffalo_m)",
        ),
        ModelInfo(
            "det_500m.onnx",
            "detector",
            "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
            description="SCRFD-500M with keypoints (buffalo_s, buffalo_sc)",
        ),
        ModelInfo(
            "scrfd_2.5g_bnkps.onnx",
            "detector",
            "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30",
            description="SCRFD-2.5G, fixed 640x640 export with batch dim",
        ),
        ModelInfo(
            "w600k_r50.onnx",
            "recognizer",
            "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
            174_383_860,
            threshold=0.30,
            description="ArcFace IResNet-50, WebFace600K, 512-d (buffalo_l/m)",
        ),
        ModelInfo(
            "w600k_mbf.onnx",
            "recognizer",
            "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            13_616_099,
            threshold=0.30,
            description="ArcFace MobileFaceNet, WebFace600K, 512-d (buffalo_s/sc)",
        ),
        ModelInfo(
            "mobilefacenet_128d.onnx",
            "recognizer",
            "0c9ad2a83969fc82155706f7020e6926b4a1a90a5476fff4a5588dfe207f64a4",
            threshold=0.40,
            description="MobileFaceNet ArcFace-loss, 128-d, dynamic batch",
        ),
        ModelInfo(
            "mobilefacenet_128d_b1.onnx",
            "recognizer",
            "b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
            threshold=0.40,
            description="MobileFaceNet ArcFace-loss, 128-d, batch 1",
        ),
    )
}

PACKS: dict[str, Pack] = {
    p.name: p
    for p in (
        Pack("buffalo_l", "det_10g.onnx", "w600k_r50.onnx"),
        Pack("buffalo_m", "det_2.5g.onnx", "w600k_r50.onnx"),
        Pack("buffalo_s", "det_500m.onnx", "w600k_mbf.onnx"),
        Pack("buffalo_sc", "det_500m.onnx", "w600k_mbf.onnx"),
    )
}

DEFAULT_PACK = "buffalo_l"
#: recognizer threshold when neither the config nor the registry gives one
FALLBACK_THRESHOLD = 0.35


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    sha256: str
    info: ModelInfo | None

    @property
    def name(self) -> str:
        return self.path.name


def search_dirs(extra_dir: str | None = None) -> list[Path]:
    """Directories searched for model files, in order."""
    dirs = []
    if extra_dir:
        dirs.append(Path(extra_dir).expanduser())
    env = os.environ.get("STREAMREC_MODELS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs


def sha256_of(path: Path) -> str:
    """sha256 of a file, memoised in the cache dir by (path, size, mtime)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = cache_dir() / "sha256.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return str(memo[key])
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    memo[key] = digest
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmp = memo_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(memo))
        tmp.replace(memo_file)
    except OSError:
        pass
    return digest


def _check(path: Path, info: ModelInfo | None) -> ResolvedModel:
    digest = sha256_of(path)
    if info is not None and info.sha256 and digest != info.sha256:
        raise ModelError(
            f"model {path} has sha256 {digest[:16]}..., expected {info.sha256[:16]}... for "
            f"{info.file}: the file is corrupt or a different model; delete or replace it"
        )
    return ResolvedModel(path, digest, info)


def _is_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~")) or Path(name).is_file()


def _pack_member(name: str, kind: str) -> tuple[str, Pack | None]:
    """A pack name maps to its detector/recognizer file; anything else is a file name."""
    pack = PACKS.get(name)
    if pack is None:
        return name, None
    return (pack.detector if kind == "detector" else pack.recognizer), pack


def resolve(
    name: str,
    kind: Literal["detector", "recognizer"],
    extra_dir: str | None = None,
    download: bool = True,
) -> ResolvedModel:
    """Resolve a model name (file name, path or pack name) to a verified local file."""
    if _is_path(name) and name not in PACKS:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ModelError(f"{kind} model file not found: {path}")
        return _check(path, None)
    file, pack = _pack_member(name, kind)
    info = MODELS.get(file)
    dirs = search_dirs(extra_dir)
    for d in dirs:
        candidate = d / file
        if candidate.is_file():
            return _check(candidate, info)
    packs = [pack] if pack else [p for p in PACKS.values() if file in (p.detector, p.recognizer)]
    where = ", ".join(str(d) for d in dirs)
    if not packs:
        raise ModelError(
            f"{kind} model '{file}' not found in {where}; give a path, put the file in one of "
            f"these directories, or set STREAMREC_MODELS=DIR"
        )
    if not download:
        raise ModelError(
            f"{kind} model '{file}' not found in {where} (downloads are disabled); put it in "
            f"one of these directories or set STREAMREC_MODELS=DIR"
        )
    return _check(download_pack_member(packs[0], file, info), info)


def pack_url(pack: Pack) -> str:
    base = os.environ.get("STREAMREC_MODEL_MIRROR", OFFICIAL_BASE_URL).rstrip("/")
    return f"{base}/{pack.archive}"


def download_pack_member(pack: Pack, file: str, info: ModelInfo | None) -> Path:
    """Download ``pack``'s archive into the cache, extract ``file`` and verify its sha256."""
    url = pack_url(pack)
    cache_dir().mkdir(parents=True, exist_ok=True)
    target = cache_dir() / file
    log.info("downloading %s from %s", pack.archive, url)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        archive = Path(tmp) / pack.archive
        try:
            _fetch(url, archive)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(
                f"model '{file}' is not available locally and downloading {url} failed "
                f"({reason}); download {pack.archive} elsewhere and put '{file}' in "
                f"{cache_dir()} or in a directory named by STREAMREC_MODELS"
            ) from None
        try:
            with zipfile.ZipFile(archive) as zf:
                member = next((n for n in zf.namelist() if Path(n).name == file), None)
                if member is None:
                    raise ModelError(f"{url} does not contain {file}")
                with zf.open(member) as src, (Path(tmp) / file).open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile:
            raise ModelError(f"{url} is not a valid zip archive") from None
        extracted = Path(tmp) / file
        digest = hashlib.sha256(extracted.read_bytes()).hexdigest()
        if info is not None and info.sha256 and digest != info.sha256:
            extracted.unlink()
            raise ModelError(
                f"sha256 mismatch for {file} downloaded from {url}: got {digest}, expected "
                f"{info.sha256}; the file was deleted"
            )
        extracted.replace(target)
    return target


def _fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as resp, dest.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


@dataclass(frozen=True)
class ModelStatus:
    info: ModelInfo
    packs: list[str]
    path: Path | None
    sha256: str | None
    verified: bool


def list_models(extra_dir: str | None = None) -> list[ModelStatus]:
    """Every known model, where it was found (first match) and whether its sha256 verifies."""
    out = []
    for info in MODELS.values():
        packs = [p.name for p in PACKS.values() if info.file in (p.detector, p.recognizer)]
        found = next(
            (d / info.file for d in search_dirs(extra_dir) if (d / info.file).is_file()), None
        )
        digest = sha256_of(found) if found else None
        out.append(ModelStatus(info, packs, found, digest, digest == info.sha256))
    return out


def recognizer_threshold(model: ResolvedModel) -> float:
    """Calibrated default cosine threshold of a recognizer (by its sha256, then its name)."""
    for info in MODELS.values():
        if info.kind == "recognizer" and info.sha256 == model.sha256 and info.threshold:
            return info.threshold
    by_name = MODELS.get(model.name)
    if by_name is not None and by_name.threshold is not None:
        return by_name.threshold
    return FALLBACK_THRESHOLD
