"""The model card: a short Markdown page rendered from an artifact's manifest."""

from __future__ import annotations

from typing import Any

from screening.model.manifest import ModelManifest

COLUMNS = ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "ece")


def _cell(value: float | None) -> str:
    """A source of one class has no ROC AUC, and no sensitivity or no specificity."""
    return "–" if value is None else f"{value:.3f}"


def _row(name: str, metrics: dict[str, Any]) -> str:
    return f"| {name} | {metrics['images']} | " + " | ".join(_cell(metrics[k]) for k in COLUMNS) + " |"


def _sources(data: dict[str, Any]) -> str:
    counts = data.get("sources", {})
    return "; ".join(
        f"{name} ({c['train']} training, {c['validation']} validation images)" for name, c in counts.items()
    )


def render_model_card(manifest: ModelManifest, artifact_name: str) -> str:
    data, metrics, config = manifest.data_manifest, manifest.metrics, manifest.training_config
    rows = [_row("validation, every source", manifest.validation_metrics)]
    rows += [_row(f"validation, {source}", found) for source, found in metrics.get("validation_by_source", {}).items()]
    rows += [_row(f"{name} (scored end to end)", checked) for name, checked in metrics.get("checks", {}).items()]
    head = manifest.architecture
    report = f"{artifact_name.rsplit('.', 1)[0]}-report"
    return "\n".join(
        [
            f"# Model card: {manifest.name}",
            "",
            f"- Artifact: `{artifact_name}` (SHA-256 `{manifest.artifact_sha256 or 'see registry'}`), "
            f"created {manifest.created_at[:10]}.",
            f"- Architecture: ImageNet normalisation -> Keras ImageNet ResNet50 (no top, average pooling) -> dense "
            f"{head.head_units} ReLU -> dropout {head.dropout} -> logit. Training: {config['phase']}.",
            f"- Preprocessing spec: `{manifest.preprocessing['name']}` (stored in the artifact and the registry).",
            f"- Sources: {_sources(data)}.",
            f"- Split: patient-wise and stratified, seed {config['seed']}: {data['train_images']} training images "
            f"({data['train_patients']} patients), {data['validation_images']} validation images "
            f"({data['validation_patients']} patients); every file's SHA-256 is in the artifact's manifest.",
            f"- Calibration: temperature {manifest.temperature:.3f} (fitted on the validation split); "
            f"expected calibration error there {metrics['validation_ece_before_calibration']:.4f} before, "
            f"{manifest.validation_metrics['ece']:.4f} after.",
            f"- Threshold: {manifest.threshold:.4f} on calibrated probabilities, the highest with validation "
            f"sensitivity >= {config['target_sensitivity']:.0%}. A probability at or above it flags the image.",
            f"- Training report (curves, ROC/PR, confusion matrix, most confident mistakes): "
            f"[{report}/report.md]({report}/report.md).",
            "",
            "| data | images | ROC AUC | accuracy | sensitivity | specificity | precision | ECE |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Not for diagnosis: a screening aid that orders a radiologist's worklist. It knows only the sources",
            "above: films from elsewhere (adults, when no adult source is listed) are outside what it learned.",
            "",
        ]
    )
