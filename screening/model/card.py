"""The model card: a short Markdown page rendered from an artifact's manifest."""

from __future__ import annotations


def _row(name: str, metrics: dict) -> str:
    cells = [metrics[k] for k in ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "ece")]
    return f"| {name} | {metrics['images']} | " + " | ".join(f"{v:.3f}" for v in cells) + " |"


def render_model_card(manifest: dict, artifact_name: str) -> str:
    data = manifest["data_manifest"]
    metrics = manifest["metrics"]
    rows = [_row("patient-wise validation split", metrics["validation"])]
    if "official_val16" in metrics:
        rows.append(_row("official validation split (16 images)", metrics["official_val16"]))
    config = manifest["training_config"]
    head = manifest["architecture"]
    report = f"{artifact_name.rsplit('.', 1)[0]}-report"
    return "\n".join(
        [
            f"# Model card: {manifest['name']}",
            "",
            f"- Artifact: `{artifact_name}` (SHA-256 `{manifest.get('artifact_sha256', 'see registry')}`), "
            f"created {manifest['created_at'][:10]}.",
            f"- Architecture: Keras ImageNet ResNet50 (no top, average pooling) -> dense {head['head_units']} "
            f"ReLU -> dropout {head['dropout']} -> sigmoid. Training: {config['phase']}.",
            f"- Preprocessing spec: `{manifest['preprocessing']['name']}` (stored in the artifact and the registry).",
            "- Data: Kermany et al. 2018 chest X-ray training split at 224x224 (pediatric, AP; CC BY 4.0).",
            f"- Split: patient-wise and stratified, seed {config['seed']}: {data['train_images']} training images "
            f"({data['train_patients']} patients), {data['validation_images']} validation images "
            f"({data['validation_patients']} patients); every file's SHA-256 is in the artifact's manifest.",
            f"- Calibration: temperature {manifest.get('temperature', 1.0):.3f} (fitted on the validation split); "
            f"expected calibration error there {metrics['validation_ece_before_calibration']:.4f} before, "
            f"{metrics['validation']['ece']:.4f} after.",
            f"- Threshold: {manifest['threshold']:.4f} on calibrated probabilities, the highest with validation "
            f"sensitivity >= {config['target_sensitivity']:.0%}. A probability at or above it flags the image.",
            f"- Training report (curves, ROC/PR, confusion matrix, most confident mistakes): "
            f"[{report}/report.md]({report}/report.md).",
            "",
            "| data | images | ROC AUC | accuracy | sensitivity | specificity | precision | ECE |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Not for diagnosis: a screening aid that orders a radiologist's worklist. Trained on pediatric",
            "AP films; adult PA films (such as the DICOM samples) are outside its training distribution.",
            "",
        ]
    )
