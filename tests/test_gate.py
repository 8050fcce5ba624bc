"""The applicability gate: fitted with a model version, it refuses what is not a frontal chest radiograph."""

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import DATA, FULLRES, copy_training_set, results_by_name, run_screen

from screening.config import ImageLimits
from screening.model.artifact import read_artifact, read_gate
from screening.model.gate import ApplicabilityGate, refusal_reason
from screening.training.consistency import VARIATIONS
from screening.training.gate_images import DRAWINGS, FROM_FILMS, gate_images, out_of_scope_images
from screening.training.split import Example

OUT_OF_SCOPE = DATA / "out-of-scope"


@pytest.mark.unit
def test_out_of_scope_images_are_split_by_patient_and_every_kind_is_tested():
    fit, held_out = out_of_scope_images(OUT_OF_SCOPE)
    assert len(fit) + len(held_out) == 55
    assert not {image.group for image in fit} & {image.group for image in held_out}
    assert {image.kind for image in fit} == {image.kind for image in held_out} == {"lateral_cxr", "ct_slice", "other"}
    assert 0.3 < len(held_out) / 55 < 0.5
    assert (fit, held_out) == out_of_scope_images(OUT_OF_SCOPE)  # the same split every time


@pytest.mark.unit
@pytest.mark.parametrize(("films", "per_kind", "drawn"), [(6000, 60, 20), (240, 60, 20), (41, 11, 4), (3, 1, 1)])
def test_a_small_run_makes_a_quarter_as_many_gate_images_per_way_as_it_has_films(films, per_kind, drawn):
    frontal = [Example(Path(f"{n}.png"), n % 2, str(n), "0" * 64) for n in range(films)]
    fit, _ = out_of_scope_images(OUT_OF_SCOPE)
    made = gate_images(frontal, fit, 2, ImageLimits(), seed=0)  # nothing is read until its features are taken
    counts = Counter(made.kinds)
    assert counts["frontal, data"] == films and counts["frontal, varied"] == max(films // 10, 1)
    assert all(counts[kind] == per_kind for kind in FROM_FILMS) and all(counts[kind] == drawn for kind in DRAWINGS)
    assert sum(counts[kind] for kind in ("lateral_cxr", "ct_slice", "other")) == 3 * len(fit)  # as is, and 2 ways


@pytest.mark.unit
def test_the_gate_scores_standardised_features_and_refuses_below_its_threshold():
    gate = ApplicabilityGate(
        mean=np.array([1.0, 0.0]), scale=np.array([2.0, 1.0]), weights=np.array([4.0, 0.0]), bias=0.0, threshold=0.5
    )
    scores = gate.scores(np.array([[1.0, 9.0], [5.0, 0.0], [-3.0, 0.0]]))
    np.testing.assert_allclose(scores, [0.5, 1 / (1 + np.exp(-8.0)), 1 / (1 + np.exp(8.0))])
    assert gate.refuses(scores).tolist() == [False, False, True]
    assert refusal_reason(0.0312) == "not a frontal chest radiograph (gate score 0.03)"


@pytest.mark.unit
def test_images_made_from_films_are_turned_mirrored_inverted_cropped_or_clipped():
    film = np.tile(np.arange(200, dtype=np.uint8)[:, None], (1, 120))  # dark at the top, bright at the bottom
    rng = np.random.default_rng(0)
    assert FROM_FILMS["turned a quarter"](film, rng).shape == (120, 200)
    assert FROM_FILMS["upside down"](film, rng)[0, 0] > film[0, 0]
    assert FROM_FILMS["inverted"](film, rng)[0, 0] == 255
    assert max(FROM_FILMS["cropped to a patch"](film, rng).shape) <= 0.4 * 120 + 1
    clipped = FROM_FILMS["clipped"](film, rng)
    assert np.isin(clipped, (0, 255)).mean() > 0.5
    halves = {FROM_FILMS["half a film or one lung"](film, np.random.default_rng(seed)).shape for seed in range(40)}
    assert halves == {(100, 120), (200, 60)}  # the top or bottom half, or one side
    turned = FROM_FILMS["turned 25 to 70 degrees"](film, rng)
    assert turned.shape == film.shape and (turned == 0).mean() > 0.1  # corners turned out of the frame


@pytest.mark.unit
def test_the_consistency_variations_are_what_a_reader_calls_the_same_film():
    film = np.tile(np.arange(200, dtype=np.uint8)[:, None], (1, 120))
    film[:, :10] = 0  # a dark band on the left
    mirrored = VARIATIONS["mirrored"](film)
    assert mirrored[:, -10:].max() == 0 and mirrored[1:, :10].min() > 0
    assert VARIATIONS["cropped by 5%"](film).shape == (190, 114)
    assert (
        VARIATIONS["brighter (gamma 0.8)"](film).mean() > film.mean() > VARIATIONS["darker (gamma 1.25)"](film).mean()
    )
    for name in ("turned +10 degrees", "turned -10 degrees"):
        turned = VARIATIONS[name](film)
        assert turned.shape == film.shape and turned[-1, -1] == 0 and abs(int(turned[100, 60]) - 100) <= 2


@pytest.mark.e2e  # `screen train`, `screen models gate`, `screen enqueue` and `screen evaluate` processes
def test_a_gated_version_skips_a_photograph_a_lateral_and_a_turned_film_and_scores_a_frontal_one(screen_env, tmp_path):
    """The gate added to a trained artifact (`screen models gate`); training with --out-of-scope fits the same way
    (test_training's resumed run)."""
    training, plain = copy_training_set(tmp_path / "train", per_class=30), tmp_path / "plain.zip"
    config = _write(tmp_path / "config.json", {"epochs": 8, "preprocessing": "plain-v1"})
    run_screen(screen_env, "train", str(training), "--out", str(plain), "--config", config, "--no-register")
    artifact = tmp_path / "gated" / "gated.zip"
    refused = run_screen(
        screen_env, "models", "gate", str(plain), "--source", f"data={training},{FULLRES / 'val'}",
        "--out-of-scope", str(OUT_OF_SCOPE), "--out", str(artifact), check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "do not give the validation split plain.zip was trained with" in refused.stderr
    run_screen(
        screen_env, "models", "gate", str(plain), "--source", f"data={training}",
        "--out-of-scope", str(OUT_OF_SCOPE), "--out", str(artifact),
    )  # fmt: skip
    manifest, _ = read_artifact(artifact)
    gate = read_gate(artifact, manifest)
    assert gate is not None and manifest.gate is not None and manifest.gate.threshold == gate.threshold
    held_out = manifest.gate.out_of_scope_folder.held_out
    assert {"lat_p109_pneumocystis-jiroveci-pneumonia-4-L.jpg", "oth_photo_cookies_in_dicom.jpg"} <= set(held_out)
    assert not set(held_out) & set(manifest.gate.out_of_scope_folder.fitted_on)
    tested = manifest.gate.test
    assert set(tested.frontal_refusal_rate) == {"data", "varied"} and tested.out_of_scope_refusal_rate > 0.5
    card = (artifact.parent / "MODEL_CARD.md").read_text()
    assert "## Applicability gate" in card and f"refuses **{tested.out_of_scope_refusal_rate:.1%}**" in card
    assert "| baseline, data |" in card and "## Known failure modes" in card
    consistency = manifest.metrics.consistency.populations["all"]  # a network without population points
    assert consistency.films > 0 and 0 <= consistency.variations["mirrored"].rate <= 1 and "## Consistency" in card

    ensemble = tmp_path / "ensemble" / "ensemble.zip"
    alone = ("models", "ensemble", str(artifact), "--source", f"data={training}", "--out", str(ensemble))
    refused = run_screen(screen_env, *alone, check=False)
    assert refused.returncode == 2 and "two or more artifacts" in refused.stderr
    run_screen(screen_env, *alone[:3], str(plain), *alone[3:], "--no-register")
    assembled, _ = read_artifact(ensemble)
    assert assembled.architecture.members == 2 and assembled.gate == manifest.gate  # the first member's gate
    # the same network twice: the mean of its logit with itself is its logit, so its figures come back
    assert assembled.metrics.validation.roc_auc == pytest.approx(manifest.metrics.validation.roc_auc, abs=1e-3)
    assert "2 such networks, their logits averaged" in (ensemble.parent / "MODEL_CARD.md").read_text()

    run_screen(screen_env, "models", "register", str(artifact), "--activate")
    shown = json.loads(run_screen(screen_env, "models", "list", "--json").stdout)
    assert [v["gate"] for v in shown if v["status"] == "active"] == [gate.version]

    folder = tmp_path / "night"
    folder.mkdir()
    shutil.copy(FULLRES / "val" / "NORMAL2-IM-1427-0001.jpeg", folder / "frontal.jpeg")
    shutil.copy(OUT_OF_SCOPE / "lateral_cxr" / "lat_p109_pneumocystis-jiroveci-pneumonia-4-L.jpg", folder / "lat.jpg")
    shutil.copy(OUT_OF_SCOPE / "other" / "oth_photo_cookies_in_dicom.jpg", folder / "photo.jpg")
    turned = cv2.rotate(cv2.imread(str(FULLRES / "val" / "person1946_bacteria_4874.jpeg")), cv2.ROTATE_90_CLOCKWISE)
    cv2.imwrite(str(folder / "turned.png"), turned)
    run_screen(screen_env, "enqueue", "--wait", str(folder))
    rows = results_by_name(screen_env)
    assert rows["frontal.jpeg"]["status"] == "done" and rows["frontal.jpeg"]["probability"] is not None
    for name in ("lat.jpg", "photo.jpg", "turned.png"):
        assert rows[name]["status"] == "skipped", rows[name]
        assert rows[name]["reason"].startswith("not a frontal chest radiograph (gate score 0."), rows[name]
        assert rows[name]["probability"] is None and rows[name]["flagged"] is None

    explained = run_screen(screen_env, "explain", str(folder / "lat.jpg"), "-o", str(tmp_path / "h.png"), check=False)
    assert explained.returncode == 1 and "not a frontal chest radiograph (gate score" in explained.stderr

    labelled = tmp_path / "labelled"
    for label, files in (("NORMAL", ["frontal.jpeg", "lat.jpg"]), ("PNEUMONIA", ["turned.png"])):
        (labelled / label).mkdir(parents=True)
        for name in files:
            shutil.copy(folder / name, labelled / label / name)
    shutil.copy(FULLRES / "val" / "person1946_bacteria_4874.jpeg", labelled / "PNEUMONIA" / "p.jpeg")
    version = str(shown[-1]["id"])
    evaluated = json.loads(run_screen(screen_env, "evaluate", version, str(labelled), "--format", "json").stdout)
    assert evaluated["gate_refused"] == 2 and evaluated["images"] == 2
    assert {row["file"] for row in evaluated["excluded"]} == {"lat.jpg", "turned.png"}
    table = run_screen(screen_env, "evaluate", version, str(labelled)).stdout
    assert "refused by the gate" in table and "2 of 4" in table


def _write(path, values) -> str:
    path.write_text(json.dumps(values))
    return str(path)
