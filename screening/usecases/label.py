"""`screen label`: radiologists' readings attached to screened images, by file, SHA-256 or SOPInstanceUID."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from pathlib import Path

from screening.db.labels import UnknownImage, record_label, screened_image
from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.usecases.context import Services
from screening.vocabulary import ImageStatus


class Truth(StrEnum):
    NORMAL = "normal"
    PNEUMONIA = "pneumonia"


class LabelError(ScreeningError):
    pass


def read_label_csv(path: Path) -> list[tuple[str, str]]:
    """(image, truth) rows of a CSV with columns image,truth: comma or semicolon, with or without a BOM."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        raise LabelError(f"{path.name} is not UTF-8 text") from None
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(text.splitlines()[0] if text else "", delimiters=",;")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    headers = [name.strip().lower() for name in reader.fieldnames or []]
    if not {"image", "truth"} <= set(headers):
        raise LabelError(
            f"{path.name}: the first line must name the columns image and truth (found: {', '.join(headers) or 'none'})"
        )
    rows = []
    for number, row in enumerate(reader, start=2):
        if None in row:  # DictReader's place for cells beyond the header's columns
            raise LabelError(f"{path.name} line {number}: more cells than the first line names (nothing recorded)")
        values = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key is not None}
        if not values.get("image") or not values.get("truth"):
            raise LabelError(f"{path.name} line {number}: needs both an image and a truth (nothing recorded)")
        rows.append((values["image"], values["truth"].lower()))
    return rows


def record_labels(services: Services, rows: list[tuple[str, str]], source: str, reader: str | None = None) -> int:
    """Record every (image, truth) row, or none: an unknown image, a bad truth or an image the model did not
    score stops the whole set. An image is a file path, a SHA-256 or a SOPInstanceUID; `reader`: who read them,
    where known (the review page's signed-in reader)."""
    with services.sessions.begin() as session:
        for key, value in rows:
            if value not in tuple(Truth):
                raise LabelError(f"truth must be normal or pneumonia, not {value!r} (nothing recorded)")
            is_file = Path(key).is_file()
            try:
                result = screened_image(session, sha256_hex(Path(key)) if is_file else key)
            except UnknownImage as problem:
                unknown = f"{key}: no screened image has this file's content" if is_file else str(problem)
                raise LabelError(f"{unknown} (nothing recorded)") from None
            if result.status != ImageStatus.DONE:
                raise LabelError(
                    f"{key} was not scored ({result.status}: {result.reason}); only screened images can be labelled "
                    "(nothing recorded)"
                )
            record_label(session, result.sha256, Truth(value) == Truth.PNEUMONIA, source, reader)
    return len(rows)
