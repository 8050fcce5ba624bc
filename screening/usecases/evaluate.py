"""`screen evaluate`: a registered version on labelled images, scored as the worker would score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from screening.db.registry import get_version
from screening.db.schema import Population
from screening.training.labelled import labelled_folder
from screening.usecases.context import Services

__all__ = ["Population", "evaluate_version"]


def evaluate_version(
    services: Services, version_id: int, folder: Path, rounds: int = 1000, population: Population | None = None
) -> dict[str, Any]:
    """Metrics with 95% intervals, each image at its operating point (and per population, for a version with one
    per population; `population` as `screen enqueue --population`); files the worker would not score are listed
    under `excluded`. The folder is checked before a backend loads."""
    with services.sessions() as session:
        version = get_version(session, version_id)
    labelled_folder(folder, minimum_per_class=1)
    from screening.imaging.preprocess import PreprocessSpec
    from screening.model.infer import Classifier
    from screening.training.evaluate import folder_metrics

    classifier = Classifier.load(Path(version.artifact_path), version.artifact_sha256)
    spec = PreprocessSpec.from_dict(version.preprocessing)
    metrics = folder_metrics(classifier, spec, folder, rounds, services.settings.image_limits, population)
    return {"model_version": version.id, **metrics}
