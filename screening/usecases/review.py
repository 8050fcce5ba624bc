"""The review app's use cases: the worklist, one image with its heatmap and sends, and a radiologist's verdict."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
from sqlalchemy.orm import Session

from screening.db.labels import LabelEntry, label_history
from screening.db.results import StudyInstance, instances_of_studies, study_rows
from screening.db.review import (
    EVERYTHING,
    ReviewRow,
    StudyIdentifiers,
    WorklistFilter,
    count_rows,
    neighbours,
    review_rows,
    study_identifiers,
    study_sends,
)
from screening.db.schema import ModelVersion, Result
from screening.errors import Conflict, NotFound, ScreeningError
from screening.imaging.dicom import voi_presets
from screening.imaging.errors import ImageRejected
from screening.imaging.overlay import display_film, evidence_layer
from screening.imaging.pipeline import FILE_CHANGED, prepare_file, read_image_file
from screening.imaging.read import decode_radiograph
from screening.model.registered import RegisteredVersion
from screening.usecases.context import Services
from screening.usecases.explain import explain
from screening.usecases.label import Truth, record_labels
from screening.usecases.results import operating_point
from screening.vocabulary import ImageStatus, SendStatus, WorklistView

__all__ = [
    "FilmChanged",
    "LabelEntry",
    "ImageView",
    "WorklistFilter",
    "WorklistPage",
    "NoSuchImage",
    "ReviewRow",
    "ReviewStudy",
    "StudyIdentifiers",
    "Truth",
    "image_row",
    "image_view",
    "studies_of",
    "worklist",
]


class NoSuchImage(NotFound):
    pass


class FilmChanged(Conflict):
    """The file at a result's path is not the film that was screened (moved, deleted or replaced since): nothing
    read from it is shown beside that result, and no verdict is recorded against a film the reader did not see."""


@dataclass(frozen=True)
class ImageView:
    row: ReviewRow
    threshold: float  # of the operating point it was scored at
    operating_point: str  # whose point that is and why: `child, threshold 0.430 (header)`
    sends: list[tuple[str, SendStatus, int, str | None]]
    input_size: int  # the side of the square image the model saw
    film_problem: str | None  # why the film cannot be shown (FilmChanged), or None
    history: list[LabelEntry]  # every reading recorded for the film, newest first
    next_unread: int | None  # the flagged image without a reading that the worklist puts first, other than this
    presets: list[str]  # the DICOM file's VOI windows or LUTs the viewer offers (none: the film as screened)
    previous: int | None = None  # the images before and after this one in the worklist's order
    following: int | None = None


logger = logging.getLogger(__name__)
UNREAD = WorklistFilter(view=WorklistView.FLAGGED_UNREAD)


@dataclass(frozen=True)
class ReviewStudy:
    uid: str
    images: int  # its SOP instances, each once (a re-received instance is not another image)
    probability: float | None  # its highest image probability; None when no image was scored
    flagged: bool
    top: int | None  # the result id of that image
    identifiers: StudyIdentifiers | None = None  # patient ID, accession, study date, from its header
    instances: tuple[tuple[int, str], ...] = ()  # (result id, file name) of each of its instances


@dataclass(frozen=True)
class WorklistPage:
    """One page of a worklist, and where it sits: "rows 101 to 200 of 1,234", never a silent cap."""

    rows: list[ReviewRow]
    total: int  # images the filter selects in all
    page: int  # from 1
    pages: int
    studies: list[ReviewStudy]  # the DICOM studies of the page's rows, named by their headers
    size: int  # images per page (SCREEN_WEB_PAGE_SIZE)

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return (self.page - 1) * self.size + len(self.rows)


def worklist(services: Services, chosen: WorklistFilter = EVERYTHING, page: int = 1) -> WorklistPage:
    """The page `page` of the images `chosen` selects, flagged first by probability, then the unscored."""
    with services.sessions() as session:
        total = count_rows(session, chosen)
        size = services.settings.web.page_size
        pages = max(1, -(-total // size))
        page = min(max(page, 1), pages)
        rows = review_rows(session, chosen, size, (page - 1) * size)
        studies = studies_of(session, rows)
    return WorklistPage(rows, total, page, pages, studies, size)


def studies_of(session: Session, rows: list[ReviewRow]) -> list[ReviewStudy]:
    """The DICOM studies of worklist rows, whole (every instance at the row's model version, not only those on the
    page: the study_instances and study_results views), flagged first, then by their highest probability."""
    uids_by_version: dict[int, set[str]] = {}
    for row in rows:
        if row.study_uid:
            uids_by_version.setdefault(row.model_version_id, set()).add(row.study_uid)
    named = study_identifiers(session, sorted(set().union(*uids_by_version.values())))
    studies = []
    for version_id, uids in uids_by_version.items():
        members: dict[str, list[StudyInstance]] = {}
        for instance in instances_of_studies(session, version_id, sorted(uids)):
            members.setdefault(instance.study_uid, []).append(instance)
        for figures in study_rows(session, version_id, sorted(uids)):
            instances = members.get(figures.study_uid, [])
            top = next((one.result_id for one in instances if one.probability is not None), None)  # highest first
            studies.append(
                ReviewStudy(
                    figures.study_uid,
                    figures.images,
                    figures.probability,
                    figures.flagged,
                    top,
                    named.get(figures.study_uid),
                    tuple((one.result_id, one.path.rsplit("/", 1)[-1]) for one in instances),
                )
            )
    return sorted(
        studies, key=lambda study: (not study.flagged, -(study.probability if study.probability is not None else -1))
    )


def _result(services: Services, result_id: int) -> tuple[Result, RegisteredVersion]:
    with services.sessions() as session:
        result = session.get(Result, result_id)
        if result is None or result.status == ImageStatus.QUEUED:
            raise NoSuchImage(f"no screened image {result_id}")
        return result, RegisteredVersion.of(session.get_one(ModelVersion, result.model_version_id))


def _film_changed(problem: ImageRejected) -> FilmChanged:
    changed = problem.reason == FILE_CHANGED
    what = "has changed since it was screened" if changed else f"cannot be read ({problem.reason})"
    return FilmChanged(f"the film's file {what}: its pictures are not shown and no verdict is recorded for it")


def _screened_bytes(services: Services, result: Result) -> bytes:
    """The bytes of the film that was screened; FilmChanged when its path holds another file by now, or none."""
    try:
        return read_image_file(Path(result.path), services.settings.image_limits, result.sha256)
    except ImageRejected as problem:
        raise _film_changed(problem) from None


def _film_problem(services: Services, result: Result) -> FilmChanged | None:
    try:
        _screened_bytes(services, result)
    except FilmChanged as problem:
        return problem
    return None


def image_row(services: Services, result_id: int) -> ReviewRow:
    """One screened image as the worklist lists it."""
    with services.sessions() as session:
        rows = review_rows(session, result_id=result_id)  # any filter: the one image
    if not rows:
        raise NoSuchImage(f"no screened image {result_id}")
    return rows[0]


def image_view(services: Services, result_id: int) -> ImageView:
    result, version = _result(services, result_id)
    with services.sessions() as session:
        sends = study_sends(session, result.study_uid) if result.study_uid else []
        history = label_history(session, result.sha256)
        previous, following = neighbours(session, result_id)
    threshold = version.threshold if result.threshold is None else result.threshold  # rows from before the points
    size = version.preprocessing.size
    try:
        presets, problem = voi_presets(_screened_bytes(services, result)), None
    except FilmChanged as changed:
        presets, problem = [], changed
    return ImageView(
        image_row(services, result_id),
        threshold,
        operating_point(result),
        sends,
        size,
        str(problem) if problem else None,
        history,
        next_unread(services, result_id),
        presets,
        previous,
        following,
    )


def next_unread(services: Services, after: int) -> int | None:
    """The worklist's first flagged image without a reading, other than `after` (the one just read)."""
    with services.sessions() as session:
        rows = review_rows(session, UNREAD, 2)
    return next((row.result_id for row in rows if row.result_id != after), None)


