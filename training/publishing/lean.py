"""Lean forms (service/runtimes/lean/program.py): written by ``publish`` for every new
version and listed in its manifest; written as ``lean.npz`` beside the manifest of a
version published before manifests listed one.

    .venv/bin/python -m training.publishing.lean models/digits/2 [...]
    .venv/bin/python -m training.publishing.lean --all
    .venv/bin/python -m training.publishing.lean --store --all

The backfill loads the version with its framework (the committed artifact, checksums
verified), rebuilds its forward pass as lean operations, checks them against the
framework's own call on the probe batch, and writes them with the framework's outputs.
The version itself (artifact, manifest, card) is not touched; the service binds the file
to the artifact by its SHA-256 and serves it only if it reproduces those outputs.

``--store`` rewrites a backfilled form written deflated (before lean forms were stored
uncompressed, which reads faster at start-up) as stored: the same arrays, bit for bit,
checked before the file is replaced. A form listed in its manifest is never rewritten:
its checksum is part of the version.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

import numpy as np

from service.loader import lean_path, load_version, read_manifest
from service.manifest import Manifest
from service.runtimes.base import Runtime
from service.runtimes.lean import export_lean
from service.runtimes.lean.program import (
    LEAN_FILE,
    Program,
    Unsupported,
    read_program,
    write_program,
)


def write(folder: Path, reference: Runtime, manifest: Manifest) -> Program | None:
    """Write ``folder/lean.npz`` for ``manifest`` (``reference``: its framework runtime);
    None, with the reason printed, when the model has no lean form."""
    try:
        program = export_lean(reference, manifest)
    except Unsupported as exc:
        print(f"{manifest.name} v{manifest.version}: no lean form ({exc}); the framework "
              "serves it", flush=True)
        return None
    write_program(folder / LEAN_FILE, program)
    return program


def backfill(folder: Path) -> Path | None:
    loaded = load_version(folder, lean=False)
    program = write(folder, loaded.runtime, loaded.manifest)
    return folder / LEAN_FILE if program is not None else None


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and a[k].tobytes() == b[k].tobytes() for k in a)


def store(folder: Path) -> bool:
    """Rewrite ``folder``'s backfilled, deflated lean form as stored; False when there is
    nothing to do (already stored, or no backfilled form)."""
    manifest = read_manifest(folder)
    path = folder / LEAN_FILE
    if manifest.lean is not None:
        return False  # listed in the manifest: part of the published version
    if not path.is_file():
        return False
    with zipfile.ZipFile(path) as z:
        if all(info.compress_type == zipfile.ZIP_STORED for info in z.infolist()):
            return False
    before = _arrays(path)
    staged = path.with_name(f".{LEAN_FILE}.stored")
    write_program(staged, read_program(path))
    if not _same(before, _arrays(staged)):
        staged.unlink()
        raise SystemExit(f"{path}: the stored copy does not hold the same arrays; left as is")
    os.replace(staged, path)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", type=Path, help="version folders")
    p.add_argument("--all", action="store_true",
                   help="every committed version under models/ without a lean form "
                        "(with --store: every version)")
    p.add_argument("--store", action="store_true",
                   help="rewrite backfilled lean forms written deflated as stored")
    args = p.parse_args(argv)
    folders = list(args.folders)
    if args.store:
        if args.all:
            folders += sorted(f for f in Path("models").glob("*/*") if f.name.isdigit())
        for folder in folders:
            print(f"{folder}: " + ("stored" if store(folder) else "nothing to do"), flush=True)
        return
    if args.all:
        folders += sorted(f for f in Path("models").glob("*/*") if f.name.isdigit()
                          and lean_path(f, read_manifest(f)) is None)
    for folder in folders:
        if lean_path(folder, read_manifest(folder)) is not None:
            raise SystemExit(f"{folder} already has a lean form; versions are immutable")
        path = backfill(folder)
        print(f"{folder}: " + (f"wrote {path}" if path else "none written"), flush=True)


if __name__ == "__main__":
    main()
