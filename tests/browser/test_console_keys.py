"""The console on a server with API and admin keys: it asks for a key before any keyed
call, sends it as a Bearer header, says clearly when it is refused, and offers the
admin actions behind a confirmation."""

from __future__ import annotations

import pytest

from tests.browser.conftest import loaded, open_page
from tests.conftest import MODELS, running

API_KEY, ADMIN_KEY = "console-api-key-123", "console-admin-key-456"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    env = {"MODELSERVE_API_KEYS": API_KEY, "MODELSERVE_ADMIN_KEYS": ADMIN_KEY}
    with running(MODELS.resolve(), tmp_path_factory.mktemp("keyed"), env) as srv:
        yield srv


@pytest.fixture
def keyed_page(browser, keyed, problems):
    context, page = open_page(browser, keyed.url, problems)
    yield page
    context.close()
    assert not problems.unexpected(), "\n".join(problems.unexpected())


def _enter(page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def test_the_console_asks_for_a_key_before_any_keyed_call(keyed_page, keyed):
    page = keyed_page
    calls = []
    page.on("request", lambda r: "/ui/api/" in r.url and calls.append(
        (r.url, r.headers.get("authorization"))))
    page.goto("/ui")
    page.get_by_label("API key").wait_for()
    assert "needs an API key" in page.locator("#status").inner_text()
    assert [url for url, _ in calls] == [keyed.url + "/ui/api/config"]
    _enter(page, API_KEY)
    loaded(page)
    page.get_by_role("region", name="wine-quality").wait_for()
    catalog = [auth for url, auth in calls if url.endswith("/ui/api/catalog")]
    assert catalog == [f"Bearer {API_KEY}"]
    assert all(API_KEY not in url for url, _ in calls)  # never in a URL
    # The key stays for the tab's other pages, and can be forgotten.
    page.goto("/ui/models/housing")
    loaded(page)
    page.get_by_role("button", name="Predict").click()
    page.locator("#answer[data-answered='1']").wait_for()
    page.get_by_role("button", name="Forget key").click()
    page.get_by_label("API key").wait_for()
    assert API_KEY not in keyed.log_text() and ADMIN_KEY not in keyed.log_text()


def test_a_wrong_key_is_refused_with_a_clear_message(keyed_page, problems):
    problems.allow(r"status of 401")  # Chromium's console line for the refused call
    problems.allow(r"HTTP 401: GET .*/ui/api/catalog")
    page = keyed_page
    page.goto("/ui")
    _enter(page, "not-a-key")
    page.get_by_role("alert").wait_for()
    assert "The key was not accepted: The API key is not valid." in \
        page.get_by_role("alert").inner_text()
    _enter(page, API_KEY)  # and it recovers with the right one
    loaded(page)
    page.get_by_role("region", name="digits").wait_for()


def test_admin_actions_need_the_admin_key_and_a_confirmation(keyed_page, keyed, problems):
    problems.allow(r"status of 403")
    problems.allow(r"HTTP 403: POST .*/v2/repository/models/housing/unload")
    page = keyed_page
    page.goto("/ui")
    _enter(page, API_KEY)
    loaded(page)
    housing = page.get_by_role("region", name="housing")
    housing.get_by_role("button", name="Unload housing").click()
    dialog = page.get_by_role("dialog")
    assert "Unload housing?" in dialog.inner_text()
    dialog.get_by_role("button", name="Cancel").click()
    assert page.get_by_role("dialog").count() == 0
    housing.get_by_role("button", name="Unload housing").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("That needs an admin key").wait_for()
    # With the admin key: unload, then load again.
    page.get_by_role("button", name="Forget key").click()
    _enter(page, ADMIN_KEY)
    page.get_by_role("region", name="housing").wait_for()
    page.get_by_role("region", name="housing").get_by_role("button", name="Unload housing").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("housing: unloaded.").wait_for()
    page.get_by_role("region", name="housing").get_by_text("Not ready").wait_for()
    housing = page.get_by_role("region", name="housing")
    housing.get_by_role("button", name="Load housing", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    page.get_by_text("housing: loaded.").wait_for()
