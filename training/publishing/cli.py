"""``modelserve publish``: publish a model already saved to disk (a joblib pickle or a
``.keras`` file) with a sample of its training data and, optionally, a held-out set."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.errors import ModelLoadError
from training.publishing.publish import VersionExistsError, publish
from training.publishing.schema import ImageNote, PublishError

_TABLES = (".csv", ".parquet", ".pq")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelserve publish",
        description="Publish a saved scikit-learn (.joblib/.pkl) or Keras (.keras) model as a "
                    "new version in a model repository. A joblib file is a pickle, which "
                    "runs code when loaded: publish only files from a publisher you trust.")
    p.add_argument("model", type=Path, help="model.joblib, model.pkl or model.keras")
    p.add_argument("--name", required=True, help="model name (lowercase, digits, dashes)")
    p.add_argument("--sample", type=Path, required=True,
                   help="training rows the input schema is read from: .csv, .parquet, or "
                        ".npz (one array per Keras input, by input name)")
    p.add_argument("--test", type=Path, help="held-out rows in the same format, with targets")
    p.add_argument("--target", default="y",
                   help="target column (.csv/.parquet) or array (.npz) in --test and "
                        "--sample (default: y)")
    p.add_argument("--repository", "--models-dir", type=Path, default=Path("models"),
                   help="model repository to publish into (default: models)")
    p.add_argument("--version", type=int, help="version number (default: next free)")
    p.add_argument("--description", default="")
    p.add_argument("--labels", help="comma-separated class names, in the model's class order")
    p.add_argument("--task", choices=["classification", "regression"])
    p.add_argument("--features", type=Path,
                   help="JSON file: {feature: {\"unit\": ..., \"description\": ...}}")
    p.add_argument("--image-preprocessing", default=None,
                   help="image inputs: 'resize' (default) or 'ink:BOX:mass|box' (crop to the "
                        "ink, fit it in BOX pixels, centre by mass or bounding box)")
    p.add_argument("--allow-below-baseline", action="store_true",
                   help="publish even if the model does not beat the trivial baseline")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        folder = run(args, "modelserve publish " + shlex.join(argv))
    except (PublishError, VersionExistsError, ModelLoadError, FileNotFoundError,
            json.JSONDecodeError) as exc:
        raise SystemExit(f"modelserve publish: {exc}") from None
    print(folder)


def run(args: argparse.Namespace, command: str) -> Path:
    model = load_model(args.model)
    inputs, y_train = read_data(args.sample, args.target)
    x_test = y_test = None
    if args.test is not None:
        x_test, y_test = read_data(args.test, args.target)
        if y_test is None:
            raise PublishError(f"{args.test} has no target {args.target!r}")
    features = json.loads(args.features.read_text()) if args.features else None
    return publish(
        model, name=args.name, repository=args.repository, version=args.version,
        description=args.description, inputs=inputs, y_train=y_train, X_test=x_test,
        y_test=y_test, features=features, task=args.task,
        labels=args.labels.split(",") if args.labels else None,
        image=_image(args.image_preprocessing), trainer=f"modelserve publish {args.model.name}",
        command=command, allow_below_baseline=args.allow_below_baseline,
        method=f"Held-out rows from {args.test.name}." if args.test else "")


def load_model(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        if path.suffix == ".keras":
            import keras

            return keras.saving.load_model(path, compile=False, safe_mode=True)
        if path.suffix in (".joblib", ".pkl", ".pickle"):
            import joblib

            return joblib.load(path)
    except Exception as exc:  # both libraries raise many types for a bad file
        raise PublishError(f"{path.name} could not be loaded: {exc}") from exc
    raise PublishError(f"{path.name}: expected a .joblib/.pkl (scikit-learn) or .keras file")


def read_data(path: Path, target: str) -> tuple[Any, np.ndarray | None]:
    """(inputs, targets or None) from a table or an .npz of arrays."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        y = arrays.pop(target, None)
        return (next(iter(arrays.values())) if len(arrays) == 1 else arrays), y
    if path.suffix in _TABLES:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        y = frame.pop(target).to_numpy() if target in frame.columns else None
        return frame, y
    raise PublishError(f"{path.name}: expected .csv, .parquet or .npz")


def _image(spec: str | None) -> ImageNote | None:
    if not spec:
        return None
    if spec == "resize":
        return ImageNote(preprocessing={"mode": "resize"})
    mode, _, rest = spec.partition(":")
    box, _, centre = rest.partition(":")
    if mode != "ink" or not box.isdigit() or centre not in ("", "mass", "box"):
        raise PublishError(f"--image-preprocessing {spec!r}: use 'resize' or 'ink:BOX:mass|box'")
    return ImageNote(preprocessing={"mode": "ink", "box": int(box), "centre": centre or "mass"})
