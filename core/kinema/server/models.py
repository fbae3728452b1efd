"""The server's ``GET /v1/models``: backends and pulled models it can run (``model`` values for ``POST /v1/videos``)."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter

from kinema import models as model_store
from kinema.engine import get_backends
from kinema.server.errors import error_responses
from kinema.server.schemas import ModelList


def models_router() -> APIRouter:
    router = APIRouter()

    @router.get("/models", response_model=ModelList, tags=["kinema"], responses=error_responses())
    def list_models() -> dict:
        """Backends and pulled models this server can run (``model`` values for ``POST /v1/videos``)."""
        return {"object": "list", "data": model_list()}

    return router


def model_list() -> list[dict]:
    registry = get_backends()
    aliases: dict[int, list[str]] = {}
    for name, backend in registry.items():
        aliases.setdefault(id(backend), []).append(name)
    rows, seen = [], set()
    for backend in registry.values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        try:
            status = backend.status()
            ready, detail = status.ready, status.detail
        except Exception as error:  # a broken plugin must not break the list
            ready, detail = False, f"status failed: {type(error).__name__}: {error}"
        rows.append(
            {
                "id": backend.name,
                "backend": backend.name,
                "ready": ready,
                "detail": detail,
                "description": backend.description,
                "aliases": aliases[id(backend)][1:],
            }
        )
    with contextlib.suppress(Exception):
        for model in model_store.pulled():
            lowered = model.lower()
            family = "ltx2" if "ltx" in lowered else "wan" if "wan" in lowered else ""
            rows.append(
                {
                    "id": model,
                    "backend": family,
                    "ready": True,
                    "detail": "downloaded",
                    "description": "a model pulled with `kinema models pull`",
                    "aliases": [],
                }
            )
    return rows
