"""Fitting the applicability gate (model.gate) of a trained classifier, and testing it on images kept apart.

In scope: the frontal films of the training side, and mild variations of them (a little rotation,
zoom and exposure, as films come). Out of scope, for fitting: part of an out-of-scope folder (lateral
chest films, CT slices, other images; split by patient as its manifest names them), each in a few
variations, and images made from frontal films and drawn (training.gate_images). The test uses the other part
of the folder, images made the same ways from the validation side's films with other random draws,
and the validation side's frontal films per source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from screening.config import ImageLimits
from screening.imaging.preprocess import preprocess
from screening.model.gate import GATE_VERSION, ApplicabilityGate
from screening.model.infer import Classifier
from screening.model.manifest import GateRecord, GateTest, KindRefusals, OutOfScopeFolder
from screening.model.preprocessing import PreprocessSpec
from screening.model.probe import fit_probe
from screening.training.gate_images import Made, gate_images, out_of_scope_images, out_of_scope_licences
from screening.training.split import Split

THRESHOLD = 0.5  # on the gate's balanced logistic regression
REGULARISATION = 0.05  # its C
VARIATIONS = 6  # of each real out-of-scope image fitted on
CHUNK = 64


def gate_features(classifier: Classifier, made: Made, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's pooled features of every image that the pipeline lets through, made a chunk at a time so
    memory does not grow with the data; and which images those were."""
    features, kept = [], []

    def chunks() -> Iterator[list[tuple[int, np.ndarray]]]:
        chunk = []
        for index, make in enumerate(made.films):
            film = make()
            if film is not None and film.size and film.max() > film.min():
                chunk.append((index, preprocess(film, spec)))
            if len(chunk) == CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    for chunk in chunks():
        features.append(classifier.logits_and_features(np.stack([image for _, image in chunk]))[1])
        kept += [index for index, _ in chunk]
    return np.concatenate(features), np.array(kept, int)


def _refusals(gate: ApplicabilityGate, scores: np.ndarray, kinds: list[str]) -> dict[str, KindRefusals]:
    refused = gate.refuses(scores)
    counts = {}
    for kind in sorted(set(kinds)):
        members = np.array([k == kind for k in kinds])
        images, refusals = int(members.sum()), int(refused[members].sum())
        counts[kind] = KindRefusals(images, refusals, refusals / max(images, 1))
    return counts


def fit_gate(
    classifier: Classifier,
    split: Split,
    out_of_scope: Path,
    spec: PreprocessSpec,
    limits: ImageLimits,
    seed: int,
    commercial_use_only: bool = False,
) -> tuple[ApplicabilityGate, GateRecord]:
    """The gate for `classifier`, and its description for the manifest: what it was fitted on and how it did on
    images kept apart (refusal rates per kind, and of frontal films per validation source)."""
    fit_part, held_out = out_of_scope_images(out_of_scope, commercial_use_only)
    fitting = gate_images(split.train, fit_part, VARIATIONS, limits, seed)
    features, kept = gate_features(classifier, fitting, spec)
    probe = fit_probe(features, np.array(fitting.labels)[kept], REGULARISATION)
    gate = ApplicabilityGate(**vars(probe), threshold=THRESHOLD)
    testing = gate_images(split.validation, held_out, 0, limits, seed + 1)
    test_features, test_kept = gate_features(classifier, testing, spec)
    test_kinds = [testing.kinds[index] for index in test_kept]
    by_kind = _refusals(gate, gate.scores(test_features), test_kinds)
    out_of_scope_kinds = [kind for kind in by_kind if not kind.startswith("frontal")]
    refused = sum(by_kind[kind].refused for kind in out_of_scope_kinds)
    images = sum(by_kind[kind].images for kind in out_of_scope_kinds)
    described = GateRecord(
        version=GATE_VERSION,
        threshold=THRESHOLD,
        method="logistic regression (balanced, C=0.05) on the classifier's standardised pooled backbone features",
        fitted_on=dict(Counter(fitting.kinds[index].split(",")[0] for index in kept)),
        out_of_scope_folder=OutOfScopeFolder(
            fitted_on=sorted(image.path.name for image in fit_part),
            held_out=sorted(image.path.name for image in held_out),
            licences=out_of_scope_licences(fit_part),
            refused_by_the_pipeline_rules=int(len(fitting.films) - len(kept)),
        ),
        test=GateTest(
            out_of_scope_refusal_rate=refused / max(images, 1),
            out_of_scope_images=images,
            frontal_refusal_rate={
                kind.removeprefix("frontal, "): counts.refusal_rate
                for kind, counts in by_kind.items()
                if kind.startswith("frontal")
            },
            by_kind=by_kind,
        ),
    )
    return gate, described
