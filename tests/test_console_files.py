"""The console's files and cards over HTTP: versioned assets, the vendored docs bundles,
model cards and their plots (and what is refused), the page shells' headers."""

from __future__ import annotations

import hashlib

import pytest

from service.console.assets import STATIC, table

VENDOR = STATIC / "vendor"


def test_the_vendored_docs_bundles_are_the_checked_ones_and_name_no_cdn():
    sums = dict(line.split()[::-1] for line in (VENDOR / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js",
                         "redoc-logo-mini.svg"}
    for name, digest in sums.items():
        data = (VENDOR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert b"https://cdn." not in data, name


def test_assets_are_served_versioned_and_immutable(client):
    asset = table()["common.js"]
    r = client.get(f"/ui/assets/common.js?v={asset.version}")
    assert r.status_code == 200 and r.content == asset.path.read_bytes()
    assert r.headers["content-type"].startswith("text/javascript")
    assert "immutable" in r.headers["cache-control"]
    assert client.get("/ui/assets/common.js").headers["cache-control"] == "no-cache"
    for path in ("/ui/assets/nope.js", "/ui/assets/../pages.py", "/ui/assets/%2e%2e/api.py",
                 "/ui/assets/vendor/SHA256SUMS"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), path


def test_pages_carry_a_strict_content_security_policy(client):
    for path in ("/ui", "/ui/models/digits", "/ui/draw/digits", "/ui/live"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert "/ui/assets/" in r.text and "https://" not in r.text


def test_a_card_is_rendered_safely_with_its_plots(client):
    r = client.get("/ui/api/models/digits/versions/2/card")
    assert r.status_code == 200
    card = r.json()
    assert card["plots"] == ["confusion_matrix.png", "learning_curves.png"]
    assert "<h1>digits — version 2</h1>" in card["html"]
    assert '<img data-file="confusion_matrix.png"' in card["html"]
    assert "<table>" in card["html"]


def test_a_cards_raw_html_and_script_links_are_not_passed_through(tmp_path):
    from service.console import card

    (tmp_path / "MODEL_CARD.md").write_text(
        "# x\n\n<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
        "![plot](../secret.png) ![plot](plot.png)\n")
    (tmp_path / "plot.png").write_bytes(card.PNG_MAGIC + b"rest")
    html = card.render(tmp_path)["html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "href" not in html  # the javascript: link stays text
    assert '<img data-file="plot.png"' in html
    assert "../secret.png" not in html and '<span class="missing-plot">[plot]</span>' in html


@pytest.mark.parametrize("file, status, words", [
    ("confusion_matrix.png", 200, None),
    ("manifest.json", 400, "not a plot name"),
    ("..%2Fmanifest.json", 404, "No endpoint"),
    ("nope.png", 404, "no file 'nope.png'"),
    (".png", 400, "not a plot name"),
])
def test_plots_only_for_pngs_in_the_version_folder(client, file, status, words):
    r = client.get(f"/ui/api/models/digits/versions/2/files/{file}")
    assert r.status_code == status, r.text
    if status == 200:
        assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    else:
        assert words in r.json()["error"]


def test_cards_of_unknown_models_and_versions_are_404(client):
    assert client.get("/ui/api/models/nope/versions/1/card").status_code == 404
    assert client.get("/ui/api/models/digits/versions/99/card").status_code == 404
    r = client.get("/ui/api/models/digits/versions/x/card")
    assert r.status_code == 400 and "Version must be a positive integer" in r.json()["error"]


def test_the_catalog_says_what_the_console_shows(client):
    models = {m["name"]: m for m in client.get("/ui/api/catalog").json()["models"]}
    digits = models["digits"]
    assert digits["input_kind"] == "image" and digits["ready"]
    v2 = next(v for v in digits["versions"] if v["version"] == 2)
    assert v2["state"] == "AVAILABLE" and v2["load_seconds"] > 0
    assert v2["headline"] == {"metric": "accuracy", "value": 0.9911}
    assert v2["serving"]["engine"] == "numpy-conv"
    housing = next(v for v in models["housing"]["versions"] if v["version"] == 2)
    assert housing["headline"]["metric"] == "r2"
    deciles = housing["prediction_deciles"]
    assert len(deciles) == 9 and deciles == sorted(deciles)
    config = client.get("/ui/api/config").json()
    assert config["api_keys"] is False and config["admin_keys"] is False
