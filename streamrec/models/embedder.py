"""ArcFace-style recognizer: aligned 112x112 crops in, L2-normalised embeddings out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..config import EmbedderConfig, RuntimeConfig
from ..errors import ModelError
from .blob import nchw
from .runtime import open_session


class ArcFaceEmbedder:
    """Runs any ArcFace-style ONNX recognizer; one call per batch when the batch is dynamic."""

    def __init__(self, path: str | Path, cfg: EmbedderConfig, runtime: RuntimeConfig) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.session, self.runtime_info = open_session(path, runtime)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) < 1:
            raise ModelError(f"{self.path.name}: not a face recognizer (expects one NCHW input)")
        shape = inputs[0].shape
        h, w = shape[2], shape[3]
        if not (isinstance(h, int) and isinstance(w, int)) or h != w:
            raise ModelError(f"{self.path.name}: recognizer input must be a fixed square size")
        self.input_name = inputs[0].name
        self.input_size = int(h)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        dim = outputs[0].shape[-1]
        self.dim = int(dim) if isinstance(dim, int) else int(self._run(self._dummy())[0].shape[-1])

    def _dummy(self) -> np.ndarray:
        n = self.fixed_batch or 1
        return np.zeros((n, 3, self.input_size, self.input_size), np.float32)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: blob})[0]
        return np.asarray(out, dtype=np.float32).reshape(blob.shape[0], -1)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """NCHW float32 blob from BGR crops with the configured channel order and mean/std."""
        size = (self.input_size, self.input_size)
        crops = [c if c.shape[1::-1] == size else cv2.resize(c, size) for c in crops]
        return nchw(crops, self.cfg.mean, self.cfg.std, rgb=self.cfg.color == "rgb")

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised float32 embeddings [N, D] of aligned BGR crops."""
        return self.embed_with_norms(crops)[0]

    def embed_with_norms(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings [N, D] and the norms [N] of the recognizer's un-normalised features
        (a quality signal in MagFace-style training; see ``models.quality``)."""
        if not crops:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        blob = self.preprocess(crops)
        if self.fixed_batch is None:
            feats = self._run(blob)
        else:
            step = self.fixed_batch
            parts = []
            for i in range(0, blob.shape[0], step):
                chunk = blob[i : i + step]
                if chunk.shape[0] < step:  # pad the last chunk of a fixed-batch model
                    pad = np.zeros((step - chunk.shape[0], *chunk.shape[1:]), np.float32)
                    parts.append(self._run(np.concatenate([chunk, pad]))[: chunk.shape[0]])
                else:
                    parts.append(self._run(chunk))
            feats = np.concatenate(parts)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        return (feats / np.maximum(norms, 1e-12)).astype(np.float32), norms[:, 0]
