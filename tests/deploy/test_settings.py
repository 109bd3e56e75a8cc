"""Every MODELSERVE_* variable the deployment files set is a valid setting."""

from __future__ import annotations

import pytest

from tests.deploy.files import compose_env, docker_env, env_of, pod_specs, settings_fields


def _modelserve_variables() -> dict[str, str]:
    """Every MODELSERVE_* variable a deployment file sets, and where."""
    found = {}
    for key in docker_env():
        found[key] = "Dockerfile"
    for key in compose_env():
        found[key] = "docker-compose.yml"
    for kind, spec in pod_specs().items():
        for container in spec["containers"]:
            for key in env_of(container):
                found[key] = f"deploy/k8s {kind}"
    return {k: v for k, v in found.items() if k.startswith("MODELSERVE_")}


def test_every_modelserve_variable_is_a_setting():
    """A misspelt variable would be ignored silently (settings ignore unknown ones)."""
    fields = settings_fields()
    unknown = {k: where for k, where in _modelserve_variables().items() if k not in fields}
    assert not unknown, f"not settings of service/settings.py: {unknown}"


def test_deployment_values_are_valid_settings():
    from service.settings import Settings

    for source, env in [("Dockerfile", docker_env()), ("compose", compose_env())] + [
            (kind, env_of(spec["containers"][0])) for kind, spec in pod_specs().items()]:
        values = {k[len("MODELSERVE_"):].lower(): v for k, v in env.items()
                  if k.startswith("MODELSERVE_") and k in settings_fields()}
        try:
            Settings(**values)
        except ValueError as exc:
            pytest.fail(f"{source}: {exc}")
