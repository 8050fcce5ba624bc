"""Scoring a chunk of images in one process: the runtime a worker keeps, and the pipeline over a chunk.

Decoding runs ahead in a thread pool while the model scores each sub-batch; identical decoded pixels
get one score. The use case around it (usecases.screen_chunk) reads and writes the rows.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings
from screening.db.leases import Holder
from screening.db.results import screened_pixels
from screening.imaging.errors import Unreadable
from screening.model.artifact import ArtifactError
from screening.model.registered import RegisteredVersion
from screening.worker.stages import ImageJob, Infer, Prepare, ReadFile, Score, run_image_stages

if TYPE_CHECKING:
    from screening.model.infer import Classifier

logger = logging.getLogger(__name__)
SAME_PIXELS = "identical pixels to an image already screened: same score"


@dataclass
class WorkerRuntime:
    """What one worker process keeps between chunks: its database, its decoding threads, and the way to the model it
    screens with (loaded once per process, whichever runtime asks: `_loaded`)."""

    settings: Settings
    session_factory: sessionmaker[Session]
    holder: Holder  # whose lease the rows it screens are under: this worker (its main process), or this process

    @cached_property
    def pool(self) -> ThreadPoolExecutor:
        # OpenCV releases the GIL, so decode and preprocessing of a chunk run in parallel.
        return ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="decode")

    def classifier_for(self, version: RegisteredVersion) -> Classifier:
        """The model of `version`, loaded once per process (see `_loaded`)."""
        with _loading:
            return self._classifier_for(version)

    def _classifier_for(self, version: RegisteredVersion) -> Classifier:
        key = _load_key(version, self.settings)
        if key not in _loaded:
            import keras  # imported here, as the classifier: a backend must not load before fork

            from screening.model.infer import Classifier

            _loaded.clear()
            _loaded[key] = Classifier.load(
                version.artifact_path,
                version.artifact_sha256,
                self.settings.inference_batch_size,
                self.settings.dtype_policy,
            )
            logger.info(
                "model version %s loaded: Keras backend %s, dtype policy %s, batch %s",
                version.id,
                keras.backend.backend(),
                self.settings.dtype_policy,
                self.settings.inference_batch_size,
            )
        return _loaded[key]


# The model this process last loaded, one for every runtime it holds (`screen serve` explains with the one its
# listener and in-process batches screen with). A newly promoted version replaces it, and so does its artifact
# changed on disk, which is then checked against its SHA-256 again.
_loaded: dict[tuple[object, ...], Classifier] = {}
_loading = threading.Lock()  # one load, however many threads ask at once


def _load_key(version: RegisteredVersion, settings: Settings) -> tuple[object, ...]:
    try:
        stat = version.artifact_path.stat()
        on_disk: tuple[int, ...] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        on_disk = ()  # the load says what is wrong
    path = str(version.artifact_path)
    return version.id, path, version.artifact_sha256, on_disk, settings.inference_batch_size, settings.dtype_policy


def score_jobs(runtime: WorkerRuntime, version: RegisteredVersion, jobs: list[ImageJob]) -> None:
    """Give every job a status: scored, or rejected with the reason (all of them when the model cannot load)."""
    try:
        classifier = runtime.classifier_for(version)
    except ArtifactError as problem:  # every row says why, rather than a chunk dropped and a batch pending forever
        logger.error("model version %s cannot be loaded: %s", version.id, problem)
        for job in jobs:
            job.reject(Unreadable(f"model version {version.id} could not be loaded: {problem}"))
        return
    _score(runtime, version, classifier, jobs)


def _score(runtime: WorkerRuntime, version: RegisteredVersion, classifier: Classifier, jobs: list[ImageJob]) -> None:
    limits = runtime.settings.image_limits
    stages: list[ReadFile | Prepare] = [
        ReadFile(limits),
        Prepare(version.preprocessing, limits),
    ]
    # Decode ahead in the pool while the model scores each sub-batch, so inference never waits for the whole chunk.
    decoded = [runtime.pool.submit(run_image_stages, job, stages) for job in jobs]
    infer, size = Infer(classifier), runtime.settings.inference_batch_size
    scored: dict[str, Score] = {}  # pixel hash -> the score given to those pixels in this chunk
    for start in range(0, len(decoded), size):
        batch = [future.result() for future in decoded[start : start + size]]
        _reuse_scores(runtime, version, batch, scored)
        infer(batch)
        for job in batch:  # a twin scored in the same sub-batch takes its first's score: one score per pixels
            if job.scored is None or not job.pixel_sha256 or job.timings_ms.get(infer.name) is None:
                continue
            if job.pixel_sha256 in scored:
                job.score(scored[job.pixel_sha256], SAME_PIXELS)
            scored.setdefault(job.pixel_sha256, job.scored)


def _reuse_scores(runtime: WorkerRuntime, version: RegisteredVersion, jobs: list[ImageJob], scored: dict) -> None:
    """Identical decoded pixels get the score already given to them (another encoding of the same instance)."""
    waiting = {job.pixel_sha256 for job in jobs if job.pending and job.pixel_sha256}
    if not waiting:
        return
    with runtime.session_factory() as session:
        earlier = {
            sha: Score(
                float(row.probability or 0.0),  # a done row has one
                version.threshold if row.threshold is None else row.threshold,  # rows from before operating points
                row.population,
                row.population_basis,
                row.adult_score,
            )
            for sha, row in screened_pixels(session, version.id, list(waiting)).items()
        }
    known = earlier | scored
    for job in jobs:
        if job.pending and job.pixel_sha256 in known:
            job.score(known[job.pixel_sha256], SAME_PIXELS)
