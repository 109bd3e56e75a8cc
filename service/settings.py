"""Every knob of the service, in one place.

Read from environment variables prefixed ``MODELSERVE_`` (e.g.
``MODELSERVE_REPOSITORY=/srv/models``) and overridable by ``modelserve serve`` flags.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MODELSERVE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    repository: Path = Field(Path("models"), description="Model repository: <name>/<version>/.")
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="Port of the KServe V2 gRPC service, on the same "
                                          "host (0: no gRPC)."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above)."
    )
    max_request_rows: int = Field(
        1024, gt=0, description="Most instances (rows or images) in one request (400 above)."
    )
    max_batch_rows: int | None = Field(
        None, gt=0, description="Deprecated name of max_request_rows.",
        json_schema_extra={"deprecated": True},
    )
    max_image_bytes: int = Field(
        5 * 1024 * 1024, gt=0, description="Largest uploaded image file accepted."
    )
    max_image_pixels: int = Field(
        16_000_000, gt=0, description="Most pixels in an uploaded image (decompression bombs)."
    )
    image_min_confidence: float = Field(
        0.6, ge=0, le=1, description="An uploaded image whose likeliest class has a lower "
                                     "probability is answered with a 'warnings' entry saying "
                                     "the model is unsure."
    )
    load_workers: int = Field(2, gt=0, description="Threads that load model versions at start.")
    inference_threads: int = Field(
        1, gt=0, description="Intra-op threads for TensorFlow and OpenMP per process."
    )
    workers: int = Field(
        1, gt=0, le=64, description="Worker processes (each loads every model; see README "
                                    "for the memory per worker)."
    )
    lean_runtimes: bool = Field(
        True, description="Serve verified numpy rebuilds of small Keras and tree models "
                          "instead of the framework call."
    )
    batch_max_rows: int = Field(
        64, gt=0, description="Most rows the batcher merges into one model call."
    )
    batch_max_wait_ms: float = Field(
        0.0, ge=0, description="Under load only: how long a batch may wait to fill up "
                               "(an idle model never waits)."
    )
    queue_max_rows: int = Field(
        4096, gt=0, description="Rows that may wait per model version before 503."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Longest a prediction may wait and run before 504."
    )
    execution: Literal["auto", "inline", "thread"] = Field(
        "auto", description="Where model calls run: on the event loop (inline), on the "
                            "inference thread, or auto (inline when a full batch is short)."
    )
    inline_budget_ms: float = Field(
        5.0, ge=0, description="auto execution runs a model inline when a full batch takes "
                               "at most this long."
    )
    direct_budget_us: float = Field(
        100.0, ge=0, description="auto execution calls a model directly, without queueing, "
                                 "when it is idle and one row takes at most this long."
    )
    # Hot reload
    poll_interval_s: float = Field(
        1.0, ge=0, description="Seconds between scans of the repository for new, changed "
                               "or removed versions and config.json edits (0: no hot reload)."
    )
    incomplete_version_timeout_s: float = Field(
        30.0, ge=0, description="A version folder still incomplete (missing or short "
                                "artifacts) and unchanged this long is reported as failed "
                                "instead of waited for."
    )
    # Observability
    log_format: Literal["json", "text"] = Field(
        "json", description="Log records as one JSON object per line (json) or as text "
                            "for humans (text)."
    )
    access_log: bool = Field(
        True, description="One log line per HTTP request (health and metrics probes only at "
                          "debug level unless they fail)."
    )
    # Shutdown
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="After SIGTERM (and shutdown_delay_s), once the listener is "
                                "closed: how long in-flight requests may take to finish "
                                "before their connections are closed."
    )
    shutdown_delay_s: float = Field(
        0.0, ge=0, description="After SIGTERM, keep serving this long while readiness answers "
                               "503, so load balancers take the instance out before the "
                               "listener closes (a built-in preStop sleep; 0 for local runs)."
    )
    # Overload
    max_inflight: int = Field(
        256, ge=0, description="Most requests one worker process works on at once (health "
                               "probes and /metrics not counted); past it: 503 with "
                               "Retry-After at once, so admitted requests keep a bounded "
                               "latency under overload (0: no limit)."
    )
    # Access control
    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated API keys for prediction and metadata "
                                   "(sent as 'Authorization: Bearer <key>' or 'X-API-Key'); "
                                   "none configured: those endpoints are open."
    )
    api_keys_file: Path | None = Field(
        None, description="File of API keys, one per line ('#' comments allowed)."
    )
    admin_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated admin keys for model management "
                                   "(/v2/repository/..., /admin/reload), which is off "
                                   "(404) while no admin key is configured."
    )
    admin_keys_file: Path | None = Field(
        None, description="File of admin keys, one per line ('#' comments allowed)."
    )
    rate_limit_per_s: float = Field(
        0.0, ge=0, description="Requests per second allowed per key, per process (0: no "
                               "limit); over it: 429 with Retry-After."
    )
    rate_limit_burst: int = Field(
        0, ge=0, description="Requests a key may send at once before the rate applies "
                             "(0: the rate rounded up, at least 1)."
    )
    # Slow clients
    body_timeout_s: float = Field(
        30.0, gt=0, description="Longest a client may take to send a request body, counted "
                                "from its first read; then 408 and the connection is closed "
                                "(slowloris-style drip feeds)."
    )

    # Payload log (on per model in its config.json)
    payload_log_dir: Path = Field(
        Path("var/payloads"), description="Directory of the payload log's JSON-lines files."
    )
    payload_log_file_mb: float = Field(
        64, gt=0, description="A payload log file is closed and a new one begun at this size."
    )
    payload_log_total_mb: float = Field(
        1024, gt=0, description="The oldest payload log files are deleted past this total."
    )
    payload_log_max_age_h: float = Field(
        7 * 24, gt=0, description="Payload log files older than this are deleted."
    )
    payload_log_queue: int = Field(
        10_000, gt=0, description="Predictions waiting to be written; past it they are "
                                  "dropped (and counted), never waited for."
    )
    payload_sink_url: str | None = Field(
        None, description="Also send each logged prediction as two CloudEvents (KServe's "
                          "inference logger format) to this http(s) URL."
    )
    payload_sink_queue: int = Field(
        1000, gt=0, description="Events waiting for the sink; past it they are dropped."
    )
    payload_sink_timeout_s: float = Field(
        2.0, gt=0, description="Longest wait for the sink to answer one event."
    )

    # Evidence store: logged predictions joined to their ground truth
    evidence_db: Path = Field(
        Path("var/evidence.sqlite3"), description="SQLite file of logged predictions and "
                                                   "their feedback (shared by the workers)."
    )
    evidence_max_age_h: float = Field(
        30 * 24, gt=0, description="Logged predictions and feedback older than this are "
                                   "deleted from the evidence store."
    )
    evidence_max_mb: float = Field(
        1024, gt=0, description="Past this size the oldest predictions are deleted from the "
                                "evidence store."
    )
    feedback_window: int = Field(
        10_000, gt=0, description="Live scores of a version cover its latest this many "
                                  "fed-back predictions."
    )

    @field_validator("payload_sink_url")
    @classmethod
    def _sink_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {url[:100]!r}")
        return url

    @model_validator(mode="after")
    def _deprecated_names(self) -> Settings:
        if self.max_batch_rows is not None:
            # Its name said "batch" but it capped a request; the batcher's size is
            # batch_max_rows.
            warnings.warn("MODELSERVE_MAX_BATCH_ROWS / --max-batch-rows is deprecated: it "
                          "is the per-request cap, now named max_request_rows (the "
                          "batcher's size is batch_max_rows).", FutureWarning,
                          stacklevel=2)
            self.max_request_rows = self.max_batch_rows
            self.max_batch_rows = None
        return self
