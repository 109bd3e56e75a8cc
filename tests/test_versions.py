"""The version state machine on its own (no server, no disk): transitions, the reasons
and the texts the status endpoints show for them, and refused transitions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from service.repository import IllegalTransition, Reason, State, VersionStatus
from service.repository.versions import Version

MODEL: Any = object()  # stands for a LoadedModel: the state machine only carries it


def _version() -> Version:
    return Version("wine-quality", 2, Path("/models/wine-quality/2"))


def _available() -> Version:
    v = _version()
    v.begin_loading()
    v.loaded(MODEL, 1.5, 1000.0)
    return v


def test_states_are_tf_servings():
    assert [s.value for s in State] == ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]


def test_a_new_version_starts_with_nothing_to_say():
    s = _version().status
    assert (s.state, s.reason, s.error, s.detail, s.model) == (State.START, None, "", "", None)


def test_load_path_start_loading_available():
    v = _version()
    v.begin_loading()
    assert v.state is State.LOADING
    v.loaded(MODEL, 1.5, 1000.0)
    s = v.status
    assert (s.state, s.model, s.load_seconds, s.loaded_at) == (State.AVAILABLE, MODEL, 1.5,
                                                               1000.0)
    assert (s.error, s.detail) == ("", "")


def test_waiting_reasons_and_their_texts():
    v = _version()
    v.wait("no manifest.json yet")
    assert v.status.reason is Reason.WAITING_INCOMPLETE and v.status.waiting
    assert v.status.detail == "waiting for the folder to be complete: no manifest.json yet"
    v.wait("")
    assert v.status.reason is Reason.WAITING_CHANGING
    assert v.status.detail == "waiting for the folder to stop changing"
    assert v.status.error == ""
    v.ready()
    assert (v.state, v.status.reason, v.status.detail) == (State.START, None, "")


def test_a_waiting_version_is_never_loaded():
    v = _version()
    v.wait("model.joblib is missing")
    with pytest.raises(IllegalTransition, match="cannot load while waiting"):
        v.begin_loading()


def test_a_failed_load_is_an_error_and_is_retried_only_through_ready():
    v = _version()
    v.begin_loading()
    v.failed("model.joblib: SHA-256 mismatch")
    s = v.status
    assert (s.state, s.reason, s.failed) == (State.END, Reason.FAILED, True)
    assert (s.error, s.detail) == ("model.joblib: SHA-256 mismatch", "")
    with pytest.raises(IllegalTransition):
        v.begin_loading()
    v.ready()  # its folder changed
    assert (v.state, v.status.error) == (State.START, "")
    v.begin_loading()


def test_a_stalled_folder_fails_with_what_it_lacks():
    v = _version()
    v.stalled("no manifest.json yet", 31.4)
    assert v.state is State.END and v.status.reason is Reason.STALLED
    assert v.status.error == ("/models/wine-quality/2: incomplete version folder: no "
                              "manifest.json yet; unchanged for 31 s (retried when the "
                              "folder changes)")
    v.wait("no manifest.json yet")  # it changed again: waited for again
    assert v.status.error == "" and v.status.waiting


def test_retiring_a_serving_version_drains_then_unloads():
    v = _available()
    assert v.retire(Reason.POLICY, "latest 1") is True
    s = v.status
    assert (s.state, s.model) == (State.UNLOADING, MODEL)  # in-flight requests finish
    assert s.detail == "unloading: the version policy is latest 1"
    assert s.why == "the version policy is latest 1"
    assert v.unloaded() is MODEL
    s = v.status
    assert (s.state, s.model, s.error) == (State.END, None, "")
    assert s.detail == "unloaded: the version policy is latest 1"
    assert s.load_seconds == 1.5  # what it took stays on record


def test_a_version_not_serving_is_not_served_at_once():
    v = _version()
    assert v.retire(Reason.POLICY, "specific 1") is False
    assert (v.state, v.status.detail) == (State.END, "not served: the version policy is specific 1")
    assert not v.removed
    v.begin_loading()  # the policy changed: it is wanted again
    assert v.state is State.LOADING


def test_a_removed_folder_is_remembered_and_the_version_dropped_once_end():
    v = _available()
    v.retire(Reason.FOLDER_REMOVED)
    assert v.removed and not v.gone
    assert v.status.detail == "unloading: its folder was removed"
    v.unloaded()
    assert v.gone and v.status.detail == "unloaded: its folder was removed"


def test_a_failed_version_keeps_its_error_when_retired():
    v = _version()
    v.begin_loading()
    v.failed("boom")
    assert v.retire(Reason.FOLDER_REMOVED) is False
    assert (v.state, v.status.error, v.removed, v.gone) == (State.END, "boom", True, True)


def test_retiring_a_draining_version_keeps_its_first_reason():
    v = _available()
    v.retire(Reason.POLICY, "latest 1")
    v.retire(Reason.FOLDER_REMOVED)
    assert v.state is State.UNLOADING and v.removed
    assert v.status.reason is Reason.POLICY


def test_admin_hold():
    v = _available()
    assert v.hold() is True
    assert (v.state, v.status.detail) == (State.UNLOADING, "unloaded by an administrator")
    v.unloaded()
    assert (v.state, v.status.detail) == (State.END, "unloaded by an administrator")
    assert v.status.why == "unloaded by an administrator"
    waiting = _version()
    waiting.wait("")
    assert waiting.hold() is False and waiting.status.waiting  # left waiting
    idle = _version()
    idle.hold()
    assert (idle.state, idle.status.reason) == (State.END, Reason.ADMIN_HOLD)


def test_files_changed_after_load_warn_while_it_serves():
    v = _available()
    v.changed_on_disk("model.joblib: SHA-256 mismatch")
    s = v.status
    assert (s.state, s.model, s.error) == (State.AVAILABLE, MODEL, "")
    assert s.detail == ("files changed on disk after loading: model.joblib: SHA-256 "
                        "mismatch; still serving the copy verified at load, a reload "
                        "would refuse it")
    assert v.verified_again() is True
    assert v.status.detail == ""
    assert v.verified_again() is False


@pytest.mark.parametrize("make, transition", [
    (_version, lambda v: v.loaded(MODEL, 1.0, 1.0)),
    (_version, lambda v: v.failed("boom")),
    (_version, lambda v: v.unloaded()),
    (_version, lambda v: v.changed_on_disk("x")),
    (_available, lambda v: v.begin_loading()),
    (_available, lambda v: v.wait("")),
    (_available, lambda v: v.ready()),
    (_available, lambda v: v.stalled("x", 60)),
    (_available, lambda v: v.unloaded()),
])
def test_illegal_transitions_raise_and_change_nothing(make, transition):
    v = make()
    before = v.status
    with pytest.raises(IllegalTransition, match=f"from {before.state}"):
        transition(v)
    assert v.status is before


def test_a_not_served_version_is_not_retried_as_if_it_had_failed():
    v = _version()
    v.retire(Reason.POLICY, "latest 1")
    with pytest.raises(IllegalTransition, match="not retried"):
        v.ready()


def test_only_retirement_reasons_retire():
    with pytest.raises(ValueError, match="not a reason"):
        _available().retire(Reason.FAILED)


def test_snapshots_are_immutable_and_survive_transitions():
    v = _version()
    before = v.status
    v.begin_loading()
    assert before.state is State.START and v.status.state is State.LOADING
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.status.state = State.END  # type: ignore[misc]
    assert isinstance(v.status, VersionStatus)
