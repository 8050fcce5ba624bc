"""The backbone is Keras' real ImageNet ResNet50; the artifact round-trips and refuses tampering."""

import re
import shutil

import cv2
import keras
import numpy as np
import pytest
import skimage.data
from helpers import REPOSITORY, artifact_with

from screening.config import load_settings
from screening.hashing import sha256_hex
from screening.imaging.preprocess import preprocess
from screening.model.artifact import ArtifactError, read_gate, read_manifest
from screening.model.explain import classifier_grad_cam
from screening.model.manifest import Architecture, ModelManifest
from screening.model.network import (
    as_stored,
    build_backbone,
    build_classifier,
    build_ensemble,
    build_head,
    load_classifier,
    member_names,
    save_classifier,
    with_features,
    with_normalisation,
)
from screening.model.preprocessing import SPECS
from screening.model.released import RELEASED_ARTIFACT, RELEASES
from screening.model.weights import (
    BACKBONE_PARAMETERS,
    CACHE_NAME,
    WeightsError,
    backbone_checksum,
    keras3_layer_name,
    load_imagenet_weights,
    verify_backbone,
)

RELEASED = REPOSITORY / "models" / RELEASED_ARTIFACT


@pytest.fixture(scope="module")
def imagenet():
    """Fetched by `screen weights fetch` (the README's test command runs it first)."""
    return load_imagenet_weights(load_settings().weights_dir / CACHE_NAME)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("conv1", "conv1_conv"),
        ("bn_conv1", "conv1_bn"),
        ("res2a_branch1", "conv2_block1_0_conv"),
        ("bn2a_branch2b", "conv2_block1_2_bn"),
        ("res4f_branch2c", "conv4_block6_3_conv"),
        ("fc1000", "predictions"),
    ],
)
def test_keras2_layer_names_map_to_keras3(old, new):
    assert keras3_layer_name(old) == new


def test_cached_weights_are_the_pinned_imagenet_backbone(imagenet):
    verify_backbone(imagenet)
    assert sum(a.size for n, a in imagenet.items() if not n.startswith("predictions/")) == BACKBONE_PARAMETERS
    tampered = dict(imagenet)
    tampered["conv1_conv/bias"] = tampered["conv1_conv/bias"] + 1e-3
    with pytest.raises(WeightsError, match="checksum"):
        verify_backbone(tampered)
    assert backbone_checksum(tampered) != backbone_checksum(imagenet)


@pytest.mark.integration  # the whole ImageNet classifier, its top too: a network of its own
def test_full_imagenet_model_recognises_scikit_image_photos(imagenet):
    """281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso."""
    model = with_normalisation(build_backbone(imagenet, include_top=True))  # the classifier's own normalisation layer
    photos = {"chelsea": {281, 282, 285}, "coffee": {967}}
    images = [cv2.resize(getattr(skimage.data, photo)(), (224, 224), interpolation=cv2.INTER_AREA) for photo in photos]
    for probabilities, classes in zip(model.predict(np.stack(images), verbose=0), photos.values(), strict=True):
        assert int(np.argmax(probabilities)) in classes and probabilities.max() > 0.5


def test_released_artifacts_load_and_carry_their_card_numbers():
    """The first release (children only, no gate) stays for rollback; the current one has a gate."""
    first, current = REPOSITORY / "models" / RELEASES[0], REPOSITORY / "models" / RELEASES[-1]
    model, manifest = load_classifier(first, sha256_hex(first))
    assert model.count_params() == BACKBONE_PARAMETERS + 2048 * 128 + 128 + 128 + 1
    assert manifest.preprocessing.name == "cxr-seed-v1" and read_gate(first, manifest) is None
    assert manifest.metrics.validation.sensitivity >= 0.95
    model, manifest = load_classifier(current, sha256_hex(current))
    assert current == RELEASED and manifest.preprocessing.name == "plain-v1"
    gate = read_gate(current, manifest)
    assert gate is not None and manifest.gate is not None and manifest.gate.test.out_of_scope_refusal_rate >= 0.95
    assert all(rate <= 0.01 for rate in manifest.gate.test.frontal_refusal_rate.values())
    assert {"kermany", "adult"} <= set(manifest.metrics.validation_by_source)
    assert all((REPOSITORY / "models" / name).stat().st_size < 100 * 2**20 for name in RELEASES)


