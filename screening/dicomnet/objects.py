"""The DICOM objects a screened study is answered with, built with highdicom.

- A TID 1500 Measurement Report in a Comprehensive SR: per screened image, one measurement group with the
  finding "Pneumonia" present or absent (a qualitative evaluation), the calibrated probability and the
  threshold of the operating point it was scored at (measurements), the model's name, version and artifact SHA-256,
  and that operating point's population and why it was chosen (algorithm identification and its parameters)
  and a reference to the image. Same study, a new series, VerificationFlag UNVERIFIED: a screening aid's
  output, never a signed report.
- A Secondary Capture of each flagged image with its heatmap, in the same study.
Both carry MANUFACTURER, and UIDs under the installation's device UID: by those the product knows, and never
screens, what it made itself.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset, config
from pydicom.dataelem import DataElement
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import JPEG2000, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, generate_uid
from pydicom.valuerep import DA, DT, TM, validate_value

from screening.imaging.overlay import captioned

logging.getLogger("highdicom").setLevel(logging.WARNING)  # its INFO lines quote source UIDs, even with -v
MANUFACTURER = "chest-xray-screening"
REPORT_SERIES, HEATMAP_SERIES = 9901, 9902
PNEUMONIA = hd.sr.CodedConcept("233604007", "SCT", "Pneumonia")
PRESENT, ABSENT = hd.sr.CodedConcept("52101004", "SCT", "Present"), hd.sr.CodedConcept("2667000", "SCT", "Absent")
CHEST_X_RAY = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
# No standard code names a classifier's probability or its threshold: a private scheme, as PS3.16 8.1 allows.
PROBABILITY = hd.sr.CodedConcept("PNEU-P", "99CXRSCREEN", "Probability of pneumonia")
THRESHOLD = hd.sr.CodedConcept("PNEU-T", "99CXRSCREEN", "Flagging threshold")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
_SCHEME = Dataset()  # the private scheme identified, as PS3.3 C.12.1.1.5 asks of a private designator
_SCHEME.CodingSchemeDesignator = PROBABILITY.scheme_designator
_SCHEME.CodingSchemeName = "Chest X-ray pneumonia screening: model outputs"
_SCHEME.CodingSchemeResponsibleOrganization = MANUFACTURER
PIXEL_DATA_TAG = Tag("PixelData")


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version_id: int
    artifact_sha256: str


@dataclass(frozen=True)
class ScreenedImage:
    header: Dataset  # the source instance, pixels not needed
    probability: float
    flagged: bool
    threshold: float  # of the operating point it was scored at
    operating_point: str = ""  # whose point that is and why ("child, threshold 0.430 (header)"), for a reader


@contextmanager
def _quiet() -> Iterator[None]:
    """highdicom warns about odd values by quoting them, patient names included: never into a log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# The values highdicom reads and copies from a source's header into the objects we make; enumerated ones too
ENUMERATED = {"PatientSex": ("M", "F", "O")}
PARSED_VRS = {"DA": DA, "TM": TM, "DT": DT}
TEXT_OF_NUMBERS = ("IS", "DS", "PN")


def _conforms(element: DataElement) -> bool:
    values = element.value if element.VM > 1 else [element.value]
    for value in values:
        if value in (None, ""):
            continue
        try:
            text = str(value) if element.VR in TEXT_OF_NUMBERS else value  # IS, DS and PN are checked as written
            validate_value(element.VR, text, config.RAISE)
            if element.VR in PARSED_VRS:
                PARSED_VRS[element.VR](value)  # a DA of 19700100 has the right form and no such day
        except (ValueError, TypeError, OverflowError):
            return False
        if element.keyword in ENUMERATED and value not in ENUMERATED[element.keyword]:
            return False
    return True


def conformant_header(source: Dataset) -> tuple[Dataset, list[str]]:
    """A copy of a source's header (pixels left out) whose top-level values each conform to their VR: a value that
    does not (an anonymiser's hashed birth date, `StudyDate=2026-12-01`, `PatientSex=W`) is emptied, never copied
    into what we make and never fatal. Returns the copy and a note per emptied value, naming the attribute only."""
    header = Dataset()
    if hasattr(source, "file_meta"):
        header.file_meta = source.file_meta
    notes = []
    with _quiet():
        for element in source:
            if element.tag == PIXEL_DATA_TAG:
                continue
            if element.VR != "SQ" and not _conforms(element):
                header.add_new(element.tag, element.VR, None)
                notes.append(f"{element.keyword or element.tag} left empty: not a valid {element.VR}")
            else:
                header.add(element)
    return header, notes


def our_uid(device_uid: str) -> str:
    """A new UID under this installation's device UID: how the objects we made are known when they come back."""
    return generate_uid(prefix=f"{device_uid}.")


def made_by_us(dataset: Dataset, device_uid: str) -> bool:
    """By the UID root, which a device of another installation does not share; a Manufacturer can be anyone's."""
    return str(dataset.get("SOPInstanceUID", "")).startswith(f"{device_uid}.")


def _algorithm(model: ModelIdentity, operating_point: str) -> hd.sr.AlgorithmIdentification:
    """The model, and the operating point an image was scored at (its population's, and why) as a parameter."""
    parameters = [f"artifact SHA-256 {model.artifact_sha256}"]
    parameters += [f"operating point: {operating_point}"] if operating_point else []
    return hd.sr.AlgorithmIdentification(name=model.name, version=str(model.version_id), parameters=parameters)


