"""The training report: curves, ROC and precision-recall, the confusion matrix, the most confident
mistakes, as PNG files and one Markdown page beside them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

from screening.model.card import figures_table
from screening.model.figures import BinaryMetrics  # noqa: E402
from screening.model.manifest import ModelManifest  # noqa: E402


def _curves(history: dict[str, list[float]], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "auc"), strict=True):
        axis.plot(history[metric], label="training")
        axis.plot(history[f"val_{metric}"], label="validation")
        axis.set(xlabel="epoch", ylabel=metric, title=metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _roc_pr(labels: np.ndarray, scores: np.ndarray, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    RocCurveDisplay.from_predictions(labels, scores, ax=axes[0], name="validation")
    PrecisionRecallDisplay.from_predictions(labels, scores, ax=axes[1], name="validation")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _confusion(labels: np.ndarray, scores: np.ndarray, threshold: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels, (scores >= threshold).astype(int), display_labels=["normal", "pneumonia"], ax=axis, colorbar=False
    )
    axis.set_title(f"threshold {threshold:.3f}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def most_confident_mistakes(labels: np.ndarray, scores: np.ndarray, threshold: float, count: int = 8) -> list[int]:
    """Indices of wrong calls, the most confident first: normals scored highest, pneumonias lowest."""
    wrong = np.flatnonzero((scores >= threshold) != (labels == 1))
    confidence = np.where(labels[wrong] == 1, threshold - scores[wrong], scores[wrong] - threshold)
    return [int(i) for i in wrong[np.argsort(-confidence)][:count]]


def _mistakes(images: list[np.ndarray], captions: list[str], path: Path) -> None:
    columns = 4
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        axis.imshow(image, cmap="gray")
        axis.set_title(caption, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(
    directory: Path,
    manifest: ModelManifest,
    history: dict[str, list[float]],
    labels: np.ndarray,
    scores: np.ndarray,
    mistakes: list[tuple[np.ndarray, str]],
) -> Path:
    """Write the PNGs and report.md into `directory`; return the Markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    threshold = manifest.threshold
    trained = bool(history.get("loss"))  # an ensemble of trained networks has no epochs of its own
    if trained:
        _curves(history, directory / "curves.png")
    _roc_pr(labels, scores, directory / "roc_pr.png")
    _confusion(labels, scores, threshold, directory / "confusion.png")
    _mistakes([image for image, _ in mistakes], [caption for _, caption in mistakes], directory / "mistakes.png")
    validation = manifest.metrics.validation or BinaryMetrics(images=0)
    table = "\n".join(
        f"| {name} | {figure:.4f} |" if (figure := validation.figure(name)) is not None else f"| {name} | – |"
        for name in ("roc_auc", "accuracy", "sensitivity", "specificity", "precision", "f1", "ece")
    )
    used = manifest.metrics.training_resources
    resources = f"Wall time {used.wall_minutes} minutes, peak resident memory {used.peak_rss_mb} MB." if used else ""
    markdown = directory / "report.md"
    epochs = f", {len(history['loss'])} epochs" if trained else ""
    markdown.write_text(f"""# Training report: {manifest.name}

{manifest.notes.phase}{epochs}; threshold {threshold:.4f} for sensitivity
>= {manifest.training_config.target_sensitivity:.0%} on the validation split ({validation.images} images);
temperature {manifest.temperature:.3f}.

| metric | validation |
|---|---|
{table}

Per source (95% intervals in brackets), the checks scored end to end, and the baseline:

{chr(10).join(figures_table(manifest))}

{resources}

{"![loss and ROC AUC per epoch](curves.png)" if trained else ""}

![ROC and precision-recall curves](roc_pr.png)

![confusion matrix at the threshold](confusion.png)

![the most confident mistakes](mistakes.png)
""")
    return markdown
