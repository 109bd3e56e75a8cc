"""Accessibility of every console page, checked by axe-core (vendored for the tests
only, tools/vendor_assets.sh) against WCAG 2 A and AA, on a desktop and a phone screen;
and every control reachable with the keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import loaded, open_page

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
PAGES = ["/ui", "/ui/models/wine-quality", "/ui/models/digits", "/ui/models/housing",
         "/ui/draw/digits", "/ui/live"]
SCREENS = {"desktop": {"viewport": {"width": 1280, "height": 800}},
           "phone": {"viewport": {"width": 390, "height": 844}, "has_touch": True,
                     "is_mobile": True}}


@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.parametrize("path", PAGES)
def test_no_wcag_a_or_aa_violations(browser, server, problems, path, screen):
    # bypass_csp: axe is injected as an inline script, which the pages' CSP refuses.
    context, page = open_page(browser, server.url, problems, bypass_csp=True,
                              **SCREENS[screen])
    try:
        page.goto(path)
        loaded(page)
        page.wait_for_load_state("networkidle")
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})")
        violations = [f"{v['id']} ({v['impact']}): {v['help']}: "
                      + "; ".join(n["target"][0] for n in v["nodes"][:3])
                      for v in result["violations"]]
        assert not violations, "\n".join(violations)
    finally:
        context.close()
    assert not problems.unexpected(), "\n".join(problems.unexpected())


def test_every_control_of_the_catalog_is_reachable_with_tab(page):
    page.goto("/ui")
    loaded(page)
    # Each visible control, named by its markup; Tab must land on every one of them (the
    # scrollable regions are focusable too, so a count alone would not prove it).
    describe = "e => e.outerHTML.slice(0, 160)"
    controls = page.evaluate(f"""() => [...document.querySelectorAll(
        'a[href], button, input, select, textarea')].filter(e => e.offsetParent !== null)
        .map({describe})""")
    assert len(controls) > 8
    reached = set()
    for _ in range(len(controls) + 20):
        page.keyboard.press("Tab")
        reached.add(page.evaluate(f"() => document.activeElement && ({describe})"
                                  "(document.activeElement)"))
    missed = [c for c in controls if c not in reached]
    assert not missed, missed
