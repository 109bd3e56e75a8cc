"""Load one version folder: read and validate the manifest (schema 2, or 1 upgraded in
memory), verify every artifact's SHA-256, and only then deserialize it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from service.errors import ModelLoadError
from service.integrity import verify_artifacts
from service.manifest import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    SCHEMA_VERSION,
    Manifest,
    Reference,
)
from service.manifest_v1 import upgrade
from service.model import LoadedModel
from service.runtimes import Runtime, load_runtime
from service.runtimes.lean import Engine, compile_lean, load_lean
from service.runtimes.lean.program import LEAN_FILE, LeanFormError

log = logging.getLogger("modelserve.loader")


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ModelLoadError(path, "manifest.json is missing")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelLoadError(path, f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(path, f"manifest is not valid JSON: {exc}") from exc
    try:
        return parse_manifest(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ModelLoadError(path, f"manifest does not match the schema: {problems}") from exc
    except ValueError as exc:
        raise ModelLoadError(path, str(exc)) from exc


def parse_manifest(data: Any) -> Manifest:
    """A manifest of any schema version this service reads, as the current schema."""
    schema = data.get("schema_version") if isinstance(data, dict) else None
    if schema == 1:
        return upgrade(data)
    if schema not in (None, SCHEMA_VERSION):
        raise ValueError(f"manifest schema_version {schema!r} is not one this service reads "
                         f"(1 or {SCHEMA_VERSION}); upgrade modelserve")
    return Manifest.model_validate(data)


REFERENCE_FILE = "reference.json"


def read_reference(folder: Path) -> Reference | None:
    """The training reference written beside a version published before manifests held
    one (training/publishing/reference.py); None when there is none or it is unusable
    (drift is then off for the version, which still serves)."""
    path = folder / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        return Reference.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("%s: ignored (drift is off for this version): %s", path, exc)
        return None


def lean_path(folder: Path, manifest: Manifest) -> Path | None:
    """The version's lean form: the one its manifest lists, or ``lean.npz`` written
    beside a version published before manifests listed one."""
    if manifest.lean is not None:
        return folder / manifest.lean
    path = folder / LEAN_FILE
    return path if path.is_file() else None


def _lean_form(folder: Path, manifest: Manifest) -> tuple[Runtime | None, Engine | None]:
    """(runtime, engine) from the lean form without the framework, or (None, None) when
    there is none, or (None, engine) saying why it is not used."""
    path = lean_path(folder, manifest)
    if path is None:
        return None, None
    try:
        return load_lean(path, manifest)
    except LeanFormError as exc:
        log.warning("%s v%d: lean form not used: %s", manifest.name, manifest.version, exc)
        return None, Engine(manifest.framework.value, f"{LEAN_FILE} not used: {exc}")


def load_version(folder: Path, *, expected_name: str | None = None,
                 expected_version: int | None = None, check_samples: bool = True,
                 lean: bool = True) -> LoadedModel:
    """Load ``folder`` (``<repository>/<name>/<version>``) or raise ModelLoadError.

    The folder's own name and its parent's must agree with the manifest, so a copied
    folder cannot serve under a name or version it was not trained as. (Training
    passes the expected name and version to check a folder it is still staging.)
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    version = str(expected_version) if expected_version is not None else folder.name
    if version != str(manifest.version):
        raise ModelLoadError(folder, f"folder is version {version!r} but the manifest says "
                                     f"version {manifest.version}")
    name = expected_name if expected_name is not None else folder.parent.name
    if name != manifest.name:
        raise ModelLoadError(folder, f"folder belongs to model {name!r} but the manifest says "
                                     f"{manifest.name!r}")
    verify_artifacts(folder, manifest.artifacts)
    runtime, engine = _lean_form(folder, manifest) if lean else (None, None)
    if runtime is None:
        # The framework, imported now: for a version without a usable lean form, or with
        # lean runtimes off.
        why = engine.detail if engine is not None else None
        runtime = load_runtime(folder, manifest)
        if lean:
            # Checked against the framework's own call before it is used; the manifest's
            # samples below are then checked against what will actually serve.
            runtime, engine = compile_lean(runtime, manifest)
        else:
            engine = Engine(manifest.framework.value, "framework call (lean runtimes off)")
        if why:
            engine.detail = f"{engine.detail}; {why}"
        log.info("%s v%d: %s imported to serve it (%s)", manifest.name, manifest.version,
                 manifest.framework.value, engine.detail)
    model = LoadedModel(manifest=manifest, runtime=runtime, folder=folder, engine=engine,
                        reference=manifest.reference or read_reference(folder))
    if check_samples:
        problems = model.check_samples()
        if problems:
            raise ModelLoadError(folder, "self-check against the manifest's samples failed: "
                                         + "; ".join(problems[:5]))
    return model
