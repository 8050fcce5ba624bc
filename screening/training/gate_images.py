"""The images the applicability gate (training.gate) is fitted and tested on: the frontal films of a split, an
out-of-scope folder split by patient, images made from frontal films (one half or one lung, turned 25 degrees or
more, upside down, inverted, cropped to a patch, clipped to black and white) and drawn ones (noise, text pages,
drawings). Each is made only when its features are taken, from a draw of its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from screening.config import ImageLimits
from screening.hashing import sha256_hex
from screening.imaging.errors import ImageRejected
from screening.imaging.pipeline import read_radiograph
from screening.imaging.preprocess import to_8bit
from screening.training.manifest_csv import UNDESCRIBED, described_files, for_commercial_use
from screening.training.split import Example

Film = np.ndarray  # one 8-bit grayscale image, any size
HELD_OUT_FRACTION = 0.4  # of each out-of-scope kind's patients, kept for the test
MADE_PER_KIND = 60  # images made from frontal films per way of making them (and drawn: noise, text, drawings)
MADE_SHARE = 4  # ... but at most a quarter as many as the frontal films they are made from


@dataclass(frozen=True)
class OutOfScopeImage:
    path: Path
    kind: str  # lateral_cxr, ct_slice, other, ... (the folder it is in)
    group: str  # its patient where the manifest names one, else the file: never on both sides
    licence: str | None = None  # as the folder's manifest.csv gives it


def out_of_scope_images(
    folder: Path, commercial_use_only: bool = False
) -> tuple[list[OutOfScopeImage], list[OutOfScopeImage]]:
    """The folder's images for fitting and for the test: per kind, a stable share of its patients held out. With
    `commercial_use_only`, images whose manifest licence forbids commercial use are left out."""
    described = described_files(folder)
    images = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in {".png", ".jpg", ".jpeg", ".dcm"}:
            relative = path.relative_to(folder).as_posix()
            kind = path.parent.name if path.parent != folder else "other"
            notes = described.get(path.resolve(), UNDESCRIBED)
            group = f"{kind}:{notes.patient}" if notes.patient else f"{kind}:{relative}"
            images.append(OutOfScopeImage(path, kind, group, notes.licence))
    images = for_commercial_use(images, commercial_use_only)
    fit: list[OutOfScopeImage] = []
    held_out: list[OutOfScopeImage] = []
    for kind in sorted({image.kind for image in images}):
        groups = sorted({image.group for image in images if image.kind == kind}, key=lambda g: sha256_hex(g.encode()))
        kept_apart = set(groups[: max(1, round(len(groups) * HELD_OUT_FRACTION))]) if len(groups) > 1 else set()
        for image in (image for image in images if image.kind == kind):
            (held_out if image.group in kept_apart else fit).append(image)
    return fit, held_out


def out_of_scope_licences(images: list[OutOfScopeImage]) -> dict[str, int]:
    """How many of `images` are under each licence (the card lists them with the training data's)."""
    return dict(Counter(image.licence or "not recorded" for image in images))


def warp(film: Film, degrees: float, scale: float = 1.0) -> Film:
    """The film turned by `degrees` and scaled about its centre, what leaves the frame black."""
    height, width = film.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, scale)
    return cv2.warpAffine(film, matrix, (width, height), borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _exposure(film: Film, rng: np.random.Generator) -> Film:
    gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
    return np.clip(255.0 * (film / 255.0) ** gamma, 0, 255).astype(np.uint8)


def as_films_come(film: Film, rng: np.random.Generator) -> Film:
    """A mild variation of an image: what a different exposure or positioning gives, not another kind of image."""
    return _exposure(warp(film, rng.uniform(-10, 10), rng.uniform(0.9, 1.1)), rng)


def _patch(film: Film, rng: np.random.Generator) -> Film:
    height, width = film.shape
    side = int(min(height, width) * rng.uniform(0.2, 0.4))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    return film[top : top + side, left : left + side]


def _clipped(film: Film, rng: np.random.Generator) -> Film:
    gain = rng.uniform(4, 8)
    return np.asarray(np.clip((film.astype(np.float32) - 128) * gain + 128 + rng.uniform(-60, 60), 0, 255), np.uint8)


def _half(film: Film, rng: np.random.Generator) -> Film:
    """The top or bottom half of a film, or one side of it (one lung): not a chest film to screen whole."""
    height, width = film.shape
    return (film[: height // 2], film[height // 2 :], film[:, : width // 2], film[:, width // 2 :])[rng.integers(4)]


def _turned_past_twenty(film: Film, rng: np.random.Generator) -> Film:
    return warp(film, float(rng.choice([-1, 1]) * rng.uniform(25, 70)), 1.0)


# Ways of making an out-of-scope image from a frontal film
FROM_FILMS: dict[str, Callable[[Film, np.random.Generator], Film]] = {
    "half a film or one lung": _half,
    "turned 25 to 70 degrees": _turned_past_twenty,
    "turned a quarter": lambda film, rng: cv2.rotate(
        film, (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE)[rng.integers(2)]
    ),
    "upside down": lambda film, rng: cv2.flip(film, 0 if rng.integers(2) else -1),
    "inverted": lambda film, rng: 255 - film,
    "cropped to a patch": _patch,
    "clipped": _clipped,
}


def _noise(rng: np.random.Generator) -> Film:
    size = int(rng.integers(128, 512))
    noise = rng.uniform(0, 255, (size, size)).astype(np.float32)
    sigma = float(rng.choice([0, 1, 4, 16]))
    return to_8bit(cv2.GaussianBlur(noise, (0, 0), sigma) if sigma else noise)


def _text_page(rng: np.random.Generator) -> Film:
    page = np.full((int(rng.integers(600, 1100)), int(rng.integers(500, 850))), 245, np.uint8)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz      "))
    for line in range(30, page.shape[0] - 20, int(rng.integers(18, 30))):
        text = "".join(rng.choice(letters, int(rng.integers(30, 60))))
        cv2.putText(page, text, (20, line), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 20, 1, cv2.LINE_AA)
    return page


def _drawing(rng: np.random.Generator) -> Film:
    size = int(rng.integers(200, 600))
    canvas = np.full((size, size), int(rng.integers(0, 256)), np.uint8)
    for _ in range(int(rng.integers(3, 15))):
        centre = tuple(int(v) for v in rng.integers(0, size, 2))
        shade = int(rng.integers(0, 256))
        if rng.integers(2):
            cv2.circle(canvas, centre, int(rng.integers(5, size // 3)), shade, -1)
        else:
            corner = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(canvas, centre, corner, shade, -1)
    return cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.5, 3)))


DRAWINGS: dict[str, Callable[[np.random.Generator], Film]] = {
    "noise": _noise,
    "text page": _text_page,
    "drawing": _drawing,
}


def _film(path: Path, limits: ImageLimits) -> Film | None:
    """The file's image as 8 bits, or None for a file the pipeline refuses before any model sees it."""
    try:
        return to_8bit(read_radiograph(path, limits).pixels)
    except ImageRejected:
        return None


@dataclass
class Made:
    """Images for the gate, in order, with what each one is; `films` makes them only when features are taken."""

    labels: list[int]
    kinds: list[str]
    films: list[Callable[[], Film | None]]

    def add(self, label: int, kind: str, film: Callable[[], Film | None]) -> None:
        self.labels.append(label)
        self.kinds.append(kind)
        self.films.append(film)


def _as_it_is(film: Film, rng: np.random.Generator) -> Film:
    return film


def _from_file(
    path: Path, limits: ImageLimits, way: Callable[[Film, np.random.Generator], Film], rng: np.random.Generator
) -> Callable[[], Film | None]:
    """What makes the image when it is needed: the file's film, made over `way` with a draw of its own."""
    seed = int(rng.integers(2**31))

    def make() -> Film | None:
        film = _film(path, limits)
        return None if film is None else way(film, np.random.default_rng(seed))

    return make


def _drawn(draw: Callable[[np.random.Generator], Film], rng: np.random.Generator) -> Callable[[], Film | None]:
    seed = int(rng.integers(2**31))
    return lambda: draw(np.random.default_rng(seed))


def gate_images(
    frontal: list[Example], out_of_scope: list[OutOfScopeImage], variations: int, limits: ImageLimits, seed: int
) -> Made:
    """Frontal films (label 1) with mild variations of some, against the out-of-scope images in `variations`
    variations each, images made from frontal films and drawn ones (label 0)."""
    rng = np.random.default_rng(seed)
    made = Made([], [], [])
    for example in frontal:
        made.add(1, f"frontal, {example.source}", _from_file(example.path, limits, _as_it_is, rng))
    for index in rng.permutation(len(frontal))[: max(len(frontal) // 10, 1)]:
        made.add(1, "frontal, varied", _from_file(frontal[index].path, limits, as_films_come, rng))
    for image in out_of_scope:
        made.add(0, image.kind, _from_file(image.path, limits, _as_it_is, rng))
        for _ in range(variations):
            made.add(0, image.kind, _from_file(image.path, limits, as_films_come, rng))
    per_kind = made_per_kind(len(frontal))
    for kind, way in FROM_FILMS.items():
        for index in rng.choice(len(frontal), per_kind, replace=False):
            made.add(0, kind, _from_file(frontal[index].path, limits, way, rng))
    for kind, draw in DRAWINGS.items():
        for _ in range(math.ceil(per_kind / len(DRAWINGS))):
            made.add(0, kind, _drawn(draw, rng))
    return made


def made_per_kind(films: int) -> int:
    """60 images per way of making them from a release's thousands of films; a quarter of the films for a small run
    (a night's labels), which would otherwise spend more passes of the network on the gate's made images (7 ways
    and the drawn ones: 480 a side) than on its own films."""
    return min(MADE_PER_KIND, math.ceil(films / MADE_SHARE))
