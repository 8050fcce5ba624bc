"""Transfer learning from ImageNet ResNet50, as named steps that pass one TrainingRun along.

features -> baseline -> head -> fine-tune -> calibrate -> gate -> operating points -> check -> package
(an ensemble of trained networks: features -> baseline -> calibrate -> check -> package, see `assemble`):

1. features: the frozen backbone's features of every image, cached by content hash; the baseline to
   beat is a logistic regression on them.
2. head: the dense head alone on those features (fast on a CPU).
3. fine-tune (optional): the top of the backbone at a low learning rate on augmented images
   (rotation, shift, shear, zoom; horizontal flip only on request: it moves the heart).
4. calibrate: the temperature on the validation side's logits, then the threshold for the target
   sensitivity, and the metrics per source.
5. gate (with an out-of-scope folder): the applicability gate on the final network's features.
5b. operating points (with populations in the config): a temperature and threshold per population, on its own
   validation films, and the age-group estimate (training.populations).
6. check: the metrics on any extra labelled folders, scored end to end as the worker would.
7. package: the artifact and its training report.
Both training steps weigh sources and classes alike, or sources as config.source_weights says
(training.sources.balancing_weights), on the training side and in the validation AUC that picks the epoch,
stop early and keep the best epoch.
"""

from __future__ import annotations

import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from screening.config import ImageLimits
from screening.errors import ScreeningError
from screening.hashing import sha256_hex
from screening.imaging.pipeline import prepare_file
from screening.model.calibration import fit_temperature, probabilities
from screening.model.figures import Baseline, BinaryMetrics, Metrics, Resources
from screening.model.gate import ApplicabilityGate
from screening.model.infer import Classifier, predict_batches
from screening.model.manifest import Architecture, GateRecord, ModelManifest, PopulationsRecord, RunNotes
from screening.model.network import (
    as_stored,
    build_backbone,
    build_classifier,
    build_ensemble,
    build_head,
    save_classifier,
    with_normalisation,
)
from screening.model.population import AgeGroupEstimate, Population
from screening.model.preprocessing import PreprocessSpec
from screening.model.recipe import TrainingConfig
from screening.model.weights import backbone_checksum, load_imagenet_weights
from screening.training.evaluate import folder_metrics
from screening.training.features import backbone_features
from screening.training.gate import fit_gate
from screening.training.metrics import (
    binary_metrics,
    expected_calibration_error,
    metrics_by_source,
    threshold_for_every_group,
    threshold_for_sensitivity,
)
from screening.training.populations import fit_populations
from screening.training.report import most_confident_mistakes, write_report
from screening.training.sources import balancing_weights
from screening.training.split import Example, Split
from screening.training.stream import LabelledImages

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
    notes: RunNotes = RunNotes()  # recorded with the training config (data folder, labels)
    checks: dict[str, Path] = field(default_factory=dict)  # extra labelled folders, by name, scored end to end
    architecture: Architecture = Architecture()
    spec: PreprocessSpec = PreprocessSpec()
    say: Say = lambda message: None
    started: float = field(default_factory=time.perf_counter)  # for the wall time in the report
    checkpoint_dir: Path | None = None  # where each phase's progress is kept, so an interrupted run can resume
    out_of_scope: Path | None = None  # images the model must refuse: with it, an applicability gate is fitted
    # features
    backbone: keras.Model | None = None
    train_features: np.ndarray | None = None
    validation_features: np.ndarray | None = None
    baseline_scores: np.ndarray | None = None  # the logistic regression's, on the validation side
    # head, fine-tune
    head: keras.Model | None = None
    classifier: keras.Model | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    fine_tuning_kept: bool | None = None  # None: no fine-tuning; False: no epoch beat the head alone
    # calibrate
    temperature: float = 1.0
    threshold: float = 0.5
    validation_scores: np.ndarray | None = None
    metrics: Metrics = Metrics()
    # gate
    gate: ApplicabilityGate | None = None
    gate_description: GateRecord | None = None
    # operating points (with config.populations): the manifest's `populations`, and the age-group estimate
    populations: PopulationsRecord | None = None
    estimate: AgeGroupEstimate | None = None


