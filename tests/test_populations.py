"""Operating points per population: which point an image gets and why, the header's age, choosing points, the
age-group estimate, and the whole path from `screen models operating-points` to a result row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from helpers import (
    ADULT,
    CXR224,
    DATA,
    DICOM,
    FULLRES,
    REPOSITORY,
    results_by_name,
    run_screen,
)

from screening.imaging.dicom import patient_age_years
from screening.model.artifact import policy_of, read_age_estimate, read_artifact, read_manifest
from screening.model.figures import Confusion
from screening.model.manifest import EstimateTest
from screening.model.population import AgeGroupEstimate, OperatingPoint, PopulationPolicy, known_population
from screening.model.recipe import TrainingConfig
from screening.model.released import RELEASED_ARTIFACT
from screening.training.metrics import binary_metrics, bootstrap_intervals
from screening.training.populations import (
    acquired_otherwise,
    choose_point,
    cross_validated,
    estimate_examples,
    estimate_test,
    patient_folds,
)
from screening.training.split import Example
from screening.vocabulary import Population, PopulationBasis

CHILD_POINT, ADULT_POINT = OperatingPoint(0.6, 1.0), OperatingPoint(0.2, 2.0)


def _estimate(weight: float = 1.0) -> AgeGroupEstimate:
    """P(adult) = sigmoid(weight * feature 0): the first feature says how adult the image looks."""
    ones = np.ones(2)
    return AgeGroupEstimate(np.zeros(2), ones, np.array([weight, 0.0]), 0.0, adult_from=0.9, child_below=0.1)


@pytest.mark.unit
def test_an_image_gets_its_known_population_else_the_estimate_else_the_more_sensitive_point():
    policy = PopulationPolicy({Population.CHILD: CHILD_POINT, Population.ADULT: ADULT_POINT}, estimate=_estimate())
    assert policy.most_sensitive == Population.ADULT  # flags from logit 2 * logit(0.2) = -2.77, not logit(0.6) = 0.41
    header = policy.decide((Population.CHILD, PopulationBasis.HEADER), adult_score=0.99)
    assert (header.point, header.population, header.basis) == (CHILD_POINT, Population.CHILD, PopulationBasis.HEADER)
    assert policy.decide(None, 0.95).point == ADULT_POINT and policy.decide(None, 0.95).basis == "estimate"
    assert policy.decide(None, 0.05).population == Population.CHILD
    unsure = policy.decide(None, 0.5)
    assert (unsure.point, unsure.basis) == (ADULT_POINT, PopulationBasis.UNCERTAIN)
    single = PopulationPolicy.one_point(0.3, 1.5).decide((Population.ADULT, PopulationBasis.OVERRIDE), 0.99)
    assert single.point == OperatingPoint(0.3, 1.5) and single.population is None and single.basis is None


@pytest.mark.unit
def test_the_header_age_comes_before_the_batch_override():
    assert known_population(12.0, Population.ADULT) == (Population.CHILD, PopulationBasis.HEADER)
    assert known_population(18.0, None) == (Population.ADULT, PopulationBasis.HEADER)
    assert known_population(None, Population.ADULT) == (Population.ADULT, PopulationBasis.OVERRIDE)
    assert known_population(None, None) is None


def _header(**values: str) -> pydicom.Dataset:
    dataset = pydicom.Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.mark.unit
@pytest.mark.parametrize(
    ("values", "years"),
    [
        ({"PatientAge": "045Y"}, 45.0),
        ({"PatientAge": "018M"}, 1.5),
        ({"PatientAge": "003W", "PatientBirthDate": "19700101", "StudyDate": "20261201"}, 21 / 365.25),
        ({"PatientAge": "62"}, None),  # not an age string (VR AS), and no dates to fall back on
        ({"PatientAge": "62", "PatientBirthDate": "20200601", "StudyDate": "20261201"}, 6.5),
        ({"PatientBirthDate": "19700100", "StudyDate": "20261201"}, None),  # no such day
        ({"PatientBirthDate": "a1b2c3d4", "StudyDate": "20261201"}, None),  # an anonymiser's hash
        ({"PatientBirthDate": "20300101", "StudyDate": "20261201"}, None),  # born after the study
        ({"PatientBirthDate": "20100101", "StudyDate": "2026-12-01", "ContentDate": "20200101"}, 10.0),
        ({"PatientAge": "999Y"}, None),
        ({}, None),
    ],
)
def test_the_patient_age_is_read_only_from_valid_header_values(values, years):
    found = patient_age_years(_header(**values))
    assert found == pytest.approx(years, abs=0.01) if years is not None else found is None


@pytest.mark.unit
def test_a_point_keeps_the_target_sensitivity_on_every_source_and_cross_validation_holds_films_out():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    logits = np.where(labels == 1, 1.5, -1.5) + rng.normal(0, 1.2, labels.size)
    sources = np.array(["adult/A", "adult/B"] * 60)
    point = choose_point(labels, logits, sources, target=0.9)
    scores = 1 / (1 + np.exp(-logits / point.temperature))
    for source in ("adult/A", "adult/B"):
        members = (sources == source) & (labels == 1)
        assert (scores[members] >= point.threshold).mean() >= 0.9
    patients = [f"p{i // 2}" for i in range(labels.size)]  # two films per patient
    folds = list(patient_folds(patients, 5, seed=1))
    assert np.all(np.sum(folds, axis=0) == 1)
    assert all(len({patients[i] for i in np.flatnonzero(fold)} & {patients[i] for i in np.flatnonzero(~fold)}) == 0
               for fold in folds)  # fmt: skip
    crossed = cross_validated(labels, logits, sources, patients, 0.9, seed=1)
    assert crossed.groups["all"].images == 120 and 0.6 < crossed.groups["all"].sensitivity <= 1.0
    assert crossed.folds == 5 and set(crossed.groups) == {"all", "adult/A", "adult/B"}


@pytest.mark.unit
def test_metrics_at_one_threshold_per_image():
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.3, 0.5, 0.4, 0.9])
    thresholds = np.array([0.6, 0.4, 0.35, 0.6])  # the second normal is flagged at its point, the others are right
    metrics = binary_metrics(labels, scores, thresholds)
    assert metrics.confusion == Confusion(tn=1, fp=1, fn=0, tp=2) and metrics.threshold is None
    assert binary_metrics(labels, scores, np.full(4, 0.5)).threshold == 0.5
    assert set(bootstrap_intervals(labels, scores, thresholds, rounds=20)) >= {"sensitivity", "specificity"}


@pytest.mark.unit
def test_the_estimate_reports_right_wrong_and_unplaced_films_per_source():
    features = np.array([[5.0, 0], [4.0, 0], [0.1, 0], [-5.0, 0], [3.0, 0]])
    truth = np.array([Population.ADULT, Population.ADULT, Population.ADULT, Population.CHILD, Population.CHILD])
    sources = np.array(["adult/NIH", "adult/NIH", "adult/NIH", "kermany", "kermany"])
    tested = estimate_test(_estimate(), features, truth, sources)
    assert tested["adult/NIH"] == EstimateTest(images=3, right=2, wrong=0, not_placed=1, accuracy=2 / 3)
    assert tested["kermany"].wrong == 1 and tested["kermany"].accuracy == 0.5


def _dicom_with_age(source: str, target, age: str) -> None:
    """A chest DICOM whose header's only age is `age` (its birth date removed)."""
    dataset = pydicom.dcmread(DICOM / source)
    dataset.PatientAge = age
    if "PatientBirthDate" in dataset:
        del dataset.PatientBirthDate
    dataset.save_as(target)


