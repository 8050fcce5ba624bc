"""Several labelled sources, their balance, and the recipe's settings: plain functions, no training run."""

import shutil

import keras
import numpy as np
import pytest
from helpers import DATA, FULLRES, copy_adult_films, copy_training_set

from screening.config import ImageLimits
from screening.hashing import sha256_hex
from screening.imaging.errors import Unreadable
from screening.imaging.preprocess import preprocess
from screening.model.manifest import Architecture, ModelManifest, RunNotes, non_commercial
from screening.model.preprocessing import SPECS
from screening.model.recipe import TrainingConfig
from screening.training.augment import RandomGamma
from screening.training.labelled import LabelledDataError
from screening.training.metrics import threshold_for_every_group, threshold_for_sensitivity
from screening.training.retraining import LabelledImage, parent_sources, retraining_split
from screening.training.sources import SourceSpec, balancing_weights, multi_source_split
from screening.training.split import Example, Split
from screening.training.stream import LabelledImages
from screening.training.train import TrainingRun, train_network


def test_a_source_is_a_name_and_one_or_two_folders():
    assert SourceSpec.parse("kermany=/data/k") == SourceSpec("kermany", DATA.__class__("/data/k"))
    spec = SourceSpec.parse("adult=/a/train,/a/val")
    assert (spec.name, str(spec.train), str(spec.validation)) == ("adult", "/a/train", "/a/val")
    for bad in ("/no/name", "=/x", "name="):
        with pytest.raises(LabelledDataError):
            SourceSpec.parse(bad)


def test_sources_are_split_their_own_way_and_adult_films_into_their_sub_sources(tmp_path):
    adult = copy_adult_films(tmp_path / "adult", 6, 6)
    kermany = copy_training_set(tmp_path / "kermany", per_class=15)
    split = multi_source_split(
        [SourceSpec("kermany", kermany), SourceSpec("adult", adult / "train", adult / "val")], 0.2, seed=1
    )
    sources = {example.source for example in split.train + split.validation}
    assert "kermany" in sources and any(name.startswith("adult/") and name != "adult/" for name in sources)
    adult_validation = {e.path.name for e in split.validation if e.source.startswith("adult")}
    assert adult_validation == {path.name for path in (adult / "val").rglob("*.*")}  # the given folder, whole
    kermany_patients = [{e.patient for e in side if e.source == "kermany"} for side in (split.train, split.validation)]
    assert kermany_patients[0] and kermany_patients[1] and not kermany_patients[0] & kermany_patients[1]
    assert split.manifest().sources["kermany"].validation > 0
    with pytest.raises(LabelledDataError, match="must differ"):
        multi_source_split([SourceSpec("a", kermany), SourceSpec("a", kermany)], 0.2, 1)
    patients_from_manifest = multi_source_split([SourceSpec("adult", adult / "train")], 0.5, 1)
    assert patients_from_manifest.validation and patients_from_manifest.train  # its manifest says the patients
    (adult / "manifest.csv").unlink()
    with pytest.raises(LabelledDataError, match="Kermany-style names"):
        multi_source_split([SourceSpec("adult", adult / "train")], 0.2, 1)  # no validation folder, no patients


def test_every_source_weighs_the_same_and_each_class_within_it():
    def example(source, label):
        return Example(DATA, label, "p", "s", source)

    examples = (
        [example("big", 0)] * 30
        + [example("big", 1)] * 90
        + [example("one-class", 1)] * 10
        + [example("adult/both", 0)] * 20
        + [example("adult/both", 1)] * 10
        + [example("adult/pneumonia-only", 1)] * 5
    )
    weights = balancing_weights(examples)

    def total(source, label=None):
        chosen = [e.source.startswith(source) and label in (None, e.label) for e in examples]
        return float(weights[chosen].sum())

    assert total("big", 0) == pytest.approx(total("big", 1), rel=1e-4)
    assert total("one-class") == pytest.approx(total("big"), rel=1e-4) == pytest.approx(total("adult"), rel=1e-4)
    assert total("adult", 0) == pytest.approx(total("adult", 1), rel=1e-4)
    # a sub-source of one class keeps its share of that class (5 of 15 images), not half of its source
    assert total("adult/pneumonia-only") == pytest.approx(total("adult", 1) / 3, rel=1e-4)
    assert weights.mean() == pytest.approx(1.0)


