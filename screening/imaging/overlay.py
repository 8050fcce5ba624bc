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


def _jet(heatmap: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The heatmap (values in [0, 1] on any grid) stretched to `width` x `height`, as the model's input was
    stretched from all of the film, and in the jet colours (BGR; red = strongest evidence)."""
    heat = cv2.resize(heatmap.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return heat, cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)


def overlay_heatmap(film: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8: the grey film with the heatmap stretched over all of it (`_jet`)."""
    _, coloured = _jet(heatmap, film.shape[1], film.shape[0])
    grey = cv2.cvtColor(film, cv2.COLOR_GRAY2BGR)
    blended = cv2.addWeighted(grey, 1 - HEAT_WEIGHT, coloured, HEAT_WEIGHT, 0)
    return cv2.cvtColor(blended, cv2.COLOR_BGR2RGB)


EVIDENCE_LEVEL = 0.5  # the viewer's heatmap layer is drawn only where the evidence is at least half its peak
EVIDENCE_OPACITY = 0.7


def evidence_layer(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGBA uint8, `width` x `height`: the heatmap in the jet colours, transparent where the evidence is below
    EVIDENCE_LEVEL of its peak and more opaque the stronger it is, to lay over the film in a viewer."""
    heat, coloured = _jet(heatmap, width, height)
    alpha = np.clip((heat - EVIDENCE_LEVEL) / (1 - EVIDENCE_LEVEL), 0, 1) * EVIDENCE_OPACITY * 255
    return np.dstack([cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB), alpha.astype(np.uint8)])


def _fitted_text_scale(lines: list[str], width: int, thickness: int) -> float:
    """The largest font scale (at most one line per 1,400 px of width) at which every line fits the width."""
    widest = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 1.0, thickness)[0][0] for line in lines)
    return min(max(width / 1400, 0.4), 0.94 * width / max(widest, 1))


def captioned(overlay: np.ndarray, lines: list[str]) -> np.ndarray:
    """RGB uint8: the overlay with the result in words in a banner above it (for viewers that show no structured
    report) and the heatmap's colour legend below it; the film itself is not covered. ASCII text only."""
    width = overlay.shape[1]
    thickness = max(1, round(width / 1000))
    scale = _fitted_text_scale(lines, width, thickness)
    line_height = round(40 * scale) + 4 * thickness
    banner = np.zeros((line_height * len(lines) + line_height // 2, width, 3), np.uint8)
    for number, line in enumerate(lines, start=1):
        colour = (255, 220, 0) if number == 1 else (255, 255, 255)  # the first line (the warning) in amber
        origin = (round(0.03 * width), line_height * number)
        cv2.putText(banner, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return np.vstack([banner, overlay, _legend(width, line_height, scale, thickness)])


def _legend(width: int, line_height: int, scale: float, thickness: int) -> np.ndarray:
    """The jet colour bar the heatmap is drawn in, from weaker to stronger evidence, with its words."""
    legend = np.zeros((2 * line_height, width, 3), np.uint8)
    left, right = round(0.03 * width), round(0.97 * width)
    ramp = np.linspace(0, 255, right - left).astype(np.uint8)[None, :]
    bar = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    legend[line_height // 4 : line_height // 4 + line_height // 2, left:right] = bar
    words = ("weaker", "stronger evidence for the model's score (Grad-CAM)")
    baseline = line_height // 4 + line_height // 2 + line_height
    cv2.putText(legend, words[0], (left, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (255, 255, 255), thickness)
    size = cv2.getTextSize(words[1], cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, thickness)[0][0]
    cv2.putText(
        legend, words[1], (right - size, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, (255, 255, 255), thickness
    )
    return legend
