"""Facts about the machine and software a run was made on, recorded with its results.

Numbers from different machines (or the same one under other load) are not comparable;
these facts let a reader tell.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import wrk


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "?"


def loadavg() -> str:
    """1, 5 and 15 minute load averages: well above 1 means something else competed."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def facts(repo: Path) -> dict[str, Any]:
    dirty = _git(repo, "status", "--porcelain", "--", "service")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk.version(),
        # Other work on the machine skews numbers: this shows whether there was any.
        "loadavg_at_start": loadavg(),
        "git_commit": _git(repo, "rev-parse", "--short", "HEAD"),
        "service_tree_dirty": bool(dirty and dirty != "?"),
    }
