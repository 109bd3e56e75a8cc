"""The drawing pad page (/ui/draw/{name}) in a real browser: digits drawn with a mouse and
with a finger, an upload, the model's own input echoed back, and a model without images."""

from __future__ import annotations

import base64
import io
import itertools
import math

import pytest
from PIL import Image, ImageDraw

from tests.browser.conftest import loaded

Point = tuple[float, float]

# Digits as strokes in pad fractions (0..1 across, 0..1 down).
ONE = [[(0.52, 0.15), (0.48, 0.85)]]
SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.42, 0.85)]]
ZERO = [[(0.5 + 0.22 * math.sin(t / 24 * 2 * math.pi), 0.5 - 0.33 * math.cos(t / 24 * 2 * math.pi))
         for t in range(25)]]
FOUR = [[(0.6, 0.15), (0.25, 0.6), (0.78, 0.6)], [(0.6, 0.3), (0.6, 0.88)]]
DIGITS = {"1": ONE, "7": SEVEN, "0": ZERO, "4": FOUR}


def pad_box(page) -> dict[str, float]:
    pad = page.locator("canvas.pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    assert box is not None
    return box


def to_page(box: dict[str, float], point: Point) -> Point:
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def answered(page) -> int:
    return int(page.locator("#content").get_attribute("data-answered") or 0)


def wait_answer(page, after: int) -> str:
    """The label shown by the next answer (the counter passing ``after``)."""
    page.locator(f"#content[data-answered='{after + 1}']").wait_for()
    return page.locator("#label").inner_text().strip()


def draw_with_mouse(page, strokes: list[list[Point]]) -> int:
    """Draw, and return the answer count as the last stroke began: a stroke's start drops
    every answer on its way, so the next answer after that count is for the whole drawing
    (read earlier, a stale answer could pass it; read later, the new one could)."""
    box = pad_box(page)
    before = 0
    for stroke in strokes:
        page.mouse.move(*to_page(box, stroke[0]))
        page.mouse.down()
        before = answered(page)
        for point in stroke[1:]:
            page.mouse.move(*to_page(box, point), steps=6)
        page.mouse.up()
    return before


def draw_with_finger(page, strokes: list[list[Point]]) -> int:
    """``draw_with_mouse`` with a finger on a touch screen."""
    box = pad_box(page)
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, point: Point | None) -> None:
        points = [] if point is None else [dict(zip("xy", to_page(box, point), strict=True))]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    before = 0
    for stroke in strokes:
        touch("touchStart", stroke[0])
        before = answered(page)
        for a, b in itertools.pairwise(stroke):
            for i in range(1, 7):
                touch("touchMove", (a[0] + (b[0] - a[0]) * i / 6, a[1] + (b[1] - a[1]) * i / 6))
        touch("touchEnd", None)
    cdp.detach()
    return before