def _group(image: ScreenedImage, model: ModelIdentity) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    algorithm = _algorithm(model, image.operating_point)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"pneumonia screening {image.header.SOPInstanceUID}"
        ),
        finding_type=PNEUMONIA,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(name=PROBABILITY, value=float(image.probability), unit=NO_UNITS, algorithm_id=algorithm),
            hd.sr.Measurement(name=THRESHOLD, value=float(image.threshold), unit=NO_UNITS, algorithm_id=algorithm),
        ],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(PNEUMONIA, PRESENT if image.flagged else ABSENT)],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image.header)],
    )


def screening_report(
    images: list[ScreenedImage],
    model: ModelIdentity,
    device_uid: str,
    captures: Sequence[Dataset] = (),
    predecessors: Sequence[Dataset] = (),
) -> hd.sr.ComprehensiveSR:
    """The study's structured report: one measurement group per screened image (at least one), observed by the
    device `device_uid` (one per installation, so an archive can group its reports); the study's heatmap
    `captures` are referenced as evidence, and the reports it replaces (an earlier one of the same study, before
    more of its instances arrived) as Predecessor Documents."""
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid, name=MANUFACTURER, model_name=model.name
        ),
    )
    with _quiet():
        measurements = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=CHEST_X_RAY,
            imaging_measurements=[_group(image, model) for image in images],
        )
        document = hd.sr.ComprehensiveSR(
            evidence=[image.header for image in images] + list(captures),
            content=measurements[0],
            series_instance_uid=our_uid(device_uid),
            series_number=REPORT_SERIES,
            sop_instance_uid=our_uid(device_uid),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_verified=False,
            series_description="Pneumonia screening (AI, unverified)",
            previous_versions=list(predecessors) or None,
        )
    known = document.get("CodingSchemeIdentificationSequence", [])
    document.CodingSchemeIdentificationSequence = [*known, _SCHEME]
    return document


def capture_caption(image: ScreenedImage, model: ModelIdentity) -> list[str]:
    """The result in words, burned into the capture for a PACS that does not render the structured report."""
    verdict = "FLAGGED for pneumonia" if image.flagged else "not flagged"
    lines = [
        "AI RESULT - NOT VERIFIED BY A RADIOLOGIST",
        f"P(pneumonia) {image.probability:.3f}, threshold {image.threshold:.3f}: {verdict}",
        *([f"operating point: {image.operating_point}"] if image.operating_point else []),
        f"model {model.name}, version {model.version_id} (SHA-256 {model.artifact_sha256[:12]})",
    ]
    return [line.encode("ascii", "replace").decode() for line in lines]


# Study-level attributes of the source that highdicom does not copy into a capture (dcentvfy checks the study's
# instances agree on them)
STUDY_LEVEL = (
    "StudyDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "IssuerOfPatientID",
    "AdmittingDiagnosesDescription",
)
# Transfer syntaxes that lose information, and the method each one names (PS3.3 C.7.6.1.1.5.1)
LOSSY_METHODS: dict[str, str] = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
}
DERIVATION = "Grad-CAM heatmap of a pneumonia screening model over the source film; its result burned in above it"


def _reference(source: Dataset) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return reference


def _lossy(source: Dataset) -> tuple[str, str] | None:
    """(method, ratio) where the source's pixels were compressed with loss: by its own flag, or by its syntax."""
    syntax = str(getattr(getattr(source, "file_meta", None), "TransferSyntaxUID", ""))
    if source.get("LossyImageCompression") != "01" and syntax not in LOSSY_METHODS:
        return None
    return str(source.get("LossyImageCompressionMethod") or LOSSY_METHODS.get(syntax, "")), str(
        source.get("LossyImageCompressionRatio") or ""
    )


def heatmap_capture(
    image: ScreenedImage, overlay: np.ndarray, model: ModelIdentity, series_uid: str, number: int, device_uid: str
) -> hd.sc.SCImage:
    """A Secondary Capture of the film with its heatmap (RGB uint8) and its result burned in, in the source's study
    (`series_uid` is one of `our_uid`'s): it names the image it was derived from, carries the source's study-level
    values and its lossy compression, and asserts no patient orientation the source did not give."""
    source = image.header
    orientation = source.get("PatientOrientation")
    given = bool(orientation) and len(orientation) == 2
    with _quiet():
        capture = hd.sc.SCImage.from_ref_dataset(
            source,
            np.ascontiguousarray(captioned(overlay, capture_caption(image, model))),
            "RGB",
            8,
            "PATIENT",
            series_uid,
            HEATMAP_SERIES,
            our_uid(device_uid),
            number,
            MANUFACTURER,
            patient_orientation=tuple(orientation) if given else ("L", "F"),  # highdicom needs one: emptied below
            series_description="Pneumonia screening heatmap (AI, unverified)",
        )
    if not given:
        capture.add_new("PatientOrientation", "CS", None)  # Type 2: present and empty where the source said nothing
    capture.add_new("Laterality", "CS", source.get("Laterality") or None)  # Type 2C: empty unless the source says
    for keyword in STUDY_LEVEL:
        if keyword in source:
            capture[keyword] = source[keyword]
    capture.SourceImageSequence = [_reference(source)]
    capture.ReferencedImageSequence = [_reference(source)]
    capture.DerivationDescription = DERIVATION
    capture.BurnedInAnnotation = "YES"
    if lossy := _lossy(source):
        capture.LossyImageCompression = "01"
        method, ratio = lossy
        if method:
            capture.LossyImageCompressionMethod = method
        if ratio:
            capture.LossyImageCompressionRatio = ratio
    return capture
