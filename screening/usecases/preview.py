"""`screen preview`: the image the active model sees for a file, through the pipeline every scorer shares."""

from __future__ import annotations

from pathlib import Path

import cv2

from screening.errors import InvalidRequest, ScreeningError
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import ModelInput, prepare_file
from screening.model.preprocessing import PreprocessSpec
from screening.usecases.context import Services, active_model

PREVIEW_FORMATS = (".png", ".jpg", ".jpeg")


class PictureError(ScreeningError):
    """A picture of a file for people (the model's view, a heatmap) that cannot be made or written."""


class BadPreviewTarget(PictureError, InvalidRequest):
    pass


def model_view(services: Services, file: Path) -> tuple[ModelInput, PreprocessSpec]:
    """What the active version's model is fed for `file`; ImageRejected says why there is nothing to feed it."""
    spec = active_model(services).preprocessing
    return prepare_file(file, spec, services.settings.image_limits), spec


def check_image_target(output: Path) -> None:
    """A picture can be written there: a .png or .jpg name in a folder that exists."""
    if output.suffix.lower() not in PREVIEW_FORMATS:
        raise BadPreviewTarget(f"{output} must end in {' or '.join(PREVIEW_FORMATS)}")
    if not output.parent.is_dir():
        raise BadPreviewTarget(f"folder {output.parent} does not exist")


def write_preview(services: Services, file: Path, output: Path) -> tuple[PreprocessSpec, tuple[int, int]]:
    """Write the exact image the model sees (before the in-graph normalisation) to `output`: its spec and size."""
    check_image_target(output)
    try:
        prepared, spec = model_view(services, file)
    except ImageRejected as problem:
        raise PictureError(f"{problem.status}: {problem.reason}") from None
    if not cv2.imwrite(str(output), prepared.image):
        raise PictureError(f"could not write {output}")
    return spec, (prepared.image.shape[1], prepared.image.shape[0])