def train(run: TrainingRun) -> ModelManifest:
    """Every step in order; returns the manifest of the artifact written to run.artifact_path. Without a checkpoint
    folder (nothing to resume), the steps keep their state in a temporary one."""
    if run.architecture.members != 1:
        raise ValueError(f"training fits one network, not {run.architecture.members}: an ensemble is assembled")
    keras.utils.set_random_seed(run.config.seed)
    with tempfile.TemporaryDirectory(prefix="training-") as scratch:
        run.checkpoint_dir = run.checkpoint_dir or Path(scratch)
        steps = (features, baseline, fit_head, fine_tune, calibrate, fit_applicability_gate, operating_points, check)
        for step in steps:
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


def _weights(run: TrainingRun, examples: list[Example]) -> np.ndarray:
    return balancing_weights(examples, run.config.source_weights)


def baseline(run: TrainingRun) -> None:
    """The cheap baseline the model must beat: a logistic regression on the frozen ImageNet features (standardised,
    with the same balancing weights), scored on the validation side like the model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    regression.fit(
        run.train_features,
        run.split.labels("train"),
        logisticregression__sample_weight=_weights(run, run.split.train),
    )
    run.baseline_scores = regression.predict_proba(run.validation_features)[:, 1]


def _compile(
    network: keras.Model, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule, smoothing: float = 0.0
) -> None:
    network.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing),
        metrics=[keras.metrics.AUC(name="auc", from_logits=True)],
    )


@keras.saving.register_keras_serializable(package="screening")
class RandomGamma(keras.layers.Layer):
    """out = 255 * (in / 255) ** gamma, gamma = exp(u), u uniform in [-limit, limit], per image (training only)."""

    def __init__(self, limit: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit, self.generator = limit, keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        gamma = keras.ops.exp(keras.random.uniform(shape, -self.limit, self.limit, seed=self.generator))
        return 255.0 * keras.ops.power(keras.ops.clip(images / 255.0, 0.0, 1.0), gamma)


class EpochLog(keras.callbacks.Callback):
    """Each epoch in one line: loss, validation AUC, seconds, images per second and the time left; and the
    history so far on disk, so a resumed run reports every epoch."""

    def __init__(self, phase: str, epochs: int, images: int, say: Say, history_file: Path | None) -> None:
        super().__init__()
        self.phase, self.epochs, self.images, self.say, self.history_file = phase, epochs, images, say, history_file
        self.history: dict[str, list[float]] = (
            json.loads(history_file.read_text()) if history_file and history_file.exists() else {}
        )
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.seconds.append(time.perf_counter() - self.started)
        for key in HISTORY_KEYS:
            self.history.setdefault(key, []).append(float(logs[key]))
        if self.history_file:
            self.history_file.write_text(json.dumps(self.history))
        left = statistics.mean(self.seconds) * (self.epochs - epoch - 1)
        self.say(
            f"{self.phase} epoch {epoch + 1}/{self.epochs}: loss {logs['loss']:.4f}, validation AUC "
            f"{logs['val_auc']:.4f}, {self.seconds[-1]:.0f} s, {self.images / self.seconds[-1]:.1f} images/s, "
            f"ETA {left / 60:.1f} min"
        )


def _checkpoint(run: TrainingRun, name: str) -> Path:
    assert run.checkpoint_dir is not None  # train() provides one
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return run.checkpoint_dir / name


class CheckpointRefused(ScreeningError):
    pass


def _seal_of(weights: Path) -> Path:
    return weights.with_name(weights.name + ".sha256")


def _seal(weights: Path) -> None:
    """Record the SHA-256 of a weights file this run wrote, so that a resumed run uses no other."""
    _seal_of(weights).write_text(sha256_hex(weights))


def _check_seal(weights: Path) -> None:
    seal = _seal_of(weights)
    if not seal.exists() or seal.read_text().strip() != sha256_hex(weights):
        raise CheckpointRefused(
            f"{weights.name} is not the checkpoint this run wrote (its SHA-256 differs from the one recorded): "
            f"remove {weights.parent} to train from the start"
        )


def _load_sealed(model: keras.Model, weights: Path) -> None:
    """Load a checkpoint only if it is the file this run sealed, and only finite weights."""
    _check_seal(weights)
    model.load_weights(weights)
    _require_finite(model, weights.name)


def _require_finite(model: keras.Model, what: str) -> None:
    if not all(np.isfinite(keras.ops.convert_to_numpy(weight)).all() for weight in model.weights):
        raise CheckpointRefused(f"{what} holds weights that are not finite numbers: a run cannot go on from it")


class SealBest(keras.callbacks.Callback):
    """After each epoch: seal the best weights ModelCheckpoint may just have written. Before training: refuse a
    restored state (BackupAndRestore's) whose weights are not finite."""

    def __init__(self, best: Path) -> None:
        super().__init__()
        self.best = best

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        _require_finite(self.model, "the interrupted run's saved state")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        _seal(self.best)


def fit_head(run: TrainingRun) -> None:
    """The head alone on the cached features; the classifier is backbone + head from here on. A head an interrupted
    run finished is taken from its checkpoint."""
    config = run.config
    run.head = build_head(run.architecture)
    done, history = _checkpoint(run, "head.weights.h5"), _checkpoint(run, "head-history.json")
    if done.exists():
        _load_sealed(run.head, done)
        run.history = json.loads(history.read_text())
        run.say(f"head: taken from the checkpoint of the interrupted run ({len(run.history['loss'])} epochs)")
    else:
        _compile(run.head, config.learning_rate, config.label_smoothing)
        progress = EpochLog("head", config.epochs, len(run.split.train), run.say, None)
        stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.patience, restore_best_weights=True)
        run.head.fit(
            run.train_features,
            run.split.labels("train"),
            sample_weight=_weights(run, run.split.train),
            validation_data=(
                run.validation_features,
                run.split.labels("validation"),
                _weights(run, run.split.validation),
            ),
            epochs=config.epochs,
            batch_size=config.batch_size,
            callbacks=[stop, progress],
            verbose=0,
        )
        run.history = progress.history
        history.write_text(json.dumps(run.history))
        run.head.save_weights(done)
        _seal(done)
    run.classifier = build_classifier([(run.backbone, run.head)])


