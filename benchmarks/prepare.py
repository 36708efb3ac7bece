"""What the cases need besides the shared models and media, made once per run when first needed.

:class:`Inputs` makes each input at most once (clips cut, looped or transcoded by ffmpeg, the
architecture-equivalent models, the INT8 models of ``streamrec models optimize``) and remembers
a failure so that every case needing the input gets the same reason. A missing tool or optional
package is :class:`~benchmarks.cases.Skipped`; anything else is an error of those cases only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .cases import ROOT, Skipped

CLIPS = {
    "1080p": Path("facenet_pytorch") / "video.mp4",
    "360p": Path("face_recognition") / "short_hamilton_clip.mp4",
}
LIVE_SIZE = (1280, 720)
LIVE_FPS = 25
#: the static scene: a landscape without a face (``insightface/view.jpg``), sensor noise,
#: H.264 at a camera's bitrate with a key frame every 2 s
STILL = Path("insightface") / "view.jpg"
STATIC_BITRATE = "2M"
STATIC_SECONDS = 20
SHORT_FRAMES = 5
R50 = "w600k_r50_arch_equiv.onnx"
DET10G = "det_10g_arch_equiv.onnx"
#: photos and clips ``models optimize`` calibrates on (the deepface pairs are held aside)
CALIBRATION = (
    Path("facenet_pytorch") / "test_images",
    Path("face_recognition") / "knn_examples" / "train",
    Path("openface_examples"),
    CLIPS["1080p"],
    CLIPS["360p"],
)
PAIRS = Path("deepface") / "master.csv"
_ERROR = "streamrec: error: "


def ffmpeg(*args: str) -> None:
    """Run ffmpeg quietly; Skipped when it is not installed, its message when it fails."""
    if shutil.which("ffmpeg") is None:
        raise Skipped("ffmpeg is not installed (apt-get install ffmpeg)")
    proc = subprocess.run(["ffmpeg", "-v", "error", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.strip()[-300:]}")


class Inputs:
    """Inputs by name, made on first use into ``work`` (this run's scratch folder) or, for the
    generated models, ``cache``. ``notes`` keeps what each step reported (for the results)."""

    def __init__(
        self, media: Path, models: Path, cache: Path, work: Path, loops: int, quick: bool
    ) -> None:
        self.media, self.models, self.cache, self.work = media, models, cache, work
        self.loops, self.quick = loops, quick
        self.notes: dict[str, str] = {}
        self._made: dict[str, Path | BaseException] = {}
        self._makers: dict[str, Callable[[], Path]] = {
            "clip_1080p": self._looped,
            "clip_360p": lambda: media / CLIPS["360p"],
            "clip_short": self._short,
            "clip_live": self._live,
            "clip_static": self._static,
            "r50": self._r50,
            "det10g": self._det10g,
            "mbf_int8": lambda: self._int8(models / "mobilefacenet_128d.onnx", pairs=True),
            "r50_int8": lambda: self._int8(self.get("r50"), pairs=False),
        }

    def get(self, name: str) -> Path:
        """The input's path; raises the (remembered) reason why it cannot be had."""
        if name not in self._made:
            try:
                self._made[name] = self._makers[name]()
            except Exception as exc:  # remembered: every case needing it reports the same
                self._made[name] = exc
        made = self._made[name]
        if isinstance(made, BaseException):
            raise made
        return made

    # ------------------------------------------------------------------------------ clips

    def _looped(self) -> Path:
        """The 1080p clip played ``loops`` times in a row (stream copy)."""
        src = self.media / CLIPS["1080p"]
        if self.loops == 1:
            return src
        listing = self.work / "loop.txt"
        listing.write_text(f"file '{src.resolve()}'\n" * self.loops)
        out = self.work / f"{src.stem}_x{self.loops}.mp4"
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0:v:0", "-c", "copy",
               "-y", str(out))  # fmt: skip
        return out

    def _short(self) -> Path:
        """The first frames of the 360p clip (stream copy: it starts on a key frame)."""
        out = self.work / f"short_{SHORT_FRAMES}frames.mp4"
        ffmpeg("-i", str(self.media / CLIPS["360p"]), "-map", "0:v:0", "-frames:v",
               str(SHORT_FRAMES), "-c", "copy", "-y", str(out))  # fmt: skip
        return out

    def _live(self) -> Path:
        """The 360p clip scaled to 720p at 25 fps (H.264, a key frame every second)."""
        w, h = LIVE_SIZE
        out = self.work / f"live_{h}p{LIVE_FPS}.mp4"
        ffmpeg("-i", str(self.media / CLIPS["360p"]), "-map", "0:v:0", "-vf", f"scale={w}:{h}",
               "-r", str(LIVE_FPS), "-c:v", "libx264", "-preset", "veryfast", "-g", str(LIVE_FPS),
               "-bf", "0", "-y", str(out))  # fmt: skip
        return out

    def _static(self) -> Path:
        """A camera watching a still scene: the still, temporal sensor noise on every frame,
        H.264 at a camera's bitrate (the noise makes the encoder work as on a real camera)."""
        w, h = LIVE_SIZE
        out = self.work / f"static_{h}p{LIVE_FPS}.mp4"
        noise = "noise=c0s=8:c0f=t+u:c1s=3:c1f=t:c2s=3:c2f=t"
        ffmpeg("-loop", "1", "-framerate", str(LIVE_FPS), "-i", str(self.media / STILL),
               "-t", str(STATIC_SECONDS), "-vf", f"scale={w}:{h},format=yuv420p,{noise}",
               "-c:v", "libx264", "-preset", "veryfast", "-b:v", STATIC_BITRATE, "-maxrate",
               STATIC_BITRATE, "-bufsize", "4M", "-g", str(2 * LIVE_FPS), "-bf", "0", "-y",
               str(out))  # fmt: skip
        return out

    # ----------------------------------------------------------------------------- models

    def _r50(self) -> Path:
        from .iresnet50 import build_iresnet50

        return build_iresnet50(self.cache / R50)

    def _det10g(self) -> Path:
        from .scrfd10g import build_scrfd10g

        return build_scrfd10g(self.cache / DET10G)

    def _int8(self, model: Path, pairs: bool) -> Path:
        """``streamrec models optimize`` as a process, into this run's scratch folder; Skipped
        with its one-line reason when it refuses (NNCF missing, accuracy bounds not met)."""
        out = self.work / f"{model.stem}_int8.onnx"
        cmd = [
            sys.executable, "-m", "streamrec", "models", "optimize", str(model),
            "--output", str(out), "--samples", "60" if self.quick else "300",
            *[a for c in CALIBRATION for a in ("--calibration", str(self.media / c))],
            *(("--pairs", str(self.media / PAIRS)) if pairs else ()),
            "--set", f"models.dir={self.models}", "--set", "models.detector=det_2.5g.onnx",
            "--set", "models.download=false",
            "--set", f"runtime.cache_dir={self.work / 'ov_cache_optimize'}",
        ]  # fmt: skip
        print(f"making {out.name} with streamrec models optimize ...", flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        # its report, without NNCF's progress bars
        lines = [line for line in proc.stdout.splitlines() if "━" not in line]
        self.notes[out.name] = "\n".join(lines).strip()
        if proc.returncode == 0 and out.is_file():
            return out
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        reason = f"streamrec models optimize {model.name}: {lines[-1].removeprefix(_ERROR)}"
        if proc.returncode == 2:  # a refusal (bounds, missing NNCF): not a bug of the suite
            raise Skipped(reason)
        raise RuntimeError(reason)
