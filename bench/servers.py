"""What is benchmarked: the servers, how each is launched, and the targets they expose.

A *server* is one process tree (started once per run). A *target* is one endpoint of
a server with one request body; each target is measured at one or more concurrencies.
Comparisons pair a target of ours with the baseline target doing the same job.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import free_port

BENCH_DIR = Path(__file__).resolve().parent
BASELINES_DIR = BENCH_DIR / "baselines"

# MLServer adaptive batching for the "mlserver-batch" server, chosen as the best c=32
# throughput of the settings tried (wine-quality single rows, MLServer on one core, 4 s
# runs; the machine was shared, so only the ordering is meaningful):
#   max_batch_size / max_batch_time:  32/0.005 ~140 req/s   16/0.002 ~145   32/0.01 ~250
#   32/0.02 ~570-600   32/0.03 ~450   32/0.05 ~660-690 (best)   32/0.1 ~495   64/0.05 ~285
# The price is at c=1: every lone request waits out max_batch_time (p50 ~70 ms vs ~30 ms).
# Overridable with --mlserver-batch SIZE,SECONDS.
MLSERVER_BATCH_SIZE = 32
MLSERVER_BATCH_TIME = 0.05


@dataclass(frozen=True)
class LaunchContext:
    port: int
    grpc_port: int  # picked free for every server; ours and the gRPC floor listen on it
    scratch: Path  # private directory for generated config, removed after the run
    repo: Path
    python: Path  # interpreter of the server's venv
    extra_args: tuple[str, ...] = ()  # passed through to our service (e.g. --workers 2)
    mlserver_batch: tuple[int, float] = (MLSERVER_BATCH_SIZE, MLSERVER_BATCH_TIME)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)  # added to the inherited environment
    notes: str = ""


@dataclass(frozen=True)
class Server:
    name: str
    venv: str | None  # baseline venv (bench/.venvs/<venv>), None for the product's venv
    summary: str
    launch: Callable[[LaunchContext], Launch]
    group: str = ""  # --servers GROUP selects it too (the gRPC floor comes with "floor")


@dataclass(frozen=True)
class Target:
    key: str
    server: str
    label: str
    path: str
    payload: str
    concurrency: tuple[int, ...]
    section: str = "main"  # main | digits | batch | startup (for its server's cold start)
    min_seconds: float = 0.0  # floor on the measurement window (see run.measure)
    protocol: str = "http"  # http (wrk, path is the URL path) | grpc (grpc_load.py)


# --- launchers ----------------------------------------------------------------------


def _ours_argv(ctx: LaunchContext, repository: Path) -> list[str]:
    # The product's own command, as the Makefile and the image run it, from its venv (the
    # interpreter running bench/run.py).
    return [str(Path(sys.executable).with_name("modelserve")), "serve", "--port", str(ctx.port),
            "--grpc-port", str(ctx.grpc_port), "--repository", str(repository),
            "--log-level", "warning", *ctx.extra_args]


def _ours(ctx: LaunchContext) -> Launch:
    return Launch(_ours_argv(ctx, ctx.repo / "models"), ctx.repo,
                  notes=" ".join(ctx.extra_args))


def _ours_wine(config: dict[str, Any] | None, note: str) -> Callable[[LaunchContext], Launch]:
    """Ours on a repository holding only wine v1 and v2 (folder names kept: the loader
    checks them) with ``config`` as its config.json; its evidence goes to the scratch
    dir. The requests go to v2; v1 is there to be shadowed."""
    def launch(ctx: LaunchContext) -> Launch:
        models = ctx.scratch / "models"
        for version in ("1", "2"):
            shutil.copytree(ctx.repo / "models/wine-quality" / version,
                            models / "wine-quality" / version)
        if config is not None:
            (models / "wine-quality/config.json").write_text(json.dumps(config))
        env = {"MODELSERVE_PAYLOAD_LOG_DIR": str(payload_log_dir(ctx)),
               "MODELSERVE_EVIDENCE_DB": str(ctx.scratch / "evidence.sqlite3")}
        return Launch(_ours_argv(ctx, models), ctx.repo, env,
                      notes=" ".join([note, *ctx.extra_args]))
    return launch


def _ours_framework(ctx: LaunchContext) -> Launch:
    """Ours on the committed repository with lean runtimes off: every version on its
    framework's own call (TensorFlow's compiled call, scikit-learn's predict), as the
    service ran the CNN and the k-NN before they had lean forms."""
    return Launch(_ours_argv(ctx, ctx.repo / "models"), ctx.repo,
                  {"MODELSERVE_LEAN_RUNTIMES": "false"},
                  notes=" ".join(["lean runtimes off", *ctx.extra_args]))


def payload_log_dir(ctx: LaunchContext) -> Path:
    """Where the ours-logged server writes its payload log."""
    return ctx.scratch / "payloads"


def _uvicorn(ctx: LaunchContext, app: str, *flags: str) -> list[str]:
    return [str(ctx.python), "-m", "uvicorn", app, "--app-dir", str(BASELINES_DIR),
            "--host", "127.0.0.1", "--port", str(ctx.port), "--log-level", "warning",
            # No access log anywhere: ours has none, and a log line per request would
            # measure the terminal, not the server.
            "--no-access-log", *flags]


def _floor(ctx: LaunchContext) -> Launch:
    return Launch(_uvicorn(ctx, "floor_app:app", "--loop", "uvloop", "--http", "httptools",
                           "--lifespan", "off"), BENCH_DIR)


def _model_floor(ctx: LaunchContext) -> Launch:
    # The product's venv (ctx.python is sys.executable: no baseline venv) and cwd = the
    # repository, so the app imports service/ as ours does; one math thread, as ours pins.
    env = {"MODEL_FLOOR_REPO": str(ctx.repo / "models"), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return Launch(_uvicorn(ctx, "model_floor_app:app", "--loop", "uvloop", "--http",
                           "httptools", "--lifespan", "off"), ctx.repo, env)


def _stack_floor(ctx: LaunchContext) -> Launch:
    # The product's venv: the same FastAPI, numpy, grpcio... as ours.
    return Launch(_uvicorn(ctx, "stack_floor_app:app", "--loop", "uvloop", "--http",
                           "httptools", "--lifespan", "off"), ctx.repo)


def _grpc_floor(ctx: LaunchContext) -> Launch:
    return Launch([sys.executable, str(BASELINES_DIR / "grpc_floor.py"),
                   "--port", str(ctx.grpc_port)], BENCH_DIR)


def _tutorial(ctx: LaunchContext) -> Launch:
    env = {"TUTORIAL_MODEL_PATH": str(ctx.repo / "models/wine-quality/1/model.keras"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}  # quieter log only; TF threading left at defaults
    return Launch(_uvicorn(ctx, "tutorial_app:app"), BENCH_DIR, env)


def _mlserver_config(ctx: LaunchContext, models: dict[str, Path], batching: bool) -> Launch:
    """Write settings.json and one model-settings.json per model into the scratch dir.

    Defaults kept: parallel_workers (1 in MLServer 1.7: one inference worker process
    beside the HTTP process), metrics server and middleware, gzip middleware (inactive:
    wrk sends no Accept-Encoding), gRPC server. Changed: ports (free ones), debug off
    (it turns on uvicorn's per-request access log), metrics/env dirs into the scratch dir.
    """
    root = ctx.scratch
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": ctx.port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_dir": str(root / ".metrics"),
        "environments_dir": str(root / ".envs"),
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    for name, artifact in models.items():
        model_dir = root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        model_settings: dict[str, object] = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            # Absolute path to the committed artifact: never copied into bench/.
            "parameters": {"uri": str(artifact)},
        }
        if batching:
            size, seconds = ctx.mlserver_batch
            model_settings |= {"max_batch_size": size, "max_batch_time": seconds}
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    notes = ""
    if batching:
        notes = f"max_batch_size={ctx.mlserver_batch[0]} max_batch_time={ctx.mlserver_batch[1]}"
    return Launch([str(ctx.python.parent / "mlserver"), "start", str(root)], root, notes=notes)


def _mlserver(ctx: LaunchContext) -> Launch:
    return _mlserver_config(ctx, {
        "wine-quality": ctx.repo / "models/wine-quality/2/model.joblib",
        "housing": ctx.repo / "models/housing/2/model.joblib",
    }, batching=False)


def _mlserver_batch(ctx: LaunchContext) -> Launch:
    return _mlserver_config(ctx, {
        "wine-quality": ctx.repo / "models/wine-quality/2/model.joblib",
    }, batching=True)


LOGGED = "ours-logged"
STACK_FLOOR = "stack-floor"
FRAMEWORK = "ours-framework"
WINE_ONLY = "ours-wine"

SERVERS: list[Server] = [
    Server("floor", "floor", "bare ASGI + orjson on uvicorn (uvloop, httptools)", _floor),
    Server("grpc-floor", None, "bare grpc.aio server, constant ModelInferResponse",
           _grpc_floor, group="floor"),
    Server("model-floor", None, "bare ASGI + orjson + the committed wine v2 model, on uvicorn",
           _model_floor, group="floor"),
    Server(STACK_FLOOR, None, "the HTTP floor after importing FastAPI, pydantic-settings, "
           "numpy, grpcio and prometheus_client (our stack)", _stack_floor, group="floor"),
    Server("ours", None, "modelserve (modelserve serve)", _ours),
    # Started with "ours" (--servers ours selects them): the payload log's cost, logged
    # against the same one-model repository without the log.
    Server(WINE_ONLY, None, "modelserve, only wine", _ours_wine(None, "only wine"),
           group="ours"),
    Server(LOGGED, None, "modelserve, only wine, payload log of every request to files",
           _ours_wine({"payload_log": {}}, "payload log on every request"), group="ours"),
    Server("ours-drift", None, "modelserve, only wine, drift window of 1000 rows",
           _ours_wine({"drift": {}}, "drift on"), group="ours"),
    Server("ours-shadow", None, "modelserve, only wine, 25% of v2's requests shadowed to v1",
           _ours_wine({"shadow": {"version": 1, "percent": 25}}, "shadow on"), group="ours"),
    Server(FRAMEWORK, None, "modelserve, lean runtimes off (every version on its framework)",
           _ours_framework, group="ours"),
    Server("tutorial", "tutorial", "FastAPI + Keras model.predict per request", _tutorial),
    Server("mlserver", "mlserver", "Seldon MLServer, sklearn runtime, no batching", _mlserver),
    Server("mlserver-batch", "mlserver", "Seldon MLServer, sklearn runtime, adaptive batching",
           _mlserver_batch),
]

C = (1, 32)  # the two headline concurrencies
WINE_V1 = "/v1/models/wine-quality/versions/1:predict"
WINE_V2_TFS = "/v1/models/wine-quality/versions/2:predict"

TARGETS: list[Target] = [
    Target("floor", "floor", "HTTP floor (constant JSON)", WINE_V1, "wine_tfs", C),
    # Started for its cold start; one light measurement, as every server has.
    Target(STACK_FLOOR, STACK_FLOOR, "stack floor (the HTTP floor, our libraries imported)",
           WINE_V1, "wine_tfs", (1,), section="startup"),
    Target("grpc-floor", "grpc-floor", "gRPC floor (constant response)", "ModelInfer",
           "grpc_wine_v2", C, "grpc", protocol="grpc"),
    Target("model-floor", "model-floor",
           "model floor: wine v2 sklearn, V2 (bare ASGI + the real model)", "/", "wine_v2", C),
    Target("ours-keras", "ours", "ours: wine v1 Keras, TF-Serving", WINE_V1, "wine_tfs", C),
    # 0.05-0.2 s per request on one core, so 2-10 s per request at c=32: a shorter window
    # would complete only a handful of requests.
    Target("tutorial", "tutorial", "tutorial: wine Keras, FastAPI",
           "/v1/models/wine-quality:predict", "wine_tfs", C, min_seconds=20),
    Target("ours-sklearn-tfs", "ours", "ours: wine v2 sklearn, TF-Serving", WINE_V2_TFS,
           "wine_tfs", C),
    Target("ours-sklearn-v2", "ours", "ours: wine v2 sklearn, V2",
           "/v2/models/wine-quality/versions/2/infer", "wine_v2", C),
    Target("ours-wine-v2", WINE_ONLY, "ours (only wine loaded): wine v2 sklearn, V2",
           "/v2/models/wine-quality/versions/2/infer", "wine_v2", C),
    Target("ours-sklearn-v2-logged", LOGGED,
           "ours (only wine loaded): wine v2 sklearn, V2, payload log on",
           "/v2/models/wine-quality/versions/2/infer", "wine_v2", C),
    Target("ours-wine-v2-drift", "ours-drift",
           "ours (only wine loaded): wine v2 sklearn, V2, drift on",
           "/v2/models/wine-quality/versions/2/infer", "wine_v2", C),
    Target("ours-wine-v2-shadow", "ours-shadow",
           "ours (only wine loaded): wine v2 sklearn, V2, 25% shadowed to v1",
           "/v2/models/wine-quality/versions/2/infer", "wine_v2", C),
    Target("grpc-wine-v2", "ours", "ours: wine v2 sklearn, 1 row, gRPC", "ModelInfer",
           "grpc_wine_v2", C, "grpc", protocol="grpc"),
    Target("mlserver", "mlserver", "MLServer: wine sklearn, V2", "/v2/models/wine-quality/infer",
           "wine_v2_proba", C),
    Target("mlserver-batch", "mlserver-batch", "MLServer batching: wine sklearn, V2",
           "/v2/models/wine-quality/infer", "wine_v2_proba", C),
    Target("ours-housing-v2", "ours", "ours: housing v2 sklearn, V2",
           "/v2/models/housing/versions/2/infer", "housing_v2", C),
    Target("mlserver-housing", "mlserver", "MLServer: housing sklearn, V2",
           "/v2/models/housing/infer", "housing_v2", C),
    # Our service only: protocol overhead for 28x28 images, and batched rows. One image
    # on the latest version (the CNN, whose ~0.5 ms per image dominates), and 64 images
    # on v1 (the MLP, ~5 us per image) where decoding the body is most of the work. The
    # same digit as a phone photo (a PNG to decode and preprocess) beside its tensor.
    Target("digits-v2-binary", "ours", "digits CNN (latest), 1 image, V2 binary (Triton)",
           "/v2/models/digits/infer", "digits_v2_binary", (1, 8), "digits"),
    Target("digits-v2-binary-tf", FRAMEWORK,
           "digits CNN (latest), 1 image, V2 binary, on TensorFlow (lean off)",
           "/v2/models/digits/infer", "digits_v2_binary", (1, 8), "digits"),
    Target("digits64-cnn-binary", "ours", "digits CNN (latest), 64 images, V2 binary",
           "/v2/models/digits/versions/2/infer", "digits64_v2_binary", (8,), "digits"),
    Target("digits64-cnn-binary-tf", FRAMEWORK,
           "digits CNN (latest), 64 images, V2 binary, on TensorFlow (lean off)",
           "/v2/models/digits/versions/2/infer", "digits64_v2_binary", (8,), "digits"),
    Target("digits-photo", "ours", "digits CNN (latest), 1 phone photo PNG, :predict_image",
           "/v1/models/digits:predict_image", "digits_photo", (1, 8), "digits"),
    Target("digits-v2-json", "ours", "digits CNN (latest), 1 image, V2 JSON",
           "/v2/models/digits/infer", "digits_v2_json", (8,), "digits"),
    Target("digits-tfs", "ours", "digits CNN (latest), 1 image, TF-Serving JSON",
           "/v1/models/digits:predict", "digits_tfs", (8,), "digits"),
    Target("digits64-v2-binary", "ours", "digits v1 MLP, 64 images, V2 binary (Triton)",
           "/v2/models/digits/versions/1/infer", "digits64_v2_binary", (8,), "digits"),
    Target("grpc-digits64", "ours", "digits v1 MLP, 64 images, gRPC (raw_input_contents)",
           "ModelInfer", "grpc_digits64", (8,), "grpc", protocol="grpc"),
    # The transport floors for that payload: what uvicorn and grpc.aio alone cost to take
    # in 200 KB of tensor (the gRPC goal above cannot beat their ratio by much).
    Target("floor-digits64", "floor", "HTTP floor, 64 images, V2 binary (header parsed)",
           "/", "digits64_v2_binary", (8,), "digits"),
    Target("grpc-floor-digits64", "grpc-floor", "gRPC floor, 64 images (request decoded)",
           "ModelInfer", "grpc_digits64", (8,), "grpc", protocol="grpc"),
    Target("digits64-v2-json", "ours", "digits v1 MLP, 64 images, V2 JSON",
           "/v2/models/digits/versions/1/infer", "digits64_v2_json", (8,), "digits"),
    Target("digits64-tfs", "ours", "digits v1 MLP, 64 images, TF-Serving JSON",
           "/v1/models/digits/versions/1:predict", "digits64_tfs", (8,), "digits"),
    Target("batch-sklearn", "ours", "wine v2 sklearn, 256 rows, TF-Serving", WINE_V2_TFS,
           "wine_tfs_batch", (1, 8), "batch"),
    Target("batch-keras", "ours", "wine v1 Keras, 256 rows, TF-Serving", WINE_V1,
           "wine_tfs_batch", (1, 8), "batch"),
]

# (ours, baseline): same model and job, so the ratio is the product's gain.
COMPARISONS: list[tuple[str, str]] = [
    ("ours-keras", "tutorial"),
    ("ours-sklearn-v2", "mlserver"),
    ("ours-sklearn-v2", "mlserver-batch"),
    ("ours-housing-v2", "mlserver-housing"),
]

FLOOR = "floor"
# Started --cold-starts times: the operands of the cold-start goal.
COLD_START_SERVERS = frozenset({"floor", STACK_FLOOR, "ours"})
MODEL_FLOOR = "model-floor"  # the floor for a server that calls the wine v2 model per request

# (log off, every request logged to files): the payload log's cost on the same request.
PAYLOAD_LOG_PAIR = ("ours-wine-v2", "ours-sklearn-v2-logged")
# (evidence off, drift on): drift accounting's cost on the same request.
DRIFT_PAIR = ("ours-wine-v2", "ours-wine-v2-drift")
# (evidence off, 25% shadowed): the shadow's cost on the served requests' p99.
SHADOW_PAIR = ("ours-wine-v2", "ours-wine-v2-shadow")

# (lean, on TensorFlow): the CNN's lean form against TensorFlow's own call, same request.
CNN_PAIRS = [("digits-v2-binary", "digits-v2-binary-tf"),
             ("digits64-cnn-binary", "digits64-cnn-binary-tf")]

# gRPC target -> the HTTP target doing the same job with the same tensor (gRPC / HTTP).
GRPC_TWINS: dict[str, str] = {
    "grpc-floor": "floor",
    "grpc-wine-v2": "ours-sklearn-v2",
    "grpc-digits64": "digits64-v2-binary",
    "grpc-floor-digits64": "floor-digits64",
}

# From this concurrency on, gRPC load comes from 2 grpc_load.py processes (on the same
# client core): in trials against the gRPC floor at c=32, one Python grpc.aio client
# used ~0.85 of its core (it waits on handoffs between grpc's poller thread and the event
# loop), two ~0.93. Each process reports its CPU, so a client-bound result shows.
GRPC_SPLIT_FROM = 16
