"""The model card: a short Markdown page rendered from an artifact's manifest.

Every figure comes from the manifest: per-source metrics with 95% intervals, the baseline the model
must beat, the applicability gate's refusal rates, the licences of the training data.
"""

from __future__ import annotations

from screening.model.figures import BinaryMetrics, Consistency, Interval
from screening.model.manifest import DataManifest, GateRecord, Member, ModelManifest, non_commercial

KNOWN_FAILURE_MODES = (
    "Films unlike any source above (another hospital's exposure, a new scanner, an unusual age group) get "
    "scores it has never been checked on: its figures on adults rest on a few dozen validation films.",
    "Adult portable AP films: in the adult sources most pneumonias are AP and most normals PA, a shortcut a "
    "model can learn although the sources are balanced by weight.",
    "Pneumonia is told from other opacities (effusion, atelectasis, edema, masses) only as far as the labels "
    "did: NIH labels were mined from reports.",
    "The gate judges the kind of image, not its quality: a frontal film that is badly exposed, cropped at the "
    "lung bases or full of lines and tubes passes it and is scored.",
    "Images the gate never saw the like of (a kind missing from the out-of-scope set) may pass it.",
)


def _cell(value: float | None, interval: Interval | None = None, digits: int = 3) -> str:
    """A source of one class has no ROC AUC, and no sensitivity or no specificity."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" ({interval[0]:.3f}–{interval[1]:.3f})" if interval else "")


def _figures(metrics: BinaryMetrics, names: tuple[str, ...]) -> list[str]:
    return [_cell(metrics.figure(name), metrics.ci95.get(name)) for name in names]


def _row(name: str, metrics: BinaryMetrics, refused: float | None = None) -> str:
    cells = _figures(metrics, ("roc_auc", "sensitivity", "specificity")) + [_cell(metrics.accuracy), _cell(metrics.ece)]
    gate = "–" if refused is None else f"{refused:.1%}"
    return f"| {name} | {metrics.images} | " + " | ".join(cells) + f" | {gate} |"


def _sources(data: DataManifest) -> str:
    return "; ".join(
        f"{name} ({counts.train} training, {counts.validation} validation images)"
        for name, counts in data.sources.items()
    )


def _licences(data: DataManifest, gate: GateRecord | None) -> list[str]:
    named_sources = dict(data.licences)
    if gate is not None and gate.out_of_scope_folder.licences:
        named_sources["out-of-scope images the gate was fitted on"] = gate.out_of_scope_folder.licences
    lines = []
    for source, licences in named_sources.items():
        named = ", ".join(
            f"{licence} ({count}){' **non-commercial**' if non_commercial(licence) else ''}"
            for licence, count in licences.items()
        )
        lines.append(f"- {source}: {named}")
    return lines


def _gate(gate: GateRecord | None) -> list[str]:
    if gate is None:
        return ["No applicability gate: every image that passes the header and pixel rules is scored."]
    tested = gate.test
    kinds = ", ".join(
        f"{kind} {counts.refused}/{counts.images}"
        for kind, counts in tested.by_kind.items()
        if not kind.startswith("frontal")
    )
    folder = gate.out_of_scope_folder
    return [
        f'`{gate.version}`: {gate.method}; an image scoring below {gate.threshold} is skipped as "not a '
        'frontal chest radiograph" and gets no probability.',
        f"Fitted on the training side's frontal films against {len(folder.fitted_on)} out-of-scope files in "
        "variations and images made from training films (turned, upside down, inverted, cropped, clipped) and drawn "
        "(noise, text pages, drawings).",
        f"Test, on images kept apart ({len(folder.held_out)} out-of-scope files of other patients, images made "
        f"from validation films): refuses **{tested.out_of_scope_refusal_rate:.1%}** of "
        f"{tested.out_of_scope_images} out-of-scope images ({kinds}); the frontal films it refuses are in the "
        "table's last column.",
    ]


def figures_table(manifest: ModelManifest) -> list[str]:
    """Per source: the model's metrics with intervals and the gate's refusals, the checks, the baseline."""
    metrics = manifest.metrics
    frontal_refused = manifest.gate.test.frontal_refusal_rate if manifest.gate else {}
    rows = [_row("validation, every source", metrics.validation)] if metrics.validation else []
    rows += [
        _row(f"validation, {source}", found, frontal_refused.get(source))
        for source, found in metrics.validation_by_source.items()
    ]
    rows += [
        _row(f"{name} (scored end to end)", checked, checked.gate_refusal_share)
        for name, checked in metrics.checks.items()
    ]
    if metrics.baseline:
        rows += [_row(f"baseline, {source}", found) for source, found in metrics.baseline.validation_by_source.items()]
    return [
        "| data | images | ROC AUC | sensitivity | specificity | accuracy | ECE | refused by the gate |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _populations(manifest: ModelManifest) -> list[str]:
    """Each population's operating point and figures, cross-validated too, and the age-group estimate's test."""
    described = manifest.populations
    if not described:
        return []
    rows = []
    for name, point in described.points.items():
        found = manifest.metrics.populations.get(name)
        crossed = found.cross_validated.groups.get("all") if found and found.cross_validated else None
        sources = ", ".join(source for source, population in described.sources.items() if population == name)
        rows.append(
            f"| {name} ({sources}) | {found.images if found else '–'} | {point.temperature:.3f} | "
            f"{point.threshold:.4f} | {point.target_sensitivity:.0%} | "
            + " | ".join(_figures(found, ("roc_auc", "sensitivity", "specificity")) if found else ["–"] * 3)
            + f" | {_cell(found.ece if found else None)} | "
            + f"{_cell(crossed.sensitivity if crossed else None)} / {_cell(crossed.specificity if crossed else None)} |"
        )
    estimate = described.estimate
    tested = "; ".join(
        f"{source}: {counts.right} of {counts.images} right, {counts.wrong} wrong, {counts.not_placed} not placed"
        for source, counts in estimate.test.items()
    )
    return [
        "",
        "## Operating points per population",
        "",
        "Each population has its own temperature and threshold, chosen on its own validation films: the highest",
        "threshold that keeps the target sensitivity on each of its sources. An image's population comes from its",
        "DICOM header (PatientAge, or PatientBirthDate with the study's date), else from `screen enqueue",
        "--population`, else from the age-group estimate; an image the estimate cannot place gets the more",
        "sensitive point. The last column is patient-wise cross-validation on the same films (the point chosen on",
        "the other folds): how far the choice itself flatters the figures before it.",
        "",
        "| population (sources) | validation images | temperature | threshold | target sensitivity | ROC AUC "
        "| sensitivity | specificity | ECE | cross-validated sensitivity / specificity |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"The age-group estimate (`{estimate.version}`): {estimate.method}, fitted on "
        + ", ".join(f"{count} {name}" for name, count in estimate.fitted_on.items())
        + f" training films; P(adult) >= {estimate.adult_from} places an adult, < {estimate.child_below} a "
        f"child. On the validation films: {tested}.",
    ]


def _consistency(consistency: Consistency | None) -> list[str]:
    """How often the flag survives variations that do not change the diagnosis (training.consistency)."""
    if not consistency:
        return []
    groups = consistency.populations
    variations = list(next(iter(groups.values())).variations)
    rows = [
        f"| {population} | {group.films} | "
        + " | ".join(
            f"{kept.rate:.1%}" + (f" ({kept.refused} refused)" if kept.refused else "")
            for kept in (group.variations[name] for name in variations)
        )
        + " |"
        for population, group in groups.items()
    ]
    return [
        "",
        "## Consistency",
        "",
        "Validation films whose flag stays the same when the film is varied in ways a reader would call the same",
        "film (each at the film's operating point; a variation the gate refuses counts as changed; "
        f"{consistency.target:.0%} asked of each):",
        "",
        f"| population | films | {' | '.join(variations)} |",
        "|---|---|" + "---|" * len(variations),
        *rows,
    ]


def _member(member: Member) -> str:
    """One network of an ensemble: where it came from and what training it took."""
    trained = member.training_resources
    cost = f", trained in {trained.wall_minutes} minutes at a peak of {trained.peak_rss_mb} MB" if trained else ""
    return f"`{member.artifact}` (SHA-256 `{member.sha256[:12]}…`), {member.phase}{cost}"


def render_model_card(manifest: ModelManifest, artifact_name: str) -> str:
    data, metrics, config, notes = manifest.data_manifest, manifest.metrics, manifest.training_config, manifest.notes
    head = manifest.architecture
    report = f"{artifact_name.rsplit('.', 1)[0]}-report"
    rule = (
        "on every source (the lowest of the sources' thresholds)"
        if config.threshold_rule == "every-source"
        else "on the validation side as a whole"
    )
    resources = metrics.training_resources
    lines = [
        f"# Model card: {manifest.name}",
        "",
        f"- Artifact: `{artifact_name}` (SHA-256 `{manifest.artifact_sha256 or 'see registry'}`), "
        f"created {manifest.created_at[:10]}.",
        f"- Architecture: ImageNet normalisation -> Keras ImageNet ResNet50 (no top, average pooling) -> dense "
        f"{head.head_units} ReLU -> dropout {head.dropout} -> logit"
        + (f"; {head.members} such networks, their logits averaged" if head.members > 1 else "")
        + f". Training: {notes.phase}.",
        *[f"  - member {index}: {_member(member)}" for index, member in enumerate(notes.members, start=1)],
        f"- Preprocessing spec: `{manifest.preprocessing.name}` (stored in the artifact and the registry).",
        f"- Sources: {_sources(data)}.",
        f"- Split: patient-wise and stratified, seed {config.seed}: {data.train_images} training images "
        f"({data.train_patients} patients), {data.validation_images} validation images "
        f"({data.validation_patients} patients); every file's SHA-256 is in the artifact's manifest.",
        *(
            [
                "- Calibration and threshold: one operating point per population (below); an image the age-group "
                f"estimate cannot place is scored at the more sensitive one (temperature {manifest.temperature:.3f}, "
                f"threshold {manifest.threshold:.4f}). A probability at or above its threshold flags the image."
            ]
            if manifest.populations
            else [
                f"- Calibration: temperature {manifest.temperature:.3f} (fitted on the validation split); "
                f"expected calibration error there {_cell(metrics.validation_ece_before_calibration, digits=4)} "
                f"before, {_cell(metrics.validation.ece if metrics.validation else None, digits=4)} after.",
                f"- Threshold: {manifest.threshold:.4f} on calibrated probabilities, the highest with validation "
                f"sensitivity >= {config.target_sensitivity:.0%} {rule}. A probability at or above it flags the "
                "image.",
            ]
        ),
        (
            f"- Operating points added to the trained network of `{notes.points_added_to[:12]}…` (its SHA-256), "
            "whose training report holds the curves; the figures below are this version's."
            if notes.points_added_to
            else f"- Training report (curves, ROC/PR, confusion matrix, most confident mistakes): "
            f"[{report}/report.md]({report}/report.md)."
        ),
    ]
    if resources:
        lines.append(
            f"- {'Assembling it' if notes.members else 'Training'} took {resources.wall_minutes} minutes "
            f"at a peak of {resources.peak_rss_mb} MB (resident memory of the process)."
        )
    lines += [
        "",
        "## Intended use",
        "",
        "A screening aid that orders a radiologist's worklist, not a diagnosis. For frontal (PA or AP) chest",
        "radiographs of the populations of the sources above: children (the Kermany set: 1 to 5 years) and, where",
        "an adult source is listed, adults. Lateral films, CT, other body parts and photographs are outside it.",
        "",
        "## Figures",
        "",
        "On the validation side (the epoch, temperature and threshold were chosen on it: figures for comparison,",
        "not evidence of how it does on unseen patients); 95% bootstrap intervals in brackets."
        + (
            " The baseline rows are a logistic regression on frozen ImageNet features, at a threshold chosen the"
            " same way."
            if metrics.baseline
            else ""
        ),
        "",
        *figures_table(manifest),
        *_populations(manifest),
        "",
        "## Applicability gate",
        "",
        *_gate(manifest.gate),
        *_consistency(metrics.consistency),
        "",
        "## Known failure modes",
        "",
        *[f"- {mode}" for mode in KNOWN_FAILURE_MODES],
    ]
    licences = _licences(data, manifest.gate)
    if licences:
        lines += [
            "",
            "## Training data licences",
            "",
            "As the sources' manifests give them (files without a manifest: not recorded). `screen train",
            "--commercial-use-only` leaves out every non-commercial image, labelled or out-of-scope.",
            "",
            *licences,
        ]
    return "\n".join([*lines, ""])
