"""Optional per-model settings: ``<repository>/<name>/config.json``.

```json
{
  "version_policy": {"latest": {"num_versions": 2}},
  "labels": {"stable": 1, "canary": 2},
  "traffic": {"stable": 90, "canary": 10},
  "batching": {"max_rows": 32, "max_wait_ms": 1, "execution": "thread"},
  "payload_log": {"sample": 0.1, "keep": "both", "images": "digest"},
  "feedback": {"window": 10000},
  "drift": {"window": 1000},
  "shadow": {"version": "3", "percent": 25}
}
```

- ``version_policy`` (TF Serving's shape): ``{"all": {}}`` (the default), ``{"latest":
  {"num_versions": N}}`` or ``{"specific": {"versions": [1, 3]}}``.
- ``labels``: names for versions, reachable as ``/v1/models/<name>/labels/<label>:predict``
  and ``/v2/models/<name>/versions/<label>/infer``.
- ``traffic``: weights by version number or label for requests that name no version
  (a canary split); without it they go to the newest available version.
- ``batching``: any field left out takes the service-wide default from Settings.
- ``payload_log``: log this model's predictions (off without it): the share of them to
  log, whether to keep inputs, outputs or both, and images whole or as a digest.
- ``feedback``: keep every prediction's outputs in the evidence store so that clients
  can feed back the truth (off without it), and score versions live over the latest
  ``window`` of them (default: the service's ``feedback_window``).
- ``drift``: compare the latest ``window`` rows each version served with its training
  reference (off without it, and for a version without a reference).
- ``shadow``: send ``percent`` of the live requests again, once answered, to a candidate
  version (a number or a label) and compare the answers (service/evidence/shadow.py).

The file is re-read when it changes. One that does not parse or validate is reported
(log and model status) and the previous valid config stays in force, so a typo never
takes a serving model down.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.errors import ConfigError

CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 64 * 1024
LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")  # \Z: "$" would allow a final newline


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchingConfig(_Strict):
    max_rows: int | None = Field(None, gt=0, le=65536)
    max_wait_ms: float | None = Field(None, ge=0, le=1000)
    max_queue_rows: int | None = Field(None, gt=0)
    timeout_ms: float | None = Field(None, gt=0)
    execution: Literal["auto", "inline", "thread"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: object) -> object:
        # "max_batch_rows" was this field's first name; config.json files written with it
        # keep working.
        if isinstance(data, dict) and "max_batch_rows" in data and "max_rows" not in data:
            data = {("max_rows" if k == "max_batch_rows" else k): v for k, v in data.items()}
        return data


class PayloadLogConfig(_Strict):
    sample: float = Field(1.0, gt=0, le=1)
    keep: Literal["both", "inputs", "outputs"] = "both"
    images: Literal["digest", "full"] = "digest"

    @property
    def inputs(self) -> bool:
        return self.keep != "outputs"

    @property
    def outputs(self) -> bool:
        return self.keep != "inputs"


class FeedbackConfig(_Strict):
    window: int | None = Field(None, gt=0, le=1_000_000)


class DriftConfig(_Strict):
    window: int = Field(1000, gt=0, le=100_000)
    # Past this many requests a second, a version's window takes an even share of them:
    # a busy version refills its window as often as a quiet one without paying per row.
    max_requests_per_s: float = Field(200, gt=0)


class ShadowConfig(_Strict):
    version: str = Field(description="The candidate: a version number or a label.")
    percent: float = Field(gt=0, le=100)

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("version")
    @classmethod
    def _version_or_label(cls, v: str) -> str:
        if not (v.isdigit() and int(v) >= 1) and not LABEL_RE.match(v):
            raise ValueError(f"shadow version {v[:40]!r} is neither a version number nor a "
                             "label")
        return v


class Latest(_Strict):
    num_versions: int = Field(1, gt=0, le=1000)


class Specific(_Strict):
    versions: list[int] = Field(min_length=1)


class VersionPolicy(_Strict):
    """Exactly one of ``all``, ``latest``, ``specific``."""

    all: dict | None = None
    latest: Latest | None = None
    specific: Specific | None = None

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        chosen = [k for k in ("all", "latest", "specific") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of 'all', 'latest', 'specific'")
        if self.all:
            raise ValueError("'all' takes no options: {}")
        return self

    def describe(self) -> str:
        if self.latest is not None:
            return f"latest {self.latest.num_versions}"
        if self.specific is not None:
            return "specific " + ", ".join(map(str, self.specific.versions))
        return "all"

    def choose(self, candidates: list[int]) -> set[int]:
        """The versions to serve among ``candidates`` (complete, not failed)."""
        if self.latest is not None:
            return set(sorted(candidates, reverse=True)[: self.latest.num_versions])
        if self.specific is not None:
            return set(candidates) & set(self.specific.versions)
        return set(candidates)


class ModelConfig(_Strict):
    version_policy: VersionPolicy = VersionPolicy(all={})
    labels: dict[str, int] = Field(default_factory=dict)
    traffic: dict[str, float] = Field(default_factory=dict)
    batching: BatchingConfig = BatchingConfig()
    payload_log: PayloadLogConfig | None = None
    feedback: FeedbackConfig | None = None
    drift: DriftConfig | None = None
    shadow: ShadowConfig | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, int]) -> dict[str, int]:
        for label, version in labels.items():
            if not LABEL_RE.match(label):
                raise ValueError(f"label {label!r} must be lowercase letters, digits, '-' or "
                                 "'_', starting with a letter (at most 32)")
            if version < 1:
                raise ValueError(f"label {label!r} must name a positive version")
        return labels

    @model_validator(mode="after")
    def _traffic(self) -> ModelConfig:
        for key, weight in self.traffic.items():
            if not (key.isdigit() or key in self.labels):
                raise ValueError(f"traffic key {key!r} is neither a version number nor one of "
                                 f"the labels ({', '.join(self.labels) or 'none defined'})")
            if weight < 0:
                raise ValueError(f"traffic weight of {key!r} is negative")
        if self.traffic and sum(self.traffic.values()) <= 0:
            raise ValueError("traffic weights must not all be zero")
        if self.shadow is not None and not self.shadow.version.isdigit() and (
                self.shadow.version not in self.labels):
            raise ValueError(f"shadow version {self.shadow.version!r} is not one of the labels "
                             f"({', '.join(self.labels) or 'none defined'})")
        return self

    def traffic_by_version(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for key, weight in self.traffic.items():
            version = int(key) if key.isdigit() else self.labels[key]
            out[version] = out.get(version, 0.0) + weight
        return out


def read_model_config(model_dir: Path) -> ModelConfig:
    """The model's config, the default when there is none; ConfigError when the file
    is there but unusable."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return ModelConfig()
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
        return ModelConfig.model_validate(json.loads(path.read_bytes()))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
