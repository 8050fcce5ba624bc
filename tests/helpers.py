"""Checks shared by the end-to-end tests."""

import json
from pathlib import Path

import cv2
import sqlalchemy as sa
from conftest import EXPECTED_DICOM_STATUS, run_screen


def results_by_name(env: dict, *extra: str) -> dict[str, dict]:
    rows = json.loads(run_screen(env, "results", "--format", "json", *extra).stdout)
    return {Path(row["path"]).name: row for row in rows}


def assert_sample_folder_screened(env: dict) -> dict[str, dict]:
    """Every file of conftest.sample_folder ends as documented, with a probability where screened."""
    rows = results_by_name(env)
    assert len(rows) == 11
    for name, expected in EXPECTED_DICOM_STATUS.items():
        assert rows[name]["status"] == expected, rows[name]
    assert rows["notes.txt"]["status"] == "skipped"
    assert rows["notes.txt"]["reason"] == "not a JPEG, PNG or DICOM file"
    for name, row in rows.items():
        if row["status"] == "done":
            assert 0.0 <= row["probability"] <= 1.0 and row["flagged"] in (True, False), name
            assert row["model_version"].startswith("1:"), name
        else:
            assert row["probability"] is None and row["reason"], name
    return rows


def count_results(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT COUNT(*) FROM results")).scalar_one()
    engine.dispose()
    return count


def image_is_chest_upright(path: Path) -> bool:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(float)
    centre, lungs = gray[67:134, 103:121].mean(), gray[67:134, 45:78].mean()
    return gray.shape == (224, 224) and centre > lungs + 20


def scrambled_jpeg(data: bytes) -> bytes:
    """Entropy-coded data overwritten in places, markers and the end-of-image marker intact."""
    scrambled = bytearray(data)
    start = data.rfind(b"\xff\xda") + 200
    for index in range(start, len(data) - 2, 97):
        scrambled[index] = (scrambled[index] * 7 + 13) % 256 or 1
    return bytes(scrambled).replace(b"\xff\xd9", b"\xfe\xd9")[:-2] + b"\xff\xd9"
