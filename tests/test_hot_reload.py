"""Hot reload against a real server: versions copied in, corrupted, removed and
relabelled while a client keeps sending predictions, with no restart."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import MODELS, Server

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
POLL = {"MODELSERVE_POLL_INTERVAL_S": "0.3"}


class Stream:
    """A client sending predictions back to back on its own thread, recording the
    status and serving version of every answer."""

    def __init__(self, url: str, path: str = "/v1/models/wine-quality:predict") -> None:
        self.url, self.path = url, path
        self.results: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.path, json={"instances": [WINE_ROW]})
                    self.results.append((time.monotonic(), r.status_code,
                                         r.headers.get("model-version", "")))
                except httpx.HTTPError as exc:  # counted as a failure
                    self.results.append((time.monotonic(), 0, type(exc).__name__))
                time.sleep(0.005)

    def failures(self) -> list[tuple[float, int, str]]:
        return [r for r in self.results if r[1] != 200]

    def versions_since(self, t: float) -> Counter:
        return Counter(v for when, _, v in self.results if when >= t)

    def wait_for_version(self, version: str, timeout: float = 30) -> float:
        """Seconds until answers come from ``version``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if any(v == version for when, _, v in self.results if when >= start):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"no answer from version {version} within {timeout} s; "
                             f"last: {self.results[-5:]}")


def _start(repo: Path, tmp_path: Path, **env: str) -> Server:
    srv = Server(repo, tmp_path, env={**POLL, **env})
    srv.wait_settled()
    return srv


def _full_log(srv: Server) -> str:
    srv.log.flush()
    return open(srv.log.name).read()


def _copy_slowly(src: Path, dst: Path, pause: float = 0.8) -> None:
    """Copy a version folder the way a slow `cp -r` or an upload does: the manifest
    first, then each artifact in pieces, with pauses longer than a poll interval."""
    dst.mkdir(parents=True)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    time.sleep(pause)
    for f in sorted(src.iterdir()):
        if f.name == "manifest.json":
            continue
        data = f.read_bytes()
        with open(dst / f.name, "wb") as out:
            half = len(data) // 2
            out.write(data[:half])
            out.flush()
            time.sleep(pause)
            out.write(data[half:])


def _status(client: httpx.Client, name: str = "wine-quality") -> dict[str, dict]:
    r = client.get(f"/v1/models/{name}")
    assert r.status_code == 200, r.text
    return {s["version"]: s for s in r.json()["model_version_status"]}


def test_new_version_copied_in_under_load(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "1", repo / "wine-quality" / "1")
    srv = _start(repo, tmp_path)
    try:
        with Stream(srv.url) as stream, httpx.Client(base_url=srv.url, timeout=10) as client:
            time.sleep(0.5)
            copier = threading.Thread(target=_copy_slowly, args=(
                MODELS / "wine-quality" / "2", repo / "wine-quality" / "2"))
            copier.start()
            # While the copy is going on, the half-copied version is seen but not loaded.
            time.sleep(1.0)
            seen = _status(client)
            assert seen["2"]["state"] == "START", seen
            assert "waiting" in seen["2"]["status"]["error_message"], seen
            copier.join()
            done = time.monotonic()
            took = stream.wait_for_version("2")
            time.sleep(0.5)
            after = stream.versions_since(time.monotonic() - 0.4)
        assert not stream.failures(), stream.failures()[:5]
        assert set(after) == {"2"}, after  # the newest version now takes all requests
        # Never served before its copy was complete.
        assert all(v == "1" for when, _, v in stream.results if when < done - 0.05)
        assert took < 15, took
        assert len(stream.results) > 50
    finally:
        srv.stop()


