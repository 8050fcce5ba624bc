"""The pieces of the DICOM node on their own: reports, heatmap captures, Grad-CAM, the spool, bounded retries."""

import os
import time
from datetime import timedelta

import highdicom as hd
import keras
import numpy as np
import pydicom
import pytest
from helpers import DICOM, free_port, own_errors, wait_until
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from screening.config import DicomPeer
from screening.db.outbox import Retries, record_attempt
from screening.db.schema import OutboxObject
from screening.dicomnet.objects import (
    MANUFACTURER,
    ModelIdentity,
    ScreenedImage,
    capture_caption,
    conformant_header,
    heatmap_capture,
    made_by_us,
    screening_report,
)
from screening.dicomnet.scp import PeerLimits, start_storage_scp
from screening.dicomnet.scu import SendFailed, send_file
from screening.dicomnet.spool import Spool
from screening.model.explain import grad_cam
from screening.usecases.listen import store_instance
from screening.vocabulary import SendStatus

CHEST = DICOM / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
MODEL = ModelIdentity("resnet50-frozen-head", 7, "ab" * 32)
DEVICE = "2.25.1234567890"


def test_the_report_is_a_tid_1500_sr_highdicom_reads_back_with_the_score_and_the_model(tmp_path):
    header = pydicom.dcmread(CHEST, stop_before_pixels=True)
    report = screening_report(
        [ScreenedImage(header, 0.93, True, 0.7917, "adult, threshold 0.792 (header)")], MODEL, DEVICE
    )
    report.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    back = hd.sr.srread(tmp_path / "sr.dcm")
    assert back.StudyInstanceUID == header.StudyInstanceUID and back.SeriesInstanceUID != header.SeriesInstanceUID
    assert (back.VerificationFlag, back.CompletionFlag, back.Manufacturer) == ("UNVERIFIED", "COMPLETE", MANUFACTURER)
    assert back.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    (group,) = back.content.get_image_measurement_groups()
    measured = {m.name.meaning: m.value for m in group.get_measurements()}
    assert measured == {"Probability of pneumonia": pytest.approx(0.93), "Flagging threshold": pytest.approx(0.7917)}
    ((name, value),) = [(q.name.meaning, q.value.meaning) for q in group.get_qualitative_evaluations()]
    assert (name, value) == ("Pneumonia", "Present")
    texts = text_items(back)
    assert ("Algorithm Name", "resnet50-frozen-head") in texts and ("Algorithm Version", "7") in texts
    assert ("Algorithm Parameters", "artifact SHA-256 " + "ab" * 32) in texts
    assert ("Algorithm Parameters", "operating point: adult, threshold 0.792 (header)") in texts
    (evidence,) = back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
    assert made_by_us(back, DEVICE) and back.SOPInstanceUID.startswith(DEVICE + ".")
    observed = {(item.ConceptNameCodeSequence[0].CodeMeaning, item.get("UID")) for item in back.ContentSequence}
    assert ("Device Observer UID", DEVICE) in observed  # one per installation: an archive groups reports by it
    schemes = {item.CodingSchemeDesignator: item for item in back.CodingSchemeIdentificationSequence}
    assert schemes["99CXRSCREEN"].CodingSchemeResponsibleOrganization == MANUFACTURER


def text_items(dataset) -> set[tuple[str, str]]:
    """(concept name, text) of every TEXT content item, however deep."""
    found = set()
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            found.add((item.ConceptNameCodeSequence[0].CodeMeaning, item.TextValue))
        found |= text_items(item)
    return found


def test_a_normal_image_is_reported_absent_and_the_heatmap_capture_joins_the_study(tmp_path):
    source = pydicom.dcmread(CHEST)
    report = screening_report([ScreenedImage(source, 0.12, False, 0.7917)], MODEL, DEVICE)
    (group,) = report_groups(report, tmp_path)
    assert group.get_qualitative_evaluations()[0].value.meaning == "Absent"
    overlay = np.zeros((640, 480, 3), np.uint8)
    overlay[..., 0] = 255
    capture = heatmap_capture(ScreenedImage(source, 0.12, False, 0.7917), overlay, MODEL, hd.UID(), 1, DEVICE)
    assert capture.StudyInstanceUID == source.StudyInstanceUID and capture.PhotometricInterpretation == "RGB"
    assert capture.Manufacturer == MANUFACTURER and made_by_us(capture, DEVICE)
    assert not made_by_us(capture, "2.25.99")  # another installation's
    pixels = capture.pixel_array
    top = int(np.argmax((pixels[:, :, 0] == 255).all(axis=1) & (pixels[:, :, 1:] == 0).all(axis=(1, 2))))
    np.testing.assert_array_equal(pixels[top : top + 640], overlay)  # the film whole, the words above and below it
    assert top > 0 and pixels.shape[0] > top + 640 and pixels[:top].any() and pixels[top + 640 :].any()


