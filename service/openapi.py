"""OpenAPI document with a working example request for every served model.

The examples come from the manifests' samples, so they are real inputs the model
answered at training time. The schema is built once the repository has settled.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service import security
from service.protocols import v2
from service.repository import Repository


def _examples(repository: Repository, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in repository.names():
        try:
            available = repository.view(name).available
        except Exception:  # removed since names() was read
            continue
        model = available[0].model if available else None
        if model is None:
            continue
        m, sample = model.manifest, model.manifest.samples[0].inputs
        if path.endswith(":predict"):
            value: Any = {"instances": [sample]}
        elif model.signature.tabular and ((path.endswith(":classify") and m.labels)
                                          or (path.endswith(":regress") and m.target)):
            value = {"examples": [sample]}
        elif path.endswith("/infer"):
            value = {"id": "example", "inputs": v2.example_inputs(model)}
        else:
            continue
        out[name] = {"summary": f"{name} (set name = {name})", "value": value}
    return out


def install(app: FastAPI, repository: Repository, *, secured: bool = False) -> None:
    """``secured`` (API or admin keys configured): the schema is open to read, so it
    carries no per-model examples (no model names) and declares the two ways to send a
    key, which Swagger UI's "Authorize" button then fills in."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        for path, operations in schema["paths"].items():
            post = operations.get("post")
            examples = _examples(repository, path) if post and not secured else {}
            if examples:
                post["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"type": "object"}, "examples": examples}}}
        if secured:
            _declare_keys(schema)
        if repository.settled:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_keys(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "Authorization: Bearer <key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    schema["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, operations in schema["paths"].items():
        if path in security.OPEN_PATHS:
            for operation in operations.values():
                operation["security"] = []  # probes stay open
