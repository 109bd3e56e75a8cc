"""Write the README's console screenshots (docs/images/console-*.png) from a real server
on the committed models. A script, not a test:

    .venv/bin/python -m tests.browser.screenshots

The drawing pad's screenshot is written by tests/browser/test_console_draw.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import chromium_path, loaded
from tests.conftest import MODELS, ROOT, running

OUT = ROOT / "docs" / "images"


def main() -> None:
    with tempfile.TemporaryDirectory() as logs, running(MODELS.resolve(), Path(logs)) as srv, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path())
        page = browser.new_page(base_url=srv.url, viewport={"width": 1280, "height": 900})
        page.goto("/ui")
        loaded(page)
        page.screenshot(path=OUT / "console-catalog.png")
        page.goto("/ui/models/wine-quality")
        loaded(page)
        page.get_by_label("alcohol").fill("15.5")  # past the training range: flagged
        page.get_by_role("button", name="Predict").click()
        page.locator("#answer[data-answered='1']").wait_for()
        page.get_by_role("heading", name="Try it").scroll_into_view_if_needed()
        page.locator("details.snippets summary").click()
        page.set_viewport_size({"width": 1280, "height": 1400})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=OUT / "console-model.png")
        browser.close()
    print(f"wrote {OUT}/console-catalog.png and console-model.png")


if __name__ == "__main__":
    main()
