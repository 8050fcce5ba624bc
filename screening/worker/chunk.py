"""screen_chunk: the plain function behind the Celery task, callable without a broker."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.results import queued_results, record_outcomes, screened_pixels
from screening.db.schema import ImageStatus, ModelVersion
from screening.imaging.errors import Unreadable
from screening.imaging.preprocess import PreprocessSpec
from screening.model.artifact import ArtifactError
from screening.worker.stages import PENDING, Decode, ImageJob, Infer, Preprocess, ReadFile, run_image_stages

logger = logging.getLogger(__name__)
SAME_PIXELS = "identical pixels to an image already screened: same score"


@dataclass
class WorkerRuntime:
    """What one worker process keeps between chunks: database, thread pool, the loaded model."""

    settings: Settings
    session_factory: sessionmaker[Session]
    _classifiers: dict[int, object] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings) -> WorkerRuntime:
        return cls(settings, make_session_factory(make_engine(settings.database_url)))

    @cached_property
    def pool(self) -> ThreadPoolExecutor:
        # OpenCV releases the GIL, so decode and preprocessing of a chunk run in parallel.
        return ThreadPoolExecutor(self.settings.decode_threads, thread_name_prefix="decode")

    def classifier_for(self, version: ModelVersion):  # noqa: ANN201
        """The model of `version`, loaded once per process; a newly promoted version replaces it."""
        if version.id not in self._classifiers:
            import keras  # imported here, as the classifier: a backend must not load before fork

            from screening.model.infer import Classifier

            self._classifiers.clear()
            self._classifiers[version.id] = Classifier.load(
                Path(version.artifact_path),
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
        return self._classifiers[version.id]


@dataclass(frozen=True)
class ChunkSummary:
    model_version_id: int | None
    items: int
    already_screened: int
    statuses: dict[str, int]
    elapsed_ms: float = 0.0
    write_ms: float = 0.0

    def as_dict(self) -> dict:
        """PHI-free: Celery logs a task's return value."""
        return asdict(self)


def screen_chunk(runtime: WorkerRuntime, result_ids: list[int]) -> ChunkSummary:
    """Screen the queued result rows `result_ids`; rows already filled in (a redelivery) are left alone."""
    started = time.perf_counter()
    with runtime.session_factory() as session:
        queued = queued_results(session, result_ids)
        if not queued:
            return ChunkSummary(None, len(result_ids), len(result_ids), {})
        version = session.get_one(ModelVersion, queued[0].model_version_id)  # claimed together: one version
    jobs = [ImageJob(row.path, row.sha256, row.id) for row in queued]
    try:
        classifier = runtime.classifier_for(version)
    except ArtifactError as problem:  # every row says why, rather than a chunk dropped and a batch pending forever
        logger.error("model version %s cannot be loaded: %s", version.id, problem)
        for job in jobs:
            job.reject(Unreadable(f"model version {version.id} could not be loaded: {problem}"))
    else:
        _screen(runtime, version, classifier, jobs)
    writing = time.perf_counter()
    with runtime.session_factory.begin() as session:
        record_outcomes(session, [job.outcome() for job in jobs])
    finished = time.perf_counter()
    statuses = dict(Counter(str(job.status) for job in jobs))
    return ChunkSummary(
        version.id,
        len(result_ids),
        len(result_ids) - len(queued),
        statuses,
        elapsed_ms=round((finished - started) * 1000, 1),
        write_ms=round((finished - writing) * 1000, 1),
    )


def _screen(runtime: WorkerRuntime, version: ModelVersion, classifier: object, jobs: list[ImageJob]) -> None:
    stages = [
        ReadFile(runtime.settings.max_file_bytes),
        Decode(runtime.settings.max_image_pixels),
        Preprocess(PreprocessSpec.from_dict(version.preprocessing)),
    ]
    # Decode ahead in the pool while the model scores each sub-batch, so inference never waits for the whole chunk.
    decoded = [runtime.pool.submit(run_image_stages, job, stages) for job in jobs]
    infer, size = Infer(classifier, version.threshold), runtime.settings.inference_batch_size
    scored: dict[str, float] = {}  # pixel hash -> the probability given to those pixels in this chunk
    for start in range(0, len(decoded), size):
        batch = [future.result() for future in decoded[start : start + size]]
        _reuse_scores(runtime, version, batch, scored)
        infer(batch)
        for job in batch:  # a twin scored in the same sub-batch takes its first's score: one score per pixels
            if job.status == ImageStatus.DONE and job.pixel_sha256 and job.timings_ms.get(infer.name) is not None:
                if job.pixel_sha256 in scored:
                    job.score(scored[job.pixel_sha256], version.threshold, SAME_PIXELS)
                scored.setdefault(job.pixel_sha256, job.probability)


def _reuse_scores(runtime: WorkerRuntime, version: ModelVersion, jobs: list[ImageJob], scored: dict) -> None:
    """Identical decoded pixels get the score already given to them (another encoding of the same instance)."""
    waiting = {job.pixel_sha256 for job in jobs if job.status == PENDING and job.pixel_sha256}
    if not waiting:
        return
    with runtime.session_factory() as session:
        earlier = {sha: row.probability for sha, row in screened_pixels(session, version.id, list(waiting)).items()}
    known = earlier | scored
    for job in jobs:
        if job.status == PENDING and job.pixel_sha256 in known:
            job.score(known[job.pixel_sha256], version.threshold, SAME_PIXELS)
