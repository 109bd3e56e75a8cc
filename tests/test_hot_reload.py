"""Hot reload against a real server: versions copied in, corrupted, removed and
relabelled, and rolled in under a ``latest N`` policy, while a client keeps sending
predictions, with no restart.

Every wait is on something the test observes (an answer, a status) with a generous
deadline: how long the server takes is not asserted, only what it does."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Self

import httpx

from tests.conftest import MODELS, eventually, running, write_config

WINE_ROW = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4]
POLL = {"MODELSERVE_POLL_INTERVAL_S": "0.3"}
DEADLINE_S = 60.0


class _Background:
    """Runs ``_run`` on a thread of its own while the ``with`` block lasts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


class Stream(_Background):
    """A client sending predictions back to back on its own thread, recording the
    status and serving version of every answer."""

    def __init__(self, url: str, path: str = "/v1/models/wine-quality:predict") -> None:
        super().__init__(url)
        self.path = path
        self.results: list[tuple[float, int, str]] = []

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

    def wait_for_version(self, version: str, timeout: float = DEADLINE_S) -> None:
        """Until answers come from ``version``."""
        start = time.monotonic()
        _eventually(lambda: any(v == version for when, _, v in self.results if when >= start),
                    timeout, lambda: f"no answer from version {version}; "
                                     f"last: {self.results[-5:]}")

    def wait_for_answers(self, n: int, since: float) -> None:
        """Until ``n`` answers have been recorded since ``since``."""
        _eventually(lambda: sum(1 for when, _, _ in self.results if when >= since) >= n,
                    what=lambda: f"{n} answers since {since}: {self.results[-5:]}")


def _copy_slowly(src: Path, dst: Path, finish: threading.Event, pause: float = 0.8) -> None:
    """Copy a version folder the way a slow `cp -r` or an upload does: the manifest
    first, then each artifact in pieces, with pauses longer than a poll interval; the
    last piece is written once ``finish`` is set."""
    dst.mkdir(parents=True)
    shutil.copy2(src / "manifest.json", dst / "manifest.json")
    time.sleep(pause)  # lets time pass between pieces, as a slow copy does
    artifacts = [f for f in sorted(src.iterdir()) if f.name != "manifest.json"]
    for i, f in enumerate(artifacts):
        data = f.read_bytes()
        with open(dst / f.name, "wb") as out:
            half = len(data) // 2
            out.write(data[:half])
            out.flush()
            if i == len(artifacts) - 1:
                assert finish.wait(DEADLINE_S), "the test never let the copy finish"
            else:
                time.sleep(pause)
            out.write(data[half:])


def _status(client: httpx.Client, name: str = "wine-quality") -> dict[str, dict]:
    r = client.get(f"/v1/models/{name}")
    assert r.status_code == 200, r.text
    return {s["version"]: s for s in r.json()["model_version_status"]}


def test_new_version_copied_in_under_load(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "1", repo / "wine-quality" / "1")
    # A copy held half-way is waited for, not declared stalled, however long the test holds it.
    env = {**POLL, "MODELSERVE_INCOMPLETE_VERSION_TIMEOUT_S": "3600"}
    with running(repo, tmp_path, env) as srv, Stream(srv.url) as stream, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        stream.wait_for_answers(5, since=0)
        finish = threading.Event()
        copier = threading.Thread(target=_copy_slowly, args=(
            MODELS / "wine-quality" / "2", repo / "wine-quality" / "2", finish))
        copier.start()
        try:
            # While the copy is going on, the half-copied version is seen but not loaded.
            _eventually(lambda: "2" in _status(client))
            seen = _status(client)
            assert seen["2"]["state"] == "START", seen
            assert "waiting" in seen["2"]["status"]["error_message"], seen
            stream.wait_for_answers(5, since=time.monotonic())  # served meanwhile
        finally:
            finish.set()
            copier.join(DEADLINE_S)
        done = time.monotonic()
        stream.wait_for_version("2")
        switched = time.monotonic()
        stream.wait_for_answers(20, since=switched)
    assert not stream.failures(), stream.failures()[:5]
    # The newest version now takes all requests...
    assert set(stream.versions_since(switched)) == {"2"}, stream.versions_since(switched)
    # ...and never served before its copy was complete.
    assert all(v == "1" for when, _, v in stream.results if when < done)


