"""/docs and /redoc render the API's operations with no request leaving the server (the
page fixture aborts and reports any off-origin request)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path, operation", [
    ("/docs", ".opblock"),  # Swagger UI: one block per operation
    ("/redoc", "[data-section-id^='operation/']"),  # ReDoc: one section per operation
])
def test_the_api_docs_render_their_operations_offline(page, client, path, operation):
    page.goto(path)
    page.locator(operation).first.wait_for()
    operations = len(client.get("/openapi.json").json()["paths"])
    assert page.locator(operation).count() >= operations
