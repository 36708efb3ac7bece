"""Align and embed: every face job of the queued frames (across cameras) in as few calls as fit."""

from __future__ import annotations

import time

import numpy as np

from streamrec.models.alignment import align
from streamrec.models.protocols import Embedder
from streamrec.models.quality import face_quality
from streamrec.pipeline.budget import EmbedBudget
from streamrec.pipeline.stage import Inbox, Stage
from streamrec.records import FaceJob, FrameWork, Work
from streamrec.telemetry import Observer


class EmbedStage(Stage):
    name = "embed"

    def __init__(
        self,
        embedder: Embedder,
        batch_size: int,
        observer: Observer,
        budget: EmbedBudget | None = None,
    ) -> None:
        """``budget``: told the recognizer's time per face (live cameras' pace)."""
        self.embedder = embedder
        self.batch_size = batch_size
        self.observer = observer
        self.budget = budget

    def gather(self, first: Work, inbox: Inbox) -> list[Work]:
        """Take more queued frames (without waiting) while the batch has room."""
        batch = [first]
        while sum(_jobs(w) for w in batch) < self.batch_size:
            more = inbox.get(0.0)
            if more is None:
                break
            batch.append(more)
        return batch

    def process_batch(self, batch: list[Work]) -> None:
        jobs: list[FaceJob] = []
        t0 = time.perf_counter()
        for work in batch:
            if not isinstance(work, FrameWork):
                continue
            for job in work.jobs:
                image = job.image if job.image is not None else work.frame.image
                job.crop = align(image, job.kps, self.embedder.input_size)
                job.quality = face_quality(job.box, job.kps, job.det_score, job.crop)
                jobs.append(job)
        self.observer.busy("align", time.perf_counter() - t0)
        for i in range(0, len(jobs), self.batch_size):
            chunk = jobs[i : i + self.batch_size]
            t1 = time.perf_counter()
            embeddings = self.embedder.embed([job.crop for job in chunk if job.crop is not None])
            took = time.perf_counter() - t1
            self.observer.embedded(len(chunk), took)
            if self.budget is not None:
                self.budget.took(len(chunk), took)
            self.observer.busy("embed", took)
            for job, embedding in zip(chunk, np.asarray(embeddings), strict=True):
                job.embedding = embedding


def _jobs(work: Work) -> int:
    return len(work.jobs) if isinstance(work, FrameWork) else 0
