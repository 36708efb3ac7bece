"""Known models and packs, and resolution of a model name to a verified local file.

A model name resolves, in order: an explicit path; ``models.dir`` from the config; the
directory in ``$STREAMREC_MODELS``; the user cache (``~/.cache/streamrec/models``, or under
``$XDG_CACHE_HOME``); InsightFace's cache (``~/.insightface/models/<pack>/``); a download of its
pack from the official URL (or ``$STREAMREC_MODEL_MIRROR``), fetched once, every known member
extracted and checked. Known files are verified against their pinned sha256 wherever they are
found. A model made by ``streamrec models optimize`` carries a sidecar (``<file>.json``) with
its own sha256 and its parent's, so it resolves like any file and is verified the same way.
"""

from __future__ import annotations

import contextlib
import difflib
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

from ..config import ModelsConfig
from ..errors import ModelError
from ..files import private_dir, write_private

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
    #: cosine threshold for recognizers (see docs/models.md, "Thresholds")
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
#: the pack suggested when the configured models cannot be had (about 16 MB of models)
SMALL_PACK = "buffalo_s"
#: recognizer threshold when neither the config nor the registry gives one
FALLBACK_THRESHOLD = 0.35


def sidecar_path(model: Path) -> Path:
    """Where ``models optimize`` records a derived model's origin: ``<file>.json``."""
    return model.with_name(model.name + ".json")


