#!/usr/bin/env bash
# Builds a Debian bookworm image with Python 3.11 from Debian's packages (mmdebstrap +
# podman import), for machines that cannot pull python:3.11-slim-bookworm from a public
# registry. The Dockerfile takes it as PYTHON_IMAGE. Skips when the image already exists.
#
#   deploy/podman/base-image.sh [IMAGE]    (default localhost/modelserve-base:bookworm)
set -euo pipefail
image="${1:-localhost/modelserve-base:bookworm}"

# The recipe (this file) is part of the image's label: a changed recipe builds anew.
recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if podman image exists "$image" \
   && [ "$(podman image inspect --format '{{ index .Labels "org.modelserve.recipe" }}' "$image")" = "$recipe" ]; then
    echo "base-image: $image exists, not rebuilt"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "base-image: mmdebstrap is not installed" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# python3-venv brings ensurepip (the Dockerfile's `python3 -m venv`); ca-certificates for
# pip over HTTPS; python-is-python3 so `python` works as in the official image.
# The apt lists are dropped (the image does not need them: prometheus' Dockerfile updates).
echo "base-image: mmdebstrap bookworm (about a minute)"
# Documentation, manual pages and translations are not installed (the copyright files
# are), and perl, which nothing the image runs needs, is purged if nothing depends on it:
# about 100 MB of the base.
mmdebstrap --variant=minbase --quiet \
    --include=python3.11,python3-venv,python-is-python3,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" dpkg --purge perl libperl5.36 perl-modules-5.36 || true' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$work/rootfs.tar"
# The label marks the images built on this base (build stages and caches inherit it), so
# that tests/containers/run.sh can remove its own stale ones and nothing else.
podman import --quiet \
    --change 'LABEL org.modelserve.debian-base=bookworm' \
    --change "LABEL org.modelserve.recipe=$recipe" \
    --change 'CMD ["/usr/bin/python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    "$work/rootfs.tar" "$image" >/dev/null
echo "base-image: built $image"
