"""MODEL_CARD.md and its plots, written beside the artifact of every version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.manifest import Manifest, Task


@dataclass
class CardFacts:
    """What the card shows beyond the manifest: the held-out truth and the served
    answers (class ids or values), learning curves, caveats."""

    y_test: np.ndarray | None = None
    y_pred: np.ndarray | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)
    curves_xlabel: str = "epoch"
    notes: list[str] = field(default_factory=list)


def write_model_card(manifest: Manifest, facts: CardFacts, folder: Path) -> list[str]:
    """Writes MODEL_CARD.md and its PNG plots; returns the plot file names."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    plots = []
    if facts.curves:
        plots.append(("Learning curves", _learning_curves(facts, folder / "learning_curves.png")))
    if facts.y_test is not None and facts.y_pred is not None:
        if manifest.task is Task.CLASSIFICATION:
            plots.append(("Confusion matrix (held-out test set)",
                          _confusion(manifest, facts, folder / "confusion_matrix.png")))
        else:
            plots.append(("Predicted vs actual (held-out test set)",
                          _pred_vs_actual(manifest, facts, folder / "predicted_vs_actual.png")))
    (folder / "MODEL_CARD.md").write_text(_card_text(manifest, facts, plots))
    return [file for _, file in plots]


def _learning_curves(facts: CardFacts, path: Path) -> str:
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for key in facts.curves:
        base = key.removeprefix("val_").removeprefix("train_").removeprefix("cv_")
        groups.setdefault(base, []).append(key)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (metric, keys) in zip(axes[0], groups.items(), strict=True):
        for key in keys:
            series = facts.curves[key]
            ax.plot(range(1, len(series) + 1), series, marker=".", label=key)
        ax.set_xlabel(facts.curves_xlabel)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _confusion(m: Manifest, facts: CardFacts, path: Path) -> str:
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    labels = m.labels or []
    cm = confusion_matrix(facts.y_test, facts.y_pred, labels=range(len(labels)))
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


def _pred_vs_actual(m: Manifest, facts: CardFacts, path: Path) -> str:
    import matplotlib.pyplot as plt

    y, p = np.asarray(facts.y_test, dtype=float), np.asarray(facts.y_pred, dtype=float)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(y, p, s=3, alpha=0.3)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="red", linewidth=1)
    unit = f" ({m.target.unit})" if m.target and m.target.unit else ""
    ax.set_xlabel(f"actual{unit}")
    ax.set_ylabel(f"predicted{unit}")
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


def _inputs_section(m: Manifest) -> list[str]:
    lines: list[str] = []
    for spec in m.inputs:
        if len(m.inputs) > 1 or spec.kind == "image":
            lines += [f"### `{spec.name}`", ""]
        if spec.features:
            lines += ["| # | feature | type | unit | training range / categories | description |",
                      "|---|---|---|---|---|---|"]
            for i, f in enumerate(spec.features):
                if f.categories is not None:
                    seen = ", ".join(f"`{c}`" for c in f.categories[:12])
                    seen += " …" if len(f.categories) > 12 else ""
                    seen += " (others: " + ("served with a warning"
                                           if f.unknown_categories == "warn" else "refused") + ")"
                elif f.min is not None:
                    seen = f"{f.min:.4g} … {f.max:.4g}"
                else:
                    seen = ""
                kind = f.dtype + (", may be missing" if f.nullable else "")
                lines.append(f"| {i} | `{f.name}` | {kind} | {f.unit} | {seen} | "
                             f"{f.description} |")
        elif spec.image:
            img = spec.image
            pre = img.preprocessing
            how = (f"ink cropped, longer side scaled to {pre.box or 'the default box'} px, "
                   f"centred by {'centre of mass' if pre.centre == 'mass' else 'bounding box'}"
                   if pre.mode == "ink" else "the whole picture resized")
            lines.append(f"`{spec.name}`: shape {spec.shape}, {spec.dtype}. {img.description} "
                         f"Uploads to `:predict_image`: {how}.")
        lines.append("")
    return lines


def _card_text(m: Manifest, facts: CardFacts, plots: list[tuple[str, str]]) -> str:
    ev = m.evaluation
    prov = m.provenance
    took = f" in {prov.training_seconds:.0f} s" if prov.training_seconds else ""
    lines = [
        f"# {m.name} — version {m.version}",
        "",
        m.description,
        "",
        f"- Framework: {m.framework.value} {m.framework_version}; task: {m.task.value}; "
        f"written by `{prov.trainer}`",
        f"- Artifact: `{m.primary_artifact.path}` ({m.primary_artifact.size_bytes:,} bytes, "
        f"SHA-256 `{m.primary_artifact.sha256[:16]}…`)",
        f"- Created {m.created_at.isoformat()} by `{prov.command}`{took} "
        f"(git {prov.git_commit or 'unknown'})",
        "",
        "## Inputs",
        "",
        *_inputs_section(m),
        "## Outputs",
        "",
    ]
    if m.labels:
        lines.append("Labels, in order: " + ", ".join(f"`{label}`" for label in m.labels) + ".")
    if m.target:
        unit = f" ({m.target.unit})" if m.target.unit else ""
        lines.append(f"`value`: {m.target.description or m.target.name}{unit}.")
    lines += ["", "## Evaluation", "", ev.method, "",
              f"Seed {ev.seed}; {ev.train_rows:,} training rows, {ev.test_rows:,} test rows.", ""]
    table = {"this model (held-out test)": ev.test_metrics}
    if ev.cv_metrics:
        table["this model (cross-validation)"] = ev.cv_metrics
    table.update(ev.baselines)
    table.update(ev.variants)
    lines += [_metrics_table(table), ""]
    if ev.primary_metric:
        lines.append(f"- Compared with the baselines on: `{ev.primary_metric}`")
    if ev.test_set_sha256:
        lines.append(f"- Held-out set SHA-256: `{ev.test_set_sha256[:16]}…` (inputs as "
                     "validated by the service, and targets)")
    for key, value in ev.extra.items():
        lines.append(f"- {key}: {value}")
    if facts.notes:
        lines += ["", "## Caveats", ""] + [f"- {n}" for n in facts.notes]
    lines += ["", "## Hyperparameters", "", "```json", json.dumps(m.hyperparameters, indent=2),
              "```", ""]
    for title, file in plots:
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
    if ev.datasets:
        lines += ["## Data", ""]
        for d in ev.datasets:
            lines.append(f"- `{d.path}` (SHA-256 `{d.sha256[:16]}…`): {d.source}")
        lines.append("")
    return "\n".join(lines)
