"""The embedded default through the real `screen` command: SQLite, no broker, no configuration."""

import json

from helpers import (
    DICOM,
    assert_sample_folder_screened,
    count_results,
    image_is_chest_upright,
    results_by_name,
    run_screen,
)

from screening.model.released import RELEASES


def test_enqueue_screens_in_process_and_a_rerun_adds_no_work(screen_env, sample_folder, tmp_path):
    first = run_screen(screen_env, "enqueue", "--wait", str(sample_folder))
    assert "No broker configured" in first.stderr and first.stdout.startswith("batch ")
    for noise in ("absl::InitializeLog", "oneDNN custom operations"):  # TensorFlow's native start-up lines
        assert noise not in first.stderr, first.stderr
    rows = assert_sample_folder_screened(screen_env)
    database = f"sqlite:///{tmp_path / 'data' / 'screening.db'}"
    screened = count_results(database)
    assert screened == 11  # every file once, notes.txt as skipped

    second = run_screen(screen_env, "enqueue", "--wait", str(sample_folder))
    assert "11 already screened by this model" in second.stdout
    assert count_results(database) == screened
    again = results_by_name(screen_env)
    assert all(row["already_screened"] for row in again.values())
    assert {n: r["probability"] for n, r in again.items()} == {n: r["probability"] for n, r in rows.items()}
    assert "finished" in run_screen(screen_env, "status").stdout

    jpeg = next(name for name, row in rows.items() if name.endswith(".jpeg"))
    labelled = run_screen(screen_env, "label", str(next(sample_folder.rglob(jpeg))), "--truth", "pneumonia")
    assert labelled.stdout == "1 label(s) recorded\n"
    usage = run_screen(screen_env, "label", "--truth", "normal", check=False)
    assert usage.returncode == 2 and "give IMAGE with --truth, or --csv FILE" in usage.stderr
    elsewhere = run_screen(screen_env, "retrain", "--data", str(sample_folder / "jpeg"), check=False)
    assert elsewhere.returncode == 1 and "Traceback" not in elsewhere.stderr, elsewhere.stderr


def test_results_export_flagged_studies_and_csv(screen_env, sample_folder):
    run_screen(screen_env, "enqueue", str(sample_folder))
    flagged = results_by_name(screen_env, "--flagged")
    assert all(row["flagged"] for row in flagged.values())
    studies = json.loads(run_screen(screen_env, "results", "--studies", "--format", "json").stdout)
    scored = [s for s in studies if s["probability"] is not None]
    assert len(scored) == 2  # the MONOCHROME1 study (two instances) and the MONOCHROME2 study
    assert max(s["images_screened"] for s in scored) == 2
    unscored = [s for s in studies if s["probability"] is None]  # the hip, the CT, the ultrasound: and why
    assert len(unscored) == 3 and all(s["note"] == "no image could be screened: 1 skipped" for s in unscored)
    csv_lines = run_screen(screen_env, "results", "--format", "csv").stdout.strip().splitlines()
    header = "path,status,probability,flagged,threshold,population,population_basis,adult_score,reason"
    assert csv_lines[0].startswith(header) and len(csv_lines) == 12


def test_preview_writes_what_the_model_sees(screen_env, tmp_path):
    for name in ("cr_chest_pa_monochrome1_jpegls.dcm", "cr_chest_pa_monochrome2_jpeg_baseline.dcm"):
        out = tmp_path / f"{name}.png"
        run_screen(screen_env, "preview", str(DICOM / name), "-o", str(out))
        assert image_is_chest_upright(out), name
    refused = run_screen(
        screen_env, "preview", str(DICOM / "ct_small_not_xray.dcm"), "-o", str(tmp_path / "ct.png"), check=False
    )
    assert refused.returncode != 0 and "skipped: modality CT" in refused.stderr


def test_models_list_shows_every_release_and_the_newest_active(screen_env):
    *older, newest = json.loads(run_screen(screen_env, "models", "list", "--json").stdout)
    assert len(older) == len(RELEASES) - 1 and {v["status"] for v in older} == {"retired"}
    assert newest["status"] == "active"
    assert older[0]["gate"] is None and newest["gate"] == "frontal-cxr-gate/1"
    assert newest["claimed_sensitivity"] >= 0.9 and 0.0 < newest["threshold"] < 1.0
    assert newest["reference"] is None  # the releases were registered without the reference films: not measured here
    rolled_back = run_screen(screen_env, "models", "rollback").stdout
    assert f"version {older[-1]['id']} ({older[-1]['name']}) is active" in rolled_back