def model_input_png(services: Services, result_id: int) -> bytes:
    """The image the model saw, as PNG: of the film that was screened, never of what its path holds now."""
    result, version = _result(services, result_id)
    spec, limits = version.preprocessing, services.settings.image_limits
    try:
        prepared = prepare_file(Path(result.path), spec, limits, result.sha256)
    except ImageRejected as problem:
        raise _film_changed(problem) from None
    return cv2.imencode(".png", prepared.image)[1].tobytes()


HEATMAPS_AHEAD = 200  # flagged images without a reading whose heatmaps the review app makes before they are opened


def prepare_heatmaps(services: Services, stop: threading.Event) -> int:
    """Make the heatmaps of the flagged images without a reading, highest probability first, before a reader opens
    them (the review app's background thread: the first also loads the model); how many it made. A film whose
    file changed is left to its page, which says so."""
    with services.sessions() as session:
        rows = review_rows(session, UNREAD, HEATMAPS_AHEAD)
    made = 0
    for row in rows:
        if stop.is_set():
            break
        try:
            made += _heatmap_files(services, row.result_id)[2]
        except ScreeningError:
            continue
    return made


def keep_heatmaps_ready(services: Services, stop: threading.Event, every_s: float = 30.0) -> None:
    """Until `stop`: `prepare_heatmaps`, again every `every_s` for the images screened since. Never raises (it runs
    beside the review app): a pass that fails is logged and the next one tries again."""
    while not stop.is_set():
        try:
            made = prepare_heatmaps(services, stop)
            if made:
                logger.info("made %d heatmap(s) of flagged images ahead of their readers", made)
        except Exception as error:
            logger.warning("making heatmaps ahead failed (%s); the next pass tries again", type(error).__name__)
        stop.wait(every_s)