def test_a_capture_names_its_source_carries_its_study_and_shows_the_result_in_words(tmp_path):
    """What a reader sees in a PACS that does not render the SR, and what an archive checks of a derived image."""
    source = pydicom.dcmread(CHEST)
    source.StudyDescription, source.PatientAge, source.NameOfPhysiciansReadingStudy = "CHEST PA", "062Y", "Doe^Jane"
    flagged = ScreenedImage(source, 0.873, True, 0.57, "adult, threshold 0.570 (header)")
    assert capture_caption(flagged, MODEL) == [
        "AI RESULT - NOT VERIFIED BY A RADIOLOGIST",
        "P(pneumonia) 0.873, threshold 0.570: FLAGGED for pneumonia",
        "operating point: adult, threshold 0.570 (header)",
        f"model resnet50-frozen-head, version 7 (SHA-256 {'ab' * 6})",
    ]
    overlay = np.full((2048, 1640, 3), 90, np.uint8)  # a film at the capture's full size
    capture = heatmap_capture(flagged, overlay, MODEL, hd.UID(), 1, DEVICE)
    assert capture.Columns == 1640 and capture.Rows > 2048 and capture.BurnedInAnnotation == "YES"
    for sequence in (capture.SourceImageSequence, capture.ReferencedImageSequence):
        assert [(item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) for item in sequence] == [
            (source.SOPClassUID, source.SOPInstanceUID)
        ]
    assert "Grad-CAM" in capture.DerivationDescription
    for keyword in ("StudyDescription", "PatientAge", "NameOfPhysiciansReadingStudy", "StudyDate", "PatientID"):
        assert str(capture[keyword].value) == str(source[keyword].value), keyword
    assert (capture.LossyImageCompression, capture.LossyImageCompressionMethod) == ("01", "ISO_10918_1")  # JPEG
    assert "PatientOrientation" in capture and not capture.PatientOrientation  # the source gives none: none asserted
    report = screening_report([flagged], MODEL, DEVICE, [capture])
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in report.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {source.SOPInstanceUID, capture.SOPInstanceUID}  # the report names its capture
    for made in (capture, report):
        path = tmp_path / f"{made.Modality}.dcm"
        made.save_as(path, enforce_file_format=True)
        assert own_errors(path) == []


def report_groups(report, folder):
    report.save_as(folder / "report.dcm", enforce_file_format=True)
    return hd.sr.srread(folder / "report.dcm").content.get_image_measurement_groups()


def test_grad_cam_peaks_where_the_evidence_is_and_not_where_the_counter_evidence_is():
    """Two feature maps: red light (evidence for the finding) and green light (evidence against). The input has a
    small red square in the top right and a large green square in the bottom left."""
    conv = keras.layers.Conv2D(2, 3, padding="same", use_bias=False)
    features = keras.Sequential([keras.Input((32, 32, 3)), conv])
    kernel = np.zeros((3, 3, 3, 2), np.float32)
    kernel[:, :, 0, 0] = kernel[:, :, 1, 1] = 1 / 9
    conv.set_weights([kernel])
    dense = keras.layers.Dense(1)
    dense.build((None, 2))
    dense.set_weights([np.array([[1.0], [-1.0]], np.float32), np.zeros(1, np.float32)])
    images = np.zeros((1, 32, 32, 3), np.float32)
    images[0, 3:9, 22:28, 0] = 255
    images[0, 16:30, 2:16, 1] = 255
    (heatmap,) = grad_cam(features, lambda maps: dense(keras.ops.mean(maps, axis=(1, 2))), images)
    row, column = np.unravel_index(heatmap.argmax(), heatmap.shape)
    assert 3 <= row < 9 and 22 <= column < 28 and heatmap.max() == pytest.approx(1.0)
    assert heatmap[16:30, 2:16].max() == 0.0  # counter-evidence is no evidence


