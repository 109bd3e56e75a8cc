"""Server processes: spawn pinned to a core, find their whole tree, measure it, kill it.

Every server runs in its own session (so its own process group) under ``taskset``; the
CPU affinity and the group are inherited by the worker processes servers fork (MLServer's
inference pool, uvicorn workers), so one ``killpg`` and one /proc walk cover them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# While a server starts: how often it is asked whether it answers yet. A start can be
# ~0.1 s, so coarser polling would be most of what is measured.
POLL_S = 0.01


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A port the kernel considers free right now (the bind-to-0 trick), other than the
    ``exclude`` ones already handed out but not yet bound by their server."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in exclude:
            return port


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:  # else it exited while we looked
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children = _children_map()
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, []))
    return pids


def status_kib(pid: int, key: str) -> int:
    """A numeric field of /proc/<pid>/status (VmRSS, Threads, ...); 0 when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Memory:
    processes: int
    rss_mib: float  # sum of VmRSS: counts pages shared between forked workers once each
    pss_mib: float  # sum of Pss: shared pages split between sharers, so it adds up honestly


def tree_memory(root: int) -> Memory:
    pids = tree_pids(root)
    rss = sum(status_kib(pid, "VmRSS") for pid in pids)
    pss = sum(_pss_kib(pid) for pid in pids)
    return Memory(len(pids), round(rss / 1024, 1), round(pss / 1024, 1))


class ServerDied(RuntimeError):
    """The server process exited while it was being waited for or measured."""


def wait_ready(proc: ServerProcess, url: str, timeout: float) -> float:
    """Seconds from spawn until ``url`` (a readiness endpoint) answers 200; refused
    connections and 503 both mean "not yet". Raises ServerDied if the process exits."""
    deadline = proc.started + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ServerDied(f"{proc.name} exited with {proc.popen.returncode} while "
                             f"loading:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - proc.started
        except OSError:  # includes HTTPError (503 while loading)
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"{proc.name} not ready in {timeout:.0f} s:\n{proc.log_tail()}")


@dataclass
class ServerProcess:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before spawn
    seen: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def remember_tree(self) -> None:
        # Recorded while the tree is intact: a worker re-parented to init after its parent
        # died would otherwise escape both the group kill and the /proc walk.
        if self.alive():
            self.seen.update(tree_pids(self.pid))


def spawn(name: str, argv: list[str], *, cpus: str | None, env: dict[str, str], cwd: Path,
          log_path: Path) -> ServerProcess:
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]  # taskset execs, so the pid is the server's
    log = log_path.open("wb")
    started = time.monotonic()
    popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()  # the child holds its own descriptor
    return ServerProcess(name, argv, log_path, popen, started)


def _signal_all(proc: ServerProcess, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    for pid in proc.seen:
        # Only pids still in the server's session: a pid recorded earlier may since have
        # been reused by an unrelated process.
        if _session(pid) == proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def stop(*servers: ServerProcess, grace: float = 5.0) -> None:
    """SIGTERM every tree at once, then SIGKILL whatever is left after ``grace`` seconds."""
    for proc in servers:
        proc.remember_tree()
        _signal_all(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = list(servers)
    while left and time.monotonic() < deadline:
        left = [p for p in left if p.popen.poll() is None
                or any(_lingering(pid, p.pid) for pid in p.seen)]
        time.sleep(0.05)
    for proc in left:
        _signal_all(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=5)


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (state is [0], session [3])."""
    try:
        # The command name may contain spaces and parentheses: split after its last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _session(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[3]) if fields else None


def _lingering(pid: int, session: int) -> bool:
    """Still running in the server's session (a zombie is harmless and does not count)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z" and int(fields[3]) == session
