"""Transfer learning from ImageNet ResNet50 in two phases, as the published projects do.

1. The head alone, on cached features of the frozen backbone (fast on a CPU).
2. Optionally, the top of the backbone fine-tuned at a low learning rate on augmented images
   (rotation, shift, shear, zoom; horizontal flip only on request: it moves the heart).
Both phases weigh the classes against the 1:3 imbalance, stop early and keep the best epoch; the
second also lowers its learning rate on a plateau. Then the probabilities are temperature-scaled,
the threshold is chosen for the target sensitivity, and the artifact and its report are written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
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
    imagenet_input,
    save_classifier,
)
from screening.model.weights import backbone_checksum, load_imagenet_weights
from screening.training.config import TrainingConfig
from screening.training.evaluate import evaluate
from screening.training.features import backbone_features, model_input
from screening.training.metrics import binary_metrics, expected_calibration_error, threshold_for_sensitivity
from screening.training.report import most_confident_mistakes, write_report
from screening.training.split import Example, list_examples, patient_split, split_manifest

Progress = Callable[[str], None]


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in (0, 1)}


def _epoch_log(phase: str, progress: Progress) -> keras.callbacks.Callback:
    def log(epoch: int, logs: dict) -> None:
        progress(f"{phase} epoch {epoch + 1}: loss {logs['loss']:.4f}, validation AUC {logs['val_auc']:.4f}")

    return keras.callbacks.LambdaCallback(on_epoch_end=log)


def _augmentation(config: TrainingConfig) -> keras.Sequential:
    layers = [
        keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="constant"),
        keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="constant"),
        keras.layers.RandomShear(config.shear, config.shear, fill_mode="constant"),
        keras.layers.RandomZoom(config.zoom, fill_mode="constant"),
    ]
    return keras.Sequential(layers + ([keras.layers.RandomFlip("horizontal")] if config.horizontal_flip else []))


def _fine_tune(
    classifier: keras.Model,
    backbone: keras.Model,
    train: tuple,
    validation: tuple,
    config: TrainingConfig,
    progress: Progress,
) -> keras.callbacks.History:
    """Unfreeze the backbone from config.fine_tune_from on (BatchNorm stays frozen) and train on augmented images."""
    unfrozen = False
    for layer in backbone.layers:
        unfrozen = unfrozen or layer.name == config.fine_tune_from
        layer.trainable = unfrozen and not isinstance(layer, keras.layers.BatchNormalization)
    trainer = keras.Sequential([keras.Input(classifier.input_shape[1:]), _augmentation(config), classifier])
    trainer.compile(
        keras.optimizers.Adam(config.fine_tune_learning_rate),
        "binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            "val_auc", mode="max", patience=config.fine_tune_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau("val_auc", mode="max", factor=0.3, patience=1),
        _epoch_log("fine-tuning", progress),
    ]
    return trainer.fit(
        *train,
        validation_data=validation,
        epochs=config.fine_tune_epochs,
        batch_size=config.fine_tune_batch_size,
        class_weight=_class_weights(train[1]),
        callbacks=callbacks,
        verbose=0,
    )


def train_model(
    data_dir: Path,
    weights_file: Path,
    artifact_path: Path,
    cache_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    outside_check_dir: Path | None = None,
    progress: Progress = lambda message: None,
) -> dict:
    """Split DATA_DIR patient-wise, train, choose the threshold on the validation side, write the artifact."""
    train, validation = patient_split(list_examples(data_dir), config.validation_fraction, config.seed)
    return fit_model(
        train,
        validation,
        weights_file,
        artifact_path,
        cache_dir,
        config,
        outside_check_dir,
        notes={"data_dir": str(data_dir.resolve())},
        progress=progress,
    )


def fit_model(
    train: list[Example],
    validation: list[Example],
    weights_file: Path,
    artifact_path: Path,
    cache_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    outside_check_dir: Path | None = None,
    name: str = "resnet50-pneumonia",
    notes: dict | None = None,
    architecture: Architecture = Architecture(),
    spec: PreprocessSpec = PreprocessSpec(),
    progress: Progress = lambda message: None,
) -> dict:
    """Both phases on the given split, then calibration, threshold, metrics, artifact and report."""
    keras.utils.set_random_seed(config.seed)
    imagenet = load_imagenet_weights(weights_file)
    backbone = build_backbone(imagenet)
    as_stored(backbone)  # features from the weights exactly as the artifact will hold them
    cache_file = cache_dir / f"features-{backbone_checksum(imagenet)[:12]}-{spec.name}.npz"

    def features(subset: list[Example]) -> np.ndarray:
        return backbone_features(backbone, [e.path for e in subset], [e.sha256 for e in subset], spec, cache_file)

    train_y = np.array([e.label for e in train])
    validation_y = np.array([e.label for e in validation])
    validation_x = features(validation)
    head = build_head(architecture)
    head.compile(
        keras.optimizers.Adam(config.learning_rate), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")]
    )
    stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.patience, restore_best_weights=True)
    history = head.fit(
        features(train),
        train_y,
        validation_data=(validation_x, validation_y),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=_class_weights(train_y),
        callbacks=[stop, _epoch_log("head", progress)],
        verbose=0,
    ).history
    classifier = build_classifier(backbone, head)

    if config.fine_tune_epochs:

        def images(subset: list[Example]) -> np.ndarray:
            return imagenet_input(np.stack([model_input(e.path, spec) for e in subset]))

        validation_images = images(validation)
        tuned = _fine_tune(
            classifier, backbone, (images(train), train_y), (validation_images, validation_y), config, progress
        ).history
        history = {key: history[key] + tuned[key] for key in ("loss", "auc", "val_loss", "val_auc")}
        as_stored(classifier)
        uncalibrated = classifier.predict(validation_images, verbose=0)[:, 0]
    else:
        as_stored(classifier)
        uncalibrated = head.predict(validation_x, verbose=0)[:, 0]

    temperature = fit_temperature(validation_y, uncalibrated)
    validation_scores = calibrate(uncalibrated, temperature)
    threshold = threshold_for_sensitivity(validation_y, validation_scores, config.target_sensitivity)
    metrics = {
        "validation": binary_metrics(validation_y, validation_scores, threshold),
        "validation_ece_before_calibration": expected_calibration_error(validation_y, uncalibrated),
        "epochs": len(history["loss"]),
    }
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
        "training_config": {"phase": config.phase, **asdict(config), **(notes or {})},
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
        history,
        validation_y,
        validation_scores,
        mistakes,
    )
    return manifest
