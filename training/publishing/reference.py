"""Training references for drift (service/evidence/reference.py): computed by ``publish``
for every new version, and written as ``reference.json`` beside the manifest of a version
published before manifests held one.

    .venv/bin/python -m training.publishing.reference models/wine-quality/1 [...] \\
        [--data-dir ../shared/datasets]
    .venv/bin/python -m training.publishing.reference --all

The backfill rebuilds the version's training rows from its trainer's own split (the
trainer and recipe its provenance names, as tests/test_model_quality.py rebuilds the
held-out set), runs them through the loaded version, and writes the reference. The
version itself (artifact, manifest, card) is not touched.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from service.batch import Batch
from service.evidence import reference
from service.loader import REFERENCE_FILE, load_version, read_manifest
from service.manifest import Reference
from service.model import LoadedModel
from training.publishing import evaluate

MAX_ROWS = 20_000  # a seeded sample past this: quantiles and shares settle long before
SEED = 42


def build(loaded: LoadedModel, data: dict[str, Any], rows: int) -> Reference:
    """The reference of ``loaded`` over training ``data`` (feature columns or image
    arrays by name, as ``evaluate.batches`` takes them)."""
    if rows > MAX_ROWS:
        keep = np.sort(np.random.default_rng(SEED).choice(rows, MAX_ROWS, replace=False))
        data = {k: _take(v, keep) for k, v in data.items()}
        rows = MAX_ROWS
    parts = evaluate.batches(loaded.signature, data, rows)
    outputs = evaluate.predict_all(loaded, parts)
    m = loaded.manifest
    return reference.build(loaded.signature, m.task, len(m.labels or []),
                           Batch.concat(parts), outputs)


def _take(values: Any, keep: np.ndarray) -> Any:
    if hasattr(values, "iloc"):
        return values.iloc[keep]
    return np.asarray(values)[keep] if not isinstance(values, list) else [
        values[i] for i in keep]


def backfill(folder: Path, data_dir: Any) -> Path:
    m = read_manifest(folder)
    if m.provenance.trainer is None or " recipe=" not in m.provenance.trainer:
        raise SystemExit(f"{folder}: its provenance names no trainer and recipe to rebuild "
                         "the training rows from")
    trainer, recipe = m.provenance.trainer.split(" recipe=")
    split = importlib.import_module(trainer).split(recipe, data_dir)
    x = np.asarray(split.x_train)
    (spec,) = m.inputs
    if spec.kind == "tabular":
        # Rows the service would refuse (a missing value where the manifest allows none)
        # are not what it serves: leave them out.
        strict = [j for j, f in enumerate(spec.features or []) if not f.nullable]
        missing = np.isnan(x[:, strict].astype(np.float64)).any(axis=1)
        if missing.any():
            print(f"{folder}: {int(missing.sum())} training rows with a missing value left out")
            x = x[~missing]
    data = ({spec.name: x} if spec.kind == "image"
            else {n: x[:, j] for j, n in enumerate(spec.feature_names)})
    ref = build(load_version(folder), data, len(x))
    path = folder / REFERENCE_FILE
    path.write_text(ref.model_dump_json(indent=1, exclude_none=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    from training.data import DataDir, resolve_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", type=Path, help="version folders")
    p.add_argument("--all", action="store_true",
                   help="every committed version under models/ without a reference")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="datasets (default: MODELSERVE_DATA_DIR or ../shared/datasets)")
    args = p.parse_args(argv)
    folders = list(args.folders)
    if args.all:
        folders += sorted(f for f in Path("models").glob("*/*") if f.name.isdigit()
                          and read_manifest(f).reference is None)
    data = DataDir(resolve_data_dir(args.data_dir))
    for folder in folders:
        print(f"{folder}: wrote {backfill(folder, data)}", flush=True)


if __name__ == "__main__":
    main()
