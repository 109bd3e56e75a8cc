"""The "tutorial" baseline: how a typical FastAPI + Keras serving tutorial does it.

A pydantic request model, the model loaded at import time, and ``model.predict`` on a
fresh ``np.array`` for every request. The endpoint is a plain ``def`` (as most tutorials
write it), so FastAPI runs it in its thread pool. Deliberately not tuned: this is the
code people start from, and the benchmark measures how far the product is from it.

Two concessions, both for a fair comparison rather than speed: ``verbose=0`` (the
default prints a progress bar to stdout on every call) and uvicorn is started without
an access log, as the product is.

Run: ``uvicorn tutorial_app:app`` with ``TUTORIAL_MODEL_PATH`` set to a ``.keras`` file.
"""

import os

import keras
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_PATH = os.environ["TUTORIAL_MODEL_PATH"]

app = FastAPI(title="Wine quality (tutorial)")
model = keras.models.load_model(MODEL_PATH)


class PredictRequest(BaseModel):
    instances: list[list[float]]


class PredictResponse(BaseModel):
    predictions: list[list[float]]


@app.post("/v1/models/wine-quality:predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    predictions = model.predict(np.array(request.instances, dtype=np.float32), verbose=0)
    return PredictResponse(predictions=predictions.tolist())
