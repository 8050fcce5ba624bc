"""The review app's use cases: the worklist, the image page's pictures and the verdicts.

`usecases/review.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import dataclasses
from datetime import date

import cv2
import numpy as np
import pytest

from screening.usecases import review
from screening.usecases.review import (
    FilmChanged,
    ImageStatus,
    StudyIdentifiers,
    Truth,
    WorklistFilter,
    WorklistView,
    evidence_png,
    film_png,
    heatmap_png,
    image_view,
    model_input_png,
    record_verdict,
    worklist,
)
from screening.web.routes.worklist import worklist_filter


def test_the_review_worklist_puts_flagged_first_and_a_verdict_becomes_a_label(services, screened, monkeypatch):
    found = worklist(services)
    rows = found.rows
    assert (found.total, found.page, found.pages, found.first, found.last) == (11, 1, 1, 1, 11) and rows[0].flagged
    scored = [row.probability for row in rows if row.flagged]
    assert scored == sorted(scored, reverse=True)
    skipped = worklist(services, WorklistFilter(status=ImageStatus.SKIPPED)).rows
    assert {row.status for row in skipped} == {ImageStatus.SKIPPED}
    studies = found.studies  # the hip, the CT and the ultrasound have no score: listed last
    assert len(studies) == 5 and studies[0].flagged and studies[0].top is not None
    assert [study.probability is None for study in studies] == [False, False, True, True, True]
    (named,) = [study for study in found.studies if study.identifiers and study.identifiers.patient_id == "9RG1"]
    assert named.identifiers == StudyIdentifiers("9RG1", "exam Number", date(2004, 8, 26))
    assert named.images == 2  # its two instances (JPEG-LS, JPEG lossless), each listed with its image
    assert sorted(name for _, name in named.instances) == [
        "cr_chest_pa_monochrome1_jpeg_lossless.dcm",
        "cr_chest_pa_monochrome1_jpegls.dcm",
    ]
    (top,) = [row for row in rows if row.result_id == named.top]
    assert top.probability == named.probability  # the study's highest
    one_page = dataclasses.replace(services.settings, web=dataclasses.replace(services.settings.web, page_size=1))
    narrow = dataclasses.replace(services, settings=one_page)
    (whole,) = worklist(narrow, page=found.rows.index(top) + 1).studies
    assert whole.uid == named.uid and whole.images == 2 and len(whole.instances) == 2  # beyond its page's one row
    unread = worklist(services, WorklistFilter(view=WorklistView.FLAGGED_UNREAD))
    assert unread.total == sum(1 for row in rows if row.flagged)
    assert image_view(services, rows[0].result_id).next_unread == rows[1].result_id
    first, second, last = (image_view(services, row.result_id) for row in (rows[0], rows[1], rows[-1]))
    assert (first.previous, first.following) == (None, rows[1].result_id)  # in the worklist's order
    assert (second.previous, second.following) == (rows[0].result_id, rows[2].result_id)
    assert (last.previous, last.following) == (rows[-2].result_id, None)
    following = record_verdict(services, rows[0].result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert following == rows[1].result_id  # the next flagged image without a reading
    assert record_verdict(services, rows[0].result_id, Truth.NORMAL, "Dr Bo Second") == rows[1].result_id
    assert worklist(services, WorklistFilter(view=WorklistView.FLAGGED_UNREAD)).total == unread.total - 1
    history = image_view(services, rows[0].result_id).history  # a changed reading keeps the first
    assert [(entry.pneumonia, entry.reader, entry.source) for entry in history] == [
        (False, "Dr Bo Second", "review page"),
        (True, "Dr Ada Reader", "review page"),
    ]
    assert history[0].recorded_at >= history[1].recorded_at and history[0].recorded_at.tzinfo is not None
    not_scored = worklist(services, WorklistFilter(view=WorklistView.NOT_SCORED)).rows
    unscored = [row.result_id for row in rows if row.status in (ImageStatus.SKIPPED, ImageStatus.FAILED)]
    assert unscored and [row.result_id for row in not_scored] == unscored
    view = image_view(services, rows[0].result_id)
    assert view.row.verdict is False and 0 < view.threshold < 1 and view.sends == []
    assert worklist(services, WorklistFilter(batch_id="another-batch")).rows == []
    web = dataclasses.replace(services.settings.web, page_size=4)
    small = dataclasses.replace(services, settings=dataclasses.replace(services.settings, web=web))
    pages = [worklist(small, page=number) for number in (1, 2, 3, 99)]  # every image on one page, none cut off
    assert [(page.page, page.pages, page.first, page.last) for page in pages] == [
        (1, 3, 1, 4), (2, 3, 5, 8), (3, 3, 9, 11), (3, 3, 9, 11)
    ]  # fmt: skip
    assert [row.result_id for page in pages[:3] for row in page.rows] == [row.result_id for row in rows]


def test_the_viewer_gets_the_film_at_its_resolution_with_its_windows_and_a_heatmap_layer(services, screened):
    rows = {row.file_name: row for row in worklist(services).rows}
    lossless = rows["cr_chest_pa_monochrome1_jpeg_lossless.dcm"]
    assert image_view(services, lossless.result_id).presets == ["window 15000/30000"]
    film = cv2.imdecode(np.frombuffer(film_png(services, lossless.result_id), np.uint8), cv2.IMREAD_UNCHANGED)
    assert film.shape == (1955, 1841) and film.dtype == np.uint8  # its own resolution, grey
    with pytest.raises(review.NoSuchImage):
        film_png(services, lossless.result_id, 1)  # it has one window only
    jpeg = next(row for row in rows.values() if row.file_name.endswith(".jpeg"))
    assert image_view(services, jpeg.result_id).presets == []
    layer = cv2.imdecode(np.frombuffer(evidence_png(services, lossless.result_id), np.uint8), cv2.IMREAD_UNCHANGED)
    assert layer.shape[2] == 4 and layer[:, :, 3].min() == 0 and layer[:, :, 3].max() > 0  # drawn only in part
    assert abs(layer.shape[1] / layer.shape[0] - 1841 / 1955) < 0.01  # at the film's aspect


def test_the_worklist_form_filters_with_any_field_left_empty_and_says_what_it_could_not_read():
    assert worklist_filter("", "", "", "") == (WorklistFilter(), [])
    assert worklist_filter(" b1 ", "2026-12-07", "done", "not-scored") == (
        WorklistFilter("b1", date(2026, 12, 7), ImageStatus.DONE, WorklistView.NOT_SCORED),
        [],
    )
    chosen, problems = worklist_filter("", "07/12/2026", "any", "unread")
    assert chosen == WorklistFilter() and len(problems) == 3


def test_the_review_page_shows_and_labels_only_the_film_that_was_screened(services, screened, sample_folder):
    """A path may hold another patient's film by now: nothing read from it is shown beside the old score, and a
    verdict is not stored against the film that was screened; with the film back, all of it works again."""
    row = next(row for row in worklist(services).rows if row.flagged and row.file_name.endswith(".jpeg"))
    film = sample_folder / "jpeg" / row.file_name
    original = film.read_bytes()
    film.write_bytes(next(other for other in film.parent.iterdir() if other != film).read_bytes())
    view = image_view(services, row.result_id)
    assert view.film_problem and "changed since it was screened" in view.film_problem
    for shown in (model_input_png, heatmap_png):
        with pytest.raises(FilmChanged):
            shown(services, row.result_id)
    with pytest.raises(FilmChanged):
        record_verdict(services, row.result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert image_view(services, row.result_id).row.verdict is None and image_view(services, row.result_id).history == []
    assert not (services.settings.data_dir / "heatmaps").exists() or not any(
        (services.settings.data_dir / "heatmaps").iterdir()
    )  # the wrong picture is not kept either
    film.unlink()
    assert "cannot be read" in (image_view(services, row.result_id).film_problem or "")
    film.write_bytes(original)
    view = image_view(services, row.result_id)
    assert view.film_problem is None and view.input_size == 224
    assert model_input_png(services, row.result_id).startswith(b"\x89PNG")
    assert heatmap_png(services, row.result_id).startswith(b"\x89PNG")
    record_verdict(services, row.result_id, Truth.PNEUMONIA, "Dr Ada Reader")
    assert image_view(services, row.result_id).row.verdict is True
