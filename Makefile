# The two commands a fresh machine needs: `make serve` and `make test`.
# Both create the virtualenv and install on first use; installs rerun only when
# pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 0.0.0.0
PORT   ?= 8000

# Install and start: the Dockerfile runs these same commands (tests/deploy/ checks
# it with `make -n`): the venv and PIP_INSTALL lines, without -e and without the
# train,dev extras, and SERVE with the same MODELSERVE_HOST / MODELSERVE_PORT.
PIP_INSTALL := python -m pip install --quiet
SERVE       := modelserve serve

.PHONY: install serve test test-tools test-containers train lint format clean bench bench-tools bench-setup overload soak up down vendor

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP_INSTALL) --upgrade pip
	$(BIN)/$(PIP_INSTALL) -e '.[train,dev]'
# KServe's SDK for tests/test_kserve_sdk.py, without its dependencies: it pins protobuf<7
# and pandas<3, which would downgrade the service's; the dev extra lists what it needs.
	$(BIN)/$(PIP_INSTALL) --no-deps kserve==0.21.0
	@touch $@

serve: install
	MODELSERVE_HOST=$(HOST) MODELSERVE_PORT=$(PORT) $(BIN)/$(SERVE)

test: install test-tools
	$(BIN)/python -m pytest

# Debian tools some tests use (tests/deploy/, tests/test_prometheus.py, tests/browser/):
# docker-compose (`config` only, no engine needed), prometheus and chromium (driven by
# Playwright; no browser download). Best effort and quick once installed: if they cannot
# be installed, those tests skip and say why.
test-tools:
	@command -v docker-compose >/dev/null && command -v prometheus >/dev/null \
	    && command -v chromium >/dev/null \
	  || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	       && apt-get update -qq >/dev/null 2>&1 \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	          docker-compose prometheus chromium >/dev/null 2>&1; } \
	  || echo "test-tools: could not install docker-compose/prometheus/chromium; their tests will skip"

# The image built and run for real with podman: the container as docker-compose.yml runs
# it, the compose stack with Prometheus, deploy/k8s/ with `podman kube play`
# (tests/containers/run.sh, docs/containers.md). Installs podman & co. as root on Debian;
# skips, saying so, where podman cannot run a container. ~5 min, longer on a first build.
test-containers: install
	VENV=$(VENV) bash tests/containers/run.sh

# Swagger UI and ReDoc for the offline /docs and /redoc, from npm (pinned, checked); the
# outputs are committed, so only changing their versions needs this.
vendor:
	sh tools/vendor_assets.sh

train: install
	$(BIN)/modelserve train all

# Benchmark against baselines (bench/README.md); not part of `make test`. Baseline venvs
# go to bench/.venvs/ on first use. Options: make bench BENCH_ARGS="--duration 5 --rounds 1"
bench: install bench-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# wrk drives the HTTP load; installed from Debian's packages when it can be.
bench-tools:
	@command -v wrk >/dev/null \
	  || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	       && apt-get update -qq >/dev/null 2>&1 \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	          wrk >/dev/null 2>&1; } \
	  || { echo "bench-tools: wrk is not installed and could not be (Debian: apt-get install wrk)"; exit 1; }

bench-setup: install
	$(BIN)/python bench/run.py --setup-only

# Twice the measured capacity, open loop, with and without load shedding
# (bench/overload.py; ~3 minutes). Options: make overload OVERLOAD_ARGS="--duration 5"
overload: install
	$(BIN)/python bench/overload.py $(OVERLOAD_ARGS)

# ~10 min of mixed traffic over every model and protocol, watching the server's RSS
# (bench/soak.py); fails on any failed request or RSS drift over 10 %. Not part of
# `make test`. Smoke run: make soak SOAK_ARGS="--warmup 10 --duration 30"
soak: install
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# The service with Prometheus and Grafana (docker-compose.yml; needs Docker):
# http://localhost:8000, Prometheus http://localhost:9090, Grafana http://localhost:3000
up:
	docker compose up -d --build

down:
	docker compose down

# Regenerate the gRPC modules beside the KServe V2 .proto (grpcio-tools, dev extra). Run
# from the repository root: `-I .` makes the generated import package-relative
# (from service.protocols.grpc.proto import ...). tests/test_grpc_proto.py checks the
# committed files are what this produces.
PROTO := service/protocols/grpc/proto/grpc_predict_v2.proto
.PHONY: proto
proto: install
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

lint: install
	$(BIN)/ruff check modelserve service training tests bench

format: install
	$(BIN)/ruff format modelserve service training tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
