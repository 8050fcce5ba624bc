"""The model manifest: what an artifact, the registry, the model card and retraining all read about a version.

Typed records throughout (figures in model.figures), read from and written to the artifact's manifest.json here
and nowhere else. Backend-free, so the CLI reads manifests without loading Keras.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pydantic import ConfigDict, TypeAdapter

from screening.model.figures import Metrics, Resources
from screening.model.preprocessing import PreprocessSpec
from screening.model.recipe import TrainingConfig

FORMAT = "screening-model/1"
NON_COMMERCIAL = re.compile(r"(^|[\s-])NC([\s-]|$)")  # CC BY-NC-SA 4.0, CC BY-NC-ND, ...


def non_commercial(licence: str | None) -> bool:
    """A Creative Commons licence with the NonCommercial term (as a data manifest names a file's licence)."""
    return licence is not None and NON_COMMERCIAL.search(licence) is not None


@dataclass(frozen=True)
class Architecture:
    """ResNet50 (no top, average-pooled) -> dense -> dropout -> one logit; `members` such networks side by side, their
    logits averaged, for an ensemble."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # an unknown parameter is another network, not ours

    backbone: str = "resnet50"
    head_units: int = 128
    dropout: float = 0.3
    members: int = 1


@dataclass(frozen=True)
class SplitFile:
    """One image of the split a version was trained and validated on."""

    file: str
    label: int
    patient: str
    sha256: str
    split: str  # "train" or "validation"
    source: str | None = None  # None: version 1, one labelled folder


@dataclass(frozen=True)
class SourceCounts:
    train: int
    validation: int


@dataclass(frozen=True)
class DataManifest:
    """What reproduces the split (training.split.Split.manifest): every file's hash, label, patient and side."""

    files: list[SplitFile] = field(default_factory=list)
    train_images: int = 0
    train_patients: int = 0
    validation_images: int = 0
    validation_patients: int = 0
    sources: dict[str, SourceCounts] = field(default_factory=dict)
    licences: dict[str, dict[str, int]] = field(default_factory=dict)  # per source: licence -> files

    def hashes(self, side: str) -> list[str]:
        """SHA-256 of every image of one side ("train" or "validation"), in the order the manifest lists them."""
        return [row.sha256 for row in self.files if row.split == side]


@dataclass(frozen=True)
class SourceFolders:
    train: str
    validation: str | None = None  # None: a patient-wise split of `train`


@dataclass(frozen=True)
class Member:
    """One trained network of an ensemble."""

    artifact: str
    sha256: str
    phase: str
    training_resources: Resources | None = None


@dataclass(frozen=True)
class RunNotes:
    """What the steps that made a version recorded beside its recipe: its data, and what it was made from."""

    phase: str = ""
    sources: dict[str, SourceFolders] = field(default_factory=dict)
    data_dir: str | None = None  # version 1: one labelled folder, no sources
    out_of_scope_dir: str | None = None  # the images its gate was fitted against
    gate_added_to: str | None = None  # SHA-256 of the artifact a gate was added to (screen models gate)
    points_added_to: str | None = None  # SHA-256 of the artifact operating points were added to
    members: list[Member] = field(default_factory=list)  # an ensemble's networks
    radiologist_labels: int | None = None  # a retrain: the readers' labels it trained on
    labels_left_out_file_changed: int | None = None  # and those left out, their file no longer the film read


@dataclass(frozen=True)
class KindRefusals:
    images: int
    refused: int
    refusal_rate: float


@dataclass(frozen=True)
class GateTest:
    """The gate on images kept apart from its fitting."""

    by_kind: dict[str, KindRefusals]
    frontal_refusal_rate: dict[str, float]  # per validation source
    out_of_scope_images: int
    out_of_scope_refusal_rate: float


@dataclass(frozen=True)
class OutOfScopeFolder:
    fitted_on: list[str]
    held_out: list[str]
    licences: dict[str, int] = field(default_factory=dict)
    refused_by_the_pipeline_rules: int = 0


@dataclass(frozen=True)
class GateRecord:
    """The applicability gate (model.gate): its version and threshold, how it was fitted and how it tested."""

    version: str
    threshold: float
    method: str
    fitted_on: dict[str, int]  # images per kind
    out_of_scope_folder: OutOfScopeFolder
    test: GateTest


@dataclass(frozen=True)
class PointRecord:
    """A population's operating point as stored (model.population.OperatingPoint serves it)."""

    threshold: float
    temperature: float
    target_sensitivity: float


@dataclass(frozen=True)
class EstimateTest:
    images: int
    right: int
    wrong: int
    not_placed: int
    accuracy: float


@dataclass(frozen=True)
class AddedFolder:
    population: str
    images: int
    left_out: int  # films of validation-side patients


@dataclass(frozen=True)
class EstimateRecord:
    """The age-group estimate (model.population.AgeGroupEstimate): its settings, what it was fitted on and tested."""

    version: str
    adult_from: float
    child_below: float
    method: str
    fitted_on: dict[str, int]  # films per population
    test: dict[str, EstimateTest]  # per validation source
    added_folders: dict[str, AddedFolder] = field(default_factory=dict)


@dataclass(frozen=True)
class PopulationsRecord:
    """Operating points per population (model.population) and the age-group estimate."""

    points: dict[str, PointRecord]
    estimate: EstimateRecord
    sources: dict[str, str] = field(default_factory=dict)  # each training source's population


@dataclass(frozen=True)
class ModelManifest:
    name: str
    architecture: Architecture
    preprocessing: PreprocessSpec
    threshold: float  # on calibrated probabilities: at or above it, an image is flagged
    temperature: float = 1.0  # the logit is divided by it before the sigmoid
    created_at: str = ""
    metrics: Metrics = field(default_factory=Metrics)
    training_config: TrainingConfig = field(default_factory=TrainingConfig)
    notes: RunNotes = field(default_factory=RunNotes)  # stored inside "training_config", beside the recipe
    data_manifest: DataManifest = field(default_factory=DataManifest)
    weight_names: list[str] = field(default_factory=list)
    # None for a version released without a gate (its arrays are in the artifact's gate.npz)
    gate: GateRecord | None = None
    # None: one point, the threshold and temperature above, for every image. With them, those two are the more
    # sensitive population's point.
    populations: PopulationsRecord | None = None
    artifact_sha256: str | None = None  # known once the artifact is written; the file itself cannot hold it
    format: str = FORMAT

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelManifest:
        """A manifest as stored; pydantic's ValidationError (a ValueError) says which field does not fit. Fields
        this code does not know are left out: a newer manifest's additions, an older one's leftovers."""
        stored = dict(values)
        recipe_and_notes = stored.pop("training_config", None) or {}
        recipe_fields = {f.name for f in fields(TrainingConfig)}
        stored["training_config"] = {k: v for k, v in recipe_and_notes.items() if k in recipe_fields}
        stored["notes"] = {k: v for k, v in recipe_and_notes.items() if k in {f.name for f in fields(RunNotes)}}
        metrics = dict(stored.get("metrics") or {})
        if "official_val16" in metrics:  # version 1 kept its one check beside the figures
            metrics["checks"] = {"official_val16": metrics.pop("official_val16")}
        stored["metrics"] = metrics
        return _MANIFEST.validate_python(stored)

    def to_dict(self) -> dict[str, Any]:
        """As stored: the run's notes inside "training_config" (left out where not recorded)."""
        stored: dict[str, Any] = _MANIFEST.dump_python(self, mode="json", exclude={"notes"})
        notes = {key: value for key, value in asdict(self.notes).items() if value not in (None, "", [], {})}
        stored["training_config"] = {**stored["training_config"], **notes}
        return stored

    def validation_hashes(self) -> list[str]:
        """SHA-256 of every image of the validation split, in the order the manifest lists them."""
        return self.data_manifest.hashes("validation")


_MANIFEST = TypeAdapter(ModelManifest)
