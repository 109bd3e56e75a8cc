"""The image's container, run as docker-compose.yml runs it (read-only root, tmpfs /tmp,
uid 10001, memory limit, two workers), checked from the host over real HTTP and gRPC:
health and the image's HEALTHCHECK, every model over TF-Serving REST, KServe V2 (binary) and
gRPC against its manifest's samples, a digit upload, /metrics over both workers, a version
copied into the mounted repository, and SIGTERM with requests in flight (last: it stops the
session's container)."""

from __future__ import annotations

import io
import json
import shutil
import threading

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from PIL import Image

from service.loader import read_manifest
from tests.conftest import sample_array, sample_row
from tests.containers.conftest import FACTS
from tests.containers.podman import START_DEADLINE_S, compose_memory_limit, eventually, podman
from tests.test_metrics import scrape, value
from tests.test_shutdown import EXPECTED, InFlight

MODELS_SERVED = ["wine-quality", "housing", "auscultation", "digits"]


def _manifest(service, name: str, version: int = 2):
    return read_manifest(service.repository / name / str(version))


def _check(manifest, got: dict[str, np.ndarray]) -> None:
    """Outputs (name -> array, one row per sample) against the manifest's samples."""
    samples = manifest.samples
    if manifest.task.value == "regression":
        assert got["value"].ravel().tolist() == pytest.approx(
            [s.expected["value"] for s in samples], abs=1e-4)
        return
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in got["label"].ravel()]
    assert labels == [s.expected["label"] for s in samples]
    assert got["probabilities"] == pytest.approx(
        np.asarray([s.expected["probabilities"] for s in samples]), abs=1e-4)
    assert got["class_id"].ravel().tolist() == [s.expected["class_id"] for s in samples]


# --- health --------------------------------------------------------------------------------