def test_the_spool_writes_atomically_settles_by_arrival_and_refuses_paths_as_uids(tmp_path):
    spool = Spool(tmp_path / "spool")
    path = spool.write("1.2.3", "1.2.3.4", b"DICM")
    assert path.read_bytes() == b"DICM" and not list(path.parent.glob("*.partial"))
    assert spool.settled(60) == [] and spool.settled(60, now=time.time() + 61) == [path.parent]
    os.utime(path, (time.time() - 300, time.time() - 300))  # the first instance, five minutes ago
    spool.write("1.2.3", "1.2.3.5", b"DICM")  # and one now: instances keep arriving
    assert spool.settled(60, 600) == [] and spool.settled(60, 240) == [path.parent]  # the maximum wait seals it
    sealed = spool.seal(path.parent)
    assert spool.unbatched() == [sealed] and not (spool.incoming / "1.2.3").exists()
    spool.mark_batch(sealed, "b1")
    assert spool.unexported() == [(sealed, "b1")]
    spool.mark_exported(sealed)
    assert spool.unexported() == [] and spool.unbatched() == []
    for study, instance in (("../../etc", "1.2"), ("1.2", "1/2"), ("1.2", "x" * 10)):
        with pytest.raises(ValueError):
            spool.write(study, instance, b"")


def test_sending_stops_after_the_attempt_limit_with_the_last_reason_and_backs_off_between():
    class FakeSession:
        def flush(self):
            pass

    result, retries = OutboxObject(status=SendStatus.PENDING, attempts=0), Retries(3, timedelta(seconds=5))
    waits = []
    for _ in range(3):
        record_attempt(FakeSession(), result, "association with ARCHIVE@127.0.0.1:104 rejected", retries)
        if result.next_attempt_at:
            waits.append(result.next_attempt_at)
    assert result.status == SendStatus.FAILED and result.attempts == 3 and "rejected" in result.last_error
    assert len(waits) == 2 and (waits[1] - waits[0]).total_seconds() == pytest.approx(5, abs=1)  # 5 s, then 10 s
    sent = OutboxObject(status=SendStatus.PENDING, attempts=0)
    record_attempt(FakeSession(), sent, None, retries)
    assert sent.status == SendStatus.SENT and sent.sent_at is not None


@pytest.mark.parametrize(
    ("keyword", "value", "fatal"),
    [
        ("PatientBirthDate", "a1b2c3d4", True),  # an anonymiser's hash
        ("PatientBirthDate", "19700100", True),  # the form of a DA, no such day
        ("StudyDate", "2026-12-01", True),
        ("StudyTime", "10:15:00", True),
        ("PatientSex", "W", True),
        ("PatientAge", "62", False),  # the sample's own: no unit; highdicom copied it as it was
    ],
)
def test_a_header_value_its_vr_does_not_allow_is_left_out_of_what_we_make_with_a_note(keyword, value, fatal):
    source = pydicom.dcmread(CHEST, stop_before_pixels=True)
    source.PatientAge = "062Y"
    setattr(source, keyword, value)
    header, notes = conformant_header(source)
    assert notes == [f"{keyword} left empty: not a valid {source[keyword].VR}"]  # the attribute, never the value
    assert header.get(keyword) in (None, "")
    kept = [name for name in ("PatientID", "SOPInstanceUID", "StudyDate", "PatientAge") if name != keyword]
    assert all(header[name].value == source[name].value for name in kept)
    report = screening_report([ScreenedImage(header, 0.8, True, 0.5)], MODEL, DEVICE)
    capture = heatmap_capture(
        ScreenedImage(header, 0.8, True, 0.5), np.zeros((32, 32, 3), np.uint8), MODEL, hd.UID(), 1, DEVICE
    )
    assert report.get(keyword) in (None, "") and capture.get(keyword) in (None, "")
    if fatal:  # made from the source itself, it stopped the listener's every pass
        with pytest.raises(ValueError):
            screening_report([ScreenedImage(source, 0.8, True, 0.5)], MODEL, DEVICE)
    else:
        assert screening_report([ScreenedImage(source, 0.8, True, 0.5)], MODEL, DEVICE).PatientAge == value