@dataclass(frozen=True)
class Derived:
    """A model made from another one by ``streamrec models optimize`` (its sidecar)."""

    sha256: str
    kind: Literal["detector", "recognizer"]
    parent_file: str
    parent_sha256: str
    #: the optimizer measured embeddings close enough to the parent's that a gallery made
    #: with the parent stays valid (see ``optimize.Bounds``)
    embedding_compatible: bool
    precision: str = "INT8"

    @classmethod
    def read(cls, model: Path) -> Derived | None:
        side = sidecar_path(model)
        if not side.is_file():
            return None
        try:
            data = json.loads(side.read_text())
            return cls(
                sha256=str(data["sha256"]),
                kind=data["kind"],
                parent_file=str(data["parent"]["file"]),
                parent_sha256=str(data["parent"]["sha256"]),
                embedding_compatible=bool(data.get("embedding_compatible", False)),
                precision=str(data.get("precision", "INT8")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{side} is not a valid model record ({exc}); delete it and {model.name}, then "
                f"run 'streamrec models optimize' again"
            ) from None


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    sha256: str
    info: ModelInfo | None
    derived: Derived | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compatible(self) -> tuple[str, ...]:
        """sha256s of other models whose galleries this model's embeddings may join."""
        d = self.derived
        return (d.parent_sha256,) if d is not None and d.embedding_compatible else ()


def insightface_dirs(file: str | None = None) -> list[Path]:
    """InsightFace's own pack folders (``~/.insightface/models/<pack>``) holding ``file``."""
    root = Path("~/.insightface/models").expanduser()
    return [
        root / p.name for p in PACKS.values() if file is None or file in (p.detector, p.recognizer)
    ]


def search_dirs(extra_dir: str | None = None, file: str | None = None) -> list[Path]:
    """Directories searched for model files (for ``file``: its packs' InsightFace folders)."""
    dirs = []
    if extra_dir:
        dirs.append(Path(extra_dir).expanduser())
    env = os.environ.get("STREAMREC_MODELS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    return dirs + insightface_dirs(file)


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
    digest = _hash(path)
    memo[key] = digest
    with contextlib.suppress(OSError):  # a read-only cache: hashed again next time
        write_private(memo_file, json.dumps(memo))  # 0600: it lists the models' paths
    return digest


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check(path: Path, info: ModelInfo | None) -> ResolvedModel:
    digest = sha256_of(path)
    if info is not None and info.sha256 and digest != info.sha256:
        raise ModelError(
            f"model {path} has sha256 {digest[:16]}..., expected {info.sha256[:16]}... for "
            f"{info.file}: the file is corrupt or a different model; delete or replace it"
        )
    derived = Derived.read(path)
    if derived is not None and derived.sha256 != digest:
        raise ModelError(
            f"model {path} has sha256 {digest[:16]}..., but its record {sidecar_path(path).name} "
            f"says {derived.sha256[:16]}...: it changed after 'streamrec models optimize'; "
            f"delete both files and optimize again"
        )
    return ResolvedModel(path, digest, info, derived)


def _is_path(name: str) -> bool:
    return os.sep in name or name.startswith((".", "~")) or Path(name).is_file()


@dataclass(frozen=True)
class _Missing:
    kind: str
    file: str
    #: packs that hold the file (the first is fetched)
    packs: list[Pack]
    #: set for an explicit path that does not exist
    path: Path | None = None

    def describe(self) -> str:
        if self.path is not None:
            return f"{self.kind} {self.path} (no such file)"
        if self.packs:
            return f"{self.kind} {self.file} (pack {', '.join(p.name for p in self.packs)})"
        guess = difflib.get_close_matches(self.file, [*PACKS, *MODELS], n=1, cutoff=0.75)
        return f"{self.kind} {self.file}" + (f" (did you mean {guess[0]}?)" if guess else "")


def _locate(
    name: str, kind: Literal["detector", "recognizer"], extra_dir: str | None
) -> ResolvedModel | _Missing:
    """The verified local file for a model name, or what is missing."""
    if _is_path(name) and name not in PACKS:
        path = Path(name).expanduser()
        if not path.is_file():
            return _Missing(kind, path.name, [], path)
        return _check(path, None)
    pack = PACKS.get(name)
    file = (pack.detector if kind == "detector" else pack.recognizer) if pack else name
    for d in search_dirs(extra_dir, file):
        if (d / file).is_file():
            return _check(d / file, MODELS.get(file))
    packs = [pack] if pack else [p for p in PACKS.values() if file in (p.detector, p.recognizer)]
    return _Missing(kind, file, packs)


def resolve(
    name: str,
    kind: Literal["detector", "recognizer"],
    extra_dir: str | None = None,
    download: bool = True,
) -> ResolvedModel:
    """Resolve a model name (file name, path or pack name) to a verified local file."""
    return _resolve_many([(name, kind)], extra_dir, download)[0]


def resolve_all(models: ModelsConfig) -> tuple[ResolvedModel, ResolvedModel]:
    """The configured detector and recognizer, or ONE ModelError naming everything missing.

    Call it before creating any output (gallery, video) so that a missing model leaves nothing
    behind. Missing pack files are downloaded (each pack once) when ``models.download`` is on.
    """
    det, rec = _resolve_many(
        [(models.detector, "detector"), (models.recognizer, "recognizer")],
        models.dir,
        models.download,
    )
    return det, rec


def _resolve_many(
    wanted: list[tuple[str, Literal["detector", "recognizer"]]],
    extra_dir: str | None,
    download: bool,
) -> list[ResolvedModel]:
    found = [_locate(name, kind, extra_dir) for name, kind in wanted]
    failures: list[str] = []
    missing = [m for m in found if isinstance(m, _Missing)]
    if missing and download:
        for pack in _packs_covering([m for m in missing if m.packs]):
            try:
                pull_pack(pack)
            except ModelError as exc:
                failures.append(str(exc))
        found = [
            _locate(name, kind, extra_dir) if isinstance(m, _Missing) else m
            for m, (name, kind) in zip(found, wanted, strict=True)
        ]
    missing = [m for m in found if isinstance(m, _Missing)]
    if missing:
        raise ModelError(_missing_message(missing, extra_dir, download, failures))
    return [m for m in found if isinstance(m, ResolvedModel)]


def _packs_covering(missing: list[_Missing]) -> list[Pack]:
    """Fewest packs to fetch for the missing files (a pack holding both is fetched once)."""
    chosen: list[Pack] = []
    left = list(missing)
    while left:
        best = max(
            {p.name: p for m in left for p in m.packs}.values(),
            key=lambda p: sum(p in m.packs for m in left),
        )
        chosen.append(best)
        left = [m for m in left if best not in m.packs]
    return chosen


def _usable_here(extra_dir: str | None) -> dict[str, list[tuple[str, Path]]]:
    """The detector and recognizer files streamrec knows that lie in the searched folders:
    per kind, (file name, folder), in the registry's order (largest models first), then
    optimized models by their records."""
    found: dict[str, list[tuple[str, Path]]] = {"detector": [], "recognizer": []}
    seen: set[str] = set()
    folders = [d for d in dict.fromkeys(search_dirs(extra_dir)) if d.is_dir()]
    for d in folders:
        for file, info in MODELS.items():
            if file not in seen and (d / file).is_file():
                seen.add(file)
                found[info.kind].append((file, d))
    for d in folders:
        for path in sorted(d.glob("*.onnx")):
            if path.name in seen:
                continue
            try:
                derived = Derived.read(path)
            except ModelError:
                continue
            if derived is not None:
                seen.add(path.name)
                found[derived.kind].append((path.name, d))
    return found


def _missing_message(
    missing: list[_Missing], extra_dir: str | None, download: bool, failures: list[str]
) -> str:
    files = [m.file for m in missing]
    dirs = [d for d in search_dirs(extra_dir) if d not in insightface_dirs()]
    where = ", ".join(str(d) for d in dirs) + ", ~/.insightface/models/<pack>"
    packs = sorted({p.name for m in missing for p in m.packs})
    msg = f"model(s) not found: {'; '.join(m.describe() for m in missing)}; searched {where}"
    if failures:
        msg += "; " + "; ".join(failures)
    elif not download and packs:
        msg += " (downloads are off: models.download is false)"
    ways = []
    usable = _usable_here(extra_dir)
    kinds = list(dict.fromkeys(m.kind for m in missing))
    if all(usable[kind] for kind in kinds):
        listed = "; ".join(
            f"in {d}: " + ", ".join(f for kind in kinds for f, where in usable[kind] if where == d)
            for d in dict.fromkeys(d for kind in kinds for _, d in usable[kind])
        )
        sets = " ".join(f"--set models.{kind}={usable[kind][0][0]}" for kind in kinds)
        ways.append(f"use models found in the searched folders ({listed}): {sets}")
    if packs:
        ways.append(
            f"run 'streamrec models pull {' '.join(packs)}' on a connected machine and copy "
            f"{', '.join(files)} from its ~/.cache/streamrec/models into {dirs[-1]}"
        )
    ways.append(
        f"put {', '.join(files)} in a directory and name it with STREAMREC_MODELS=DIR or "
        f"models.dir (or give models.detector/models.recognizer as paths)"
    )
    if any(p.name != SMALL_PACK for m in missing for p in m.packs) or not packs:
        ways.append(
            f"use the smaller pack {SMALL_PACK}, a download of about 16 MB (--set "
            f"models.detector={SMALL_PACK} --set models.recognizer={SMALL_PACK})"
        )
    return msg + ". Ways out: " + "; ".join(f"({i}) {w}" for i, w in enumerate(ways, 1))


def pack_url(pack: Pack) -> str:
    base = os.environ.get("STREAMREC_MODEL_MIRROR", OFFICIAL_BASE_URL).rstrip("/")
    return f"{base}/{pack.archive}"


def pull_pack(pack: Pack, dest: Path | None = None) -> list[Path]:
    """Download ``pack``'s archive once, extract every model streamrec knows, verify each.

    Members are verified against their pinned sha256 before they are moved into ``dest``
    (default: the user cache); a mismatch deletes the member and fails after the others are
    in place. Members streamrec does not use (InsightFace's landmark and attribute models)
    are not extracted.
    """
    url = pack_url(pack)
    dest = private_dir(dest if dest is not None else cache_dir())
    log.info("downloading %s from %s", pack.archive, url)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / pack.archive
        try:
            _fetch(url, archive)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"downloading {pack.archive} from {url} failed ({reason})") from None
        try:
            with zipfile.ZipFile(archive) as zf:
                members = {Path(n).name: n for n in zf.namelist() if n.endswith(".onnx")}
                wanted = [f for f in (pack.detector, pack.recognizer) if f not in members]
                if wanted:
                    raise ModelError(f"{url} does not contain {', '.join(wanted)}")
                known = sorted(f for f in members if f in MODELS)
                for file in known:
                    with zf.open(members[file]) as src, (Path(tmp) / file).open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile:
            raise ModelError(f"{url} is not a valid zip archive") from None
        skipped = sorted(set(members) - set(known))
        if skipped:
            log.info("not extracted (not used by streamrec): %s", ", ".join(skipped))
        extracted, bad = [], []
        for file in known:
            part = Path(tmp) / file
            digest = _hash(part)
            pin = MODELS[file].sha256
            if pin and digest != pin:
                part.unlink()
                bad.append(f"{file}: got {digest}, expected {pin}")
                continue
            part.replace(dest / file)
            extracted.append(dest / file)
    if bad:
        raise ModelError(
            f"sha256 mismatch for {'; '.join(bad)} (downloaded from {url}); the file was deleted"
        )
    return extracted


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
    derived: Derived | None = None


def list_models(extra_dir: str | None = None) -> list[ModelStatus]:
    """Every known model and every optimized one found: where (first match), sha256 verified."""
    out = []
    for info in MODELS.values():
        packs = [p.name for p in PACKS.values() if info.file in (p.detector, p.recognizer)]
        found = next(
            (d / info.file for d in search_dirs(extra_dir, info.file) if (d / info.file).is_file()),
            None,
        )
        digest = sha256_of(found) if found else None
        out.append(ModelStatus(info, packs, found, digest, digest == info.sha256))
    seen: set[str] = set()
    for d in search_dirs(extra_dir):
        for side in sorted(d.glob("*.onnx.json")) if d.is_dir() else []:
            model = side.with_name(side.name[: -len(".json")])
            derived = Derived.read(model) if model.is_file() else None
            if derived is None or model.name in seen:
                continue
            seen.add(model.name)
            digest = sha256_of(model)
            info = ModelInfo(
                model.name,
                derived.kind,
                derived.sha256,
                description=f"{derived.precision} of {derived.parent_file}",
            )
            out.append(ModelStatus(info, [], model, digest, digest == derived.sha256, derived))
    return out


def configured_threshold(models: ModelsConfig) -> float:
    """The calibrated threshold of the configured recognizer as the registry knows it by name
    (a pack or a known file), without resolving the file; the fallback otherwise. For a
    process that does not load the models (a cluster's head)."""
    name = models.recognizer
    pack = PACKS.get(name)
    info = MODELS.get(pack.recognizer if pack is not None else Path(name).name)
    return info.threshold if info is not None and info.threshold else FALLBACK_THRESHOLD


def recognizer_threshold(model: ResolvedModel) -> float:
    """Calibrated default cosine threshold of a recognizer (by sha256, name, then its parent's)."""
    keys = [(model.sha256, model.name)]
    if model.derived is not None and model.derived.embedding_compatible:
        keys.append((model.derived.parent_sha256, model.derived.parent_file))
    for sha, name in keys:
        for info in MODELS.values():
            if info.kind == "recognizer" and info.sha256 == sha and info.threshold:
                return info.threshold
        by_name = MODELS.get(name)
        if by_name is not None and by_name.threshold is not None:
            return by_name.threshold
    return FALLBACK_THRESHOLD
