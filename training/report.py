"""MODEL_CARD.md and its plots, written beside the artifact of every version."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.manifest import Manifest, Task
from training.common import TrainedModel


def write_model_card(trained: TrainedModel, manifest: Manifest, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    plots = []
    if trained.curves:
        plots.append(("Learning curves", _learning_curves(trained, folder / "learning_curves.png")))
    if manifest.task is Task.CLASSIFICATION:
        plots.append(("Confusion matrix (held-out test set)",
                      _confusion(trained, folder / "confusion_matrix.png")))
    else:
        plots.append(("Predicted vs actual (held-out test set)",
                      _pred_vs_actual(trained, folder / "predicted_vs_actual.png")))
    (folder / "MODEL_CARD.md").write_text(_card_text(trained, manifest, plots))


def _learning_curves(trained: TrainedModel, path: Path) -> str:
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for key in trained.curves:
        base = key.removeprefix("val_").removeprefix("train_").removeprefix("cv_")
        groups.setdefault(base, []).append(key)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (metric, keys) in zip(axes[0], groups.items(), strict=True):
        for key in keys:
            series = trained.curves[key]
            ax.plot(range(1, len(series) + 1), series, marker=".", label=key)
        ax.set_xlabel(trained.curves_xlabel)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _confusion(trained: TrainedModel, path: Path) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = trained.labels or []
    cm = confusion_matrix(trained.y_test, trained.y_test_pred, labels=range(len(labels)))
    size = max(3.5, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _pred_vs_actual(trained: TrainedModel, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(trained.y_test, trained.y_test_pred, s=3, alpha=0.3)
    lo = float(min(trained.y_test.min(), trained.y_test_pred.min()))
    hi = float(max(trained.y_test.max(), trained.y_test_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="red", linewidth=1)
    unit = trained.target.unit if trained.target else ""
    ax.set_xlabel(f"actual ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _metrics_table(rows: dict[str, dict[str, float]]) -> str:
    keys = [k for k in next(iter(rows.values())) if not k.endswith("_std")]
    out = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in rows.items():
        cells = []
        for k in keys:
            v = metrics.get(k)
            std = metrics.get(f"{k}_std")
            cells.append("" if v is None else f"{v:.4f}" + (f" ± {std:.4f}" if std else ""))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _card_text(trained: TrainedModel, m: Manifest, plots: list[tuple[str, str]]) -> str:
    ev = m.evaluation
    lines = [
        f"# {m.name} — version {m.version}",
        "",
        m.description,
        "",
        f"- Framework: {m.framework.value} {m.framework_version}; task: {m.task.value}; "
        f"recipe `{trained.recipe}`",
        f"- Artifact: `{m.primary_artifact.path}` ({m.primary_artifact.size_bytes:,} bytes, "
        f"SHA-256 `{m.primary_artifact.sha256[:16]}…`)",
        f"- Created {m.created_at.isoformat()} by `{m.provenance.command}` "
        f"in {m.provenance.training_seconds:.0f} s (git {m.provenance.git_commit or 'unknown'})",
        "",
        "## Inputs",
        "",
    ]
    if m.inputs.features:
        lines += ["| # | feature | unit | training range | description |", "|---|---|---|---|---|"]
        for i, f in enumerate(m.inputs.features):
            lines.append(f"| {i} | `{f.name}` | {f.unit} | {f.min:.4g} … {f.max:.4g} | "
                         f"{f.description} |")
    elif m.inputs.image:
        lines.append(f"`{m.inputs.name}`: shape {m.inputs.shape}. {m.inputs.image.description}")
    lines += ["", "## Outputs", ""]
    if m.labels:
        lines.append("Labels, in order: " + ", ".join(f"`{label}`" for label in m.labels) + ".")
    if m.target:
        lines.append(f"`value`: {m.target.description} ({m.target.unit}).")
    lines += ["", "## Evaluation", "", ev.method, "",
              f"Seed {ev.seed}; {ev.train_rows:,} training rows, {ev.test_rows:,} test rows.", ""]
    table = {"this model (held-out test)": ev.test_metrics}
    if ev.cv_metrics:
        table["this model (cross-validation)"] = ev.cv_metrics
    table.update(ev.baselines)
    lines += [_metrics_table(table), ""]
    for key, value in ev.extra.items():
        lines.append(f"- {key}: {value}")
    if trained.notes:
        lines += ["", "## Caveats", ""] + [f"- {n}" for n in trained.notes]
    lines += ["", "## Hyperparameters", "", "```json"]
    import json

    lines += [json.dumps(m.hyperparameters, indent=2), "```", ""]
    for title, file in plots:
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
    lines += ["## Data", ""]
    for d in ev.datasets:
        lines.append(f"- `{d.path}` (SHA-256 `{d.sha256[:16]}…`): {d.source}")
    lines.append("")
    return "\n".join(lines)
