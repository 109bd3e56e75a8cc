"""Baseline virtualenvs: one per baseline, created on demand and reused.

Each baseline gets its own venv under ``bench/.venvs/<name>`` so its pins (MLServer's
FastAPI, the tutorial's stack) never touch the product's ``.venv``. A stamp file records
the hash of the requirements file and the interpreter; the venv is rebuilt only when
either changes, so ``make bench`` is idempotent and fast after the first run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENVS_DIR = BENCH_DIR / ".venvs"
REQUIREMENTS_DIR = BENCH_DIR / "requirements"
STAMP_NAME = ".bench-stamp.json"

# Packages whose versions go into the results, per venv.
KEY_PACKAGES = {
    "tutorial": ["fastapi", "uvicorn", "tensorflow-cpu", "keras", "numpy"],
    "mlserver": ["mlserver", "mlserver-sklearn", "scikit-learn", "numpy", "fastapi", "uvicorn"],
    "floor": ["uvicorn", "uvloop", "httptools", "orjson"],
}

# A short import check per venv, run once after install: a broken resolve fails here,
# not minutes later as a server that never becomes ready.
SMOKE = {
    "tutorial": "import fastapi, keras, tensorflow, uvicorn",
    "mlserver": (
        "import mlserver, mlserver_sklearn, sklearn; "
        "assert sklearn.__version__ == '1.9.1', sklearn.__version__"
    ),
    "floor": "import httptools, orjson, uvicorn, uvloop",
}


@dataclass(frozen=True)
class Venv:
    name: str
    path: Path
    install_seconds: float
    versions: dict[str, str]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, tool: str) -> Path:
        return self.path / "bin" / tool


def _fingerprint(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _freeze(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                         check=True, capture_output=True, text=True).stdout
    versions: dict[str, str] = {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip().lower().replace("_", "-")] = version.strip()
    return versions


def ensure(name: str, log: bool = True) -> Venv:
    """Return the venv for baseline ``name``, creating or rebuilding it if its pins changed."""
    requirements = REQUIREMENTS_DIR / f"{name}.txt"
    path = VENVS_DIR / name
    stamp_path = path / STAMP_NAME
    fingerprint = _fingerprint(requirements)
    if stamp_path.exists():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("fingerprint") == fingerprint and (path / "bin" / "python").exists():
            return Venv(name, path, stamp["install_seconds"], stamp["versions"])

    if log:
        print(f"[setup] creating venv {path} from {requirements.name} ...", flush=True)
    shutil.rmtree(path, ignore_errors=True)
    started = time.monotonic()
    # sys.executable may itself be a venv's python; venv then bases the new one on the
    # same base interpreter, which is what we want (same Python for every server).
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    log_path = path / "install.log"
    with log_path.open("w") as install_log:
        # pip's chatter goes to install.log; shown only if a step fails.
        for step in ([*pip, "install", "--upgrade", "pip"],
                     [*pip, "install", "-r", str(requirements)],
                     [*pip, "check"],
                     [str(python), "-c", SMOKE[name]]):
            install_log.write(f"$ {' '.join(step)}\n")
            install_log.flush()
            done = subprocess.run(step, stdout=install_log, stderr=subprocess.STDOUT,
                                  env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"})
            if done.returncode != 0:
                tail = "\n".join(log_path.read_text().splitlines()[-40:])
                raise RuntimeError(f"{name} venv: {step[-1]!r} failed; see {log_path}\n{tail}")
    seconds = round(time.monotonic() - started, 1)

    frozen = _freeze(python)
    (path / "freeze.txt").write_text("".join(f"{k}=={v}\n" for k, v in sorted(frozen.items())))
    versions = {pkg: frozen.get(pkg, "?") for pkg in KEY_PACKAGES[name]}
    # Written last: an interrupted install leaves no stamp and is redone next time.
    stamp_path.write_text(json.dumps({"fingerprint": fingerprint, "install_seconds": seconds,
                                      "versions": versions}, indent=2))
    if log:
        print(f"[setup] {name}: installed in {seconds:.0f} s", flush=True)
    return Venv(name, path, seconds, versions)


if __name__ == "__main__":
    for baseline in sys.argv[1:] or list(KEY_PACKAGES):
        print(ensure(baseline))