def test_corrupt_version_never_serves_and_recovers_when_fixed(tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(MODELS / "wine-quality" / "1", repo / "wine-quality" / "1")
    with running(repo, tmp_path, POLL) as srv:
        with Stream(srv.url) as stream, httpx.Client(base_url=srv.url, timeout=30) as client:
            staged = tmp_path / "staged"
            shutil.copytree(MODELS / "wine-quality" / "2", staged)
            artifact = staged / "model.joblib"
            data = bytearray(artifact.read_bytes())
            data[len(data) // 2] ^= 0xFF  # same size, different bytes
            artifact.write_bytes(bytes(data))
            staged.rename(repo / "wine-quality" / "2")  # atomic: complete at once
            _eventually(lambda: _status(client).get("2", {}).get("state") == "END")
            status = _status(client)["2"]
            assert status["status"]["error_code"] == "UNKNOWN"
            assert "SHA-256 mismatch" in status["status"]["error_message"], status
            assert "model.joblib" in status["status"]["error_message"]
            r = client.post("/v1/models/wine-quality/versions/2:predict",
                            json={"instances": [WINE_ROW]})
            assert r.status_code == 503 and "SHA-256" in r.json()["error"], r.text
            stream.wait_for_answers(20, since=time.monotonic())  # v1 keeps serving
            assert not stream.failures(), stream.failures()[:5]
            assert set(stream.versions_since(0)) == {"1"}
            # Fixing the file is noticed (the folder changed) and the version loads.
            shutil.copy2(MODELS / "wine-quality" / "2" / "model.joblib",
                         repo / "wine-quality" / "2" / "model.joblib")
            stream.wait_for_version("2")
        assert not stream.failures(), stream.failures()[:5]


def test_removed_version_drains_and_unloads(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    shutil.copytree(MODELS / "digits" / "2", repo / "digits" / "2")
    with running(repo, tmp_path, POLL) as srv:
        # Slow requests to digits v2 (the CNN) are in flight when its folder goes.
        images = [[[float((i * 7 + r * 3 + c) % 255) for c in range(28)] for r in range(28)]
                  for i in range(256)]
        answers: list[tuple[int, float, str]] = []  # status, time answered, error
        # Each thread keeps a request in flight until after the removal: a fixed number
        # of requests could all be answered before it on a fast machine.
        removing = threading.Event()

        def slow() -> None:
            with httpx.Client(base_url=srv.url, timeout=120) as c:
                while not removing.is_set():
                    r = c.post("/v1/models/digits/versions/2:predict",
                               json={"instances": images})
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 256
                    answers.append((r.status_code if ok or r.status_code != 200 else -1,
                                    time.monotonic(), r.json().get("error", "")))

        with Stream(srv.url) as stream, httpx.Client(base_url=srv.url, timeout=30) as client:
            stream.wait_for_version("2")
            slow_threads = [threading.Thread(target=slow) for _ in range(6)]
            for t in slow_threads:
                t.start()
            _eventually(lambda: len(answers) >= 6)  # the CNN is busy
            removed_at = time.monotonic()
            shutil.rmtree(repo / "digits" / "2")
            shutil.rmtree(repo / "wine-quality" / "2")
            removing.set()  # each thread's current request is the last it sends
            stream.wait_for_version("1")
            for t in slow_threads:
                t.join(120)
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
        log = srv.log_text()
        assert "model digits version 2 unloaded" in log
        assert "model wine-quality version 2 unloaded" in log


def _write_config(repo: Path, config: dict) -> None:
    write_config(repo, "wine-quality", config)


def test_labels_canary_split_and_policy_follow_config_edits(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    _write_config(repo, {"labels": {"stable": 1, "canary": 2},
                         "traffic": {"stable": 3, "canary": 1}})
    with running(repo, tmp_path, POLL) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
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


def _features(client: httpx.Client) -> list[str]:
    meta = client.get("/v1/models/wine-quality/versions/1/metadata").json()
    return [f["name"] for f in meta["modelserve"]["inputs"][0]["features"]]


def _eventually(check: Callable[[], bool], timeout: float = DEADLINE_S,
                what: Callable[[], str] = lambda: "") -> None:
    eventually(check, timeout, what)


def test_version_policy_applies_at_start(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "housing" / v, repo / "housing" / v)
    (repo / "housing" / "config.json").write_text(
        json.dumps({"version_policy": {"specific": {"versions": [1]}}}))
    with running(repo, tmp_path, env={"MODELSERVE_POLL_INTERVAL_S": "0"}) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            states = _status(client, "housing")
            r = client.post("/v1/models/housing:predict", json={"instances": [[
                8.3, 41.0, 6.98, 1.02, 322.0, 2.55, 37.88, -122.23]]})
        assert states["1"]["state"] == "AVAILABLE" and states["2"]["state"] == "END", states
        assert "specific 1" in states["2"]["status"]["error_message"]
        assert r.status_code == 200 and r.headers["model-version"] == "1", r.text
        assert "model housing version 2" not in srv.log_text()  # never even loaded


class StatusWatch(_Background):
    """Snapshots of a model's version states (one GET each, so each is consistent) taken
    back to back on a thread of its own."""

    def __init__(self, url: str, name: str) -> None:
        super().__init__(url)
        self.name = name
        self.snapshots: list[dict[str, str]] = []

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                self.snapshots.append({v: s["state"] for v, s in _status(client, self.name)
                                       .items()})
                time.sleep(0.02)


def _stage_version(repo: Path, name: str, source: int, version: int, *,
                   broken: bool = False) -> Path:
    """A committed version copied in as ``version`` (its manifest saying so), whole at
    once (staged, then renamed); ``broken``: an artifact's bytes altered, same size."""
    staged = repo.parent / f"staged-{version}"
    shutil.copytree(MODELS / name / str(source), staged)
    manifest = json.loads((staged / "manifest.json").read_text())
    (staged / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
    if broken:
        artifact = staged / "model.joblib"
        data = bytearray(artifact.read_bytes())
        data[len(data) // 2] ^= 0xFF
        artifact.write_bytes(bytes(data))
    dst = repo / name / str(version)
    staged.rename(dst)
    return dst


def test_latest_policy_retires_the_old_version_only_once_the_new_one_serves(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        shutil.copytree(MODELS / "wine-quality" / v, repo / "wine-quality" / v)
    _write_config(repo, {"version_policy": {"latest": {"num_versions": 2}}})
    # A folder that fails verification is final (not waited for as a copy in progress).
    env = {**POLL, "MODELSERVE_INCOMPLETE_VERSION_TIMEOUT_S": "0"}
    with running(repo, tmp_path, env) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        assert {v: s["state"] for v, s in _status(client).items()} == {
            "1": "AVAILABLE", "2": "AVAILABLE"}

        # A new version that fails to load does not count: version 1 stays.
        with StatusWatch(srv.url, "wine-quality") as watch:
            _stage_version(repo, "wine-quality", 2, 3, broken=True)
            _eventually(lambda: _status(client).get("3", {}).get("state") == "END")
        status = _status(client)
        assert "SHA-256 mismatch" in status["3"]["status"]["error_message"], status
        assert status["1"]["state"] == "AVAILABLE" and status["2"]["state"] == "AVAILABLE"
        assert all(s.get("1") == "AVAILABLE" for s in watch.snapshots), watch.snapshots
        r = client.post("/v1/models/wine-quality/versions/1:predict",
                        json={"instances": [WINE_ROW]})
        assert r.status_code == 200 and r.headers["model-version"] == "1", r.text

        # Fixed, it loads; only then is version 1 retired, and the versionless route
        # never fails on the way.
        shutil.rmtree(repo / "wine-quality" / "3")
        with StatusWatch(srv.url, "wine-quality") as watch, Stream(srv.url) as stream:
            _stage_version(repo, "wine-quality", 2, 3)
            stream.wait_for_version("3")
            _eventually(lambda: _status(client)["1"]["state"] == "END")
        assert not stream.failures(), stream.failures()[:5]
        assert watch.snapshots
        for s in watch.snapshots:
            assert s.get("1") == "AVAILABLE" or s.get("3") == "AVAILABLE", watch.snapshots
        status = _status(client)
        assert (status["2"]["state"], status["3"]["state"]) == ("AVAILABLE", "AVAILABLE")
        assert "latest 2" in status["1"]["status"]["error_message"], status
        r = client.post("/v1/models/wine-quality/versions/1:predict",
                        json={"instances": [WINE_ROW]})
        assert r.status_code == 404 and "latest 2" in r.json()["error"], r.text
