"""The live view (/ui/live) in a real browser, against the shared test server: tiles that
follow the service's own metrics, checked against ``/ui/api/live``."""

from __future__ import annotations

import re

import pytest

from service.loader import read_manifest
from tests.browser.conftest import TIMEOUT_MS, loaded
from tests.conftest import MODELS, eventually

NAME, VERSION = "wine-quality", "2"
KEY = f"{NAME}/{VERSION}"
MS = re.compile(r"^\d[\d,]*(\.\d+)? ms$")
PER_SECOND = re.compile(r"^(\d[\d,]*(\.\d+)?|\d\.\d+e[-+]\d+)/s$")

# Every update of the tile as the page rendered it: a MutationObserver on #main's
# data-updates runs before the next update can replace the text, so no update is missed
# however slowly the test itself runs.
RECORD = """key => {
  window.updates = [];
  const main = document.getElementById("main");
  new MutationObserver(() => {
    const tile = document.querySelector(`section[data-key="${key}"]`);
    const field = (name) => tile && tile.querySelector(`[data-field="${name}"]`).textContent;
    window.updates.push({ n: Number(main.dataset.updates), total: field("total"),
                          rate: field("rate"), errors: field("errors"), p50: field("p50") });
  }).observe(main, { attributes: true, attributeFilter: ["data-updates"] });
}"""


def _total(client) -> int:
    body = client.get("/ui/api/live").json()
    (entry,) = [v for v in body["versions"] if f"{v['model']}/{v['version']}" == KEY]
    return int(sum(entry.get("requests", {}).values()))


def _updates(page) -> int:
    return int(page.locator("#main").get_attribute("data-updates") or 0)


def _wait_updates_after(page, n: int) -> None:
    page.wait_for_function("n => Number(document.getElementById('main').dataset.updates) > n",
                           arg=n, timeout=TIMEOUT_MS)


def _total_shown(text: str) -> int:
    return int(text.split(" (")[0].replace(",", ""))


def test_a_tile_follows_predictions_and_errors_and_matches_the_api(page, client):
    page.goto("/ui/live")
    loaded(page)
    tile = page.get_by_role("region", name=f"{NAME} v{VERSION}")
    assert tile.get_by_role("link", name=f"{NAME} v{VERSION}").get_attribute("href") == \
        f"/ui/models/{NAME}"
    page.evaluate(RECORD, KEY)
    before = _total(client)

    body = {"instances": [s.inputs for s in read_manifest(MODELS / NAME / VERSION).samples]}
    for _ in range(3):
        r = client.post(f"/v1/models/{NAME}/versions/{VERSION}:predict", json=body)
        assert r.status_code == 200, r.text
    eventually(lambda: _total(client) == before + 3, what="the 3 predictions counted")
    # The error comes last and alone: the update that first shows it has it in its interval.
    r = client.post(f"/v1/models/{NAME}/versions/{VERSION}:predict",
                    json={"instances": [{"alcohol": 9.5}]})
    assert r.status_code == 400, r.text
    expected = before + 4
    eventually(lambda: _total(client) == expected, what="the bad request counted")

    page.wait_for_function(
        "total => window.updates.some(u => u.total && Number(u.total.split(' (')[0]"
        ".replaceAll(',', '')) === total)", arg=expected, timeout=TIMEOUT_MS)
    updates = page.evaluate("window.updates")
    first = next(u for u in updates if _total_shown(u["total"]) == expected)
    assert PER_SECOND.match(first["rate"]) and first["rate"] != "0/s", first
    assert PER_SECOND.match(first["errors"]) and first["errors"] != "0/s", first
    assert MS.match(first["p50"]), first
    assert first["total"].endswith("error)") or first["total"].endswith("errors)"), first

    # Paused, the page shows its last update; the API has seen nothing since.
    page.get_by_role("button", name="Pause").click()
    shown = _total_shown(tile.locator("[data-field='total']").inner_text())
    assert shown == _total(client) == expected
    assert "now" in (tile.get_by_role("img").get_attribute("aria-label") or "")


def test_pause_stops_updates_until_resumed(page, client):
    page.goto("/ui/live")
    loaded(page)
    _wait_updates_after(page, 1)  # a second snapshot: rates are shown from here on
    button = page.get_by_role("button", name="Pause")
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    resume = page.get_by_role("button", name="Resume")
    assert resume.get_attribute("aria-pressed") == "true"
    paused_at = _updates(page)
    clicked = page.evaluate("performance.now()")
    # Nothing to wait for when checking that nothing happens: let the page's own clock run
    # through three of its 2 s intervals.
    page.wait_for_function("t => performance.now() > t", arg=clicked + 6500, polling=250,
                           timeout=TIMEOUT_MS)
    assert _updates(page) == paused_at
    assert _live_requests_since(page, clicked) == 0
    assert "Paused" in page.locator("#status").inner_text()

    resume.click()
    assert page.get_by_role("button", name="Pause").get_attribute("aria-pressed") == "false"
    _wait_updates_after(page, paused_at)


def _live_requests_since(page, start: float) -> int:
    """Requests the page started for /ui/api/live after ``start`` (performance.now())."""
    return page.evaluate(
        "start => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/ui/api/live') && e.startTime > start).length", start)


# The page's own module (already loaded, so importing it again runs nothing twice).
MATH = """async ([src, calls]) => {
  const live = await import(src);
  return calls.map(([fn, ...args]) => live[fn](...args));
}"""


def test_the_rate_and_quantile_math(page):
    page.goto("/ui/live")
    loaded(page)
    src = page.locator("script[type='module']").get_attribute("src")
    prev = [[0.001, 2], [0.002, 2], [0.005, 4], [None, 4]]
    now = [[0.001, 2], [0.002, 12], [0.005, 24], [None, 26]]  # the interval: 0, 10, 10, 2
    deltas = [[0.001, 0], [0.002, 10], [0.005, 20], [None, 22]]
    got = page.evaluate(MATH, [src, [
        ["bucketDeltas", now, prev],
        ["histogramQuantile", 0.5, deltas],
        ["histogramQuantile", 0.25, deltas],
        ["histogramQuantile", 0.95, deltas],
        ["histogramQuantile", 0.5, [[0.001, 0], [None, 0]]],
        ["bucketDeltas", prev, now],  # smaller totals: a restart, the new totals are the interval
        ["intervalMean", {"sum": 20, "count": 6}, {"sum": 8, "count": 3}],
        ["versionStats", {"requests": {"200": 9, "503": 3}}, {"requests": {"200": 5}}, 2],
        ["worstFeature", {"alcohol": 0.08, "pH": 0.31, "density": 0.2}],
    ]])
    assert got[0] == deltas
    # rank 11 of 22 falls in (0.002, 0.005] holding ranks 11-20: its first tenth
    assert got[1]["value"] == pytest.approx(0.0023)
    # rank 5.5 in (0.001, 0.002] holding ranks 1-10
    assert got[2]["value"] == pytest.approx(0.00155)
    assert got[3] == {"above": 0.005}  # rank 20.9 is in +Inf
    assert got[4] is None
    assert got[5] == prev
    assert got[6] == pytest.approx(4.0)
    stats = got[7]
    assert stats["total"] == 12 and stats["errorsTotal"] == 3
    assert stats["requestsPerSecond"] == pytest.approx(3.5)
    assert stats["errorsPerSecond"] == pytest.approx(1.5)
    assert got[8] == {"name": "pH", "psi": 0.31}
