"""Optional per-model settings: ``<repository>/<name>/config.json``.

Only ``batching`` for now, e.g. ``{"batching": {"max_batch_rows": 32,
"max_wait_ms": 1, "execution": "thread"}}``; any field left out takes the service-wide
default from Settings. A file that does not parse is reported in the log and ignored,
so a typo never takes a serving model down.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("modelserve.config")

CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 64 * 1024


class BatchingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_rows: int | None = Field(None, gt=0, le=65536)
    max_wait_ms: float | None = Field(None, ge=0, le=1000)
    max_queue_rows: int | None = Field(None, gt=0)
    timeout_ms: float | None = Field(None, gt=0)
    execution: Literal["auto", "inline", "thread"] | None = None


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batching: BatchingConfig = BatchingConfig()


def read_model_config(model_dir: Path) -> ModelConfig:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return ModelConfig()
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        return ModelConfig.model_validate(json.loads(path.read_bytes()))
    except (OSError, ValueError, ValidationError) as exc:
        log.error("ignoring %s: %s", path, exc)
        return ModelConfig()