@pytest.mark.e2e  # `screen train`, `screen models operating-points`, `screen enqueue` and `screen evaluate`
def _films_the_release_never_trained_on(target: Path, children_per_class: int, adults: tuple[int, int]) -> list[str]:
    """Children of the released network's validation side and adults of the adult validation split (it trained on
    neither), as two sources: a real network, so its points pass the reference films as a weak one's would not."""
    unseen = {
        row.file
        for row in read_manifest(REPOSITORY / "models" / RELEASED_ARTIFACT).data_manifest.files
        if row.source == "kermany" and row.split == "validation"
    }
    for label in ("NORMAL", "PNEUMONIA"):
        (target / "children" / label).mkdir(parents=True)
        for source in [path for path in sorted((CXR224 / label).iterdir()) if path.name in unseen][:children_per_class]:
            shutil.copy(source, target / "children" / label / source.name)
        films = sorted((ADULT / "val" / label).iterdir())
        for side, chosen in (("train", films[: adults[0]]), ("val", films[adults[0] : sum(adults)])):
            (target / "adults" / side / label).mkdir(parents=True)
            for source in chosen:
                shutil.copy(source, target / "adults" / side / label / source.name)
    shutil.copy(ADULT / "manifest.csv", target / "adults" / "manifest.csv")
    adult = target / "adults"
    return ["--source", f"kermany={target / 'children'}", "--source", f"adult={adult / 'train'},{adult / 'val'}"]


