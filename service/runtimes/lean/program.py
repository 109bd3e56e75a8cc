"""The lean form of a version on disk: ``lean.npz``, a list of operations from a fixed
table (``ops.py``) with their weights as plain arrays, and the framework's own outputs
for a check batch, computed when the lean form was written.

The file is numpy's zip of ``.npy`` arrays read with ``allow_pickle=False``: it holds
numbers and one JSON document (``__spec__``), never code. The service runs it without
importing the framework that trained the model, and serves it only when it reproduces
the check outputs (``service.runtimes.lean.verify``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LEAN_FILE = "lean.npz"
FORMAT = 1
_SPEC = "__spec__"
_CHECK_X, _CHECK_Y = "__check_x__", "__check_y__"
# Larger than any weight file we would write for a model this server runs lean; a bigger
# file is refused before numpy reads it.
MAX_BYTES = 1 << 30


class LeanFormError(ValueError):
    """The file is not a lean form this service can run (the framework serves instead)."""


class Unsupported(Exception):
    """The model has a layer, step or estimator the lean operations do not cover; its
    framework keeps serving it."""


@dataclass
class Program:
    kind: str  # layers | trees | neighbours: how the engine is named
    ops: list[dict[str, Any]]  # {"op": name, params...}; a str param may name an array
    arrays: dict[str, np.ndarray]
    description: str
    # The artifact it was derived from: {"artifact", "sha256", "framework", "framework_version"}
    source: dict[str, Any] = field(default_factory=dict)
    check_x: np.ndarray | None = None  # the check batch (the model's one input)
    check_y: np.ndarray | None = None  # what the framework answered for it

    def spec(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": self.kind, "description": self.description,
                "source": self.source, "ops": self.ops}


def write_program(path: Path, program: Program) -> None:
    if program.check_x is None or program.check_y is None:
        raise LeanFormError("a lean form is written with its check batch and outputs")
    arrays = dict(program.arrays)
    arrays[_CHECK_X], arrays[_CHECK_Y] = program.check_x, program.check_y
    spec = json.dumps(program.spec(), sort_keys=True).encode()
    arrays[_SPEC] = np.frombuffer(spec, dtype=np.uint8)
    with open(path, "wb") as f:
        # Stored, not deflated: inflating the eight committed forms cost 70 ms of start-up
        # (16 ms stored) for 7 MB less on disk.
        np.savez(f, **arrays)


def read_program(path: Path) -> Program:
    """The program in ``path``; LeanFormError when it is not one (a bad or foreign file)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise LeanFormError(f"{path.name} is larger than {MAX_BYTES} bytes")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise LeanFormError(f"{path.name} is not a readable numpy archive: {exc}") from exc
    try:
        spec = json.loads(arrays.pop(_SPEC).tobytes())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeanFormError(f"{path.name} has no readable {_SPEC}") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise LeanFormError(f"{path.name} is lean format {spec.get('format')!r} "
                            f"(this service reads {FORMAT})")
    ops = spec.get("ops")
    if not isinstance(ops, list) or not all(isinstance(o, dict) and isinstance(o.get("op"), str)
                                            for o in ops):
        raise LeanFormError(f"{path.name}: ops must be a list of objects with an 'op'")
    return Program(kind=str(spec.get("kind")), ops=ops, arrays=arrays,
                   description=str(spec.get("description", "")),
                   source=spec.get("source") if isinstance(spec.get("source"), dict) else {},
                   check_x=arrays.pop(_CHECK_X, None), check_y=arrays.pop(_CHECK_Y, None))
