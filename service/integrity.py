"""SHA-256 of artifact files, checked before anything is deserialized."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.errors import ModelLoadError
from service.manifest import ArtifactFile


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        # One reused buffer rather than a new bytes object per chunk.
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe_file(folder: Path, relative: str) -> ArtifactFile:
    path = folder / relative
    return ArtifactFile(path=relative, sha256=sha256_file(path), size_bytes=path.stat().st_size)


def verify_artifacts(folder: Path, artifacts: list[ArtifactFile]) -> None:
    """Refuse a missing, truncated or altered artifact, naming the file.

    Size is compared first: it is free and catches truncated copies without hashing.
    """
    root = folder.resolve()
    for art in artifacts:
        path = (folder / art.path).resolve()
        if not path.is_relative_to(root):
            raise ModelLoadError(folder / art.path, "artifact path leaves the version folder")
        if path.is_symlink() or not path.is_file():
            raise ModelLoadError(folder / art.path, "artifact file is missing")
        size = path.stat().st_size
        if size != art.size_bytes:
            raise ModelLoadError(
                folder / art.path,
                f"artifact is {size} bytes but the manifest says {art.size_bytes} "
                "(truncated or replaced file)",
            )
        digest = sha256_file(path)
        if digest != art.sha256:
            raise ModelLoadError(
                folder / art.path,
                f"SHA-256 mismatch: file has {digest}, manifest says {art.sha256} "
                "(the file was changed after training)",
            )
