# Sourced by tests/containers/run.sh: finds by trial how podman runs a container on this
# machine and exports CONTAINERS_CONF, a containers.conf for this run only, when podman's
# own settings fail. Every container of the tests uses --network host.
# Nothing under /etc is edited: a machine where podman already works keeps its settings.
# Needs $BASE_IMAGE (an image that exists) and $STATE (a folder for the generated file).

_podman_try() {
    # A container as the tests run it: read-only root, a tmpfs, non-root, a memory limit.
    podman run --rm --read-only --tmpfs /tmp --user 10001:10001 --memory 64m \
        --network host "$BASE_IMAGE" true >"$STATE/podman-trial.log" 2>&1
}

if _podman_try; then
    echo "podman: runs containers with its own settings"
else
    # What some machines need: runc rather than crun (crun refuses some cgroup v1
    # layouts) and no raised rlimits (a container may not raise nofile/nproc here).
    mkdir -p "$STATE"
    {
        echo "# Written by tests/containers/podman-env.sh for make test-containers only."
        echo "[containers]"
        echo "default_ulimits = []"
        echo "[engine]"
        if command -v runc >/dev/null; then echo 'runtime = "runc"'; fi
    } >"$STATE/containers.conf"
    export CONTAINERS_CONF="$STATE/containers.conf"
    if _podman_try; then
        echo "podman: runs containers with $CONTAINERS_CONF (runc, default_ulimits = [])"
    else
        echo "podman cannot run a container on this machine:" >&2
        cat "$STATE/podman-trial.log" >&2
        return 3
    fi
fi
