"""Transfer learning from ImageNet ResNet50, as steps that each take values and return a record:

features -> baseline -> head -> fine-tune -> calibrate -> gate -> operating points -> check -> package
(an ensemble of trained networks: features -> baseline -> calibrate -> check -> package, see `assemble`):

1. features (Features): the frozen backbone's features of every image, cached by content hash; the baseline to
   beat is a logistic regression on them (its validation scores).
2. head (Network): the dense head alone on those features (fast on a CPU).
3. fine-tune (Network, optional): the backbone from a named layer on, at a low learning rate, on augmented images
   (training.augment; horizontal flip only on request: it moves the heart).
4. calibrate (Calibrated): the temperature on the validation side's logits, then the threshold for the target
   sensitivity, and the metrics per source.
5. gate (FittedGate, with an out-of-scope folder): the applicability gate on the final network's features.
5b. operating points (FittedPopulations, with populations in the config): a temperature and threshold per
   population, on its own validation films, and the age-group estimate (training.populations).
6. check: the metrics on any extra labelled folders, scored end to end as the worker would.
7. package: the artifact and its training report.
Both training steps weigh sources and classes alike, or sources as config.source_weights says
(training.sources.balancing_weights), on the training side and in the validation AUC that picks the epoch,
stop early and keep the best epoch. Each step's progress is checkpointed (training.checkpoints).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from screening.config import ImageLimits
from screening.imaging.pipeline import prepare_file
from screening.model.calibration import fit_temperature, probabilities
from screening.model.figures import Baseline, BinaryMetrics, CheckFigures, Metrics, Resources
from screening.model.gate import ApplicabilityGate
from screening.model.infer import Classifier, predict_batches
from screening.model.manifest import Architecture, GateRecord, ModelManifest, RunNotes
from screening.model.network import (
    as_stored,
    build_backbone,
    build_classifier,
    build_ensemble,
    build_head,
    save_classifier,
    with_normalisation,
)
from screening.model.population import Population
from screening.model.preprocessing import PreprocessSpec
from screening.model.recipe import TrainingConfig
from screening.model.weights import backbone_checksum, load_imagenet_weights
from screening.training.augment import augmentation
from screening.training.checkpoints import SealBest, check_seal, load_sealed, seal
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
from screening.training.populations import FittedPopulations, fit_populations
from screening.training.progress import HISTORY_KEYS, EpochLog, History, Say
from screening.training.report import most_confident_mistakes, write_report
from screening.training.sources import balancing_weights
from screening.training.split import Example, Split
from screening.training.stream import LabelledImages


@dataclass(frozen=True)
class TrainingRun:
    """What a run is given: every step reads it, none changes it."""

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

    def checkpoint(self, name: str) -> Path:
        assert self.checkpoint_dir is not None  # train() provides one
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self.checkpoint_dir / name

    def weights(self, examples: list[Example]) -> np.ndarray:
        """The balancing weights of `examples` by the recipe (training.sources)."""
        return balancing_weights(examples, self.config.source_weights)


@dataclass(frozen=True)
class Features:
    """The frozen backbone (the weights exactly as the artifact will hold them) and its pooled features."""

    backbone: keras.Model
    train: np.ndarray
    validation: np.ndarray


@dataclass(frozen=True)
class Network:
    """A classifier (backbone + head) and the epochs that made it."""

    backbone: keras.Model
    classifier: keras.Model
    history: History
    fine_tuning_kept: bool | None = None  # None: no fine-tuning; False: no epoch beat the head alone


@dataclass(frozen=True)
class Calibrated:
    """The network's temperature and threshold on the validation side, and its figures there."""

    temperature: float
    threshold: float
    validation_scores: np.ndarray  # each validation image's probability
    metrics: Metrics


@dataclass(frozen=True)
class FittedGate:
    gate: ApplicabilityGate
    record: GateRecord


