"""Labelled images for evaluation and checks: DATA/NORMAL and DATA/PNEUMONIA, both needed.

Labels come from the folders. The one exception is a flat folder in which every file is named the way
the Kermany data set names them (`NORMAL2-IM-1427-0001.jpeg`, `IM-0115-0001.jpeg`,
`person1946_bacteria_4874.jpeg`, `person88_virus_164.jpeg`), as its official validation split is shipped.
Any other name is never guessed at (`abnormal_pneumonia_case1.jpeg` holds "normal" too), and metrics on
one class are meaningless: both are refused with a message. Checked without loading a backend.
"""

from __future__ import annotations

import re
from pathlib import Path

from screening.errors import ScreeningError
from screening.imaging.sniff import SNIFF_BYTES, sniff_kind

LABELS = {"NORMAL": 0, "PNEUMONIA": 1}
KERMANY_NAMES = {
    re.compile(r"^(NORMAL2-)?IM-\d{4}-\d{4}(-\d{4})?\.jpe?g$"): 0,
    re.compile(r"^person\d+_(bacteria|virus)_\d+\.jpe?g$"): 1,
}


class LabelledDataError(ScreeningError):
    pass


def _images(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            with open(path, "rb") as stream:
                if sniff_kind(stream.read(SNIFF_BYTES)):
                    found.append(path)
    return found


def labelled_folder(data: Path, minimum_per_class: int = 1) -> list[tuple[Path, int]]:
    """(image, label) for every JPEG, PNG or DICOM file under DATA/NORMAL and DATA/PNEUMONIA."""
    missing = [name for name in LABELS if not (data / name).is_dir()]
    if len(missing) == len(LABELS) and (flat := _kermany_named(data)):
        labelled = flat
    elif missing:
        raise LabelledDataError(
            f"{data} needs a NORMAL and a PNEUMONIA folder of images (missing: {', '.join(missing)}); "
            "labels are taken from those folders, not guessed from file names"
        )
    else:
        labelled = [(path, label) for name, label in LABELS.items() for path in _images(data / name)]
    for name, label in LABELS.items():
        count = sum(1 for _, lab in labelled if lab == label)
        if count < minimum_per_class:
            raise LabelledDataError(
                f"{data / name} has {count} image(s); at least {minimum_per_class} of each class are needed"
            )
    return labelled


def _kermany_named(data: Path) -> list[tuple[Path, int]]:
    """Labels of a flat folder whose every image carries a Kermany name; empty when any does not."""
    labelled = []
    for path in _images(data):
        labels = [label for pattern, label in KERMANY_NAMES.items() if pattern.match(path.name)]
        if not labels:
            return []
        labelled.append((path, labels[0]))
    return labelled
