"""Walking folders: by content, streaming, and with unreadable entries recorded, not fatal."""

import os
import shutil
import tracemalloc

from helpers import DICOM, FULLRES

from screening.queue.discover import discover, walk

LIMIT = 512 * 2**20


def test_files_are_recognised_by_content_and_dicom_uids_read(tmp_path):
    shutil.copy(DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm", tmp_path / "IMG0001")  # no extension
    jpeg = sorted((FULLRES / "val").iterdir())[0]
    shutil.copy(jpeg, tmp_path / "scan.dcm")  # a misleading extension
    found = {os.path.basename(f.path): f for f in discover([str(tmp_path)], LIMIT)}
    assert found["IMG0001"].kind == "dicom" and found["IMG0001"].sop_uid.endswith(".850819")
    assert found["IMG0001"].study_uid.endswith(".850818")
    assert found["scan.dcm"].kind == "jpeg" and found["scan.dcm"].sop_uid is None
    assert len(found["scan.dcm"].sha256) == 64


def test_symlink_loops_and_broken_links_are_reported_not_fatal(tmp_path):
    (tmp_path / "sub").mkdir()
    shutil.copy(sorted((FULLRES / "val").iterdir())[0], tmp_path / "sub" / "a.jpeg")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")  # a folder loop: not followed
    os.symlink(tmp_path / "x1", tmp_path / "x2")
    os.symlink(tmp_path / "x2", tmp_path / "x1")  # a file loop
    os.symlink(tmp_path / "missing", tmp_path / "broken")
    found = {os.path.basename(f.path): f for f in discover([str(tmp_path)], LIMIT)}
    assert found["a.jpeg"].kind == "jpeg" and found["a.jpeg"].enqueue_error is None
    assert "Too many levels of symbolic links" in found["x1"].enqueue_error
    assert "No such file or directory" in found["broken"].enqueue_error
    assert "loop" not in found


def test_walking_is_streaming(tmp_path):
    for index in range(5000):
        (tmp_path / f"{index:05d}").write_bytes(b"x")
    files = walk([str(tmp_path)])
    tracemalloc.start()
    first = next(files)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert first and peak < 200_000  # one entry, not a list of 5,000 paths
    assert sum(1 for _ in files) == 4999


def test_a_fifo_is_recorded_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.dcm")
    (found,) = list(discover([str(tmp_path)], LIMIT))
    assert found.enqueue_error == "not a regular file (a FIFO, socket or device)" and found.sha256 is None


def test_size_is_checked_before_a_byte_is_hashed(tmp_path):
    with open(tmp_path / "huge.dcm", "wb") as sparse:
        sparse.truncate(8 * 2**30)  # 8 GiB of holes: hashing it would take most of a minute
    (found,) = list(discover([str(tmp_path)], LIMIT))
    assert found.enqueue_status == "skipped" and found.sha256 is None
    assert found.enqueue_error == f"file too large: {8 * 2**30} bytes exceeds the limit of {LIMIT}"
