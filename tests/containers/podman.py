"""podman for the container tests: running its commands, a container of the image run the
way docker-compose.yml runs the service, and waiting on events with a deadline.

The tests run in the main thread; Container.stop may run in a helper thread while the test
waits on requests in flight (podman stop blocks until the container has exited)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.deploy.files import compose, compose_env, duration_s

IMAGE = os.environ.get("MODELSERVE_IMAGE", "localhost/modelserve:0.1.0")
PROMETHEUS_IMAGE = os.environ.get("MODELSERVE_PROMETHEUS_IMAGE",
                                  "localhost/modelserve-prometheus:bookworm")
START_DEADLINE_S = 300  # a loaded 2-core machine: TensorFlow imports in each worker
DEADLINE_S = 120

T = TypeVar("T")


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(condition: Callable[[], T | None], what: str, timeout: float = DEADLINE_S,
               detail: Callable[[], str] = lambda: "") -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail saying
    ``what`` did not happen within ``timeout`` s (with ``detail()``)."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{detail()}")
        time.sleep(0.5)


def compose_run_args(service: str = "modelserve") -> list[str]:
    """`podman run` options for what docker-compose.yml sets on ``service``: read-only root,
    tmpfs, memory and CPU limits, stop grace period, environment."""
    spec = compose()["services"][service]
    args: list[str] = []
    if spec.get("read_only"):
        args.append("--read-only")
    tmpfs = spec.get("tmpfs", [])
    for mount in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        args += ["--tmpfs", mount]
    if "mem_limit" in spec:
        args += ["--memory", str(spec["mem_limit"])]
    if "cpus" in spec:
        args += ["--cpus", str(spec["cpus"])]
    if "stop_grace_period" in spec:
        args += ["--stop-timeout", str(int(duration_s(spec["stop_grace_period"])))]
    for key, value in compose_env(service).items():
        args += ["-e", f"{key}={value}"]
    return args


class Container:
    """A container by name; ``run`` starts one detached, ``remove`` removes it whatever
    state it is in."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def run(cls, name: str, args: Sequence[str], image: str = IMAGE,
            command: Sequence[str] = ()) -> Container:
        podman("rm", "--force", "--ignore", name)
        podman("run", "--detach", "--name", name, *args, image, *command)
        return cls(name)

    def inspect(self) -> dict:
        return json.loads(podman("inspect", self.name).stdout)[0]

    def running(self) -> bool:
        return self.inspect()["State"]["Running"]

    def logs(self) -> str:
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def tail(self, chars: int = 4000) -> str:
        return self.logs()[-chars:]

    def healthcheck(self) -> str:
        """Run the image's HEALTHCHECK once (podman's timer needs systemd, which a CI
        machine may lack) and return the status podman then reports."""
        podman("healthcheck", "run", self.name, check=False)
        state = self.inspect()["State"]
        return (state.get("Health") or state.get("Healthcheck") or {}).get("Status", "")

    def memory(self) -> tuple[int, int]:
        """(charged, anonymous) bytes of the container's cgroup, v2 or v1: what counts
        against its limit (page cache of the files it read included), and its processes'
        own memory."""
        for current, stat, anon in (
                ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "anon"),
                ("/sys/fs/cgroup/memory/memory.usage_in_bytes",
                 "/sys/fs/cgroup/memory/memory.stat", "total_rss")):
            r = podman("exec", self.name, "cat", current, stat, check=False)
            if r.returncode == 0:
                lines = r.stdout.split("\n")
                fields = dict(line.split() for line in lines[1:] if line.strip())
                return int(lines[0]), int(fields[anon])
        raise AssertionError(f"no memory figures in {self.name}'s cgroup")

    def stop(self, timeout: int) -> None:
        podman("stop", "--time", str(timeout), self.name, timeout=timeout + 60)

    def exit_code(self) -> int:
        r = podman("wait", self.name, timeout=DEADLINE_S)
        return int(r.stdout.strip())

    def remove(self) -> None:
        podman("rm", "--force", "--ignore", "--time", "0", self.name, check=False)


def copy_models(src: Path, dst: Path) -> Path:
    """A copy of a model repository that uid 10001 can read (bind mounts keep modes)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".staging-*", "__pycache__"))
    for path in [dst, *dst.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dst


def compose_memory_limit() -> int:
    """docker-compose.yml's mem_limit for the service, in bytes (e.g. 768m)."""
    from tests.deploy.files import compose

    value = str(compose()["services"]["modelserve"]["mem_limit"]).lower()
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)
