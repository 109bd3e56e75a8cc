"""Every knob of the service, in one place.

Read from environment variables prefixed ``MODELSERVE_`` (e.g.
``MODELSERVE_REPOSITORY=/srv/models``) and overridable by ``modelserve serve`` flags.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MODELSERVE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    repository: Path = Field(Path("models"), description="Model repository: <name>/<version>/.")
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )
    max_batch_rows: int = Field(
        1024, gt=0, description="Most instances (rows or images) in one request (400 above)."
    )
    max_image_bytes: int = Field(
        5 * 1024 * 1024, gt=0, description="Largest uploaded image file accepted."
    )
    max_image_pixels: int = Field(
        16_000_000, gt=0, description="Most pixels in an uploaded image (decompression bombs)."
    )
    load_workers: int = Field(2, gt=0, description="Threads that load model versions at start.")
    inference_threads: int = Field(
        1, gt=0, description="Intra-op threads for TensorFlow and OpenMP per process."
    )
