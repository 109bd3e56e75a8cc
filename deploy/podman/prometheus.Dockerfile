# Prometheus from Debian's package, for machines that cannot pull prom/prometheus (the
# compose file's image): make test-containers runs the compose stack with it.
#
#   podman build --build-arg BASE_IMAGE=localhost/modelserve-base:bookworm \
#       -f deploy/podman/prometheus.Dockerfile -t localhost/modelserve-prometheus:bookworm deploy/podman
#
# Started like prom/prometheus: the compose file's command (--config.file ...,
# --storage.tsdb.path=/prometheus) applies unchanged.

ARG BASE_IMAGE=localhost/modelserve-base:bookworm
FROM ${BASE_IMAGE}

# Debian's version is the one to have here: bookworm's, with its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown prometheus:prometheus /prometheus

# The package creates its user with whatever system uid is free: named, not numbered.
# hadolint ignore=DL3066
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
