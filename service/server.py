"""``modelserve serve``: run the service under uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from service.settings import ENV_PREFIX, Settings


def _pin_threads(n: int) -> None:
    # Must happen before numpy/scikit-learn/TensorFlow initialise their thread pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(n))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelserve serve",
        description=f"Serve a model repository. Every option can also be set with an "
                    f"environment variable {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}PORT).")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None,
                            help=f"{field.description} (env {ENV_PREFIX}{name.upper()}; "
                                 f"default {field.default})")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    settings = Settings(**overrides)
    _pin_threads(settings.inference_threads)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from service.app import create_app

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), access_log=False)


if __name__ == "__main__":
    main()
