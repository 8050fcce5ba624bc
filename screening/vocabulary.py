"""The product's vocabulary: what an image, a batch, a version or a result can be. StrEnums on the ground floor,
so every layer (and the edges) names them alike; the database stores their values (db.schema)."""

from __future__ import annotations

from enum import StrEnum


class ImageStatus(StrEnum):
    QUEUED = "queued"
    DONE = "done"
    SKIPPED = "skipped"  # a valid file this product must not score
    FAILED = "failed"  # a file that could not be read or decoded, or a model that could not be loaded


class WorklistView(StrEnum):
    """The review worklist's quick filters."""

    FLAGGED_UNREAD = "flagged-unread"  # flagged, and no radiologist's verdict yet
    NOT_SCORED = "not-scored"  # skipped or failed: images no model read


class Population(StrEnum):
    CHILD = "child"  # under 18
    ADULT = "adult"


class PopulationBasis(StrEnum):
    """Why an image was scored at its population's operating point."""

    HEADER = "header"  # the DICOM header's PatientAge, or PatientBirthDate with the study's date
    OVERRIDE = "override"  # `screen enqueue --population` for the batch
    ESTIMATE = "estimate"  # the age-group estimate, confident
    UNCERTAIN = "uncertain"  # the estimate could not place it: scored at the more sensitive population's point


class BatchMode(StrEnum):
    """Who screens a batch's images."""

    CELERY = "celery"  # SCREEN_BROKER_URL set: the Celery workers
    IN_PROCESS = "in-process"  # the embedded default: the enqueuing process itself


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"


class SendStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"  # the archive answered the C-STORE with success
    FAILED = "failed"  # the retry limit was reached: `screen outbox --resend` tries again
    SUPERSEDED = "superseded"  # never made, and no longer needed: a later report of its study covers its images


class ResultKind(StrEnum):
    REPORT = "sr"  # the TID 1500 structured report of a study
    HEATMAP = "sc"  # a flagged image with its heatmap, as a Secondary Capture
