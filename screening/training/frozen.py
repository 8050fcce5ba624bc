"""The first model: ImageNet ResNet50 frozen, a small head trained on its cached features."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from screening.imaging.preprocess import PreprocessSpec
from screening.model.calibration import calibrate, fit_temperature
from screening.model.infer import Classifier
from screening.model.network import (
    Architecture,
    as_stored,
    build_backbone,
    build_classifier,
    build_head,
    save_classifier,
)
from screening.model.weights import backbone_checksum, load_imagenet_weights
from screening.training.evaluate import evaluate
from screening.training.features import backbone_features, model_input
from screening.training.metrics import binary_metrics, expected_calibration_error, threshold_for_sensitivity
from screening.training.report import most_confident_mistakes, write_report
from screening.training.split import Example, list_examples, patient_split, split_manifest


@dataclass(frozen=True)
class FrozenTrainingConfig:
    validation_fraction: float = 0.2
    seed: int = 42
    epochs: int = 80
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 10
    target_sensitivity: float = 0.95


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in (0, 1)}


def train_frozen(
    data_dir: Path,
    weights_file: Path,
    artifact_path: Path,
    cache_dir: Path,
    config: FrozenTrainingConfig = FrozenTrainingConfig(),
    outside_check_dir: Path | None = None,
    architecture: Architecture = Architecture(),
    spec: PreprocessSpec = PreprocessSpec(),
    progress=None,  # noqa: ANN001
) -> dict:
    """Split DATA_DIR patient-wise, train, choose the threshold on the validation side, write the artifact."""
    train, validation = patient_split(list_examples(data_dir), config.validation_fraction, config.seed)
    return fit_frozen_head(
        train,
        validation,
        weights_file,
        artifact_path,
        cache_dir,
        config,
        outside_check_dir,
        architecture,
        spec,
        name="resnet50-frozen-head",
        notes={"data_dir": str(data_dir.resolve())},
        progress=progress,
    )


def fit_frozen_head(
    train: list[Example],
    validation: list[Example],
    weights_file: Path,
    artifact_path: Path,
    cache_dir: Path,
    config: FrozenTrainingConfig = FrozenTrainingConfig(),
    outside_check_dir: Path | None = None,
    architecture: Architecture = Architecture(),
    spec: PreprocessSpec = PreprocessSpec(),
    name: str = "resnet50-frozen-head",
    notes: dict | None = None,
    progress=None,  # noqa: ANN001
) -> dict:
    """Fit a head on frozen ImageNet features, threshold it on `validation`, and write the artifact."""
    keras.utils.set_random_seed(config.seed)
    imagenet = load_imagenet_weights(weights_file)
    backbone = build_backbone(imagenet)
    as_stored(backbone)  # features from the weights exactly as the artifact will hold them
    cache_file = cache_dir / f"features-{backbone_checksum(imagenet)[:12]}-{spec.name}.npz"

    def features(subset):  # noqa: ANN001, ANN202
        return backbone_features(
            backbone, [e.path for e in subset], [e.sha256 for e in subset], spec, cache_file, progress=progress
        )

    train_x, validation_x = features(train), features(validation)
    train_y = np.array([e.label for e in train])
    validation_y = np.array([e.label for e in validation])

    head = build_head(architecture)
    head.compile(
        keras.optimizers.Adam(config.learning_rate), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")]
    )
    stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.patience, restore_best_weights=True)
    history = head.fit(
        train_x,
        train_y,
        validation_data=(validation_x, validation_y),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=_class_weights(train_y),
        callbacks=[stop],
        verbose=0,
    )
    as_stored(head)
    uncalibrated = head.predict(validation_x, verbose=0)[:, 0]
    temperature = fit_temperature(validation_y, uncalibrated)
    validation_scores = calibrate(uncalibrated, temperature)
    threshold = threshold_for_sensitivity(validation_y, validation_scores, config.target_sensitivity)
    metrics = {
        "validation": binary_metrics(validation_y, validation_scores, threshold),
        "validation_ece_before_calibration": expected_calibration_error(validation_y, uncalibrated),
        "epochs": len(history.epoch),
    }
    classifier = build_classifier(backbone, head)
    if outside_check_dir is not None:
        metrics["official_val16"] = evaluate(
            Classifier(classifier, {"temperature": temperature}), spec, threshold, outside_check_dir
        )

    manifest = {
        "name": name,
        "created_at": datetime.now(UTC).isoformat(),
        "architecture": architecture.to_dict(),
        "preprocessing": spec.to_dict(),
        "threshold": threshold,
        "temperature": temperature,
        "metrics": metrics,
        "training_config": {"phase": "frozen-backbone head", **asdict(config), **(notes or {})},
        "data_manifest": split_manifest(train, validation),
    }
    manifest["artifact_sha256"] = save_classifier(classifier, manifest, artifact_path)
    mistakes = [
        (
            model_input(validation[i].path, spec)[:, :, 0],
            f"{'pneumonia' if validation_y[i] else 'normal'}, p={validation_scores[i]:.2f}",
        )
        for i in most_confident_mistakes(validation_y, validation_scores, threshold)
    ]
    write_report(
        artifact_path.with_name(f"{artifact_path.stem}-report"),
        manifest,
        history.history,
        validation_y,
        validation_scores,
        mistakes,
    )
    return manifest
