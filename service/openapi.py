"""OpenAPI document with a working example request for every served model.

The examples come from the manifests' samples, so they are real inputs the model
answered at training time. The schema is built once the repository has settled.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.model import LoadedModel
from service.repository import Repository


def _named(model: LoadedModel) -> dict[str, float]:
    return dict(zip(model.signature.feature_names, model.manifest.samples[0].inputs,
                    strict=True))


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
        tabular = model.signature.tabular
        if path.endswith(":predict"):
            value: Any = {"instances": [_named(model) if tabular else sample]}
        elif tabular and ((path.endswith(":classify") and m.labels)
                          or (path.endswith(":regress") and m.target)):
            value = {"examples": [_named(model)]}
        elif path.endswith("/infer"):
            flat = [v for row in sample for v in row] if not tabular else sample
            value = {"id": "example", "inputs": [{"name": m.inputs.name, "datatype": "FP32",
                                                  "shape": [1, *m.inputs.shape[1:]],
                                                  "data": flat}]}
        else:
            continue
        out[name] = {"summary": f"{name} (set name = {name})", "value": value}
    return out


def install(app: FastAPI, repository: Repository) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        for path, operations in schema["paths"].items():
            post = operations.get("post")
            examples = _examples(repository, path) if post else {}
            if examples:
                post["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"type": "object"}, "examples": examples}}}
        if repository.settled:
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
