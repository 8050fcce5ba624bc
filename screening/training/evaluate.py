"""Scoring labelled images exactly as the worker would, and the metrics a version is judged by."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from screening.config import ImageLimits
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import prepare_file
from screening.model.figures import CheckFigures, Excluded, PopulationCheck
from screening.model.infer import Classifier
from screening.model.population import Decision, known_population
from screening.model.preprocessing import PreprocessSpec
from screening.training.labelled import LabelledDataError, labelled_folder
from screening.training.metrics import with_intervals
from screening.vocabulary import ImageStatus, Population


@dataclass(frozen=True)
class ScoredFolder:
    """The images of a labelled folder the worker would score, each at its operating point; and the others."""

    labels: np.ndarray
    probabilities: np.ndarray
    thresholds: np.ndarray  # of each image's operating point
    decisions: list[Decision]
    excluded: list[Excluded]  # corrupt, not a radiograph, refused by the gate: with the status and reason


def score_labelled_folder(
    classifier: Classifier,
    spec: PreprocessSpec,
    folder: Path,
    limits: ImageLimits = ImageLimits(),
    population: Population | None = None,
) -> ScoredFolder:
    """Every image as the worker would score it: its operating point from its DICOM header's age, else `population`
    (as `screen enqueue --population`), else the version's age-group estimate."""
    labels, images, names, known = [], [], [], []
    excluded: list[Excluded] = []
    for path, label in labelled_folder(folder):
        try:
            prepared = prepare_file(path, spec, limits)
        except ImageRejected as problem:
            excluded.append(Excluded(path.name, str(problem.status), problem.reason))
        else:
            images.append(prepared.image)
            labels.append(label)
            names.append(path.name)
            known.append(known_population(prepared.age_years, population))
    if not images:
        raise LabelledDataError(f"none of the files of {folder} can be scored")
    assessed = classifier.assess(np.stack(images), known)
    for index, name in enumerate(names):
        if refusal := assessed.refusal(index):
            excluded.append(Excluded(name, str(ImageStatus.SKIPPED), refusal, gate=True))
    kept = ~assessed.refused
    scored_labels = np.array(labels, int)[kept]
    if not scored_labels.size or scored_labels.min() == scored_labels.max():
        raise LabelledDataError(
            f"after leaving out {len(excluded)} file(s) that cannot be scored, {folder} no longer has images of both "
            "classes"
        )
    decisions = [decision for decision, keep in zip(assessed.decisions, kept, strict=True) if keep]
    return ScoredFolder(
        scored_labels,
        assessed.probabilities[kept],
        np.array([decision.point.threshold for decision in decisions]),
        decisions,
        excluded,
    )


def folder_metrics(
    classifier: Classifier,
    spec: PreprocessSpec,
    folder: Path,
    rounds: int = 1000,
    limits: ImageLimits = ImageLimits(),
    population: Population | None = None,
) -> CheckFigures:
    """Metrics with 95% intervals on FOLDER/NORMAL and FOLDER/PNEUMONIA, each image at its operating point, and per
    population where the version has one operating point per population (with how each image's population was
    decided); files the worker would not score are listed under `excluded` (those the gate refused are counted in
    `gate_refused` too), and both classes must remain."""
    scored = score_labelled_folder(classifier, spec, folder, limits, population)
    labels, scores, thresholds = scored.labels, scored.probabilities, scored.thresholds
    by_population = {}
    if classifier.policy.per_population:
        populations = np.array([str(decision.population) for decision in scored.decisions])
        for group in Population:
            members = populations == str(group)
            if members.any():
                decided_by = Counter(
                    str(d.basis) for d, member in zip(scored.decisions, members, strict=True) if member
                )
                found = with_intervals(labels[members], scores[members], thresholds[members], rounds)
                by_population[str(group)] = PopulationCheck(**vars(found), decided_by=dict(decided_by))
    return CheckFigures(  # both classes are there (score_labelled_folder refuses a folder without): with intervals
        **vars(with_intervals(labels, scores, thresholds, rounds)),
        bootstrap_rounds=rounds,
        gate_refused=sum(1 for file in scored.excluded if file.gate),
        excluded=scored.excluded,
        by_population=by_population,
    )