def _augmentation(config: TrainingConfig) -> keras.Sequential:
    """Geometry (rotation, shift, shear, zoom; a flip only on request), then acquisition: exposure, contrast,
    gamma, blur or sharpening, noise. Each is active only in training, and only when its setting is not 0."""
    layers: list[keras.layers.Layer] = [
        keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="constant"),
        keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="constant"),
        keras.layers.RandomShear(config.shear, config.shear, fill_mode="constant"),
        keras.layers.RandomZoom(config.zoom, fill_mode="constant"),
    ]
    optional: list[tuple[float, Callable[[], keras.layers.Layer]]] = [
        (config.horizontal_flip, lambda: keras.layers.RandomFlip("horizontal")),
        (config.brightness, lambda: keras.layers.RandomBrightness(config.brightness)),
        (config.contrast, lambda: keras.layers.RandomContrast(config.contrast)),
        (config.gamma, lambda: RandomGamma(config.gamma, seed=config.seed)),
        (config.blur_sigma, lambda: keras.layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=config.blur_sigma)),
        (config.sharpness, lambda: keras.layers.RandomSharpness(config.sharpness)),
    ]
    layers += [make() for wanted, make in optional if wanted]
    if config.noise_std:  # Keras' GaussianNoise takes a standard deviation of at most 1: on the 0-1 scale
        scale = keras.layers.Rescaling(1 / 255), keras.layers.Rescaling(255)
        layers += [scale[0], keras.layers.GaussianNoise(config.noise_std / 255, seed=config.seed), scale[1]]
    return keras.Sequential(layers)


def unfreeze_from(backbone: keras.Model, first: str) -> None:
    """Layers from `first` on are trained; those before it, and every BatchNormalization, stay as they are."""
    unfrozen = False
    for layer in backbone.layers:
        unfrozen = unfrozen or layer.name == first
        layer.trainable = unfrozen and not isinstance(layer, keras.layers.BatchNormalization)


