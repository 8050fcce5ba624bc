"""Grad-CAM of the version that scored a film, over the film.

`usecases/explain.py` called as the edges call it: without click or Celery, on SQLite, in this process."""

import pytest

from screening.imaging.errors import NotScreenable
from screening.usecases.explain import explain
from screening.usecases.results import batch_results


def test_explain_gives_the_workers_probability_and_a_heatmap_over_the_film(services, screened, sample_folder):
    chest = sample_folder / "dicom" / "cr_chest_pa_monochrome2_jpeg_baseline.dcm"
    (row,) = [row for row in batch_results(services, None).images if row.path == str(chest)]
    explanation = explain(services, chest)
    assert explanation.probability == pytest.approx(row.probability, rel=1e-5)
    assert explanation.flagged == row.flagged and explanation.threshold == pytest.approx(row.threshold)
    assert explanation.heatmap.shape == (7, 7) and explanation.heatmap.max() == pytest.approx(1.0)
    assert explanation.overlay.ndim == 3 and max(explanation.overlay.shape[:2]) == 1024
    with pytest.raises(NotScreenable):
        explain(services, sample_folder / "dicom" / "ct_small_not_xray.dcm")
