# modelserve: the service and the committed models; no training or development tools.
#
#   docker build -t modelserve:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 modelserve:0.1.0
#   docker run --rm -p 8000:8000 -v "$PWD/models:/opt/modelserve/models:ro" modelserve:0.1.0
#
# Installed and started like `make install` / `make serve` (tests/test_deploy.py checks
# that they agree): the same venv and pip commands, here without -e and without the
# train,dev extras, and the same `modelserve serve` command, its host and port given as
# the same MODELSERVE_* variables the Makefile sets. Every setting is a MODELSERVE_*
# variable (README "Configuration"): `docker run -e MODELSERVE_WORKERS=2 ...`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the package and its runtime dependencies only ---------------
FROM ${PYTHON_IMAGE} AS build

# Serving extras to add (README "Which install serves which models"): empty serves every
# lean form; "sklearn", "keras" or "frameworks" add the frameworks for models without one.
ARG EXTRAS=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A C compiler for the compiled tree walk and convolution loops (service/runtimes/lean/);
# build stage only. Without it the install still succeeds and numpy loops serve, slower.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# pip is upgraded unpinned, as the Makefile does; the dependencies that matter are pinned
# in pyproject.toml.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --quiet --upgrade pip
COPY pyproject.toml README.md ./
COPY service ./service
# What serving never uses leaves the venv: the packages' own test suites (numpy's and
# scipy's alone are ~80 MB) and pip itself (an image takes its extras at build time,
# EXTRAS above). The native libraries are not stripped: the wheels' patched ones
# (numpy.libs/...) no longer load once stripped.
RUN /opt/venv/bin/python -m pip install --quiet ".${EXTRAS:+[$EXTRAS]}" \
    && find /opt/venv -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} + \
    && /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools

# --- runtime -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="Versioned Keras and scikit-learn models over TF-Serving REST and KServe V2" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 modelserve \
    && useradd --system --uid 10001 --gid modelserve --home-dir /home/modelserve \
       --create-home --shell /usr/sbin/nologin modelserve

COPY --from=build /opt/venv /opt/venv
# Baked-in models, owned by root and read-only for the service. Mount another repository
# at the same path to serve it instead (read-only is enough: the service only reads it and
# polls it for new versions).
COPY models /opt/modelserve/models

# MODELSERVE_INFERENCE_THREADS pins OpenMP / BLAS (and TensorFlow's) threads (the service
# sets OMP_NUM_THREADS etc. from it before they load). /tmp is the only place written to:
# the metrics files of several workers, upload spooling, and the payload log and evidence
# store of models that turn them on (mount a volume there, or
# point MODELSERVE_PAYLOAD_LOG_DIR / MODELSERVE_EVIDENCE_DB at one, to keep them across
# restarts); the root filesystem may be read-only (Kubernetes: an emptyDir at /tmp).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSERVE_REPOSITORY=/opt/modelserve/models \
    MODELSERVE_HOST=0.0.0.0 \
    MODELSERVE_PORT=8000 \
    MODELSERVE_GRPC_PORT=8001 \
    MODELSERVE_INFERENCE_THREADS=1 \
    MODELSERVE_PAYLOAD_LOG_DIR=/tmp/modelserve/payloads \
    MODELSERVE_EVIDENCE_DB=/tmp/modelserve/evidence.sqlite3

WORKDIR /opt/modelserve
USER 10001:10001
# HTTP (TF-Serving REST, KServe V2) and KServe V2 over gRPC (0 turns gRPC off).
EXPOSE 8000 8001

# Ready = every version loaded or failed and at least one serves (503 before, and while
# draining after SIGTERM). The slim image has no curl: Python's urllib raises on non-2xx.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MODELSERVE_PORT', '8000'), timeout=2)"]

# SIGTERM (docker stop, Kubernetes) starts the graceful drain: MODELSERVE_SHUTDOWN_DELAY_S,
# then up to MODELSERVE_SHUTDOWN_GRACE_S for in-flight requests. Extra arguments are
# `modelserve serve` flags: docker run modelserve:0.1.0 --log-level debug
ENTRYPOINT ["/opt/venv/bin/modelserve", "serve"]
CMD []
