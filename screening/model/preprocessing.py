"""The preprocessing spec: named and versioned, stored with every model version it trained (imaging.preprocess
applies it). Here, below the imaging code, so that a version's manifest holds it as a record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pydantic import ConfigDict

from screening.errors import InvalidRequest


@dataclass(frozen=True)
class PreprocessSpec:
    """grayscale -> min-max -> Gaussian blur -> median -> CLAHE -> gamma -> 3 channels -> stretched resize.

    The published seed pipeline. Resizing stretches (no aspect ratio kept) because the
    training set was stretched to 224x224. Gamma follows the OpenCV recipe
    out = 255 * (in / 255) ** (1 / gamma). The ImageNet normalisation the backbone needs
    (keras' resnet50.preprocess_input) belongs to the model, not to this spec.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # an unknown parameter is another network, not ours

    name: str = "cxr-seed-v1"
    gaussian_kernel: int = 3
    median_kernel: int = 3
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    gamma: float = 0.7
    size: int = 224
    interpolation: str = "area"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessSpec:
        """InvalidRequest for a parameter this code does not know."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise InvalidRequest(
                f"preprocessing with parameters this version does not know: {', '.join(sorted(unknown))}"
            )
        return cls(**values)


# The specs a training run can name (TrainingConfig.preprocessing). A model version stores its own spec, so a
# spec added here never changes how an existing version is served.
SPECS = {
    "cxr-seed-v1": PreprocessSpec(),
    # min-max and the stretch to 224 only: the backbone sees films as close to ImageNet's statistics as they come
    "plain-v1": PreprocessSpec(name="plain-v1", gaussian_kernel=1, median_kernel=1, clahe_clip_limit=0.0, gamma=1.0),
}
# plain-v1 at 320 px: twice the pixels for the detail of adult films (512 px here); children's 224-px files upsampled
SPECS["plain-v1-320"] = replace(SPECS["plain-v1"], name="plain-v1-320", size=320)


def named_spec(stored: PreprocessSpec) -> PreprocessSpec:
    """A version's stored spec, accepted only as one of SPECS exactly: a name must say what its parameters do (no
    `plain-v1` with CLAHE), and no parameter can fall outside what was tested (a gamma of -3, a 64-px input).
    InvalidRequest says which part differs."""
    if stored.name not in SPECS:
        raise InvalidRequest(f"preprocessing {stored.name!r} is none of {', '.join(SPECS)}")
    expected, given = SPECS[stored.name].to_dict(), stored.to_dict()
    differing = sorted(key for key in expected if given[key] != expected[key])
    if differing:
        raise InvalidRequest(
            f"preprocessing {stored.name!r} with other parameters than its own ({', '.join(differing)})"
        )
    return SPECS[stored.name]
