"""``/docs`` (Swagger UI) and ``/redoc`` with their scripts served from the package
(``static/vendor/``, written by ``tools/vendor_assets.sh``): they work without internet."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse

from service.console.assets import url

router = APIRouter(include_in_schema=False)

OAUTH2_REDIRECT = "/docs/oauth2-redirect"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{request.app.title} - Swagger UI",
        swagger_js_url=url("vendor/swagger-ui-bundle.js"),
        swagger_css_url=url("vendor/swagger-ui.css"),
        swagger_favicon_url=url("icon.svg"),
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # No call to swagger.io's online validator.
        swagger_ui_parameters={"validatorUrl": None})


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - ReDoc",
                          redoc_js_url=url("vendor/redoc.standalone.js"),
                          redoc_favicon_url=url("icon.svg"), with_google_fonts=False)
