"""``modelserve train``: train one model (or all) and publish new versions."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from pathlib import Path

# One OpenMP/BLAS thread: on 2-core machines scikit-learn's histogram boosting ran
# 10-60x slower with two threads than with one. Set before numpy/sklearn load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODULES = {
    "digits": "training.digits",
    "wine-quality": "training.wine_quality",
    "housing": "training.housing",
    "auscultation": "training.auscultation",
}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="modelserve train")
    parser.description = ("Train a model on the real data and publish it as a new version "
                          "folder under the models directory. Recipes run in order, one "
                          "version each (the reference recipe first).")
    parser.add_argument("model", choices=[*MODULES, "all"])
    parser.add_argument("--recipe", action="append",
                        help="recipe to train (repeatable); default: all of the model's recipes")
    parser.add_argument("--data-dir", default=None,
                        help="dataset folder (env MODELSERVE_DATA_DIR; default ../shared/datasets)")
    parser.add_argument("--models-dir", default="models", help="model repository (default models)")
    parser.add_argument("--version", type=int, default=None,
                        help="version number to write (default: next free); never overwrites")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run on a slice of the data with a tiny budget")
    return parser


def run(args: argparse.Namespace, command: str = "") -> list[Path]:
    from training.data import DataDir, resolve_data_dir

    data = DataDir(resolve_data_dir(args.data_dir))
    names = list(MODULES) if args.model == "all" else [args.model]
    written = []
    for name in names:
        module = importlib.import_module(MODULES[name])
        recipes = args.recipe or list(module.RECIPES)
        for recipe in recipes:
            if args.version is not None and len(recipes) * len(names) > 1:
                raise SystemExit("--version needs a single model and recipe")
            start = time.perf_counter()
            trained = module.train(recipe, data, quick=args.quick)
            # A smoke run on a slice may not beat the baselines; a real run must.
            written.append(trained.publish(Path(args.models_dir), version=args.version,
                                           training_seconds=time.perf_counter() - start,
                                           command=command, allow_below_baseline=args.quick))
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run(build_parser().parse_args(argv), "modelserve train " + shlex.join(argv))


if __name__ == "__main__":
    main()