@dataclass(frozen=True)
class Candidate:
    """The version as a worker would load it, as far as the steps have made it: the network and its calibration,
    then its gate and its operating points per population."""

    network: Network
    calibrated: Calibrated
    gate: FittedGate | None = None
    populations: FittedPopulations | None = None

    @property
    def threshold(self) -> float:
        """With operating points, the more sensitive population's (for an image the estimate cannot place)."""
        return self.populations.fallback.threshold if self.populations else self.calibrated.threshold

    @property
    def temperature(self) -> float:
        return self.populations.fallback.temperature if self.populations else self.calibrated.temperature

    @property
    def validation_scores(self) -> np.ndarray:
        """Each validation image's probability at its operating point."""
        return self.populations.validation_scores if self.populations else self.calibrated.validation_scores

    @property
    def metrics(self) -> Metrics:
        """The calibration's figures; with operating points, each image's at its population's point."""
        if self.populations is None:
            return self.calibrated.metrics
        return self.populations.over(self.calibrated.metrics)

    def scorer(self, run: TrainingRun) -> Classifier:
        """The network as a worker will load it."""
        manifest = ModelManifest(
            run.name,
            run.architecture,
            run.spec,
            self.threshold,
            self.temperature,
            populations=self.populations.described if self.populations else None,
        )
        estimate = self.populations.estimate if self.populations else None
        return Classifier(
            self.network.classifier, manifest, gate=self.gate.gate if self.gate else None, estimate=estimate
        )


def train_network(run: TrainingRun) -> ModelManifest:
    """Every step in order; returns the manifest of the artifact written to run.artifact_path. Without a checkpoint
    folder (nothing to resume), the steps keep their state in a temporary one."""
    if run.architecture.members != 1:
        raise ValueError(f"training fits one network, not {run.architecture.members}: an ensemble is assembled")
    keras.utils.set_random_seed(run.config.seed)
    with tempfile.TemporaryDirectory(prefix="training-") as scratch:
        run = replace(run, checkpoint_dir=run.checkpoint_dir or Path(scratch))
        found = features(run)
        network = fine_tune(run, fit_head(run, found))
        candidate = Candidate(network, calibrate(run, network, baseline(run, found)))
        candidate = replace(candidate, gate=fit_applicability_gate(run, candidate))
        candidate = replace(candidate, populations=operating_points(run, candidate))
        return package(run, candidate, check(run, candidate))


def features(run: TrainingRun) -> Features:
    """The frozen backbone's features (from the weights exactly as the artifact will hold them), cached."""
    imagenet = load_imagenet_weights(run.weights_file)
    backbone = build_backbone(imagenet)
    as_stored(backbone)
    extractor = with_normalisation(backbone)
    cache_file = run.cache_dir / f"features-{backbone_checksum(imagenet)[:12]}-{run.spec.name}.npz"

    def of(examples: list[Example]) -> np.ndarray:
        paths, keys = [e.path for e in examples], [e.sha256 for e in examples]
        return backbone_features(extractor, paths, keys, run.spec, run.limits, cache_file)

    validation = of(run.split.validation)
    return Features(backbone, of(run.split.train), validation)


