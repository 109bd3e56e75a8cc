from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Same pinning as the service and trainers; set before numpy/sklearn/TF load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def committed_versions() -> list[Path]:
    return sorted(p for p in MODELS.glob("*/*") if p.is_dir() and p.name.isdigit())


def sample_row(manifest, i: int = 0) -> list:
    """A single-input model's sample as the list form of its input (the feature values
    in manifest order, or the image)."""
    (spec,) = manifest.inputs
    inputs = manifest.samples[i].inputs
    return inputs[spec.name] if spec.kind == "image" else [inputs[n] for n in spec.feature_names]


def sample_array(manifest, dtype="float32"):
    """Every sample of a single-input model as one array, batch first."""
    import numpy as np

    return np.asarray([sample_row(manifest, i) for i in range(len(manifest.samples))],
                      dtype=dtype)


@pytest.fixture(scope="session")
def data_dir():
    from training.data import DataDir, resolve_data_dir

    root = resolve_data_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"datasets not found at {root}; set MODELSERVE_DATA_DIR")
    return DataDir(root)


@pytest.fixture
def copy_version(tmp_path):
    """Copy a committed version into a temporary repository and return its folder."""

    def _copy(name: str, version: int) -> Path:
        dst = tmp_path / "models" / name / str(version)
        shutil.copytree(MODELS / name / str(version), dst)
        return dst

    return _copy


# --- a real server over real HTTP --------------------------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

# Small limits so the limit tests need no huge payloads.
TEST_LIMITS = {"MODELSERVE_MAX_REQUEST_ROWS": "300", "MODELSERVE_MAX_BODY_BYTES": "3000000",
               "MODELSERVE_MAX_IMAGE_PIXELS": "4000000"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The service as a child process (``python -m service.server``) on a free port, its
    output in a log file under ``log_dir``."""

    def __init__(self, repository: Path, log_dir: Path, env: dict[str, str] | None = None,
                 args: Sequence[str] = ()) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Every server gets its own gRPC port too (the default 8001 would be shared).
        self.grpc_port = _free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.log = open(log_dir / f"server-{self.port}.log", "w+")  # noqa: SIM115
        # The evidence a test server writes stays beside its log, out of the checkout.
        evidence = {"MODELSERVE_EVIDENCE_DB": str(log_dir / f"evidence-{self.port}.sqlite3"),
                    "MODELSERVE_PAYLOAD_LOG_DIR": str(log_dir / f"payloads-{self.port}")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.server", "--repository", str(repository),
             "--port", str(self.port), "--grpc-port", str(self.grpc_port), *args],
            cwd=ROOT, env={**os.environ, **TEST_LIMITS, **evidence, **(env or {})},
            stdout=self.log, stderr=subprocess.STDOUT)

    def wait_settled(self, timeout: float = 120) -> None:
        """Wait until every version has loaded or failed (ready, or 503 'no model')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                r = httpx.get(self.url + "/v2/health/ready", timeout=2)
                if r.status_code == 200 or "could be loaded" in r.text:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready: {self.output()}")

    def wait_exit(self, timeout: float = 120) -> int:
        """The exit status of a server expected to stop by itself (e.g. refusing to start)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout} s: "
                                 f"{self.output()}") from None

    def output(self) -> str:
        """The end of the log, for failure messages."""
        return self.log_text()[-3000:]

    def log_text(self) -> str:
        """Everything the server has written so far."""
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@contextmanager
def running(repository: Path, log_dir: Path, env: dict[str, str] | None = None, *,
            settle: bool = True, args: Sequence[str] = ()) -> Iterator[Server]:
    """A server on ``repository``, settled (unless ``settle=False``, for tests that watch
    the start-up), stopped on the way out."""
    srv = Server(repository, log_dir, env, args)
    try:
        if settle:
            srv.wait_settled()
        yield srv
    finally:
        srv.stop()


class InProcessServer:
    """The real ASGI app (the gateway in front of FastAPI) under uvicorn on a real port,
    run by a thread of the test process so that a test can reach the loaded models.
    uvicorn's thread runs the app; the test thread only reads ``services`` (the data
    plane)."""

    def __init__(self, repository: Path, **settings: object) -> None:
        import uvicorn

        from service.app import create_asgi
        from service.settings import Settings

        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._scratch = tempfile.TemporaryDirectory(prefix="modelserve-evidence-")
        scratch = Path(self._scratch.name)
        settings = {"evidence_db": scratch / "evidence.sqlite3",
                    "payload_log_dir": scratch / "payloads", **settings}
        self.app = create_asgi(Settings(repository=repository, port=port, grpc_port=0,
                                        **settings))
        self.services = self.app.plane
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_config=None, access_log=False,
            lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 120) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                raise RuntimeError("the in-process server stopped during start-up")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the in-process server did not become ready")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._scratch.cleanup()


@contextmanager
def running_in_process(repository: Path, **settings: object) -> Iterator[InProcessServer]:
    """``running`` for a server in this process (``settings`` are Settings fields)."""
    srv = InProcessServer(repository, **settings)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def eventually(probe: Callable[[], Any], timeout: float = 60.0,
               what: str | Callable[[], str] = "") -> Any:
    """Poll ``probe`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds (tests wait on events, never on fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    got = probe()
    assert got, what() if callable(what) else f"timed out waiting for {what}"
    return got


def write_config(repo: Path, name: str, config: dict) -> None:
    """A model's config.json, written then renamed, as an operator's tooling (or a
    ConfigMap) would."""
    tmp = repo / name / ".config.json.tmp"
    tmp.write_text(json.dumps(config))
    tmp.rename(repo / name / "config.json")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with running(MODELS.resolve(), tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
