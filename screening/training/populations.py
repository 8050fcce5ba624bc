"""Operating points per population, and the age-group estimate, for a trained network (model.population).

- Each population (children, adults) gets its own temperature, fitted on its validation films only, and the
  highest threshold that keeps its target sensitivity on every one of its sources (so on all of them together).
- How far those validation figures flatter the choice is measured by patient-wise cross-validation on the same
  films: temperature and threshold chosen on the other folds, sensitivity and specificity counted on the held-out
  fold. (The network trained on the training side, so its scores there cannot stand in for unseen films.)
- The age-group estimate is a linear probe on the network's pooled features, fitted on the training side (each
  image's population is its source's) and tested on the validation side, per source: how many it places right,
  wrong, or not at all (those get the more sensitive operating point). Each training film is seen twice: as it
  is, and acquired otherwise (JPEG-compressed again, blurred, or taken at a lower resolution), since the sources
  differ in exactly such ways (children's films here are 224-px JPEGs, adults' 512-px PNGs) and a hospital's
  films in others: the estimate must tell children from adults, not one source's files from another's. Folders of
  films of known population (other sizes or formats of the same population) can be added for the estimate alone;
  their files of validation-side patients are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from screening.config import ImageLimits
from screening.errors import InvalidRequest
from screening.hashing import sha256_hex
from screening.model.calibration import fit_temperature, probabilities
from screening.model.figures import BinaryMetrics, CrossValidated, Metrics, PopulationFigures
from screening.model.infer import Classifier
from screening.model.manifest import AddedFolder, EstimateRecord, EstimateTest, PointRecord, PopulationsRecord
from screening.model.population import ESTIMATE_VERSION, AgeGroupEstimate, OperatingPoint, PopulationPolicy
from screening.model.preprocessing import PreprocessSpec
from screening.model.probe import fit_probe
from screening.training.metrics import binary_metrics, metrics_by_source, threshold_for_every_group, with_intervals
from screening.training.split import Example, Split, patient_of
from screening.training.stream import LabelledImages
from screening.vocabulary import Population

REGULARISATION = 0.05  # the estimate's C, as the gate's
ADULT_FROM, CHILD_BELOW = 0.9, 0.1  # P(adult) at or above: adult; below: child; between: not placed
FOLDS = 5


@dataclass(frozen=True)
class FittedPopulations:
    points: dict[Population, OperatingPoint]
    estimate: AgeGroupEstimate
    described: PopulationsRecord  # the manifest's `populations`: points, targets, the estimate and its test
    # validation metrics, each image at its population's point: pooled, per source (with intervals) and per
    # population (with the cross-validated figures)
    metrics: Metrics
    validation_scores: np.ndarray  # each validation image's probability at its population's point

    @property
    def fallback(self) -> OperatingPoint:
        """The more sensitive population's point: the version's own threshold and temperature, for an image the
        estimate cannot place."""
        return self.points[PopulationPolicy(self.points).most_sensitive]

    def over(self, metrics: Metrics) -> Metrics:
        """`metrics` with the validation figures replaced by each image's at its population's point."""
        found = self.metrics
        return replace(
            metrics,
            validation=found.validation,
            validation_by_source=found.validation_by_source,
            populations=found.populations,
        )


def population_of(example: Example, populations: dict[str, Population]) -> Population:
    """An image's population is its source's (by the source's top-level name)."""
    return populations[example.source.split("/")[0]]


def acquired_otherwise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The model's input as another site's film might give it: JPEG-compressed again, blurred, or at a lower
    resolution brought back to size."""
    way = rng.integers(3)
    if way == 0:
        quality = int(rng.integers(30, 95))
        encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        return np.asarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
    if way == 1:
        return cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.5)))
    scale = float(rng.uniform(0.4, 0.8))
    smaller = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.resize(smaller, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def pooled(
    classifier: Classifier,
    examples: list[Example],
    spec: PreprocessSpec,
    limits: ImageLimits,
    batch: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The logit and pooled features of every image, end to end as the worker reads it, streamed a batch at a time;
    with `rng`, of each image acquired otherwise."""
    logits, features = [], []
    for images in LabelledImages(examples, spec, limits, batch).images():
        if rng is not None:
            images = np.stack([acquired_otherwise(image.astype(np.uint8), rng) for image in images])
        logit, feature = classifier.logits_and_features(images)
        logits.append(logit)
        features.append(feature)
    return np.concatenate(logits), np.concatenate(features)


def choose_point(labels: np.ndarray, logits: np.ndarray, sources: np.ndarray, target: float) -> OperatingPoint:
    """The temperature fitted on these films, and the highest threshold keeping `target` sensitivity on each source."""
    temperature = fit_temperature(labels, logits)
    scores = probabilities(logits, temperature)
    return OperatingPoint(threshold_for_every_group(labels, scores, sources, target), temperature)


def patient_folds(patients: list[str], folds: int, seed: int) -> Iterator[np.ndarray]:
    """Boolean masks of `folds` held-out folds, no patient in two."""
    unique = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[index]: rank % folds for rank, index in enumerate(order)}
    assigned = np.array([fold_of[patient] for patient in patients])
    for fold in range(folds):
        yield assigned == fold


