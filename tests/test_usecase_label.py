"""Radiologists' labels, by path, hash or UID, for screened images only.

`usecases/label.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import pytest

from screening.hashing import sha256_hex
from screening.usecases.label import LabelError, read_label_csv, record_labels


def test_labels_name_images_by_path_hash_or_uid_and_only_scored_ones(services, screened, sample_folder, tmp_path):
    jpeg = sorted((sample_folder / "jpeg").iterdir())[0]
    dicom = sample_folder / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
    sheet = tmp_path / "reading.csv"
    sheet.write_bytes(b"\xef\xbb\xbfImage;Truth\n" + f"{jpeg};Pneumonia\n".encode())
    assert record_labels(services, read_label_csv(sheet), sheet.name) == 1
    assert record_labels(services, [(sha256_hex(dicom), "normal")], "cli") == 1
    with pytest.raises(LabelError, match="no screened image"):
        record_labels(services, [("0" * 64, "normal")], "cli")
    with pytest.raises(LabelError, match="was not scored"):
        record_labels(services, [(str(sample_folder / "notes.txt"), "normal")], "cli")
    with pytest.raises(LabelError, match="truth must be"):
        record_labels(services, [(str(jpeg), "maybe")], "cli")
    unscreened = tmp_path / "never-enqueued.jpeg"
    unscreened.write_bytes(jpeg.read_bytes() + b"\0")
    with pytest.raises(LabelError, match=f"^{unscreened}: no screened image has this file's content"):
        record_labels(services, [(str(unscreened), "normal")], "cli")
    sheet.write_text(f"image,truth\n{jpeg},pneumonia,extra\n")
    with pytest.raises(LabelError, match="line 2: more cells than the first line names"):
        read_label_csv(sheet)