def test_an_artifact_that_differs_from_the_registry_is_refused(tmp_path):
    copy = tmp_path / "model.zip"
    shutil.copy(RELEASED, copy)
    expected = sha256_hex(copy)
    with open(copy, "ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        load_classifier(copy, expected)
    assert read_manifest(copy).threshold > 0


def test_a_worker_process_can_load_one_artifact_after_another():
    """A hot switch builds a second model in the same process: its weight names must still match."""
    first, manifest = load_classifier(REPOSITORY / "models" / RELEASES[0])
    assert [v.path for v in first.weights] == manifest.weight_names
    second, manifest = load_classifier(RELEASED)  # refused if a name had changed (as `conv1_conv_1` would)
    assert [v.path for v in second.weights] == manifest.weight_names


@pytest.mark.integration  # a two-network model built and scored: not the unit tier
def test_an_ensemble_scores_the_mean_logit_reads_its_first_members_features_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)  # random members, the same each run
    architecture = Architecture(members=2)
    members = [(build_backbone(name=b), build_head(architecture, name=h)) for b, h in map(member_names, range(2))]
    ensemble = build_classifier(members)
    as_stored(ensemble)
    singles = [build_classifier([member]) for member in members]  # the same layers, alone
    images = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3)).astype(np.float32)
    alone = [single.predict(images, verbose=0) for single in singles]
    assert not np.allclose(alone[0], alone[1])
    assert np.allclose(ensemble.predict(images, verbose=0), np.mean(alone, axis=0), atol=1e-4)
    rows = with_features(ensemble).predict(images, verbose=0)
    assert np.allclose(rows[:, 1:], with_features(singles[0]).predict(images, verbose=0)[:, 1:], atol=1e-4)
    assert np.allclose(rows[:, :1], np.mean(alone, axis=0), atol=1e-4)
    copies = [build_classifier([(build_backbone(), build_head(Architecture()))]) for _ in singles]
    for copy, single in zip(copies, singles, strict=True):
        copy.set_weights(single.get_weights())  # as separately loaded networks are: each named as a single one
    assembled = build_ensemble(copies, Architecture())
    assert np.allclose(assembled.predict(images, verbose=0), rows[:, :1], atol=1e-4)
    path = tmp_path / "ensemble.zip"
    save_classifier(ensemble, ModelManifest("ensemble", architecture, {}, 0.5), path)
    loaded, manifest = load_classifier(path)
    assert manifest.architecture.members == 2
    assert np.allclose(loaded.predict(images, verbose=0), rows[:, :1], atol=1e-4)
    heatmaps = classifier_grad_cam(loaded, images)
    peaks = heatmaps.max(axis=(1, 2))  # Grad-CAM's ReLU leaves a random net's map all 0 where its gradients are < 0
    assert heatmaps.shape == (3, 7, 7) and heatmaps.min() >= 0 and np.all(np.isclose(peaks, 1.0) | (peaks == 0))
    assert peaks.max() == pytest.approx(1.0)


def test_the_graph_takes_the_size_its_preprocessing_spec_gives():
    """One network, any square input: a 320-px spec gives finer detail (a 10 x 10 grid, where the 224-px inputs that
    every other test scores give 7 x 7) with the same weights and feature width."""
    keras.utils.set_random_seed(0)
    classifier = build_classifier([(build_backbone(), build_head(Architecture()))])
    film = np.random.default_rng(0).integers(0, 4096, (600, 500)).astype(np.uint16)
    image = preprocess(film, SPECS["plain-v1-320"])[None]
    assert image.shape == (1, 320, 320, 3)
    rows = with_features(classifier).predict(image, verbose=0)
    assert rows.shape == (1, 2049) and np.isfinite(rows).all()
    assert classifier_grad_cam(classifier, image).shape == (1, 10, 10)


def test_a_manifest_is_read_as_records_and_one_that_does_not_fit_is_refused_where_it_does_not(tmp_path):
    """The version record is typed: every release reads back as records and writes back as it was read; a figure of
    the wrong type, a recipe a run could not use or a parameter of another network is refused in one line naming it."""
    for release in RELEASES:
        manifest = read_manifest(REPOSITORY / "models" / release)
        assert ModelManifest.from_dict(manifest.to_dict()) == manifest
    assert read_manifest(REPOSITORY / "models" / RELEASES[0]).metrics.checks["official_val16"].images == 16
    released = REPOSITORY / "models" / RELEASED_ARTIFACT
    kermany = read_manifest(released).metrics.validation_by_source["kermany"]
    assert 0.9 < kermany.roc_auc <= 1 and kermany.ci95["roc_auc"][0] <= kermany.roc_auc
    refused = {
        "metrics.validation.roc_auc": {"metrics": {"validation": {"images": 3, "roc_auc": "high"}}},
        "training_config": {"training_config": {"threshold_rule": "whatever"}},
        "architecture.backbone_layers": {"architecture": {"backbone": "resnet50", "backbone_layers": 101}},
    }
    for where, changes in refused.items():
        with pytest.raises(ArtifactError, match=re.escape(f"does not fit at {where} (")):
            read_manifest(artifact_with(released, tmp_path / f"{where}.zip", **changes))