def test_a_source_weighs_as_the_recipe_says_and_its_classes_stay_balanced():
    examples = [
        Example(DATA, label, "p", "s", source)
        for source, label, count in (("children", 0, 30), ("children", 1, 90), ("adult/a", 0, 20), ("adult/a", 1, 10))
        for _ in range(count)
    ]
    weights = balancing_weights(examples, {"adult": 3.0})

    def total(source, label=None):
        return float(weights[[e.source.startswith(source) and label in (None, e.label) for e in examples]].sum())

    assert total("adult") == pytest.approx(3 * total("children"), rel=1e-4)
    assert total("adult", 0) == pytest.approx(total("adult", 1), rel=1e-4)
    assert total("children", 0) == pytest.approx(total("children", 1), rel=1e-4)
    with pytest.raises(ValueError, match="source weight"):
        TrainingConfig(source_weights={"adult": 0})


def test_drawn_epochs_follow_the_balancing_weights_and_carry_none():
    film = sorted((FULLRES / "val").iterdir())[0]
    sha = sha256_hex(film)
    examples = [Example(film, 0, "p", sha, "big")] * 90 + [Example(film, 1, "p", sha, "small")] * 10
    weights = balancing_weights(examples)
    drawn = LabelledImages(examples, SPECS["plain-v1"], ImageLimits(), 8, weights, shuffle=True, draws=4000)
    assert len(drawn) == 500
    from_small = np.isin(drawn.order, np.arange(90, 100)).mean()
    assert 0.45 < from_small < 0.55  # 10 images, half the weight: about half the draws
    images, labels = drawn[0]  # the weights are in the drawing, not in the batch
    assert images.shape == (8, 224, 224, 3) and labels.shape == (8,)
    first = drawn.order.copy()
    drawn.on_epoch_end()
    assert len(drawn.order) == 4000 and not np.array_equal(first, drawn.order)
    every_image = LabelledImages(examples, SPECS["plain-v1"], ImageLimits(), 8, weights, shuffle=True)
    assert len(every_image) == 13 and len(every_image[0]) == 3 and sorted(every_image.order) == list(range(100))
    with pytest.raises(ValueError, match="weights"):
        LabelledImages(examples, SPECS["plain-v1"], ImageLimits(), 8, draws=10)


def test_training_refuses_to_fit_an_ensemble(tmp_path):
    """An ensemble is assembled from trained networks (`screen models ensemble`); retraining one trains one network."""
    ensemble = Architecture(members=2)
    run = TrainingRun(Split([], []), tmp_path / "w.npz", tmp_path / "m.zip", tmp_path, architecture=ensemble)
    with pytest.raises(ValueError, match="training fits one network, not 2"):
        train_network(run)
    assert not (tmp_path / "m.zip").exists()


def test_recipe_settings_are_checked_when_read():
    assert TrainingConfig.from_dict({"preprocessing": "plain-v1", "learning_rate_schedule": "cosine"})
    for bad in ({"preprocessing": "sharpest"}, {"learning_rate_schedule": "step"}, {"blur_sigma": 2.0}):
        with pytest.raises(ValueError):
            TrainingConfig.from_dict(bad)


def test_the_plain_spec_only_scales_and_stretches():
    film = np.tile(np.linspace(10, 200, 448, dtype=np.float32), (300, 1))
    plain = preprocess(film, SPECS["plain-v1"])[:, :, 0].astype(int)
    assert plain.shape == (224, 224) and plain.min() == 0 and plain.max() >= 254
    assert np.all(np.diff(plain[100]) >= 0)  # a ramp stays a ramp: no CLAHE, no gamma
    assert not np.array_equal(plain, preprocess(film, SPECS["cxr-seed-v1"])[:, :, 0])


def test_random_gamma_changes_only_training_images_and_keeps_the_range():
    images = np.full((64, 8, 8, 3), 100.0, np.float32)
    layer = RandomGamma(0.5, seed=3)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)
    changed = keras.ops.convert_to_numpy(layer(images, training=True))
    per_image = changed[:, 0, 0, 0]
    assert 0 <= changed.min() and changed.max() <= 255 and per_image.std() > 5
    assert np.all(changed == changed[:, :1, :1, :1])  # one gamma per image


def test_fine_tuning_trains_from_the_named_layer_on_and_never_batch_normalisation():
    from screening.model.network import build_backbone
    from screening.training.train import unfreeze_from

    backbone = build_backbone()
    unfreeze_from(backbone, "conv5_block1_1_conv")
    names = [layer.name for layer in backbone.layers]
    start = names.index("conv5_block1_1_conv")
    trained = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert (
        "conv4_block6_3_conv" not in trained and "conv5_block1_1_conv" in trained and "conv5_block3_3_conv" in trained
    )
    assert all(names.index(name) >= start for name in trained)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.trainable for layer in backbone.layers)


