"""Grace periods cover the service's drain (shutdown delay + grace)."""

from __future__ import annotations

from tests.deploy.files import (
    DRAIN_DEFAULTS,
    compose,
    compose_env,
    drain,
    duration_s,
    env_of,
    pod_specs,
    settings_fields,
)


def test_grace_periods_cover_the_drain():
    svc = compose()["services"]["modelserve"]
    delay, grace = drain(compose_env())
    stop = duration_s(svc["stop_grace_period"])
    assert stop > delay + grace, (
        f"compose stop_grace_period {stop} s must exceed shutdown delay {delay} + grace "
        f"{grace} s, or docker SIGKILLs a draining server")
    for kind, spec in pod_specs().items():
        container = spec["containers"][0]
        delay, grace = drain(env_of(container))
        pre_stop = 0.0
        hook = container.get("lifecycle", {}).get("preStop", {})
        if "sleep" in hook:
            pre_stop = float(hook["sleep"]["seconds"])
        elif "exec" in hook:
            cmd = hook["exec"]["command"]
            assert cmd[0].endswith("sleep"), f"{kind}: unexpected preStop {cmd}"
            pre_stop = float(cmd[1])
        total = spec["terminationGracePeriodSeconds"]
        assert total > pre_stop + delay + grace, (
            f"{kind}: terminationGracePeriodSeconds {total} must exceed preStop {pre_stop} + "
            f"shutdown delay {delay} + grace {grace}")
        assert pre_stop + delay > 0, (
            f"{kind}: no time for the endpoints to drop the pod before it stops accepting "
            f"(set MODELSERVE_SHUTDOWN_DELAY_S or a preStop sleep)")


def test_drain_settings_exist_in_the_service():
    fields = settings_fields()
    for key, default in DRAIN_DEFAULTS.items():
        assert key in fields, f"{key} is used by the deployment files but is not a setting"
        assert float(fields[key].default) == default, (key, fields[key].default)