def test_a_write_that_fails_leaves_no_partial_file_and_a_stale_partial_is_cleared(tmp_path):
    spool = Spool(tmp_path / "spool")
    with pytest.raises(TypeError):
        spool.write("1.2.3", "1.2.3.4", None)  # a failed write, as a full disk's
    assert not (spool.incoming / "1.2.3").exists()
    left = spool.incoming / "1.2.4"  # what a listener killed mid-write leaves
    left.mkdir(parents=True)
    (left / "1.2.4.5.partial").write_bytes(b"DI")
    assert spool.settled(60) == [] and left.exists()  # recent: a write may still be under way
    assert spool.settled(60, now=time.time() + 61) == [] and not left.exists()


def test_a_send_to_a_port_nobody_listens_on_says_it_could_not_connect(tmp_path):
    path = tmp_path / "sr.dcm"
    screening_report([ScreenedImage(pydicom.dcmread(CHEST), 0.9, True, 0.5)], MODEL, DEVICE).save_as(path)
    peer = DicomPeer("ARCHIVE", "127.0.0.1", free_port())
    with pytest.raises(SendFailed, match=r"^cannot connect to ARCHIVE@127.0.0.1:\d+ \(Connection refused\)$"):
        send_file(path, peer, "SCREEN", timeout_s=5)


def test_our_objects_are_known_by_their_uid_root_not_by_a_manufacturer_anyone_can_write(tmp_path):
    spool = Spool(tmp_path / "spool")
    chest = pydicom.dcmread(CHEST)
    encoded = CHEST.read_bytes()
    ours = screening_report([ScreenedImage(chest, 0.9, True, 0.5)], MODEL, DEVICE)
    assert store_instance(spool, ours, b"", DEVICE) == 0x0000 and not spool.incoming.exists()  # dropped
    chest.Manufacturer = MANUFACTURER  # spoofed, or a product of the same name elsewhere
    assert store_instance(spool, chest, encoded, DEVICE) == 0x0000
    assert (spool.incoming / chest.StudyInstanceUID / f"{chest.SOPInstanceUID}.dcm").read_bytes() == encoded


def test_no_peer_can_close_the_node_to_the_others_nor_fill_its_memory():
    """A message past the size limit aborts its association as it arrives; pixel data shorter than declared is
    refused; a calling AE past its share of associations is dropped while another AE gets in; an idle one closes."""
    stored = []
    port = free_port()
    limits = PeerLimits(max_instance_bytes=3 * 2**20, associations_per_ae=2, idle_timeout_s=2)
    server = start_storage_scp("SCREEN", "127.0.0.1", port, (), lambda ds, _: stored.append(ds) or 0x0000, limits)
    try:

        def associate(calling: str = "MODALITY"):
            ae = AE(ae_title=calling)
            ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
            return ae.associate("127.0.0.1", port, ae_title="SCREEN")

        def capture(rows: int, pixels: bytes | None = None) -> pydicom.Dataset:
            dataset = heatmap_capture(
                ScreenedImage(pydicom.dcmread(CHEST), 0.9, True, 0.5),
                np.zeros((rows, 1000, 3), np.uint8),
                MODEL,
                hd.UID(),
                1,
                DEVICE,
            )
            if pixels is not None:
                dataset.PixelData = pixels
            return dataset

        small = associate()
        assert small.is_established and small.send_c_store(capture(200)).Status == 0x0000
        short = capture(200, pixels=b"\0" * 1000)  # a header that promises ~0.7 MB of pixels over 1,000 bytes
        assert small.send_c_store(short).Status == 0xC000 and len(stored) == 1
        small.release()
        big = associate()
        answer = big.send_c_store(capture(2000))  # 6 MB of pixels: past the limit
        wait_until(lambda: big.is_aborted, 10, 0.1, "the association aborted")
        assert "Status" not in answer and len(stored) == 1  # no status came back: the node stopped listening to it
        held = [associate() for _ in range(3)]  # one more than its share
        wait_until(lambda: sum(assoc.is_established for assoc in held) == 2, 10, 0.1, "a share of two")
        other = associate("OTHER")
        assert other.is_established and other.send_c_store(capture(100)).Status == 0x0000
        other.release()
        wait_until(lambda: not any(assoc.is_established for assoc in held), 10, 0.2, "idle associations closed")
    finally:
        server.shutdown()