def test_the_every_source_threshold_gives_each_source_the_target_sensitivity():
    labels = np.array([1, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2, 0.4, 0.3, 0.35, 0.05])
    groups = np.array(["big"] * 6 + ["small"] * 4)
    threshold = threshold_for_every_group(labels, scores, groups, target=1.0)
    assert threshold == 0.3  # the small source's positives reach down to 0.3
    assert threshold_for_sensitivity(labels[:6], scores[:6], 1.0) == 0.6
    one_class = np.array(["big"] * 6 + ["negatives only"] * 4)
    assert threshold_for_every_group(np.r_[labels[:6], [0] * 4], scores, one_class, 1.0) == 0.6
    saturated = threshold_for_sensitivity(np.array([1, 1, 0]), np.array([1.0, 1.0, 0.0]), 0.95)
    assert 0.99 < saturated < 1.0 and 0.0 < threshold_for_sensitivity(np.array([1, 0]), np.zeros(2), 0.95) < 0.01
    with pytest.raises(ValueError):
        TrainingConfig(threshold_rule="median")


def test_commercial_use_only_leaves_out_non_commercial_licences_and_the_manifest_names_each_licence(tmp_path):
    adult = copy_adult_films(tmp_path / "adult", 20, 6)
    sources = [SourceSpec("adult", adult / "train", adult / "val")]
    every = multi_source_split(sources, 0.2, seed=1)
    licences = every.manifest().licences
    ieee = [name for name in licences if "ieee8023" in name]
    assert ieee and any(non_commercial(licence) for licence in licences[ieee[0]])
    commercial = multi_source_split(sources, 0.2, seed=1, commercial_use_only=True)
    left = commercial.train + commercial.validation
    assert left and not any(non_commercial(e.licence) for e in left)
    assert len(left) < len(every.train + every.validation)
    assert non_commercial("CC BY-NC-SA 4.0") and non_commercial("CC BY-NC-ND") and not non_commercial("CC BY 4.0")
    assert not non_commercial(None) and not non_commercial("NIH Clinical Center: unrestricted use (Kaggle: CC0)")


def test_retraining_a_multi_source_version_keeps_its_validation_split(tmp_path):
    adult = copy_adult_films(tmp_path / "adult", 6, 6)
    kermany = copy_training_set(tmp_path / "kermany", per_class=15)
    sources = [SourceSpec("kermany", kermany), SourceSpec("adult", adult / "train", adult / "val")]
    split = multi_source_split(sources, 0.2, seed=1)
    recorded = {spec.name: spec.describe() for spec in sources}
    parent = ModelManifest("m", Architecture(), SPECS["plain-v1"], 0.5, training_config=TrainingConfig(seed=1),
                           notes=RunNotes(sources=recorded), data_manifest=split.manifest())  # fmt: skip
    assert parent_sources(parent) == [SourceSpec(s.name, s.train.resolve(), s.validation) for s in sources[:1]] + [
        SourceSpec("adult", (adult / "train").resolve(), (adult / "val").resolve())
    ]
    again, feedback, changed = retraining_split(parent, parent_sources(parent), [])
    assert sorted(e.sha256 for e in again.validation) == sorted(e.sha256 for e in split.validation)
    assert sorted(e.sha256 for e in again.train) == sorted(e.sha256 for e in split.train) and feedback == changed == 0

    # A radiologist's label is for the film that was read: a path that holds another film by now is left out
    read, replaced, kept = (tmp_path / f"{name}.jpeg" for name in ("read", "replaced", "kept"))
    normal, pneumonia = split.train[0].path, next(e.path for e in split.train if e.label == 1)
    for film, original in ((read, normal), (replaced, normal), (kept, pneumonia)):
        shutil.copy(original, film)
    labelled = [LabelledImage(sha256_hex(film), film, pneumonia=True) for film in (replaced, kept)]
    shutil.copy(pneumonia, replaced)  # another patient's film now where the labelled one was
    with_labels, feedback, changed = retraining_split(parent, parent_sources(parent), labelled)
    assert (feedback, changed) == (1, 1)
    assert [e.path for e in with_labels.train if e.patient == "radiologist label"] == [kept]
    # and one that changes during the run stops it rather than train on another film under this label
    shutil.copy(normal, kept)
    stream = LabelledImages([e for e in with_labels.train if e.path == kept], SPECS["plain-v1"], ImageLimits(), 1)
    with pytest.raises(Unreadable, match="SHA-256 differs"):
        stream[0]