def baseline(run: TrainingRun, found: Features) -> np.ndarray:
    """The cheap baseline the model must beat: a logistic regression on the frozen ImageNet features (standardised,
    with the same balancing weights); its scores on the validation side, to be judged like the model's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    regression.fit(
        found.train, run.split.labels("train"), logisticregression__sample_weight=run.weights(run.split.train)
    )
    return np.asarray(regression.predict_proba(found.validation)[:, 1], np.float64)


def _compile(
    network: keras.Model, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule, smoothing: float = 0.0
) -> None:
    network.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing),
        metrics=[keras.metrics.AUC(name="auc", from_logits=True)],
    )


def fit_head(run: TrainingRun, found: Features) -> Network:
    """The head alone on the cached features; the classifier is backbone + head from here on. A head an interrupted
    run finished is taken from its checkpoint."""
    config = run.config
    head = build_head(run.architecture)
    done, history_file = run.checkpoint("head.weights.h5"), run.checkpoint("head-history.json")
    if done.exists():
        load_sealed(head, done)
        history = json.loads(history_file.read_text())
        run.say(f"head: taken from the checkpoint of the interrupted run ({len(history['loss'])} epochs)")
    else:
        _compile(head, config.learning_rate, config.label_smoothing)
        progress = EpochLog("head", config.epochs, len(run.split.train), run.say, None)
        stop = keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.patience, restore_best_weights=True)
        head.fit(
            found.train,
            run.split.labels("train"),
            sample_weight=run.weights(run.split.train),
            validation_data=(found.validation, run.split.labels("validation"), run.weights(run.split.validation)),
            epochs=config.epochs,
            batch_size=config.batch_size,
            callbacks=[stop, progress],
            verbose=0,
        )
        history = progress.history
        history_file.write_text(json.dumps(history))
        head.save_weights(done)
        seal(done)
    return Network(found.backbone, build_classifier([(found.backbone, head)]), history)


def unfreeze_from(backbone: keras.Model, first: str) -> None:
    """Layers from `first` on are trained; those before it, and every BatchNormalization, stay as they are."""
    unfrozen = False
    for layer in backbone.layers:
        unfrozen = unfrozen or layer.name == first
        layer.trainable = unfrozen and not isinstance(layer, keras.layers.BatchNormalization)


def fine_tune(run: TrainingRun, network: Network) -> Network:
    """With config.fine_tune_epochs: unfreeze the backbone from config.fine_tune_from on (BatchNorm stays frozen)
    and train backbone and head on augmented images streamed from the files; the best epoch, or the network as it
    came when none beats it. The state is saved after every epoch and an interrupted run resumes at the epoch
    after the last one it finished."""
    config = run.config
    if not config.fine_tune_epochs:
        return network
    unfreeze_from(network.backbone, config.fine_tune_from)
    classifier = network.classifier
    trainer = keras.Sequential([keras.Input(classifier.input_shape[1:]), augmentation(config), classifier])
    batch = config.fine_tune_batch_size
    train_batches = LabelledImages(
        run.split.train,
        run.spec,
        run.limits,
        batch,
        run.weights(run.split.train),
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
    history_file, best = run.checkpoint("fine-tune-history.json"), run.checkpoint("fine-tune-best.weights.h5")
    progress = EpochLog("fine-tuning", config.fine_tune_epochs, len(train_batches.order), run.say, history_file)
    so_far = progress.history.get("val_auc", [])
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping("val_auc", mode="max", patience=config.fine_tune_patience)
    ]
    if config.learning_rate_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_auc", mode="max", factor=0.3, patience=1))
    if so_far:
        run.say(f"fine-tuning: resuming after epoch {len(so_far)} of the interrupted run")
        check_seal(best)  # the best epoch so far: refused if it is not the file the interrupted run wrote
    elif not best.exists():  # the network as it came is the one to beat: fine-tuning may only improve on it
        trainer.save_weights(best)
        seal(best)
    callbacks += [
        keras.callbacks.BackupAndRestore(str(run.checkpoint("fine-tune-state"))),
        keras.callbacks.ModelCheckpoint(
            str(best),
            monitor="val_auc",
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=max([*so_far, max(network.history["val_auc"])]),
        ),
    ]
    callbacks += [SealBest(best), progress]  # last: an epoch it reports is already saved and sealed
    trainer.fit(
        train_batches,
        validation_data=LabelledImages(
            run.split.validation, run.spec, run.limits, batch, run.weights(run.split.validation)
        ),
        epochs=config.fine_tune_epochs,
        callbacks=callbacks,
        verbose=0,
    )
    trainer.load_weights(best)  # the best epoch (or the head alone), whichever run of an interrupted training it was
    kept = max(progress.history.get("val_auc", [-1.0])) > max(network.history["val_auc"])
    if not kept:
        run.say("fine-tuning: no epoch beat the head alone on validation AUC; the head-only network is kept")
    history = {key: network.history[key] + progress.history.get(key, []) for key in HISTORY_KEYS}
    return replace(network, history=history, fine_tuning_kept=kept)


def calibrate(run: TrainingRun, network: Network, baseline_scores: np.ndarray) -> Calibrated:
    """Temperature and threshold from the validation side (every source together), its images scored end to end
    at the weights as stored; metrics there, per source, with the baseline's beside them."""
    as_stored(network.classifier)
    batches = LabelledImages(run.split.validation, run.spec, run.limits, run.config.fine_tune_batch_size)
    logits = predict_batches(network.classifier, batches.images())[:, 0]
    labels = run.split.labels("validation")
    temperature = fit_temperature(labels, logits)
    scores = probabilities(logits, temperature)
    threshold, validation, by_source = _scored(run, scores, intervals=True)
    _, baseline_validation, baseline_by_source = _scored(run, baseline_scores)  # its threshold is in its metrics
    metrics = Metrics(
        validation=validation,
        validation_by_source=by_source,
        validation_ece_before_calibration=expected_calibration_error(labels, probabilities(logits, 1.0)),
        epochs=len(network.history["loss"]),
        fine_tuning_kept=network.fine_tuning_kept,
        baseline=Baseline(
            f"logistic regression on frozen ImageNet ResNet50 features ({run.spec.name} preprocessing)",
            baseline_validation,
            baseline_by_source,
        ),
    )
    return Calibrated(temperature, threshold, scores, metrics)


