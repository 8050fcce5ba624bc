"""Does the flag survive what does not change the diagnosis? Each validation film scored as it is and in variations a
reader would call the same film (mirrored, turned 10 degrees, cropped by 5%, exposed a little brighter or darker),
each at the film's own operating point; the share of films whose flag stays the same, per population.

A variation that the gate refuses, or whose flag differs from the film's, counts as changed: either way the reader
would not get the same answer for the same patient.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import cv2
import numpy as np

from screening.config import ImageLimits
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import read_radiograph
from screening.imaging.preprocess import gamma_table, preprocess, to_8bit
from screening.model.figures import Consistency, FlagKept, PopulationConsistency
from screening.model.infer import Classifier
from screening.model.population import known_population
from screening.model.preprocessing import PreprocessSpec
from screening.training.gate_images import warp
from screening.training.split import Example
from screening.vocabulary import Population

Film = np.ndarray
TARGET = 0.95  # of films whose flag stays the same under each variation (issue #20)


def _cropped(film: Film) -> Film:
    height, width = film.shape
    top, left = round(height * 0.025), round(width * 0.025)
    return film[top : height - top, left : width - left]


def _gamma(exponent: float) -> Callable[[Film], Film]:
    table = gamma_table(1 / exponent)  # the preprocessing's recipe takes the exponent's inverse
    return lambda film: cv2.LUT(film, table)


VARIATIONS: dict[str, Callable[[Film], Film]] = {
    "mirrored": lambda film: cv2.flip(film, 1),
    "turned +10 degrees": lambda film: warp(film, 10),
    "turned -10 degrees": lambda film: warp(film, -10),
    "cropped by 5%": _cropped,
    "brighter (gamma 0.8)": _gamma(0.8),
    "darker (gamma 1.25)": _gamma(1.25),
}


def flag_consistency(
    classifier: Classifier,
    films: list[Example],
    populations: dict[str, Population],
    spec: PreprocessSpec,
    limits: ImageLimits,
) -> Consistency:
    """Per population (by each film's top-level source, as `populations` maps it; "all" for a source without one):
    how many films, and per variation how many keep their flag and how many the gate refuses."""
    films_of: Counter[str] = Counter()
    same_flag: dict[str, Counter[str]] = {}
    refusals: dict[str, Counter[str]] = {}
    for example in films:
        try:
            film = to_8bit(read_radiograph(example.path, limits, example.sha256).pixels)
        except ImageRejected:
            continue
        population = populations.get(example.source.split("/", 1)[0])
        images = np.stack([preprocess(film, spec)] + [preprocess(vary(film), spec) for vary in VARIATIONS.values()])
        assessed = classifier.assess(images, [known_population(None, population)] * len(images))
        thresholds = np.array([decision.point.threshold for decision in assessed.decisions])
        flags = assessed.probabilities >= thresholds
        if assessed.refused[0]:  # the film itself is not scored: nothing to compare
            continue
        group = str(population or "all")
        films_of[group] += 1
        for index, name in enumerate(VARIATIONS, start=1):
            refused = bool(assessed.refused[index])
            refusals.setdefault(group, Counter())[name] += int(refused)
            same_flag.setdefault(group, Counter())[name] += int(not refused and bool(flags[index] == flags[0]))
    return Consistency(
        TARGET,
        {
            group: PopulationConsistency(
                films,
                {
                    name: FlagKept(same_flag[group][name], refusals[group][name], same_flag[group][name] / films)
                    for name in VARIATIONS
                },
            )
            for group, films in films_of.items()
        },
    )