@pytest.mark.e2e  # `screen models operating-points`, `screen enqueue` and `screen evaluate`
def test_operating_points_per_population_from_training_to_the_result_rows(screen_env, tmp_path):
    sources = _films_the_release_never_trained_on(tmp_path / "sources", 30, (12, 8))
    network = REPOSITORY / "models" / RELEASED_ARTIFACT

    pointed = tmp_path / "pointed" / "pointed.zip"
    command = ("models", "operating-points", str(network), *sources, "--out", str(pointed))
    refused = run_screen(screen_env, *command, "--population", "kermany=child", check=False)
    assert refused.returncode == 2 and "give every source, and only those, a population" in refused.stderr
    populations = ("--population", "kermany=child", "--population", "adult=adult")
    full_size = tmp_path / "full_size"  # children's films at their own size, for the estimate alone
    full_size.mkdir()
    for source in sorted((FULLRES / "train" / "NORMAL").iterdir())[:4]:
        shutil.copy(source, full_size / source.name)
    estimate_folder = ("--estimate-folder", f"child={full_size}")
    run_screen(screen_env, *command, *populations, *estimate_folder, "--target", "child=0.95", "--target", "adult=0.9")
    manifest, _ = read_artifact(pointed)
    described = manifest.populations
    assert described is not None and set(described.points) == {"child", "adult"}
    assert described.points["child"].target_sensitivity == 0.95
    policy = policy_of(manifest, read_age_estimate(pointed, manifest))
    assert policy.per_population and policy.estimate is not None
    assert (manifest.threshold, manifest.temperature) == (
        policy.points[policy.most_sensitive].threshold,
        policy.points[policy.most_sensitive].temperature,
    )
    added = described.estimate.added_folders[str(full_size)]
    assert added.population == "child" and added.images + added.left_out == 4
    children_trained = manifest.data_manifest.sources["kermany"].train
    assert described.estimate.fitted_on["child"] == 2 * (children_trained + added.images)  # as is, and varied
    tested = described.estimate.test
    assert "kermany" in tested and any(name.startswith("adult/") for name in tested)
    assert all(counts.right + counts.wrong + counts.not_placed == counts.images for counts in tested.values())
    by_population = manifest.metrics.populations
    assert set(by_population) == {"child", "adult"} and by_population["adult"].cross_validated is not None
    assert by_population["child"].sensitivity >= 0.95 and by_population["adult"].sensitivity >= 0.9
    card = (pointed.parent / "MODEL_CARD.md").read_text()
    assert "## Operating points per population" in card and "age-group estimate" in card

    shown = json.loads(run_screen(screen_env, "models", "list", "--json").stdout)
    version = shown[-1]
    assert version["populations"]["child"]["threshold"] == pytest.approx(described.points["child"].threshold)
    run_screen(screen_env, "models", "promote", str(version["id"]))

    night = tmp_path / "night"
    night.mkdir()
    _dicom_with_age("cr_chest_pa_monochrome2_jpeg_baseline.dcm", night / "child.dcm", "007Y")
    _dicom_with_age("cr_chest_pa_monochrome1_jpegls.dcm", night / "adult.dcm", "062Y")
    _dicom_with_age("cr_chest_pa_monochrome1_jpeg_lossless.dcm", night / "no_age.dcm", "62")  # invalid AS
    shutil.copy(FULLRES / "val" / "NORMAL2-IM-1427-0001.jpeg", night / "film.jpeg")
    run_screen(screen_env, "enqueue", "--wait", str(night))
    rows = results_by_name(screen_env)
    assert (rows["child.dcm"]["population"], rows["child.dcm"]["population_basis"]) == ("child", "header")
    assert rows["child.dcm"]["threshold"] == pytest.approx(described.points["child"].threshold)
    assert (rows["adult.dcm"]["population"], rows["adult.dcm"]["population_basis"]) == ("adult", "header")
    for name in ("no_age.dcm", "film.jpeg"):
        assert rows[name]["population_basis"] in ("estimate", "uncertain") and rows[name]["adult_score"] is not None
        point = described.points[rows[name]["population"]]
        assert rows[name]["threshold"] == pytest.approx(point.threshold)
        assert rows[name]["flagged"] == (rows[name]["probability"] >= point.threshold)
    table = run_screen(screen_env, "results").stdout
    assert "child" in table and "(header)" in table

    overridden = tmp_path / "known"
    overridden.mkdir()
    shutil.copy(night / "film.jpeg", overridden / "film.jpeg")
    shutil.copy(night / "child.dcm", overridden / "child.dcm")
    shutil.copy(sorted((ADULT / "val" / "NORMAL").iterdir())[0], overridden / "adult_film.png")
    run_screen(screen_env, "enqueue", "--wait", "--population", "adult", str(overridden))
    rows = results_by_name(screen_env)
    assert rows["adult_film.png"]["population_basis"] == "override" and rows["adult_film.png"]["population"] == "adult"
    assert rows["child.dcm"]["population_basis"] == "header"  # the header's age comes first

    labelled = tmp_path / "labelled"
    for label, folder in (("NORMAL", "NORMAL"), ("PNEUMONIA", "PNEUMONIA")):
        (labelled / label).mkdir(parents=True)
        for source in sorted((CXR224 / folder).iterdir())[200:203]:
            shutil.copy(source, labelled / label / source.name)
    evaluated = json.loads(
        run_screen(
            screen_env, "evaluate", str(version["id"]), str(labelled), "--population", "child", "--format", "json"
        ).stdout  # fmt: skip
    )
    assert set(evaluated["by_population"]) == {"child"}
    assert evaluated["by_population"]["child"]["decided_by"] == {"override": 6}
    assert evaluated["by_population"]["child"]["threshold"] == pytest.approx(described.points["child"].threshold)

    # a new gate for a version with operating points keeps them and its age-group estimate, and counts how often
    # each population's flags survive variations that do not change the diagnosis
    gated = tmp_path / "gated" / "gated.zip"
    out_of_scope = ("--out-of-scope", str(DATA / "out-of-scope"), "--out", str(gated))
    run_screen(screen_env, "models", "gate", str(pointed), *sources, *out_of_scope)  # registered: it loads whole
    regated, _ = read_artifact(gated)
    assert regated.populations == described and read_age_estimate(gated, regated) is not None
    consistency = regated.metrics.consistency.populations
    assert set(consistency) == {"child", "adult"} and all(group.films > 0 for group in consistency.values())


