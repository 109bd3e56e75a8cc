"""The catalog page (/ui) in a real browser, against the shared test server."""

from __future__ import annotations

from tests.browser.conftest import loaded
from tests.conftest import MODELS


def test_the_catalog_lists_every_model_and_version_with_its_state(page, client):
    page.goto("/ui")
    loaded(page)
    catalog = client.get("/ui/api/catalog").json()
    assert {m["name"] for m in catalog["models"]} == {p.name for p in MODELS.iterdir()
                                                      if p.is_dir()}
    for model in catalog["models"]:
        section = page.get_by_role("region", name=model["name"])
        assert section.get_by_role("link", name=model["name"]).get_attribute("href") == \
            f"/ui/models/{model['name']}"
        table = section.get_by_role("table")
        for v in model["versions"]:
            row = table.get_by_role("row").filter(has=page.get_by_role(
                "rowheader", name=f"v{v['version']}"))
            assert v["state"] in row.inner_text()
            assert v["serving"]["engine"] in row.inner_text()
    page.get_by_role("link", name="Draw a digit").first.wait_for()
