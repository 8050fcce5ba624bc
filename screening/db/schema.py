"""Tables that radiologists' tools read. Alembic migrations in `migrations/` create them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from screening.vocabulary import (
    BatchMode,
    ImageStatus,
    Population,
    PopulationBasis,
    ResultKind,
    SendStatus,
    VersionStatus,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def coded(enum: type[StrEnum], length: int) -> SqlEnum:
    """A status column: VARCHAR in the database (as the migrations made it), the StrEnum member in Python."""
    return SqlEnum(
        enum, native_enum=False, create_constraint=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    """A registered classifier: its artifact, how to preprocess for it, and how it scored."""

    __tablename__ = "model_versions"
    __table_args__ = (
        Index(
            "uq_model_versions_one_active",
            "status",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    artifact_path: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    preprocessing: Mapped[dict] = mapped_column(JSON)
    training_config: Mapped[dict] = mapped_column(JSON, default=dict)
    data_manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    threshold: Mapped[float] = mapped_column(Float)
    # the applicability gate the artifact carries (model.gate); None for a version without one
    gate_version: Mapped[str | None] = mapped_column(String(40))
    gate_threshold: Mapped[float | None] = mapped_column(Float)
    # operating points per population (model.population), as the manifest gives them; None: `threshold` for all
    populations: Mapped[dict | None] = mapped_column(JSON)
    # what it scored on the reference films when registered (training.reference); None: registered without it
    reference_check: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[VersionStatus] = mapped_column(coded(VersionStatus, 20), default=VersionStatus.CANDIDATE)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    """One `screen enqueue` run."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    roots: Mapped[list] = mapped_column(JSON)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    mode: Mapped[BatchMode] = mapped_column(coded(BatchMode, 20))
    enqueue_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Renewed by the process that claims and dispatches the batch's images; once it lapses, that process is
    # gone and anyone may take over what it claimed but never handed to a worker.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # `screen enqueue --population`: the population of images whose header gives no age
    population: Mapped[Population | None] = mapped_column(coded(Population, 10))


class BatchItem(Base):
    """A file found by one batch; it points at the result that covers it once there is one."""

    __tablename__ = "batch_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str | None] = mapped_column(String(10))  # jpeg | png | dicom | None (unrecognised)
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_uid: Mapped[str | None] = mapped_column(String(64))
    # a DICOM file's header, for the worklist (patient data: shown to signed-in readers only, never logged)
    patient_id: Mapped[str | None] = mapped_column(String(64))
    accession: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[date | None] = mapped_column(Date)
    enqueue_error: Mapped[str | None] = mapped_column(Text)
    enqueue_status: Mapped[ImageStatus | None] = mapped_column(coded(ImageStatus, 10))  # with enqueue_error
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"), index=True)


class Result(Base):
    """One image screened by one model version: exactly one row per pair, enforced here.

    The row is created `queued` when a batch first claims the image, then filled in by a worker.
    """

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("sha256", "model_version_id", name="uq_results_image_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    pixel_sha256: Mapped[str | None] = mapped_column(String(64), index=True)  # of the decoded pixels
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(10))
    study_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    series_uid: Mapped[str | None] = mapped_column(String(64))
    sop_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[ImageStatus] = mapped_column(coded(ImageStatus, 10), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    probability: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool | None] = mapped_column(Boolean)
    # the operating point it was scored at: its threshold, whose population's it is and why (model.population)
    threshold: Mapped[float | None] = mapped_column(Float)
    population: Mapped[Population | None] = mapped_column(coded(Population, 10))
    population_basis: Mapped[PopulationBasis | None] = mapped_column(coded(PopulationBasis, 10))
    adult_score: Mapped[float | None] = mapped_column(Float)  # the age-group estimate's P(adult)
    read_ms: Mapped[float | None] = mapped_column(Float)
    preprocess_ms: Mapped[float | None] = mapped_column(Float)
    infer_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    screened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The lease on a queued row (db.leases): the worker holding it, renewing it while alive; the token of the
    # screening that took it (None: reserved on receipt, not started); once it lapses, anyone may take it over.
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    screenings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # screenings started on it
    lapsed_holder: Mapped[str | None] = mapped_column(String(200))  # the last holder that stopped renewing
    taken_over_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Views are created by the migrations; this separate metadata only lets code query them.
views = MetaData()
# each DICOM instance of a study once per model version: its latest result, a screened one first (migration 0012)
study_instances = Table(
    "study_instances",
    views,
    Column("result_id", Integer),
    Column("study_uid", String(64)),
    Column("model_version_id", Integer),
    Column("sop_uid", String(64)),
    Column("path", Text),
    Column("status", String(10)),
    Column("probability", Float),
    Column("flagged", Boolean),
)
# a study's figures at a model version, from study_instances
study_results = Table(
    "study_results",
    views,
    Column("study_uid", String(64)),
    Column("model_version_id", Integer),
    Column("images", Integer),
    Column("images_screened", Integer),
    Column("images_skipped", Integer),
    Column("images_failed", Integer),
    Column("images_pending", Integer),
    Column("probability", Float),
    Column("flagged", Integer),
)


class Label(Base):
    """A radiologist's ground truth for an image (by content), for evaluation and retraining."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    pneumonia: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(200))  # "cli" or the CSV file's name
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelChange(Base):
    """Every label recorded, in order, never changed or removed: who said what about a film and when (the audit
    trail behind `labels`, which keeps the latest)."""

    __tablename__ = "label_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    pneumonia: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(200))  # "review page", "cli" or the CSV file's name
    reader: Mapped[str | None] = mapped_column(String(64))  # the name a reader signed in to the review page with
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelActivation(Base):
    """Each promotion, in order; a rollback marks the newest as rolled back and re-activates the one before."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rolled_back_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RetrainRun(Base):
    """One nightly retrain per night: the row is claimed before training starts, so a redelivery is a no-op."""

    __tablename__ = "retrain_runs"

    night: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    task_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)


class OutboxObject(Base):
    """A DICOM object the product made for a screened study (a report or a heatmap), and its sending to the
    archive: every attempt counted, the last failure's reason kept, at most SCREEN_SEND_MAX_ATTEMPTS tries."""

    __tablename__ = "result_objects"
    __table_args__ = (UniqueConstraint("batch_id", "study_uid", "kind", "source_sop_uid", name="uq_result_objects"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[ResultKind] = mapped_column(coded(ResultKind, 4))
    source_sop_uid: Mapped[str] = mapped_column(String(64))  # the image of a heatmap; "" for a report
    sop_uid: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    destination: Mapped[str | None] = mapped_column(String(200))  # AE@host:port, None when none is configured
    status: Mapped[SendStatus] = mapped_column(coded(SendStatus, 10), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notes: Mapped[str | None] = mapped_column(Text)  # header values left out of it (attribute names, no values)
    # the result ids it was made from (a report: every screened image of its study; a heatmap: its image's)
    covers: Mapped[list | None] = mapped_column(JSON)
    # the process making a send attempt now, until when (renewed while it sends): one attempt at a time
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