def fine_tune(run: TrainingRun) -> None:
    """With config.fine_tune_epochs: unfreeze the backbone from config.fine_tune_from on (BatchNorm stays frozen)
    and train backbone and head on augmented images streamed from the files. With a checkpoint folder, the state
    is saved after every epoch and an interrupted run resumes at the epoch after the last one it finished."""
    config = run.config
    if not config.fine_tune_epochs:
        return
    assert run.backbone is not None and run.classifier is not None
    unfreeze_from(run.backbone, config.fine_tune_from)
    trainer = keras.Sequential([keras.Input(run.classifier.input_shape[1:]), _augmentation(config), run.classifier])
    batch, weights = config.fine_tune_batch_size, _weights(run, run.split.train)
    train_batches = LabelledImages(
        run.split.train,
        run.spec,
        run.limits,
        batch,
        weights,
        shuffle=True,
        seed=config.seed,
        draws=config.fine_tune_images_per_epoch,
    )
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = config.fine_tune_learning_rate
    if config.learning_rate_schedule == "cosine":  # warm up over the first epoch, then decay to 0 at the last
        steps = len(train_batches)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.fine_tune_learning_rate / 100,
            steps * max(config.fine_tune_epochs - 1, 1),
            warmup_target=config.fine_tune_learning_rate,
            warmup_steps=steps,
        )
    _compile(trainer, learning_rate, config.label_smoothing)
    history_file, best = _checkpoint(run, "fine-tune-history.json"), _checkpoint(run, "fine-tune-best.weights.h5")
    progress = EpochLog("fine-tuning", config.fine_tune_epochs, len(train_batches.order), run.say, history_file)
    so_far = progress.history.get("val_auc", [])
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.fine_tune_patience)
    ]
    if config.learning_rate_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_auc", mode="max", factor=0.3, patience=1))
    if so_far:
        run.say(f"fine-tuning: resuming after epoch {len(so_far)} of the interrupted run")
        _check_seal(best)  # the best epoch so far: refused if it is not the file the interrupted run wrote
    elif not best.exists():  # the head-only network is the one to beat: fine-tuning may only improve on it
        trainer.save_weights(best)
        _seal(best)
    callbacks += [
        keras.callbacks.BackupAndRestore(str(_checkpoint(run, "fine-tune-state"))),
        keras.callbacks.ModelCheckpoint(
            str(best),
            monitor="val_auc",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=max([*so_far, max(run.history["val_auc"])]),
        ),
    ]
    callbacks += [SealBest(best), progress]  # last: an epoch it reports is already saved and sealed
    trainer.fit(
        train_batches,
        validation_data=LabelledImages(
            run.split.validation, run.spec, run.limits, batch, _weights(run, run.split.validation)
        ),
        epochs=config.fine_tune_epochs,
        callbacks=callbacks,
        verbose=0,
    )
    trainer.load_weights(best)  # the best epoch (or the head alone), whichever run of an interrupted training it was
    run.fine_tuning_kept = max(progress.history.get("val_auc", [-1.0])) > max(run.history["val_auc"])
    if not run.fine_tuning_kept:
        run.say("fine-tuning: no epoch beat the head alone on validation AUC; the head-only network is kept")
    run.history = {key: run.history[key] + progress.history.get(key, []) for key in HISTORY_KEYS}


def calibrate(run: TrainingRun) -> None:
    """Temperature and threshold from the validation side (every source together), its images scored end to end
    at the weights as stored; metrics there, per source, with the baseline's beside them."""
    assert run.classifier is not None and run.baseline_scores is not None
    as_stored(run.classifier)
    batches = LabelledImages(run.split.validation, run.spec, run.limits, run.config.fine_tune_batch_size)
    logits = predict_batches(run.classifier, batches.images())[:, 0]
    labels = run.split.labels("validation")
    run.temperature = fit_temperature(labels, logits)
    run.validation_scores = probabilities(logits, run.temperature)
    run.threshold, validation, by_source = _scored(run, run.validation_scores, intervals=True)
    _, baseline_validation, baseline_by_source = _scored(run, run.baseline_scores)  # its threshold is in its metrics
    run.metrics = replace(
        run.metrics,
        validation=validation,
        validation_by_source=by_source,
        validation_ece_before_calibration=expected_calibration_error(labels, probabilities(logits, 1.0)),
        epochs=len(run.history["loss"]),
        fine_tuning_kept=run.fine_tuning_kept,
        baseline=Baseline(
            f"logistic regression on frozen ImageNet ResNet50 features ({run.spec.name} preprocessing)",
            baseline_validation,
            baseline_by_source,
        ),
    )


def _scorer(run: TrainingRun) -> Classifier:
    """The network as a worker will load it: temperature, threshold and (once fitted) the gate and the operating
    points per population."""
    assert run.classifier is not None
    provisional = ModelManifest(
        run.name, run.architecture, run.spec, run.threshold, run.temperature, populations=run.populations
    )
    return Classifier(run.classifier, provisional, gate=run.gate, estimate=run.estimate)