def test_health_and_model_status(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").json() == {"ready": True}
    for name in MODELS_SERVED:
        r = client.get(f"/v1/models/{name}")
        assert r.status_code == 200, r.text
        states = {s["version"]: s["state"] for s in r.json()["model_version_status"]}
        assert "AVAILABLE" in states.values(), states


def test_the_console_and_the_offline_docs_ship_in_the_image(client):
    # Package data: the pages' scripts and the vendored Swagger UI / ReDoc bundles.
    page = client.get("/ui")
    assert page.status_code == 200 and "/ui/assets/catalog.js?v=" in page.text
    for html_path in ("/ui", "/docs", "/redoc"):
        html = client.get(html_path).text
        assets = [part.split('"')[0] for part in html.split('"/ui/assets/')[1:]]
        assert assets, html_path
        for asset in assets:
            r = client.get("/ui/assets/" + asset)
            assert r.status_code == 200 and r.content, asset
    card = client.get("/ui/api/models/digits/versions/2/card")
    assert card.status_code == 200 and "confusion_matrix.png" in card.json()["plots"]


def test_the_images_healthcheck_reports_healthy(service):
    config = service.container.inspect()["Config"]["Healthcheck"]
    assert "/v2/health/ready" in config["Test"][-1], config
    eventually(lambda: service.container.healthcheck() == "healthy",
               "the HEALTHCHECK healthy", START_DEADLINE_S,
               lambda: podman("healthcheck", "run", service.container.name,
                              check=False).stderr)


def test_runs_as_compose_says_read_only_non_root_with_limits(service):
    info = service.container.inspect()
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert info["Config"]["User"] == "10001:10001"
    assert info["HostConfig"]["Memory"] == compose_memory_limit()
    assert "/tmp" in info["HostConfig"]["Tmpfs"]
    r = podman("exec", service.container.name, "id", "-u")
    assert r.stdout.strip() == "10001"
    r = podman("exec", service.container.name, "touch", "/opt/modelserve/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr


# --- a prediction per model and protocol ---------------------------------------------------


@pytest.mark.parametrize("name", MODELS_SERVED)
def test_tfserving_rest_reproduces_the_samples(service, client, name):
    m = _manifest(service, name)
    r = client.post(f"/v1/models/{name}/versions/2:predict",
                    json={"instances": [s.inputs for s in m.samples]})
    assert r.status_code == 200, r.text
    assert r.headers["model-version"] == "2"
    predictions = r.json()["predictions"]
    if m.task.value == "regression":
        _check(m, {"value": np.asarray(predictions)})
    else:
        _check(m, {key: np.asarray([p[key] for p in predictions])
                   for key in ("label", "probabilities", "class_id")})


@pytest.mark.parametrize("name", MODELS_SERVED)
def test_kserve_v2_binary_with_tritonclient_http(service, name):
    m = _manifest(service, name)
    x = sample_array(m)
    client = thttp.InferenceServerClient(service.url.removeprefix("http://"))
    try:
        inp = thttp.InferInput(m.inputs[0].name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        outputs = [thttp.InferRequestedOutput(o.name, binary_data=True) for o in m.outputs]
        result = client.infer(name, [inp], model_version="2", outputs=outputs)
    finally:
        client.close()
    _check(m, {o.name: result.as_numpy(o.name) for o in m.outputs})


@pytest.mark.parametrize("name", MODELS_SERVED)
def test_kserve_v2_grpc_with_tritonclient(service, name):
    m = _manifest(service, name)
    x = sample_array(m)
    client = tgrpc.InferenceServerClient(service.grpc_target)
    try:
        assert client.is_server_ready() and client.is_model_ready(name, "2")
        inp = tgrpc.InferInput(m.inputs[0].name, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outputs = [tgrpc.InferRequestedOutput(o.name) for o in m.outputs]
        result = client.infer(name, [inp], model_version="2", outputs=outputs,
                              client_timeout=60)
    finally:
        client.close()
    _check(m, {o.name: result.as_numpy(o.name) for o in m.outputs})


def test_a_digit_image_upload(service, client):
    m = _manifest(service, "digits")
    for i, sample in enumerate(m.samples):
        digit = np.asarray(sample_row(m, i), dtype=np.float32).clip(0, 255).astype(np.uint8)
        out = io.BytesIO()
        # White ink on black, as MNIST, five times the size.
        Image.fromarray(digit).resize((140, 140), Image.Resampling.BILINEAR).save(out, "PNG")
        r = client.post("/v1/models/digits/versions/2:predict_image",
                        files={"file": ("digit.png", out.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        assert r.json()["label"] == sample.expected["label"], r.json()


# --- metrics, memory -----------------------------------------------------------------------


def test_metrics_over_both_workers(service, client):
    row = {"instances": [_manifest(service, "housing").samples[0].inputs]}
    labels = {"model": "housing", "version": "2", "protocol": "tfserving", "status": "200"}
    before = value(scrape(client), "modelserve_inference_requests_total", **labels)
    sent = 40
    for _ in range(sent):  # a new connection each time: both workers get some
        r = client.post("/v1/models/housing/versions/2:predict", json=row,
                        headers={"Connection": "close"})
        assert r.status_code == 200, r.text
    # A worker counts a request just after answering it: wait for the last one.
    eventually(lambda: value(scrape(client), "modelserve_inference_requests_total",
                             **labels) == before + sent, "every request counted")
    for _ in range(4):  # whichever worker answers the scrape sums every worker
        samples = scrape(client)
        assert value(samples, "modelserve_inference_requests_total", **labels) \
            == before + sent
        workers = [labels for name, labels in samples
                   if name == "modelserve_worker_resident_memory_bytes"]
        assert len(workers) == 2, workers
        assert value(samples, "modelserve_model_state", model="housing", version="2",
                     state="AVAILABLE") == 1
    pids = {json.loads(line).get("pid") for line in service.container.logs().splitlines()
            if line.startswith("{")}
    assert len(pids - {None}) >= 2, "both workers logged"


def test_container_memory_is_reported(service):
    charged, anonymous = service.container.memory()
    limit = service.container.inspect()["HostConfig"]["Memory"]
    assert 0 < anonymous <= charged <= limit
    FACTS["service_memory_bytes"] = charged
    FACTS["service_memory_anon_bytes"] = anonymous
    FACTS["service_memory"] = (f"{charged / 2**20:.0f} MiB charged of the "
                               f"{limit / 2**20:.0f} MiB limit, {anonymous / 2**20:.0f} MiB "
                               f"of it the processes' own (2 workers, every committed model)")


# --- hot reload ----------------------------------------------------------------------------


def test_a_version_copied_in_is_served_without_restart(service, client):
    started = service.container.inspect()["State"]["StartedAt"]
    staged = service.repository.parent / "staged-3"
    shutil.copytree(service.repository / "wine-quality" / "2", staged)
    manifest = json.loads((staged / "manifest.json").read_text())
    (staged / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
    staged.chmod(0o755)
    staged.rename(service.repository / "wine-quality" / "3")

    def states() -> dict[str, str]:
        r = client.get("/v1/models/wine-quality")
        return {s["version"]: s["state"] for s in r.json()["model_version_status"]}

    eventually(lambda: states().get("3") == "AVAILABLE", "version 3 AVAILABLE",
               detail=lambda: f"{states()}\n{service.container.tail()}")
    m = _manifest(service, "wine-quality", 3)
    r = client.post("/v1/models/wine-quality/versions/3:predict",
                    json={"instances": [s.inputs for s in m.samples]})
    assert r.status_code == 200 and r.headers["model-version"] == "3", r.text
    assert [p["label"] for p in r.json()["predictions"]] == [s.expected["label"]
                                                           for s in m.samples]
    info = service.container.inspect()
    assert info["State"]["StartedAt"] == started and info["RestartCount"] == 0


# --- last: SIGTERM -------------------------------------------------------------------------


def test_podman_stop_finishes_requests_in_flight_and_exits_0(service):
    port = int(service.url.rsplit(":", 1)[1])
    requests = [InFlight(port) for _ in range(8)]  # each one's handler is reading its body
    stopper = threading.Thread(target=service.container.stop, args=(40,))
    stopper.start()
    try:
        for req in requests:
            status, body = req.response()
            assert status == 200, body
            assert [p["label"] for p in body["predictions"]] == EXPECTED
    finally:
        stopper.join(timeout=120)
    assert service.container.exit_code() == 0, service.container.tail()
    state = service.container.inspect()["State"]
    assert state["ExitCode"] == 0 and not state["OOMKilled"]
    assert "SIGTERM received: draining" in service.container.logs()
