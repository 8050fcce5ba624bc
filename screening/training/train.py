"""Transfer learning from ImageNet ResNet50, as named steps that pass one TrainingRun along.

features -> head -> fine-tune -> calibrate -> package:

1. features: the frozen backbone's features of every image, cached by content hash.
2. head: the dense head alone on those features (fast on a CPU).
3. fine-tune (optional): the top of the backbone at a low learning rate on augmented images
   (rotation, shift, shear, zoom; horizontal flip only on request: it moves the heart).
4. calibrate: the temperature on the validation side's logits, then the threshold for the target
   sensitivity, and the metrics (also on any extra labelled folders, scored end to end).
5. package: the artifact and its training report.
Both training steps weigh the classes against the 1:3 imbalance, stop early and keep the best
epoch; fine-tuning also lowers its learning rate on a plateau.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from screening.config import ImageLimits
from screening.imaging.pipeline import prepare_file
from screening.imaging.preprocess import PreprocessSpec
from screening.model.calibration import fit_temperature, probabilities
from screening.model.infer import Classifier, predict_in_batches
from screening.model.manifest import Architecture, ModelManifest
from screening.model.network import (
    as_stored,
    build_backbone,
    build_classifier,
    build_head,
    save_classifier,
    with_normalisation,
)
from screening.model.weights import backbone_checksum, load_imagenet_weights
from screening.training.config import TrainingConfig
from screening.training.evaluate import folder_metrics
from screening.training.features import backbone_features, model_inputs
from screening.training.metrics import binary_metrics, expected_calibration_error, threshold_for_sensitivity
from screening.training.report import most_confident_mistakes, write_report
from screening.training.split import Example, Split

Say = Callable[[str], None]  # where a step reports what it did (the CLI prints it)
HISTORY_KEYS = ("loss", "auc", "val_loss", "val_auc")


@dataclass
class TrainingRun:
    """One training run: its inputs, then what each step adds (read top to bottom, in step order)."""

    split: Split
    weights_file: Path
    artifact_path: Path
    cache_dir: Path
    config: TrainingConfig = TrainingConfig()
    limits: ImageLimits = ImageLimits()
    name: str = "resnet50-pneumonia"
    notes: dict[str, Any] = field(default_factory=dict)  # recorded with the training config (data folder, labels)
    checks: dict[str, Path] = field(default_factory=dict)  # extra labelled folders, by name, scored end to end
    architecture: Architecture = Architecture()
    spec: PreprocessSpec = PreprocessSpec()
    say: Say = lambda message: None
    # features
    backbone: keras.Model | None = None
    train_features: np.ndarray | None = None
    validation_features: np.ndarray | None = None
    # head, fine-tune
    head: keras.Model | None = None
    classifier: keras.Model | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    # calibrate
    temperature: float = 1.0
    threshold: float = 0.5
    validation_scores: np.ndarray | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def train(run: TrainingRun) -> ModelManifest:
    """Every step in order; returns the manifest of the artifact written to run.artifact_path."""
    keras.utils.set_random_seed(run.config.seed)
    for step in (features, fit_head, fine_tune, calibrate):
        step(run)
    return package(run)


def features(run: TrainingRun) -> None:
    """The frozen backbone's features (from the weights exactly as the artifact will hold them), cached."""
    imagenet = load_imagenet_weights(run.weights_file)
    run.backbone = build_backbone(imagenet)
    as_stored(run.backbone)
    extractor = with_normalisation(run.backbone)
    cache_file = run.cache_dir / f"features-{backbone_checksum(imagenet)[:12]}-{run.spec.name}.npz"

    def of(examples: list[Example]) -> np.ndarray:
        paths, keys = [e.path for e in examples], [e.sha256 for e in examples]
        return backbone_features(extractor, paths, keys, run.spec, run.limits, cache_file)

    run.validation_features, run.train_features = of(run.split.validation), of(run.split.train)


def _class_weights(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in (0, 1)}


def _epoch_log(phase: str, say: Say) -> keras.callbacks.Callback:
    def log(epoch: int, logs: dict) -> None:
        say(f"{phase} epoch {epoch + 1}: loss {logs['loss']:.4f}, validation AUC {logs['val_auc']:.4f}")

    return keras.callbacks.LambdaCallback(on_epoch_end=log)


def _compile(network: keras.Model, learning_rate: float) -> None:
    network.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.AUC(name="auc", from_logits=True)],
    )


def fit_head(run: TrainingRun) -> None:
    """The head alone on the cached features; the classifier is backbone + head from here on."""
    config, train_y = run.config, run.split.labels("train")
    run.head = build_head(run.architecture)
    _compile(run.head, config.learning_rate)
    stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.patience, restore_best_weights=True)
    run.history = run.head.fit(
        run.train_features,
        train_y,
        validation_data=(run.validation_features, run.split.labels("validation")),
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=_class_weights(train_y),
        callbacks=[stop, _epoch_log("head", run.say)],
        verbose=0,
    ).history
    run.classifier = build_classifier(run.backbone, run.head)


