"""`screen explain`, the review page's heatmap and the DICOM heatmap capture: Grad-CAM of a model version for one
file, in that version's own preprocessing, overlaid on the film."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from screening.imaging.errors import ImageRejected, NotScreenable
from screening.imaging.overlay import DISPLAY_SIDE, display_film, overlay_heatmap
from screening.imaging.pipeline import prepare_radiograph, read_radiograph
from screening.model.population import known_population
from screening.model.registered import RegisteredVersion
from screening.usecases.context import Services, active_model
from screening.usecases.preview import PictureError, check_image_target
from screening.usecases.screen_chunk import process_runtime
from screening.vocabulary import Population

# The DICOM capture's longer side at most: a film's own resolution up to this (CR/DX films are 2,000 to 3,000 px)
CAPTURE_SIDE = 2048


@dataclass(frozen=True)
class Explanation:
    version_id: int
    probability: float
    threshold: float  # of the operating point it was scored at (its population's, where the version has them)
    population: Population | None  # whose point that is: the header's age, else the age-group estimate's
    heatmap: np.ndarray  # the Grad-CAM grid (7 x 7 for a 224-px input), values in [0, 1]
    overlay: np.ndarray  # RGB uint8: the film with the heatmap over it

    @property
    def flagged(self) -> bool:
        return self.probability >= self.threshold


def explain(
    services: Services,
    file: Path,
    version: RegisteredVersion | None = None,
    expected_sha256: str | None = None,
    display_side: int = DISPLAY_SIDE,
) -> Explanation:
    """Probability and heatmap of `file` under `version` (default: the active one); ImageRejected says why a file
    the worker would not score has no heatmap either, or (with `expected_sha256`, a result's) that the file is no
    longer the film that was screened. `display_side`: the overlay's longer side at most."""
    from screening.model.explain import classifier_grad_cam

    version = version or active_model(services)
    radiograph = read_radiograph(file, services.settings.image_limits, expected_sha256)
    image = prepare_radiograph(radiograph, version.preprocessing).image
    classifier = process_runtime(services).classifier_for(version)  # the model this process screens with
    assessed = classifier.assess(image[None], [known_population(radiograph.age_years, None)])
    if refusal := assessed.refusal(0):  # the worker gives it no score: no heatmap either
        raise NotScreenable(refusal)
    decision = assessed.decisions[0]
    heatmap = classifier_grad_cam(classifier.model, image[None])[0]
    return Explanation(
        version.id,
        float(assessed.probabilities[0]),
        decision.point.threshold,
        decision.population,
        heatmap,
        overlay_heatmap(display_film(radiograph, display_side), heatmap),
    )


def write_explanation(services: Services, file: Path, output: Path) -> Explanation:
    """`screen explain FILE -o heat.png`."""
    check_image_target(output)
    try:
        explanation = explain(services, file)
    except ImageRejected as problem:
        raise PictureError(f"{problem.status}: {problem.reason}") from None
    if not cv2.imwrite(str(output), cv2.cvtColor(explanation.overlay, cv2.COLOR_RGB2BGR)):
        raise PictureError(f"could not write {output}")
    return explanation
