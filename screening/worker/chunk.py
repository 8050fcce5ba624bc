"""screen_chunk: the plain function behind the Celery task, callable without a broker."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from screening.config import Settings
from screening.db.engine import make_engine, make_session_factory
from screening.db.registry import active_version
from screening.db.results import link_items, write_results
from screening.db.schema import BatchItem, ModelVersion
from screening.imaging.dicom import DicomIdentity
from screening.imaging.preprocess import PreprocessSpec
from screening.worker.stages import Decode, ImageJob, Infer, Preprocess, ReadFile, run_image_stages


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
            from screening.model.infer import Classifier  # imported here: a backend must not load before fork

            self._classifiers.clear()
            self._classifiers[version.id] = Classifier.load(
                Path(version.artifact_path), version.artifact_sha256, self.settings.inference_batch_size
            )
        return self._classifiers[version.id]


@dataclass(frozen=True)
class ChunkSummary:
    model_version_id: int
    items: int
    already_screened: int
    statuses: dict[str, int]

    def as_dict(self) -> dict:
        """PHI-free: Celery logs a task's return value."""
        return asdict(self)


def screen_chunk(runtime: WorkerRuntime, item_ids: list[int]) -> ChunkSummary:
    """Screen the batch items `item_ids` with the active model; safe to run again for the same ids."""
    with runtime.session_factory.begin() as session:
        version = active_version(session)
        items = list(session.scalars(select(BatchItem).where(BatchItem.id.in_(item_ids))))
        waiting = link_items(session, version.id, items)
    classifier = runtime.classifier_for(version)

    jobs = {item.sha256: ImageJob(item.path, item.sha256) for item in waiting}  # identical files once
    settings = runtime.settings
    stages = [
        ReadFile(settings.max_file_bytes),
        Decode(settings.max_image_pixels),
        Preprocess(PreprocessSpec.from_dict(version.preprocessing)),
    ]
    list(runtime.pool.map(lambda job: run_image_stages(job, stages), jobs.values()))
    Infer(classifier, version.threshold)(list(jobs.values()))

    enqueued_identity = {item.sha256: DicomIdentity(item.study_uid, item.series_uid, item.sop_uid) for item in waiting}
    rows = [job.result_row(enqueued_identity[key]) for key, job in jobs.items()]
    with runtime.session_factory.begin() as session:
        if waiting:  # a chunk is cut from one batch by enqueue_batch
            write_results(session, version.id, waiting[0].batch_id, rows)
        link_items(session, version.id, items)
    return ChunkSummary(
        version.id, len(items), len(items) - len(waiting), dict(Counter(j.status for j in jobs.values()))
    )