def _augmentation(config: TrainingConfig) -> keras.Sequential:
    layers = [
        keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="constant"),
        keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="constant"),
        keras.layers.RandomShear(config.shear, config.shear, fill_mode="constant"),
        keras.layers.RandomZoom(config.zoom, fill_mode="constant"),
    ]
    return keras.Sequential(layers + ([keras.layers.RandomFlip("horizontal")] if config.horizontal_flip else []))


def fine_tune(run: TrainingRun) -> None:
    """With config.fine_tune_epochs: unfreeze the backbone from config.fine_tune_from on (BatchNorm stays frozen)
    and train backbone and head on augmented images."""
    config = run.config
    if not config.fine_tune_epochs:
        return
    assert run.backbone is not None and run.classifier is not None
    unfrozen = False
    for layer in run.backbone.layers:
        unfrozen = unfrozen or layer.name == config.fine_tune_from
        layer.trainable = unfrozen and not isinstance(layer, keras.layers.BatchNormalization)
    with ThreadPoolExecutor() as pool:
        train_x = model_inputs([e.path for e in run.split.train], run.spec, run.limits, pool)
        validation_x = model_inputs([e.path for e in run.split.validation], run.spec, run.limits, pool)
    trainer = keras.Sequential([keras.Input(run.classifier.input_shape[1:]), _augmentation(config), run.classifier])
    _compile(trainer, config.fine_tune_learning_rate)
    callbacks = [
        keras.callbacks.EarlyStopping(
            "val_auc", mode="max", patience=config.fine_tune_patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau("val_auc", mode="max", factor=0.3, patience=1),
        _epoch_log("fine-tuning", run.say),
    ]
    train_y = run.split.labels("train")
    tuned = trainer.fit(
        train_x.astype(np.float32),
        train_y,
        validation_data=(validation_x.astype(np.float32), run.split.labels("validation")),
        epochs=config.fine_tune_epochs,
        batch_size=config.fine_tune_batch_size,
        class_weight=_class_weights(train_y),
        callbacks=callbacks,
        verbose=0,
    ).history
    run.history = {key: run.history[key] + tuned[key] for key in HISTORY_KEYS}


def calibrate(run: TrainingRun) -> None:
    """Temperature and threshold from the validation side, at the weights as stored; metrics there and on checks."""
    assert run.classifier is not None and run.head is not None and run.validation_features is not None
    as_stored(run.classifier)
    if run.config.fine_tune_epochs:  # the backbone changed: its cached features no longer hold
        with ThreadPoolExecutor() as pool:
            images = model_inputs([e.path for e in run.split.validation], run.spec, run.limits, pool)
        logits = predict_in_batches(run.classifier, images, run.config.fine_tune_batch_size)[:, 0]
    else:
        logits = predict_in_batches(run.head, run.validation_features, run.config.batch_size)[:, 0]
    labels = run.split.labels("validation")
    run.temperature = fit_temperature(labels, logits)
    run.validation_scores = probabilities(logits, run.temperature)
    run.threshold = threshold_for_sensitivity(labels, run.validation_scores, run.config.target_sensitivity)
    run.metrics = {
        "validation": binary_metrics(labels, run.validation_scores, run.threshold),
        "validation_ece_before_calibration": expected_calibration_error(labels, probabilities(logits, 1.0)),
        "epochs": len(run.history["loss"]),
    }
    provisional = ModelManifest(run.name, run.architecture, run.spec.to_dict(), run.threshold, run.temperature)
    scorer = Classifier(run.classifier, provisional)
    run.metrics["checks"] = {
        name: folder_metrics(scorer, run.spec, run.threshold, folder, limits=run.limits)
        for name, folder in run.checks.items()
    }


def package(run: TrainingRun) -> ModelManifest:
    """The artifact (its SHA-256 in the returned manifest) and the training report beside it."""
    manifest = ModelManifest(
        name=run.name,
        architecture=run.architecture,
        preprocessing=run.spec.to_dict(),
        threshold=run.threshold,
        temperature=run.temperature,
        created_at=datetime.now(UTC).isoformat(),
        metrics=run.metrics,
        training_config={"phase": run.config.phase, **asdict(run.config), **run.notes},
        data_manifest=run.split.manifest(),
    )
    assert run.classifier is not None and run.validation_scores is not None
    sha256 = save_classifier(run.classifier, manifest, run.artifact_path)
    manifest = replace(manifest, artifact_sha256=sha256)
    labels, scores = run.split.labels("validation"), run.validation_scores
    mistakes = [
        (
            prepare_file(run.split.validation[i].path, run.spec, run.limits).image[:, :, 0],
            f"{'pneumonia' if labels[i] else 'normal'}, p={scores[i]:.2f}",
        )
        for i in most_confident_mistakes(labels, scores, run.threshold)
    ]
    write_report(
        run.artifact_path.with_name(f"{run.artifact_path.stem}-report"), manifest, run.history, labels, scores, mistakes
    )
    return manifest
