"""Several labelled sources in one training run: each named, each validated on its own, balanced by weight.

A source is `NAME=TRAIN_DIR` (validated on a patient-wise split of it; Kermany file names say the patient)
or `NAME=TRAIN_DIR,VALIDATION_DIR` (validated on a folder of other patients). A folder whose parent (or
itself) holds a `manifest.csv` with `file`, `source` and `patient_id` columns (as ../shared/data/adult does)
is split into its sub-sources (`adult/NIH ChestX-ray14`, `adult/RSNA …`), so each is reported apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screening.hashing import sha256_hex
from screening.model.manifest import SourceFolders
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.manifest_csv import UNDESCRIBED, described_files, for_commercial_use
from screening.training.split import Example, Split, patient_of, patient_split


@dataclass(frozen=True)
class SourceSpec:
    name: str
    train: Path
    validation: Path | None = None  # None: a patient-wise split of `train`

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """`NAME=TRAIN_DIR` or `NAME=TRAIN_DIR,VALIDATION_DIR`."""
        name, separator, folders = text.partition("=")
        train, _, validation = folders.partition(",")
        if not separator or not name.strip() or not train.strip():
            raise LabelledDataError(f"a source is NAME=TRAIN_DIR or NAME=TRAIN_DIR,VALIDATION_DIR, not {text!r}")
        return cls(name.strip(), Path(train.strip()), Path(validation.strip()) if validation.strip() else None)

    def describe(self) -> SourceFolders:
        return SourceFolders(str(self.train.resolve()), str(self.validation.resolve()) if self.validation else None)


def examples_of(name: str, folder: Path, patients_from_names: bool) -> list[Example]:
    """The labelled images of `folder`, each with its (sub-)source, patient and content hash."""
    described = described_files(folder)
    examples = []
    for path, label in labelled_folder(folder):
        notes = described.get(path.resolve(), UNDESCRIBED)
        source = f"{name}/{notes.source}" if notes.source else name
        if notes.patient:
            patient = f"{source}:{notes.patient}"
        elif patients_from_names:
            try:
                patient = f"{name}:{patient_of(path.name)}"
            except ValueError as problem:
                raise LabelledDataError(
                    f"{problem}: give source {name} a validation folder (NAME=TRAIN,VALIDATION) or Kermany-style names"
                ) from None
        else:
            patient = f"{name}:{path.stem}"
        examples.append(Example(path, label, patient, sha256_hex(path), source, notes.licence))
    return examples


def multi_source_split(
    sources: list[SourceSpec], validation_fraction: float, seed: int, commercial_use_only: bool = False
) -> Split:
    """Every source's training and validation sides together; an image on both sides (by content) is kept on the
    validation side only. With `commercial_use_only`, images whose licence forbids commercial use are left out."""
    names = [spec.name for spec in sources]
    if len(set(names)) != len(names):
        raise LabelledDataError(f"source names must differ: {', '.join(names)}")
    train: list[Example] = []
    validation: list[Example] = []
    for spec in sources:
        if spec.validation is None:
            split = patient_split(examples_of(spec.name, spec.train, True), validation_fraction, seed)
            train += split.train
            validation += split.validation
        else:
            train += examples_of(spec.name, spec.train, False)
            validation += examples_of(spec.name, spec.validation, False)
    train, validation = (
        for_commercial_use(train, commercial_use_only),
        for_commercial_use(validation, commercial_use_only),
    )
    held_out = {example.sha256 for example in validation}
    return Split([example for example in train if example.sha256 not in held_out], validation)


def balancing_weights(examples: list[Example], source_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Per-image training weights: every labelled source (by its top-level name) weighs the same in total (or as
    `source_weights` says, 1 for a source it does not name), and
    within a source each class it has weighs the same, so neither a large source nor a source's class balance
    becomes what the model learns. Sub-sources (`adult/NIH ChestX-ray14`) keep their share of their source's
    class: one that gives a single class (ieee8023: pneumonia only) must not carry half its source's weight,
    or its look would become "pneumonia". Normalised to a mean of 1."""
    wanted = source_weights or {}
    sources = [example.source.split("/")[0] for example in examples]
    cells = Counter(zip(sources, (example.label for example in examples), strict=True))
    labels_of = Counter(source for source, _ in cells)
    weights = np.array(
        [
            wanted.get(s, 1.0) / (len(labels_of) * labels_of[s] * cells[(s, e.label)])
            for s, e in zip(sources, examples, strict=True)
        ],
        np.float64,
    )
    return np.asarray(weights * len(examples) / weights.sum(), np.float32)
