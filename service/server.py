"""``modelserve serve``: run the service under uvicorn."""

from __future__ import annotations

import argparse
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
    from service.app import configure_logging

    configure_logging(settings)
    import uvicorn

    common = {"host": settings.host, "port": settings.port, "access_log": False,
              "log_level": settings.log_level.lower(), "loop": "uvloop", "http": "httptools"}
    if settings.workers == 1:
        from service.app import create_asgi

        uvicorn.run(create_asgi(settings), **common)
        return
    # Worker processes build their own app from the environment: pass every setting
    # that came from a flag down as its environment variable.
    for key, value in overrides.items():
        os.environ[ENV_PREFIX + key.upper()] = str(value)
    uvicorn.run("service.app:create_asgi", factory=True, workers=settings.workers, **common)


if __name__ == "__main__":
    main()