def cross_validated(
    labels: np.ndarray, logits: np.ndarray, sources: np.ndarray, patients: list[str], target: float, seed: int
) -> CrossValidated:
    """Each film flagged or not by a point chosen without it (patient-wise folds); sensitivity and specificity over
    all films, and per source."""
    flagged = np.zeros(labels.shape, bool)
    for held_out in patient_folds(patients, FOLDS, seed):
        fitting = ~held_out
        if not labels[fitting].any():
            continue
        point = choose_point(labels[fitting], logits[fitting], sources[fitting], target)
        flagged[held_out] = probabilities(logits[held_out], point.temperature) >= point.threshold

    def rates(members: np.ndarray) -> BinaryMetrics:
        positives, negatives = labels[members] == 1, labels[members] == 0
        return BinaryMetrics(
            images=int(members.sum()),
            sensitivity=float(flagged[members][positives].mean()) if positives.any() else None,
            specificity=float(1 - flagged[members][negatives].mean()) if negatives.any() else None,
        )

    groups = {"all": rates(np.ones(labels.shape, bool))} | {
        source: rates(sources == source) for source in sorted(set(sources))
    }
    return CrossValidated(FOLDS, groups)


def fit_age_estimate(train_features: np.ndarray, train_populations: np.ndarray) -> AgeGroupEstimate:
    probe = fit_probe(train_features, (train_populations == Population.ADULT).astype(int), REGULARISATION)
    return AgeGroupEstimate(**vars(probe), adult_from=ADULT_FROM, child_below=CHILD_BELOW)


def estimate_test(
    estimate: AgeGroupEstimate, features: np.ndarray, truth: np.ndarray, sources: np.ndarray
) -> dict[str, EstimateTest]:
    """Per validation source: placed right, placed wrong, not placed."""
    placed = np.array([estimate.place(float(score)) for score in estimate.scores(features)], object)
    tested = {}
    for source in sorted(set(sources)):
        members = sources == source
        right = int((placed[members] == truth[members]).sum())
        unplaced = int(sum(1 for value in placed[members] if value is None))
        tested[source] = EstimateTest(
            images=int(members.sum()),
            right=right,
            wrong=int(members.sum()) - right - unplaced,
            not_placed=unplaced,
            accuracy=right / int(members.sum()),
        )
    return tested


IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".dcm"}


