"""`screen evaluate`: a registered version on labelled images, scored as the worker would score them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from screening.db.registry import get_version
from screening.model.device import import_backend_quietly
from screening.model.figures import CheckFigures
from screening.model.registered import RegisteredVersion
from screening.training.labelled import labelled_folder
from screening.usecases.context import Services
from screening.usecases.screen_chunk import process_runtime
from screening.vocabulary import Population

__all__ = ["Evaluation", "evaluate_version"]


@dataclass(frozen=True)
class Evaluation:
    model_version: int
    figures: CheckFigures


def evaluate_version(
    services: Services, version_id: int, folder: Path, rounds: int = 1000, population: Population | None = None
) -> Evaluation:
    """Metrics with 95% intervals, each image at its operating point (and per population, for a version with one
    per population; `population` as `screen enqueue --population`); files the worker would not score are listed
    under `excluded`. The folder is checked before a backend loads."""
    with services.sessions() as session:
        version = RegisteredVersion.of(get_version(session, version_id))
    labelled_folder(folder, minimum_per_class=1)
    import_backend_quietly()
    from screening.training.evaluate import folder_metrics

    classifier = process_runtime(services).classifier_for(version)  # as the worker loads it
    figures = folder_metrics(
        classifier, version.preprocessing, folder, rounds, services.settings.image_limits, population
    )
    return Evaluation(version.id, figures)
