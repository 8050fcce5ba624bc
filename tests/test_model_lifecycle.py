"""A running worker serves each batch with the version active when it was enqueued: no restart."""

import json
import re
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from helpers import (
    FULLRES,
    REPOSITORY,
    active_version,
    artifact_with,
    artifact_with_weights,
    results_by_name,
    run_screen,
)

from screening.model.artifact import ArtifactError, read_age_estimate, read_gate, read_manifest
from screening.model.network import load_classifier, save_classifier
from screening.model.released import RELEASED_ARTIFACT, RELEASES
from screening.training.reference import check_reference_films
from screening.vocabulary import Population


@pytest.fixture
def second_model(tmp_path):
    """A genuinely different model: the released one with its (first) head's output bias raised by one logit."""
    released = REPOSITORY / "models" / RELEASED_ARTIFACT
    model, manifest = load_classifier(released)
    output = model.get_layer("head").get_layer("pneumonia")
    kernel, bias = output.get_weights()
    output.set_weights([kernel, bias + 1.0])
    path = tmp_path / "shifted.zip"
    gate, estimate = read_gate(released, manifest), read_age_estimate(released, manifest)
    save_classifier(model, replace(manifest, name="released-plus-one-logit"), path, gate, estimate)
    return path


def test_promotion_and_rollback_reach_a_running_worker(screen_env, redis_url, start_worker, second_model, tmp_path):
    env = {**screen_env, "SCREEN_BROKER_URL": redis_url, "SCREEN_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    folder = tmp_path / "night"
    folder.mkdir()
    for source in sorted((FULLRES / "val").iterdir())[:4]:
        (folder / source.name).write_bytes(source.read_bytes())
    run_screen(env, "db", "upgrade")
    worker = start_worker(env)
    run_screen(env, "enqueue", "--wait", str(folder))
    before = results_by_name(env)

    released = active_version(env)
    registered = run_screen(env, "models", "register", str(second_model)).stdout
    second = re.fullmatch(
        r"version (\d+) \(released-plus-one-logit\): candidate\nreference films: child: AUC 1.00, .*\n", registered
    ).group(1)
    run_screen(env, "models", "promote", second)
    run_screen(env, "enqueue", "--wait", str(folder))
    after = results_by_name(env)
    assert worker.process.poll() is None  # the same worker process, never restarted
    for name, row in after.items():
        assert row["model_version"] == f"{second}:released-plus-one-logit" and not row["already_screened"]
        assert row["probability"] > before[name]["probability"]  # the new model really scored it
    versions = {v["id"]: v["status"] for v in json.loads(run_screen(env, "models", "list", "--json").stdout)}
    assert (versions[released["id"]], versions[int(second)]) == ("retired", "active")
    assert list(versions.values()).count("active") == 1

    assert f"version {released['id']}" in run_screen(env, "models", "rollback").stdout
    rerun = run_screen(env, "enqueue", "--wait", str(folder))
    assert "4 already screened by this model" in rerun.stdout  # version 1's rows still stand
    shown = json.loads(run_screen(env, "models", "show", str(released["id"])).stdout)
    assert (
        shown["status"] == "active"
        and shown["files"] == shown["data"]["train_images"] + shown["data"]["validation_images"]
    )
    points = shown["populations"]["points"]  # the version's own threshold: its more sensitive population's
    assert shown["threshold"] == pytest.approx(min(point["threshold"] for point in points.values()))


@pytest.mark.integration  # every release scored end to end, the two-network one too: not the unit tier
def test_registration_scores_the_reference_films_and_refuses_what_does_not_serve_what_it_claims(tmp_path):
    """Every hostile artifact of the adversarial list loads; none of them passes the reference films."""
    for release in RELEASES:  # the shipped releases pass, each on the populations it serves
        figures = {f.population: f for f in check_reference_films(REPOSITORY / "models" / release).figures}
        assert figures[Population.CHILD].required and figures[Population.CHILD].problem() is None, release
        has_points = read_manifest(REPOSITORY / "models" / release).populations is not None
        assert figures[Population.ADULT].required == has_points  # adults required of a version with an adult point
    released, two = REPOSITORY / "models" / RELEASED_ARTIFACT, REPOSITORY / "models" / RELEASES[1]
    plain = json.loads(zipfile.ZipFile(released).read("manifest.json"))["preprocessing"]
    kernel, bias = "head/pneumonia/kernel", "head/pneumonia/bias"
    hostile = {
        "nan.zip": ({bias: lambda b: b * np.nan}, {}, "probabilities that are not numbers"),
        "zeroed.zip": (  # its manifest claims AUC 0.9999: a claim, not a measure
            {kernel: np.zeros_like},
            {"metrics": {"validation": {"images": 100, "roc_auc": 0.9999}}},
            "fails the reference films",
        ),
        "inverted.zip": ({kernel: np.negative, bias: np.negative}, {}, "fails the reference films"),
        "gamma.zip": ({}, {"preprocessing": {**plain, "gamma": -3}}, "other parameters than its own (gamma)"),
        "small.zip": ({}, {"preprocessing": {**plain, "size": 64}}, "other parameters than its own (size)"),
        "clahe.zip": ({}, {"preprocessing": {**plain, "clahe_clip_limit": 2.0}}, "(clahe_clip_limit)"),
        "unnamed.zip": ({}, {"preprocessing": {**plain, "name": "mine"}}, "'mine' is none of"),
    }
    for name, (weights, manifest, message) in hostile.items():
        with pytest.raises(ArtifactError, match=re.escape(message)):
            check_reference_films(artifact_with_weights(released, tmp_path / name, weights, **manifest))
    never, always = artifact_with(two, tmp_path / "never.zip", threshold=0.999999), tmp_path / "always.zip"
    with pytest.raises(ArtifactError, match=re.escape("child: 5 of 10 films wrong at its operating point (0 of 5 pn")):
        check_reference_films(never)
    with pytest.raises(ArtifactError, match=re.escape("child: 5 of 10 films wrong at its operating point (5 of 5 pn")):
        check_reference_films(artifact_with(two, always, threshold=0.000001))
