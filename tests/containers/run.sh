#!/usr/bin/env bash
# make test-containers: builds the image with podman and runs it for real (docs/containers.md).
#   1. podman, runc, mmdebstrap, catatonit: installed if missing (Debian, as root);
#      podman-compose is in the dev extra. Without a podman that can run a container, says
#      so and exits 0.
#   2. a Debian base image (deploy/podman/base-image.sh) unless PYTHON_IMAGE names one;
#      podman's settings for this machine, found by trial (tests/containers/podman-env.sh).
#   3. the image from the Dockerfile, and Prometheus's (deploy/podman/prometheus.Dockerfile);
#      the image's size in build/containers.json.
#   4. pytest tests/containers/: the container, the compose stack, deploy/k8s/.
# IMAGE, PYTHON_IMAGE and PYTEST_ARGS may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS
PY="${VENV:-.venv}/bin/python"
STATE="$PWD/build/podman"
IMAGE="${IMAGE:-localhost/modelserve:0.1.0}"
PROMETHEUS_IMAGE=localhost/modelserve-prometheus:bookworm
DEBIAN_BASE=localhost/modelserve-base:bookworm
mkdir -p "$STATE"

say() { echo "test-containers: $*"; }
skip() { say "SKIPPED, nothing was checked: $*"; exit 0; }

# --- 1. tools ------------------------------------------------------------------------------
# catatonit: the pause process of the pods podman kube play makes. podman-compose comes with
# the dev extra (Debian's 1.0.3 cannot run a service on the host's network).
missing=()
for t in podman runc mmdebstrap catatonit; do
    command -v "$t" >/dev/null || [ -x "/usr/libexec/podman/$t" ] || missing+=("$t")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (Debian packages)"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}"; } >"$STATE/apt.log" 2>&1 \
            || say "apt-get failed (see $STATE/apt.log)"
    else
        say "cannot install them here (needs apt-get as root)"
    fi
fi
command -v podman >/dev/null || skip "podman is not installed"

# --- 2. base image and podman's settings ---------------------------------------------------
if [ -n "${PYTHON_IMAGE:-}" ]; then
    BASE_IMAGE="$PYTHON_IMAGE"
    podman image exists "$BASE_IMAGE" || podman pull "$BASE_IMAGE" \
        || skip "cannot get PYTHON_IMAGE=$BASE_IMAGE"
else
    # Public registries may be out of reach: Python 3.11 from Debian's packages instead.
    BASE_IMAGE="$DEBIAN_BASE"
    podman image exists "$BASE_IMAGE" || command -v mmdebstrap >/dev/null \
        || skip "no $BASE_IMAGE and no mmdebstrap to build it"
    deploy/podman/base-image.sh "$BASE_IMAGE" \
        || { say "FAILED: could not build $BASE_IMAGE"; exit 1; }
fi
export BASE_IMAGE STATE
# shellcheck source=tests/containers/podman-env.sh
source tests/containers/podman-env.sh || skip "podman cannot run a container on this machine"

# --- 3. the images -------------------------------------------------------------------------
# Where pip must trust a local CA (PIP_CERT), the build's RUN steps see the host's bundle at
# that path and a pip.conf naming it; neither is copied into the image.
build_mounts=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    printf '[global]\ncert = %s\n' "$PIP_CERT" >"$STATE/pip.conf"
    build_mounts+=(-v "$PIP_CERT:$PIP_CERT:ro" -v "$STATE/pip.conf:/etc/pip.conf:ro")
fi
say "building $IMAGE from the Dockerfile on $BASE_IMAGE (TensorFlow: minutes on a clean machine)"
build_started=$SECONDS
# --format docker keeps HEALTHCHECK (OCI images have no such field).
podman build --format docker --network host --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    "${build_mounts[@]}" -t "$IMAGE" . >"$STATE/build.log" 2>&1 \
    || { tail -40 "$STATE/build.log"; say "FAILED: the image did not build"; exit 1; }
build_s=$((SECONDS - build_started))
podman build --format docker --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f deploy/podman/prometheus.Dockerfile -t "$PROMETHEUS_IMAGE" deploy/podman \
    >"$STATE/build-prometheus.log" 2>&1 \
    || { tail -40 "$STATE/build-prometheus.log"; say "FAILED: Prometheus's image"; exit 1; }

# Untagged images on the Debian base that these builds did not use: earlier runs' images
# and build caches (~2 GB each for the venv layers). Children go first, so a few passes;
# podman refuses one still in use.
used=$(grep -ohE -- '--> (Using cache )?[0-9a-f]{11}' "$STATE"/build*.log \
    | grep -oE '[0-9a-f]{11}$' | sort -u)
for _ in 1 2 3; do
    podman images --all --filter label=org.modelserve.debian-base \
        --format '{{.ID}} {{.Repository}}' | while read -r id repository; do
        [ "$repository" = "<none>" ] && ! grep -q "^${id:0:11}" <<<"$used" \
            && podman rmi "$id" >/dev/null 2>&1 || true
    done
done

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
say "image $IMAGE: $((size / 1000000)) MB (base $BASE_IMAGE: $((base_size / 1000000)) MB;" \
    "built in ${build_s} s)"
"$PY" - "$IMAGE" "$size" "$BASE_IMAGE" "$base_size" "$build_s" <<'EOF'
import json, sys
image, size, base, base_size, build_s = sys.argv[1:]
json.dump({"image": image, "size_bytes": int(size), "base_image": base,
           "base_size_bytes": int(base_size), "build_seconds": int(build_s)},
          open("build/containers.json", "w"), indent=2)
EOF

# --- 4. the tests --------------------------------------------------------------------------
status=0
MODELSERVE_CONTAINER_TESTS=1 MODELSERVE_IMAGE="$IMAGE" \
    MODELSERVE_PROMETHEUS_IMAGE="$PROMETHEUS_IMAGE" \
    "$PY" -m pytest tests/containers ${PYTEST_ARGS:-} || status=$?
say "total $((SECONDS - started)) s (image build ${build_s} s); facts in build/containers.json"
exit "$status"
