"""The model floor: the least work a Python server can do to answer one wine V2 request.

A bare ASGI callable (no framework, no routing) on uvicorn with uvloop and httptools, like
the HTTP floor, that does the work no server can skip: it reads the body, parses it with
orjson, builds the float32 array from the first input's ``data`` and ``shape``, calls the
committed wine-quality v2 model once (``service.loader.load_version``: the same lean
runtime our service serves) and orjson-encodes a KServe V2 response with every output.
Any server that calls this model once per request can at best match its numbers.

Left out, on purpose: validation (a bad body is a 500, any path and method are answered),
warnings, metrics, admission control and load shedding, request ids, access control,
logging, model lookup by name and version. The model is loaded once at import.

Run, with the product's venv and the repository checkout as the working directory (so
``import service`` works)::

    MODEL_FLOOR_REPO=models OMP_NUM_THREADS=1 .venv/bin/python -m uvicorn model_floor_app:app \
        --app-dir bench/baselines --loop uvloop --http httptools --lifespan off

``MODEL_FLOOR_REPO`` is the model repository (the directory holding ``wine-quality/2``).
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from service.loader import load_version

MODEL = load_version(Path(os.environ["MODEL_FLOOR_REPO"]) / "wine-quality" / "2")
NAME = MODEL.manifest.name
VERSION = str(MODEL.manifest.version)
DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "object": "BYTES"}
JSON = (b"content-type", b"application/json")


def _output(name: str, value: np.ndarray) -> dict[str, Any]:
    # V2 JSON data is flat, row-major (as ours sends it); orjson serialises numeric
    # arrays natively but not object (string) arrays.
    flat = value.reshape(-1)
    data = flat.tolist() if value.dtype == object else flat
    return {"name": name, "datatype": DATATYPES[value.dtype.name], "shape": value.shape,
            "data": data}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    first = orjson.loads(body)["inputs"][0]
    x = np.asarray(first["data"], dtype=np.float32).reshape(first["shape"])
    outputs = MODEL.predict(x)
    response = orjson.dumps(
        {"model_name": NAME, "model_version": VERSION,
         "outputs": [_output(name, value) for name, value in outputs.items()]},
        option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": 200,
                "headers": [JSON, (b"content-length", str(len(response)).encode())]})
    await send({"type": "http.response.body", "body": response})
