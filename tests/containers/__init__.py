"""The image, its compose stack and its Kubernetes manifests run for real with podman."""
