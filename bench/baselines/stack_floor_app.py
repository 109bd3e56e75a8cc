"""The stack floor: the HTTP floor (``floor_app``) after importing the libraries our
service is built on, as our service imports them, and nothing of ours.

It answers exactly as the HTTP floor does; only its cold start differs. That start is the
least any server written on this stack can take to its first answer here: the part of our
own cold start that is not ours (our modules, the version checks and warm-up are the rest).

Run, with the product's venv::

    .venv/bin/python -m uvicorn stack_floor_app:app --app-dir bench/baselines \
        --loop uvloop --http httptools --lifespan off
"""

import fastapi
import fastapi.openapi.utils
import grpc.aio  # noqa: F401
import numpy  # noqa: F401
import prometheus_client  # noqa: F401
import pydantic_settings  # noqa: F401
from floor_app import app  # noqa: F401

# FastAPI imports pydantic.v1 at the first route with a parameter; every app pays it.
router = fastapi.APIRouter()


@router.get("/v1/models/{name}")
def _status(name: str) -> dict[str, str]:
    return {"name": name}
