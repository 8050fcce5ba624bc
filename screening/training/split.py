"""Patient-wise, stratified train/validation split: no patient, and no identical image, on both sides."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screening.hashing import sha256_hex
from screening.model.manifest import DataManifest, SourceCounts, SplitFile
from screening.training.labelled import LABELS, LabelledDataError, labelled_folder

MIN_PATIENTS_PER_CLASS = 5  # enough for a validation side with each class on it and a training side
_PATIENT_PATTERNS = (re.compile(r"^(person\d+)_"), re.compile(r"(?:^|-)IM-(\d+)-"))


@dataclass(frozen=True)
class Example:
    path: Path
    label: int
    patient: str
    sha256: str
    source: str = "data"  # the labelled source it came from (training.sources), reported apart
    licence: str | None = None  # as the source's manifest.csv gives it; None where there is none


def patient_of(filename: str) -> str:
    """`person12_virus_3.jpeg` -> person12; `IM-0115-0001.jpeg` and `NORMAL2-IM-0115-0001-0002.jpeg` -> IM-0115."""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.search(filename)
        if match:
            return match.group(1) if match.group(1).startswith("person") else f"IM-{match.group(1)}"
    raise ValueError(f"no patient id in file name {filename!r}")


def list_examples(root: Path) -> list[Example]:
    """The labelled images of ROOT (training.labelled's rules), each with its patient and content hash."""
    try:
        return [Example(path, label, patient_of(path.name), sha256_hex(path)) for path, label in labelled_folder(root)]
    except ValueError as problem:
        raise LabelledDataError(f"{problem}: training needs Kermany-style names that say the patient") from None


def check_training_folder(root: Path, validation_fraction: float) -> None:
    """Refuse, before any backend loads, a folder that cannot give a patient-wise split of both classes."""
    images = labelled_folder(root)
    for name, label in LABELS.items():
        try:
            patients = {patient_of(path.name) for path, lab in images if lab == label}
        except ValueError as problem:
            raise LabelledDataError(f"{problem}: training needs Kermany-style names that say the patient") from None
        needed = max(MIN_PATIENTS_PER_CLASS, math.ceil(2 / validation_fraction))
        if len(patients) < needed:
            raise LabelledDataError(
                f"{root / name} has images of {len(patients)} patient(s); training needs at least {needed} per class "
                "so that both sides of the patient-wise split hold each class"
            )


def _groups(examples: list[Example]) -> dict[str, str]:
    """Union of patients that share a byte-identical image, so duplicates cannot straddle the split."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    first_patient_of_hash: dict[str, str] = {}
    for example in examples:
        other = first_patient_of_hash.setdefault(example.sha256, example.patient)
        parent[find(example.patient)] = find(other)
    return {example.patient: find(example.patient) for example in examples}


@dataclass(frozen=True)
class Split:
    """The two sides of one training run: never a patient, nor an identical image, on both."""

    train: list[Example]
    validation: list[Example]

    def labels(self, side: str) -> np.ndarray:
        return np.array([example.label for example in getattr(self, side)])

    def sources(self, side: str) -> np.ndarray:
        return np.array([example.source for example in getattr(self, side)])

    def manifest(self) -> DataManifest:
        """What reproduces the split: every file's hash, label, patient and side."""
        rows = [
            SplitFile(file=e.path.name, label=e.label, patient=e.patient, sha256=e.sha256, split=side, source=e.source)
            for side, examples in (("train", self.train), ("validation", self.validation))
            for e in examples
        ]
        per_source: dict[str, Counter[str]] = {}
        licences: dict[str, Counter[str]] = {}
        for side, examples in (("train", self.train), ("validation", self.validation)):
            for example in examples:
                per_source.setdefault(example.source, Counter())[side] += 1
                licences.setdefault(example.source, Counter())[example.licence or "not recorded"] += 1
        return DataManifest(
            files=rows,
            train_images=len(self.train),
            train_patients=len({e.patient for e in self.train}),
            validation_images=len(self.validation),
            validation_patients=len({e.patient for e in self.validation}),
            sources={name: SourceCounts(counts["train"], counts["validation"]) for name, counts in per_source.items()},
            licences={name: dict(counts) for name, counts in licences.items()},
        )


def patient_split(examples: list[Example], validation_fraction: float = 0.2, seed: int = 42) -> Split:
    group_of = _groups(examples)
    label_of_group: dict[str, int] = {}
    for example in examples:  # a group with any pneumonia image is stratified as pneumonia
        group = group_of[example.patient]
        label_of_group[group] = max(label_of_group.get(group, 0), example.label)
    rng = random.Random(seed)
    validation_groups: set[str] = set()
    for label in sorted(set(label_of_group.values())):
        groups = sorted(g for g, lab in label_of_group.items() if lab == label)
        rng.shuffle(groups)
        validation_groups.update(groups[: round(len(groups) * validation_fraction)])
    train = [e for e in examples if group_of[e.patient] not in validation_groups]
    validation = [e for e in examples if group_of[e.patient] in validation_groups]
    return Split(train, validation)