VIEW_SIDE = 4096  # the viewer's film: its own resolution up to this many pixels on the longer side


def film_png(services: Services, result_id: int, preset: int = 0) -> bytes:
    """The film that was screened at its own resolution (up to VIEW_SIDE), grey, as PNG, through the DICOM VOI
    window or LUT `preset` (`ImageView.presets`; the first, as it was screened, by default)."""
    result, _ = _result(services, result_id)
    data = _screened_bytes(services, result)
    if preset and preset >= len(voi_presets(data)):
        raise NoSuchImage(f"image {result_id} has no window {preset}")
    try:
        radiograph = decode_radiograph(data, services.settings.image_limits.max_image_pixels, preset)
    except ImageRejected as problem:
        raise _film_changed(problem) from None
    return cv2.imencode(".png", display_film(radiograph, VIEW_SIDE))[1].tobytes()


def heatmap_png(services: Services, result_id: int) -> bytes:
    """The film with the Grad-CAM of the version that screened it, as PNG; cached under SCREEN_DATA_DIR by the
    film's SHA-256, and made only from a file that still has it."""
    return _heatmap_files(services, result_id)[0].read_bytes()


def evidence_png(services: Services, result_id: int) -> bytes:
    """The viewer's heatmap layer (RGBA PNG at the film's aspect: `overlay.evidence_layer`), cached as the
    heatmap is."""
    return _heatmap_files(services, result_id)[1].read_bytes()


def _heatmap_files(services: Services, result_id: int) -> tuple[Path, Path, bool]:
    """The cached heatmap and evidence layer of a result, and whether they were made now."""
    result, version = _result(services, result_id)
    folder = services.settings.data_dir / "heatmaps"
    heatmap, layer = folder / f"{result.sha256}-{version.id}.png", folder / f"{result.sha256}-{version.id}.layer"
    if heatmap.exists() and layer.exists():
        return heatmap, layer, False
    try:
        explained = explain(services, Path(result.path), version, result.sha256)
    except ImageRejected as problem:
        raise _film_changed(problem) from None
    height, width = explained.overlay.shape[:2]
    folder.mkdir(parents=True, exist_ok=True)
    for target, picture in (
        (layer, cv2.cvtColor(evidence_layer(explained.heatmap, width, height), cv2.COLOR_RGBA2BGRA)),
        (heatmap, cv2.cvtColor(explained.overlay, cv2.COLOR_RGB2BGR)),  # last: its presence says both are made
    ):
        partial = folder / f"{target.name}.{threading.get_ident()}.partial"  # a request may make it meanwhile
        partial.write_bytes(cv2.imencode(".png", picture)[1].tobytes())
        partial.replace(target)
    return heatmap, layer, True


def record_verdict(services: Services, result_id: int, truth: Truth, reader: str) -> int | None:
    """The radiologist's reading, into the same labels table as `screen label`, with who read it (an earlier
    reading stays in the film's history): refused when the film at the path is not the one screened (the reader
    cannot have seen it). The next flagged image without a reading, if any."""
    result, _ = _result(services, result_id)
    if problem := _film_problem(services, result):
        raise problem
    record_labels(services, [(result.sha256, truth.value)], "review page", reader)
    return next_unread(services, result_id)