@pytest.mark.unit
def test_a_recipe_names_only_children_and_adults_and_gives_each_a_target():
    config = TrainingConfig(
        target_sensitivity=0.9, populations={"kermany": "child"}, population_sensitivity={"child": 0.95}
    )
    assert config.population_targets() == {Population.CHILD: 0.95, Population.ADULT: 0.9}
    with pytest.raises(ValueError, match="a population is child or adult"):
        TrainingConfig(populations={"kermany": "infant"})


@pytest.mark.unit
def test_films_acquired_otherwise_keep_their_size_and_differ(tmp_path):
    image = np.repeat(np.linspace(0, 255, 224 * 224).reshape(224, 224, 1), 3, axis=2).astype(np.uint8)
    rng = np.random.default_rng(3)
    varied = [acquired_otherwise(image, rng) for _ in range(6)]
    assert all(v.shape == image.shape and v.dtype == np.uint8 for v in varied)
    assert all(np.abs(v.astype(int) - image).mean() < 20 for v in varied)  # the same film, acquired otherwise
    assert any(not np.array_equal(v, image) for v in varied)


@pytest.mark.unit
def test_estimate_folders_leave_out_validation_side_patients(tmp_path):
    for name in ("person5_virus_1.jpeg", "person6_virus_1.jpeg", "IM-0001-0001.jpeg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    validation = [Example(tmp_path / "v.jpeg", 1, "kermany:person5", "0" * 64, "kermany")]
    examples, left_out = estimate_examples(tmp_path, Population.CHILD, validation)
    assert sorted(example.path.name for example in examples) == ["IM-0001-0001.jpeg", "person6_virus_1.jpeg"]
    assert left_out == 1 and {example.label for example in examples} == {0}
