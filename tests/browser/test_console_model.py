"""The model page (/ui/models/{name}) in a real browser: the try-it form against the API,
range flags as you type, the card with its plots."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import loaded
from tests.conftest import MODELS

TABULAR = ["wine-quality", "housing", "auscultation"]


def _latest(name: str) -> int:
    return max(int(p.name) for p in (MODELS / name).iterdir() if p.name.isdigit())


@pytest.mark.parametrize("name", TABULAR)
def test_the_try_it_form_answers_what_the_api_answers(page, client, name):
    page.goto(f"/ui/models/{name}")
    loaded(page)
    version = _latest(name)
    with page.expect_request(lambda r: r.method == "POST" and ":predict" in r.url) as sent:
        page.get_by_role("button", name="Predict").click()
    request = sent.value
    assert request.url.endswith(f"/v1/models/{name}/versions/{version}:predict")
    body = json.loads(request.post_data)
    shown = page.locator("#answer[data-answered='1'] [data-answer]")
    shown.wait_for()
    # The same body, straight to the API.
    answer = client.post(f"/v1/models/{name}/versions/{version}:predict", json=body)
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["predictions"][0]
    if isinstance(prediction, dict):  # a classifier: label and its probability bars
        assert shown.get_attribute("data-answer") == prediction["label"]
        chart = page.locator("#answer svg.bars")
        for label, p in zip(client.get(f"/v1/models/{name}/metadata").json()["modelserve"]
                            ["labels"], prediction["probabilities"], strict=True):
            assert f"{label}: {p * 100:.1f}%" in chart.get_attribute("aria-label")
    else:  # a regressor: the value
        assert float(shown.get_attribute("data-answer")) == pytest.approx(prediction, rel=1e-6)
        assert "80% of this model's predictions" in page.locator("#answer").inner_text()
    # The snippets send what the page sent.
    curl = page.locator("code[data-snippet='curl']").text_content()
    sent_by_curl = curl.split(" -d '", 1)[1].rstrip().removesuffix("'").replace("'\\''", "'")
    assert json.loads(sent_by_curl) == body
    python = page.locator("code[data-snippet='python']").text_content()
    assert f'client.infer("{name}", [inp], model_version="{version}")' in python


def test_an_out_of_range_value_is_flagged_as_it_is_typed(page):
    page.goto("/ui/models/wine-quality")
    loaded(page)
    sent = []
    page.on("request", lambda r: ":predict" in r.url and sent.append(r.url))
    acidity = page.get_by_label("fixed acidity")
    assert acidity.get_attribute("aria-invalid") == "false"
    acidity.fill("25")
    assert acidity.get_attribute("aria-invalid") == "true"
    problem = page.locator("#" + acidity.get_attribute("aria-describedby").split()[1])
    assert "Outside the training range 4.6 \u2013 15.9" in problem.inner_text()
    acidity.fill("abc")
    assert problem.inner_text() == "Not a number."
    acidity.fill("7.4")
    assert acidity.get_attribute("aria-invalid") == "false" and problem.inner_text() == ""
    assert sent == []  # flagged in the page, before anything is sent


def test_the_model_card_is_shown_with_its_plots(page):
    page.goto("/ui/models/digits")
    loaded(page)
    card = page.locator(".card-body")
    card.get_by_role("heading", name="digits — version 2").wait_for()
    plots = card.locator("img[data-file]")
    assert plots.count() == 2
    for i in range(plots.count()):
        img = plots.nth(i)
        img.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                               arg=img.element_handle())
        assert img.get_attribute("src").startswith("blob:")
    # An image model is tried on the drawing page.
    assert page.get_by_role("link", name="draw a digit or upload a picture").get_attribute(
        "href") == "/ui/draw/digits"


def test_an_unknown_model_says_so(page):
    page.goto("/ui/models/no-such-model")
    loaded(page)
    assert 'There is no model named "no-such-model"' in page.locator("#status").inner_text()