def operating_points(run: TrainingRun, candidate: Candidate) -> FittedPopulations | None:
    """With config.populations: an operating point per population on its own validation films, and the age-group
    estimate; the validation figures become each image's at its population's point. The version's own threshold
    and temperature become the more sensitive population's (for an image the estimate cannot place)."""
    if not run.config.populations:
        return None
    populations = {name: Population(value) for name, value in run.config.populations.items()}
    fitted = fit_populations(
        candidate.scorer(run),
        run.split,
        run.spec,
        run.limits,
        populations,
        run.config.population_targets(),
        run.config.seed,
        run.config.fine_tune_batch_size,
        run.config.estimate_folder_list(),
    )
    for population, point in fitted.points.items():
        run.say(f"operating point, {population}: threshold {point.threshold:.4f}, temperature {point.temperature:.3f}")
    return fitted


def fit_applicability_gate(run: TrainingRun, candidate: Candidate) -> FittedGate | None:
    """With an out-of-scope folder: the gate on the final network's features, tested on images kept apart."""
    if run.out_of_scope is None:
        return None
    gate, record = fit_gate(
        candidate.scorer(run),
        run.split,
        run.out_of_scope,
        run.spec,
        run.limits,
        run.config.seed,
        run.config.commercial_use_only,
    )
    tested = record.test
    run.say(
        f"gate: refuses {tested.out_of_scope_refusal_rate:.1%} of {tested.out_of_scope_images} out-of-scope "
        f"images kept apart; of the validation side's frontal films, "
        + ", ".join(f"{rate:.1%} ({name})" for name, rate in tested.frontal_refusal_rate.items())
    )
    return FittedGate(gate, record)


def check(run: TrainingRun, candidate: Candidate) -> dict[str, CheckFigures]:
    """Each extra labelled folder scored end to end, as a worker with this version would (gate included)."""
    scorer = candidate.scorer(run)
    return {name: folder_metrics(scorer, run.spec, folder, limits=run.limits) for name, folder in run.checks.items()}


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
    found = features(run)
    classifier = build_ensemble([member.model for member in members], run.architecture)
    network = Network(found.backbone, classifier, {key: [] for key in HISTORY_KEYS})
    first = members[0]
    gate = FittedGate(first.gate, first.manifest.gate) if first.gate and first.manifest.gate else None
    candidate = Candidate(network, calibrate(run, network, baseline(run, found)), gate)
    return package(run, candidate, check(run, candidate))


def package(run: TrainingRun, candidate: Candidate, checks: dict[str, CheckFigures]) -> ModelManifest:
    """The artifact (its SHA-256 in the returned manifest) and the training report beside it."""
    used = Resources(  # of this process: a resumed run counts from where it resumed
        wall_minutes=round((time.perf_counter() - run.started) / 60, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )
    populations = candidate.populations
    manifest = ModelManifest(
        name=run.name,
        architecture=run.architecture,
        preprocessing=run.spec,
        threshold=candidate.threshold,
        temperature=candidate.temperature,
        created_at=datetime.now(UTC).isoformat(),
        metrics=replace(candidate.metrics, checks=checks, training_resources=used),
        training_config=run.config,
        notes=replace(run.notes, phase=run.notes.phase or run.config.phase),
        data_manifest=run.split.manifest(),
        gate=candidate.gate.record if candidate.gate else None,
        populations=populations.described if populations else None,
    )
    gate, estimate = candidate.gate.gate if candidate.gate else None, populations.estimate if populations else None
    sha256 = save_classifier(candidate.network.classifier, manifest, run.artifact_path, gate, estimate)
    manifest = replace(manifest, artifact_sha256=sha256)
    labels, scores = run.split.labels("validation"), candidate.validation_scores
    mistakes = [
        (
            prepare_file(run.split.validation[i].path, run.spec, run.limits).image[:, :, 0],
            f"{'pneumonia' if labels[i] else 'normal'}, p={scores[i]:.2f}",
        )
        for i in most_confident_mistakes(labels, scores, candidate.threshold)
    ]
    report = run.artifact_path.with_name(f"{run.artifact_path.stem}-report")
    write_report(report, manifest, candidate.network.history, labels, scores, mistakes)
    return manifest
