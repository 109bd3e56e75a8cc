"""The data plane: what every protocol does to serve a model, written once.

The protocol modules (``service/protocols/``: TF-Serving REST, KServe V2 over HTTP and
over gRPC, image uploads) only decode their wire format into the types below and encode
the result back. Everything else happens here, whatever the protocol:

- admission: a bound on the requests in progress in this process (``admit``), checked
  before a body is read;
- resolution: a model name and a version number, label or neither to the loaded version
  that serves the request (``resolve``; labels and traffic splits from config.json);
- inference: validated rows into the version's batcher, outputs selected, the
  classification extension applied, input warnings attached (``infer``);
- evidence: each prediction captured where the model is called (``predict``) and handed,
  with its status and latency, to the payload log once answered (``observe``);
- accounting: the inference metrics under the protocol's name (``observe``);
- health and model metadata in protocol-neutral form.

It runs on the event loop only; the repository it reads swaps immutable snapshots.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service import __version__, security, tensors
from service.batch import Batch
from service.errors import ApiError, InvalidInput, NotFound, Overloaded, Unavailable
from service.evidence import Evidence
from service.inference import Inference
from service.manifest import Framework
from service.model import LoadedModel
from service.model_config import LABEL_RE
from service.observability import context, metrics
from service.repository import Repository, State
from service.settings import Settings
from service.signature import Signature

SERVER_NAME = "modelserve"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
# Output dtypes in the manifest -> V2 datatypes.
OUTPUT_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64",
                    "string": "BYTES"}
PLATFORMS = {Framework.KERAS: "tensorflow_keras", Framework.SKLEARN: "sklearn_joblib"}


@dataclass(slots=True)
class OutputRequest:
    name: str
    classification: int = 0     # the classification extension's top-k; 0: the raw output
    binary: bool = False        # a wire detail the protocol reads back when encoding


@dataclass(slots=True)
class InferenceRequest:
    model: LoadedModel
    batch: Batch
    outputs: list[OutputRequest] | None = None   # None: every output
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str               # V2 datatype
    data: np.ndarray
    binary: bool = False


@dataclass(slots=True)
class InferenceResult:
    model: LoadedModel
    outputs: dict[str, np.ndarray]   # every output of the model, by name
    tensors: list[OutputTensor]      # the requested ones, as V2 tensors
    warnings: list[dict[str, Any]]
    id: str | None = None


class Admission:
    """A bound on the requests one process works on at once: past it a request is
    refused at once (503, Retry-After) instead of queued behind the others."""

    def __init__(self, limit: int) -> None:
        self.limit = limit if limit > 0 else math.inf
        self.inflight = 0
        self.refused = 0
        self.message = (f"The server is overloaded: {limit} requests are already in "
                        "progress in this process (max_inflight). Retry after 1 s.")

    def enter(self) -> bool:
        if self.inflight >= self.limit:
            self.refused += 1
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1

    def refusal(self) -> Overloaded:
        return Overloaded(self.message, headers={"Retry-After": "1"})


class DataPlane:
    def __init__(self, settings: Settings, repository: Repository,
                 inference: Inference) -> None:
        self.settings = settings
        self.repository = repository
        self.inference = inference
        self.admission = Admission(settings.max_inflight)
        # One checker for every protocol: a key's rate limit counts HTTP and gRPC calls
        # alike. None when no key is configured.
        self.access = security.access_control(settings)
        self.evidence = Evidence(settings, repository, inference)
        # Set on SIGTERM: readiness answers 503 while in-flight requests finish.
        self.draining = False

    # --- health -----------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not)."""
        if self.draining:  # load balancers should stop sending requests
            return False, "Not ready: shutting down."
        repo = self.repository
        if repo.ready:
            return True, ""
        reason = ("models are still loading" if not repo.settled
                  else "no model version could be loaded")
        return False, f"Not ready: {reason}."

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the version (or, for None, the model's default route) can serve now;
        NotFound for a model or version the repository does not know."""
        try:
            self.resolve(name, version)
        except (NotFound, InvalidInput):
            raise
        except Unavailable:
            return False
        return True

    # --- resolution -------------------------------------------------------------------

    def resolve(self, name: str, version: str | None = None, label: str | None = None,
                *, label_as_version: bool = True) -> LoadedModel:
        """The loaded version a request names: a version number, a label, or (neither)
        the model's traffic split or newest available version. ``version`` may also be a
        label (``label_as_version``), as V2 paths and gRPC's ``model_version`` carry
        labels there; TF Serving has a route of its own for labels."""
        if label_as_version and label is None and version is not None \
                and not version.isdigit() and LABEL_RE.match(version):
            label, version = version, None
        return self.repository.resolve(name, parse_version(version), label)

    # --- metadata ---------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None = None) -> tuple[LoadedModel,
                                                                               dict[str, Any]]:
        """The V2 model metadata (name, versions, platform, inputs, outputs)."""
        model = self.resolve(name, version)
        m = model.manifest
        versions = [str(s.version) for s in self.repository.statuses(name)
                    if s.state is State.AVAILABLE]
        return model, {
            "name": m.name,
            "versions": versions if version is None else [str(m.version)],
            "platform": PLATFORMS[m.framework],
            "inputs": input_metadata(model.signature),
            "outputs": [{"name": o.name, "datatype": OUTPUT_DATATYPES[o.dtype],
                         "shape": o.shape} for o in m.outputs],
        }

    # --- inference --------------------------------------------------------------------

    def output_requests(self, model: LoadedModel,
                        requested: list[OutputRequest] | None) -> list[OutputRequest] | None:
        """Check the requested outputs against the model (before the model runs)."""
        if requested is None:
            return None
        names = [o.name for o in model.manifest.outputs]
        for o in requested:
            if o.name not in names:
                raise InvalidInput(f"Unknown output '{o.name[:40]}'; {model.name} has "
                                   + ", ".join(f"'{n}'" for n in names) + ".")
            if o.classification:
                if model.manifest.labels is None or o.name != "probabilities":
                    raise InvalidInput("The classification extension applies to the "
                                       "'probabilities' output of a classifier.")
                if o.classification < 0:
                    raise InvalidInput("'classification' must be a positive integer.")
        return requested

    async def predict(self, model: LoadedModel, batch: Batch,
                      client_id: str | None = None) -> dict[str, np.ndarray]:
        """Every output of the model for the batch: the one model call of every protocol,
        where the prediction is captured as evidence (service/evidence/)."""
        start = time.perf_counter()
        try:
            outputs = await self.inference.predict(model, batch)
        except ApiError as exc:  # timed out, overloaded, the model raised
            self.evidence.capture(model, batch, None, client_id, exc.message)
            raise
        self.evidence.capture(model, batch, outputs, client_id,
                              model_seconds=time.perf_counter() - start)
        return outputs

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        model = request.model
        outputs = await self.predict(model, request.batch, request.id)
        datatypes = model.signature.output_datatypes
        wanted = request.outputs
        if wanted is None:
            wanted = [OutputRequest(o.name) for o in model.manifest.outputs]
        out = []
        for o in wanted:
            arr = outputs[o.name]
            datatype = OUTPUT_DATATYPES[datatypes[o.name]]
            if o.classification:
                arr = classification(arr, model.manifest.labels or [], o.classification)
                datatype = "BYTES"
            out.append(OutputTensor(o.name, datatype, arr, o.binary))
        return InferenceResult(model, outputs, out,
                               tensors.warnings(model.signature, request.batch), request.id)

    # --- model management (the repository extension, behind the admin key) -------------

    def versions(self, name: str) -> list[dict[str, str]]:
        """Every version of a model with its state and reason (NotFound when unknown)."""
        return [{"name": name, "version": str(s.version), "state": str(s.state),
                 "reason": s.error or s.detail} for s in self.repository.statuses(name)]

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        out = []
        for name in self.repository.names():
            try:
                out.extend(self.versions(name))
            except NotFound:  # removed since names() was read
                continue
        return [v for v in out if v["state"] == State.AVAILABLE] if ready_only else out

    async def rescan(self) -> None:
        """Bring the served set in line with the disk now (on a thread: it loads)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self.repository.poll(
            workers=self.settings.load_workers))

    async def load(self, name: str) -> list[dict[str, str]]:
        """Serve the model again if an administrator unloaded it, re-scan, and return its
        versions; Unavailable when none is available after the re-scan."""
        self.repository.hold(name, False)
        await self.rescan()
        versions = self.versions(name)
        if not any(v["state"] == State.AVAILABLE for v in versions):
            reasons = "; ".join(f"version {v['version']}: {v['reason'] or v['state']}"
                                for v in versions) or "no version folder"
            raise Unavailable(f"Model '{name}' has no available version after the re-scan "
                              f"({reasons}).")
        return versions

    async def unload(self, name: str) -> list[dict[str, str]]:
        """Stop serving the model until it is loaded again."""
        self.repository.view(name)  # NotFound for an unknown model
        self.repository.hold(name, True)
        await self.rescan()
        return self.versions(name)

    # --- accounting -------------------------------------------------------------------

    def observe(self, protocol: str, model: str, version: str, path_model: str,
                status: int, seconds: float) -> None:
        """Count one inference request. ``model`` is empty when it failed before a
        version was resolved: then the name the client sent, if the repository knows it."""
        if not model:
            model = (path_model if path_model in self.repository.names()
                     else metrics.UNKNOWN_MODEL)
        metrics.observe_request(model, version, protocol, status, seconds)
        info = context.current()
        if info is not None and info.prediction is not None:
            self.evidence.finish(info, protocol, status, seconds)


def input_metadata(sig: Signature) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": d, "shape": s} for n, d, s in sig.tensors()]


def parse_version(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or int(raw) < 1:
        raise InvalidInput(f"Version must be a positive integer, got '{raw[:20]}'.")
    return int(raw)


def classification(proba: np.ndarray, labels: list[str], k: int) -> np.ndarray:
    """The classification extension: the top ``k`` classes of each row as
    ``"<probability>:<index>:<label>"``."""
    k = min(k, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return np.array([[f"{row[j]:g}:{j}:{labels[j]}" for j in idx]
                     for row, idx in zip(proba, top, strict=True)], dtype=object)
