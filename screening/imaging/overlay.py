"""Showing a heatmap on the film: the picture `screen explain`, the review page and the DICOM capture share."""

from __future__ import annotations

import cv2
import numpy as np

from screening.imaging.preprocess import to_8bit
from screening.imaging.read import Radiograph

DISPLAY_SIDE = 1024  # the longer side of a displayed film, in pixels
HEAT_WEIGHT = 0.4


def display_film(radiograph: Radiograph, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The film as a radiologist sees it (min-max to 8 bits, its own aspect), at most `side` pixels long."""
    film = to_8bit(radiograph.pixels)
    scale = min(1.0, side / max(film.shape))
    size = (max(1, round(film.shape[1] * scale)), max(1, round(film.shape[0] * scale)))
    return cv2.resize(film, size, interpolation=cv2.INTER_AREA)


def overlay_heatmap(film: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8: the grey film with the heatmap (values in [0, 1] on any grid) stretched over all of it, as the
    model's input was stretched from all of it, in the jet colours (red = strongest evidence)."""
    heat = cv2.resize(heatmap.astype(np.float32), (film.shape[1], film.shape[0]), interpolation=cv2.INTER_CUBIC)
    coloured = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    grey = cv2.cvtColor(film, cv2.COLOR_GRAY2BGR)
    blended = cv2.addWeighted(grey, 1 - HEAT_WEIGHT, coloured, HEAT_WEIGHT, 0)
    return cv2.cvtColor(blended, cv2.COLOR_BGR2RGB)