def operating_points(run: TrainingRun) -> None:
    """With config.populations: an operating point per population on its own validation films, and the age-group
    estimate; the validation figures become each image's at its population's point. The version's own threshold
    and temperature become the more sensitive population's (for an image the estimate cannot place)."""
    if not run.config.populations:
        return
    populations = {name: Population(value) for name, value in run.config.populations.items()}
    fitted = fit_populations(
        _scorer(run),
        run.split,
        run.spec,
        run.limits,
        populations,
        run.config.population_targets(),
        run.config.seed,
        run.config.fine_tune_batch_size,
        run.config.estimate_folder_list(),
    )
    run.threshold, run.temperature = fitted.fallback.threshold, fitted.fallback.temperature
    run.validation_scores, run.populations, run.estimate = fitted.validation_scores, fitted.described, fitted.estimate
    found = fitted.metrics
    run.metrics = replace(
        run.metrics,
        validation=found.validation,
        validation_by_source=found.validation_by_source,
        populations=found.populations,
    )
    for population, point in fitted.points.items():
        run.say(f"operating point, {population}: threshold {point.threshold:.4f}, temperature {point.temperature:.3f}")


def fit_applicability_gate(run: TrainingRun) -> None:
    """With an out-of-scope folder: the gate on the final network's features, tested on images kept apart."""
    if run.out_of_scope is None:
        return
    run.gate, run.gate_description = fit_gate(
        _scorer(run), run.split, run.out_of_scope, run.spec, run.limits, run.config.seed, run.config.commercial_use_only
    )
    tested = run.gate_description.test
    run.say(
        f"gate: refuses {tested.out_of_scope_refusal_rate:.1%} of {tested.out_of_scope_images} out-of-scope "
        f"images kept apart; of the validation side's frontal films, "
        + ", ".join(f"{rate:.1%} ({name})" for name, rate in tested.frontal_refusal_rate.items())
    )


def check(run: TrainingRun) -> None:
    """Each extra labelled folder scored end to end, as a worker with this version would (gate included)."""
    scorer = _scorer(run)
    checks = {name: folder_metrics(scorer, run.spec, folder, limits=run.limits) for name, folder in run.checks.items()}
    run.metrics = replace(run.metrics, checks=checks)


def _scored(
    run: TrainingRun, scores: np.ndarray, intervals: bool = False
) -> tuple[float, BinaryMetrics, dict[str, BinaryMetrics]]:
    """The threshold for the target sensitivity (by the config's rule), and the metrics at it: on every validation
    image, and per source and sub-source (with 95% bootstrap intervals where it has both classes, if asked)."""
    labels, sources = run.split.labels("validation"), run.split.sources("validation")
    top_level = np.array([source.split("/")[0] for source in sources])  # "adult" for "adult/NIH ChestX-ray14"
    if run.config.threshold_rule == "every-source":
        threshold = threshold_for_every_group(labels, scores, top_level, run.config.target_sensitivity)
    else:
        threshold = threshold_for_sensitivity(labels, scores, run.config.target_sensitivity)
    by_source = metrics_by_source(labels, scores, threshold, sources, intervals)
    return threshold, binary_metrics(labels, scores, threshold), by_source


def assemble(run: TrainingRun, members: list[Classifier]) -> ModelManifest:
    """An ensemble of trained single networks (validated on run.split) as one version: the mean of their logits,
    calibrated, thresholded and reported like a trained network, beside the same baseline. The first member's gate
    is kept: the ensemble's features for it are the first member's, the ones it was fitted and tested on."""
    keras.utils.set_random_seed(run.config.seed)
    run.classifier = build_ensemble([member.model for member in members], run.architecture)
    run.gate, run.gate_description = members[0].gate, members[0].manifest.gate
    run.history = {key: [] for key in HISTORY_KEYS}
    for step in (features, baseline, calibrate, check):
        step(run)
    return package(run)


def package(run: TrainingRun) -> ModelManifest:
    """The artifact (its SHA-256 in the returned manifest) and the training report beside it."""
    used = Resources(  # of this process: a resumed run counts from where it resumed
        wall_minutes=round((time.perf_counter() - run.started) / 60, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )
    run.metrics = replace(run.metrics, training_resources=used)
    manifest = ModelManifest(
        name=run.name,
        architecture=run.architecture,
        preprocessing=run.spec,
        threshold=run.threshold,
        temperature=run.temperature,
        created_at=datetime.now(UTC).isoformat(),
        metrics=run.metrics,
        training_config=run.config,
        notes=replace(run.notes, phase=run.notes.phase or run.config.phase),
        data_manifest=run.split.manifest(),
        gate=run.gate_description,
        populations=run.populations,
    )
    assert run.classifier is not None and run.validation_scores is not None
    sha256 = save_classifier(run.classifier, manifest, run.artifact_path, run.gate, run.estimate)
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
