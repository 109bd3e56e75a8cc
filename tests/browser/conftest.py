"""The console in a real headless Chromium (Debian's package, driven by Playwright).

Every page a test opens is watched: a console error, an uncaught exception, a failed
request, a response >= 400 or any request leaving the server's origin fails the test at
teardown, unless the test allowed that one message (``problems.allow``)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
# Generous: the suite shares two cores with the server; nothing here is a timing test.
TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    configured = os.environ.get("MODELSERVE_CHROMIUM")
    if configured:
        return configured
    for path in CHROMIUM_PATHS:
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


# Per module, not per session: Playwright's sync API runs an event loop on this thread
# while it is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (make install)")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: `make test-tools` installs Debian's chromium package")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path)
        yield browser
        browser.close()


class Problems:
    """What went wrong in the page, as readable lines; ``allow`` a pattern a test provokes
    on purpose (e.g. the console error Chromium prints for a 401)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def add(self, line: str) -> None:
        self.seen.append(line)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [line for line in self.seen if not any(p.search(line) for p in self.allowed)]


def open_page(browser, base_url: str, problems: Problems, **context_args):
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    context = browser.new_context(base_url=base_url, **context_args)
    context.set_default_timeout(TIMEOUT_MS)

    def guard(route) -> None:
        url = route.request.url
        if url.startswith(origin) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            problems.add(f"off-origin request: {url}")
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.add(
        f"console error: {m.text} ({m.location.get('url', '')})"))
    page.on("pageerror", lambda e: problems.add(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.add(
        f"request failed: {r.method} {r.url}: {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and problems.add(
        f"HTTP {r.status}: {r.request.method} {r.url}"))
    return context, page


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser, server, problems) -> Iterator:
    """A fresh page on the shared test server, checked for problems at teardown."""
    context, page = open_page(browser, server.url, problems)
    yield page
    context.close()
    assert not problems.unexpected(), "\n".join(problems.unexpected())


@pytest.fixture
def phone(browser, server, problems) -> Iterator:
    """The same on a phone-sized touch screen."""
    context, page = open_page(browser, server.url, problems,
                              viewport={"width": 390, "height": 844}, has_touch=True,
                              is_mobile=True, device_scale_factor=2)
    yield page
    context.close()
    assert not problems.unexpected(), "\n".join(problems.unexpected())


def loaded(page) -> None:
    """Wait until the page's script has rendered its data (``main[data-loaded]``)."""
    page.locator("main[data-loaded='true']").wait_for(timeout=TIMEOUT_MS)