def estimate_examples(folder: Path, population: Population, validation: list[Example]) -> tuple[list[Example], int]:
    """The images under `folder` (all of `population`) for fitting the estimate, less those of validation-side
    patients where the file name says the patient (Kermany names); and how many were left out so."""
    kept_apart = {example.patient.split(":", 1)[-1] for example in validation}
    examples, left_out = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            patient = patient_of(path.name)
        except ValueError:
            patient = path.name
        if patient in kept_apart:
            left_out += 1
            continue
        examples.append(Example(path, int(population == Population.ADULT), patient, sha256_hex(path)))
    return examples, left_out


def fit_populations(
    classifier: Classifier,
    split: Split,
    spec: PreprocessSpec,
    limits: ImageLimits,
    populations: dict[str, Population],
    targets: dict[Population, float],
    seed: int,
    batch: int = 32,
    estimate_folders: tuple[tuple[Population, Path], ...] = (),
) -> FittedPopulations:
    """Operating points per population on the validation side, the age-group estimate on the training side's
    features (tested on the validation side), and every figure per population and source. The figures are on the
    films the points were chosen on (the cross-validated ones excepted)."""
    missing = {example.source.split("/")[0] for example in split.train + split.validation} - set(populations)
    if missing:
        raise InvalidRequest(f"no population given for source(s) {', '.join(sorted(missing))}")
    logits, features = pooled(classifier, split.validation, spec, limits, batch)
    labels, sources = split.labels("validation"), split.sources("validation")
    truth = np.array([population_of(example, populations) for example in split.validation], object)
    fitting = [(example, population_of(example, populations)) for example in split.train]
    added = {}
    for population, folder in estimate_folders:
        examples, left_out = estimate_examples(folder, population, split.validation)
        fitting += [(example, population) for example in examples]
        added[str(folder.resolve())] = AddedFolder(population.value, len(examples), left_out)
    fitting_examples = [example for example, _ in fitting]
    as_they_are = pooled(classifier, fitting_examples, spec, limits, batch)[1]
    otherwise = pooled(classifier, fitting_examples, spec, limits, batch, np.random.default_rng(seed))[1]
    fitting_truth = np.array([population for _, population in fitting] * 2, object)
    estimate = fit_age_estimate(np.concatenate([as_they_are, otherwise]), fitting_truth)

    points: dict[Population, OperatingPoint] = {}
    by_population: dict[str, PopulationFigures] = {}
    scores, thresholds = np.zeros(labels.shape), np.zeros(labels.shape)
    patients = [example.patient for example in split.validation]
    for population in Population:
        members = truth == population
        if not members.any():
            raise InvalidRequest(f"no validation films of the {population} population")
        target = targets[population]
        point = points[population] = choose_point(labels[members], logits[members], sources[members], target)
        scores[members] = probabilities(logits[members], point.temperature)
        thresholds[members] = point.threshold
        member_patients = [patient for patient, member in zip(patients, members, strict=True) if member]
        by_population[population.value] = PopulationFigures(
            **vars(with_intervals(labels[members], scores[members], thresholds[members])),
            cross_validated=cross_validated(
                labels[members], logits[members], sources[members], member_patients, target, seed
            ),
        )
    metrics = Metrics(
        validation=binary_metrics(labels, scores, thresholds),
        validation_by_source=metrics_by_source(labels, scores, thresholds, sources, intervals=True),
        populations=by_population,
    )
    tested = estimate_test(estimate, features, truth, sources)
    described = PopulationsRecord(
        points={
            population.value: PointRecord(point.threshold, point.temperature, targets[population])
            for population, point in points.items()
        },
        sources={name: population.value for name, population in sorted(populations.items())},
        estimate=EstimateRecord(
            version=ESTIMATE_VERSION,
            adult_from=ADULT_FROM,
            child_below=CHILD_BELOW,
            method=f"logistic regression (balanced, C={REGULARISATION}) on the classifier's standardised pooled "
            "backbone features",
            fitted_on={population.value: int((fitting_truth == population).sum()) for population in Population},
            added_folders=added,
            test=tested,
        ),
    )
    return FittedPopulations(points, estimate, described, metrics, scores)