def test_corrupt_version_never_serves_and_recovers_when_fixed(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "1", repo / "wine-quality" / "1")
    srv = _start(repo, tmp_path)
    try:
        with Stream(srv.url) as stream, httpx.Client(base_url=srv.url, timeout=10) as client:
            staged = tmp_path / "staged"
            shutil.copytree(MODELS / "wine-quality" / "2", staged)
            artifact = staged / "model.joblib"
            data = bytearray(artifact.read_bytes())
            data[len(data) // 2] ^= 0xFF  # same size, different bytes
            artifact.write_bytes(bytes(data))
            staged.rename(repo / "wine-quality" / "2")  # atomic: complete at once
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                status = _status(client).get("2", {})
                if status.get("state") == "END":
                    break
                time.sleep(0.2)
            assert status["state"] == "END", status
            assert status["status"]["error_code"] == "UNKNOWN"
            assert "SHA-256 mismatch" in status["status"]["error_message"], status
            assert "model.joblib" in status["status"]["error_message"]
            r = client.post("/v1/models/wine-quality/versions/2:predict",
                            json={"instances": [WINE_ROW]})
            assert r.status_code == 503 and "SHA-256" in r.json()["error"], r.text
            time.sleep(1.0)
            assert not stream.failures(), stream.failures()[:5]
            assert set(stream.versions_since(0)) == {"1"}
            # Fixing the file is noticed (the folder changed) and the version loads.
            shutil.copy2(MODELS / "wine-quality" / "2" / "model.joblib",
                         repo / "wine-quality" / "2" / "model.joblib")
            stream.wait_for_version("2")
        assert not stream.failures(), stream.failures()[:5]
    finally:
        srv.stop()


def test_removed_version_drains_and_unloads(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    shutil.copytree(MODELS / "digits" / "2", repo / "digits" / "2")
    srv = _start(repo, tmp_path)
    try:
        # Slow requests to digits v2 (the CNN) are in flight when its folder goes.
        images = [[[float((i * 7 + r * 3 + c) % 255) for c in range(28)] for r in range(28)]
                  for i in range(256)]
        answers: list[tuple[int, float, str]] = []  # status, time answered, error
        # Each thread keeps a request in flight until after the removal: a fixed number
        # of requests could all be answered before it on a fast machine.
        removing = threading.Event()

        def slow() -> None:
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                while not removing.is_set():
                    r = c.post("/v1/models/digits/versions/2:predict",
                               json={"instances": images})
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 256
                    answers.append((r.status_code if ok or r.status_code != 200 else -1,
                                    time.monotonic(), r.json().get("error", "")))

        with Stream(srv.url) as stream, httpx.Client(base_url=srv.url, timeout=10) as client:
            assert stream.wait_for_version("2") >= 0
            slow_threads = [threading.Thread(target=slow) for _ in range(6)]
            for t in slow_threads:
                t.start()
            _eventually(lambda: len(answers) >= 6)  # the CNN is busy
            removed_at = time.monotonic()
            shutil.rmtree(repo / "digits" / "2")
            shutil.rmtree(repo / "wine-quality" / "2")
            removing.set()  # each thread's current request is the last it sends
            moved = stream.wait_for_version("1")
            for t in slow_threads:
                t.join(60)
            _eventually(lambda: "2" not in _status(client))
            r = client.post("/v1/models/wine-quality/versions/2:predict",
                            json={"instances": [WINE_ROW]})
            assert r.status_code == 404 and "versions: 1" in r.json()["error"], r.text
            # Unloaded once its in-flight requests were done. Its model folder is still
            # there, empty: the model is listed with no version and cannot serve.
            _eventually(lambda: _status(client, "digits") == {})
            r = client.post("/v1/models/digits:predict", json={"instances": [images[0]]})
            assert r.status_code == 503 and "no available version" in r.json()["error"]
        # A request that reached the server before the removal completes (200); one that
        # arrived after it is told the model is gone (404). Nothing else.
        assert {status for status, _, _ in answers} <= {200, 404}, answers
        assert all(any(m in err for m in ("folder was removed", "no version", "not found"))
                   for status, _, err in answers if status == 404), answers
        assert any(status == 200 and when > removed_at for status, when, _ in answers), (
            "no request was still in flight at removal", answers)
        assert not stream.failures(), stream.failures()[:5]
        assert moved < 15
        log = _full_log(srv)
        assert "model digits version 2 unloaded" in log
        assert "model wine-quality version 2 unloaded" in log
    finally:
        srv.stop()


def _write_config(repo: Path, config: dict) -> None:
    # Write-then-rename, as an operator's tooling (or a ConfigMap) would.
    tmp = repo / "wine-quality" / ".config.json.tmp"
    tmp.write_text(json.dumps(config))
    tmp.rename(repo / "wine-quality" / "config.json")


def test_labels_canary_split_and_policy_follow_config_edits(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    _write_config(repo, {"labels": {"stable": 1, "canary": 2},
                         "traffic": {"stable": 3, "canary": 1}})
    srv = _start(repo, tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            def served(path: str, n: int = 1) -> Counter:
                got = Counter()
                for _ in range(n):
                    r = client.post(path, json={"instances": [WINE_ROW]})
                    assert r.status_code == 200, r.text
                    got[r.headers["model-version"]] += 1
                return got

            # The weighted split is exact over any whole cycle of the weights.
            assert served("/v1/models/wine-quality:predict", 40) == {"1": 30, "2": 10}
            assert served("/v1/models/wine-quality/labels/canary:predict") == {"2": 1}
            assert served("/v1/models/wine-quality/labels/stable:predict") == {"1": 1}
            r = client.post("/v1/models/wine-quality/labels/stable:classify",
                            json={"examples": [dict(zip(_features(client), WINE_ROW,
                                                        strict=True))]})
            assert r.status_code == 200 and r.headers["model-version"] == "1", r.text
            r = client.post("/v2/models/wine-quality/versions/canary/infer", json={
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 11],
                            "data": WINE_ROW}]})
            assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
            r = client.get("/v1/models/wine-quality/labels/canary")
            assert r.json()["model_version_status"][0]["version"] == "2"
            r = client.get("/v1/models/wine-quality/labels/canary/metadata")
            assert r.json()["model_spec"]["version"] == "2"
            r = client.post("/v1/models/wine-quality/labels/beta:predict",
                            json={"instances": [WINE_ROW]})
            assert r.status_code == 404 and "labels: canary, stable" in r.json()["error"]
            facts = client.get("/v1/models/wine-quality").json()["modelserve"]
            assert facts["labels"] == {"stable": 1, "canary": 2}
            assert facts["traffic_now"] == {"1": 0.75, "2": 0.25}

            # Promote the canary: edit the file, no restart.
            _write_config(repo, {"labels": {"stable": 2}, "traffic": {"stable": 1}})
            _eventually(lambda: served("/v1/models/wine-quality/labels/stable:predict")
                        == {"2": 1})
            assert served("/v1/models/wine-quality:predict", 10) == {"2": 10}

            # A broken edit is reported and the previous config stays in force.
            (repo / "wine-quality" / "config.json").write_text('{"labels": {"Bad Label": 1}')
            _eventually(lambda: "config_error" in
                        client.get("/v1/models/wine-quality").json()["modelserve"])
            assert served("/v1/models/wine-quality/labels/stable:predict") == {"2": 1}

            # Version policy: only the newest version is served; v1 is unloaded.
            _write_config(repo, {"version_policy": {"latest": {"num_versions": 1}}})
            _eventually(lambda: _status(client)["1"]["state"] == "END")
            assert "latest 1" in _status(client)["1"]["status"]["error_message"]
            r = client.post("/v1/models/wine-quality/versions/1:predict",
                            json={"instances": [WINE_ROW]})
            assert r.status_code == 404 and "latest 1" in r.json()["error"], r.text
            # ...and back to every version.
            _write_config(repo, {"version_policy": {"all": {}}})
            _eventually(lambda: _status(client)["1"]["state"] == "AVAILABLE")
            assert served("/v1/models/wine-quality/versions/1:predict") == {"1": 1}
    finally:
        srv.stop()


def _features(client: httpx.Client) -> list[str]:
    meta = client.get("/v1/models/wine-quality/versions/1/metadata").json()
    return [f["name"] for f in meta["modelserve"]["inputs"][0]["features"]]


def _eventually(check, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    assert check()


def test_version_policy_applies_at_start(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "housing" / v, repo / "housing" / v)
    (repo / "housing" / "config.json").write_text(
        json.dumps({"version_policy": {"specific": {"versions": [1]}}}))
    srv = Server(repo, tmp_path, env={"MODELSERVE_POLL_INTERVAL_S": "0"})
    try:
        srv.wait_settled()
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            states = _status(client, "housing")
            r = client.post("/v1/models/housing:predict", json={"instances": [[
                8.3, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]]})
        assert states["1"]["state"] == "AVAILABLE" and states["2"]["state"] == "END", states
        assert "specific 1" in states["2"]["status"]["error_message"]
        assert r.status_code == 200 and r.headers["model-version"] == "1", r.text
        assert "model housing version 2" not in _full_log(srv)  # never even loaded
    finally:
        srv.stop()