def pad_png(page) -> bytes:
    url = page.evaluate("() => document.querySelector('canvas.pad').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def api_label(client, png: bytes) -> str:
    r = client.post("/v1/models/digits:predict_image", files={"file": ("pad.png", png,
                                                                       "image/png")})
    assert r.status_code == 200, r.text
    return r.json()["label"]


def open_pad(page) -> None:
    page.goto("/ui/draw/digits")
    loaded(page)
    assert page.title() == "Draw a digit · digits · modelserve"


@pytest.mark.parametrize("digit", ["1", "7", "0", "4"])
def test_a_digit_drawn_with_the_mouse_is_classified_as_the_api_does(page, client, digit):
    open_pad(page)
    before = draw_with_mouse(page, DIGITS[digit])
    # No click: the pad classifies by itself once the last stroke ends.
    label = wait_answer(page, before)
    assert label == digit
    assert api_label(client, pad_png(page)) == digit
    assert f"{digit}: " in page.locator("svg.bars").get_attribute("aria-label")
    assert "Predicted " + digit in page.get_by_role("status").inner_text()
    assert "null" not in page.locator("section.answer").inner_text()


def test_the_answer_shows_the_image_the_model_received(page):
    open_pad(page)
    wait_answer(page, draw_with_mouse(page, SEVEN))
    levels = page.evaluate("""() => {
        const seen = document.getElementById('seen');
        const data = seen.getContext('2d').getImageData(0, 0, seen.width, seen.height).data;
        const grays = [];
        for (let i = 0; i < data.length; i += 4) grays.push(data[i]);
        return { width: seen.width, height: seen.height,
                 ink: grays.filter((g) => g > 128).length,
                 dark: grays.filter((g) => g < 32).length };
    }""")
    assert (levels["width"], levels["height"]) == (28, 28)
    # Light ink on a dark ground, as the model takes it: some of each, mostly ground.
    assert 20 < levels["ink"] < levels["dark"], levels


def test_a_digit_drawn_with_a_finger_is_classified(phone, client):
    open_pad(phone)
    assert wait_answer(phone, draw_with_finger(phone, SEVEN)) == "7"
    assert api_label(client, pad_png(phone)) == "7"


def test_the_pad_draws_under_the_pointer_at_any_width(page):
    page.set_viewport_size({"width": 240, "height": 700})
    open_pad(page)
    box = pad_box(page)
    assert box["width"] < 240 and abs(box["width"] - box["height"]) < 1
    wait_answer(page, draw_with_mouse(page, [[(0.25, 0.3), (0.25, 0.7)]]))
    pad = Image.open(io.BytesIO(pad_png(page))).convert("L")
    assert pad.size == (280, 280)
    assert pad.getpixel((70, 140)) < 64  # a quarter across, in the pad's own pixels
    assert pad.getpixel((140, 140)) > 192


def test_an_uploaded_picture_is_classified(page):
    open_pad(page)
    picture = Image.new("L", (200, 240), 255)
    ImageDraw.Draw(picture).line([(50, 50), (150, 50), (85, 200)], fill=0, width=14,
                                 joint="curve")
    out = io.BytesIO()
    picture.save(out, "PNG")
    before = answered(page)
    page.get_by_label("Or upload a PNG or JPEG of a digit").set_input_files(
        files=[{"name": "seven.png", "mimeType": "image/png", "buffer": out.getvalue()}])
    assert wait_answer(page, before) == "7"
    page.get_by_text("For the upload “seven.png”").wait_for()


def test_a_blank_pad_is_not_sent_and_clear_empties_it(page):
    open_pad(page)
    page.get_by_role("button", name="Classify").click()
    page.get_by_role("status").filter(has_text="Draw a digit first.").wait_for()
    wait_answer(page, draw_with_mouse(page, ONE))
    page.get_by_role("button", name="Clear").click()
    assert Image.open(io.BytesIO(pad_png(page))).convert("L").getextrema() == (255, 255)
    page.get_by_role("button", name="Classify").click()
    page.get_by_role("status").filter(has_text="Draw a digit first.").wait_for()


def test_the_page_links_back_to_the_model_and_the_catalog(page):
    open_pad(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Draw a digit · digits"
    content = page.locator("#content")
    assert content.get_by_role("link", name="digits: the model's page").get_attribute(
        "href") == "/ui/models/digits"
    assert content.get_by_role("link", name="All models").get_attribute("href") == "/ui"
    pad = page.get_by_role("img", name="Drawing pad: draw one digit here")
    hint = page.locator(f"#{pad.get_attribute('aria-describedby')}")
    assert "upload a picture" in hint.inner_text().lower()


def test_a_model_without_image_input_says_so(page):
    page.goto("/ui/draw/housing")
    loaded(page)
    status = page.get_by_role("status")
    assert "'housing' does not take images" in status.inner_text()
    assert "error" in (status.get_attribute("class") or "")
    assert page.locator("canvas.pad").count() == 0
    assert page.locator("#content").get_by_role("link", name="housing's page").get_attribute(
        "href") == "/ui/models/housing"
