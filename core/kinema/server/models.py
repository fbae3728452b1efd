"""The server's models: ``GET /v1/models`` (backends, and the models they load, with licences and whether they are
on this machine) and ``/v1/models/pulls`` (downloading one, with its licence accepted, and its progress)."""

from __future__ import annotations

import contextlib
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from kinema import licences
from kinema import models as model_store
from kinema.cameo.store import SERVER_OWNER
from kinema.engine import get_backends
from kinema.errors import LicenceNotAcceptedError
from kinema.server.errors import APIError, error_responses
from kinema.server.pulls import ModelPulls, embedded
from kinema.server.schemas import ErrorDetail
from kinema.server.security import authorize

# Which backend runs a pulled model, from its name (what video_requests assumes too).
FAMILIES = (("ltx", "ltx2"), ("wan", "wan"))


# The shapes of these routes (the published OpenAPI schema's names: renaming one renames a schema).


class ModelLicence(BaseModel):
    """A model's licence as kinema knows it (``kinema.licences.listing``); the model card (``url``) is the authority."""

    known: bool = Field(description="Whether kinema's licence table (or the record of the model's pull) knows it.")
    name: str | None = Field(description="The licence's own name, SPDX where there is one; null when not known.")
    family: str | None = Field(description="The model family the licence covers; null when not known.")
    restricted: bool | None = Field(
        description="Whether it limits commercial use (a revenue threshold, non-commercial only, a required credit);"
        " null when not known: read the model card."
    )
    terms: str | None = Field(description="What it allows and forbids, in one line; null when not known.")
    must_accept: bool = Field(description="Whether POST /v1/models/pulls needs accept_license true for it.")
    url: str | None = Field(description="The model card, where the full terms are; null for kinema's embedded models.")
    summary: str = Field(description="One line for a user: what `kinema models list` prints.")
    accepted: bool | None = Field(
        description="For a pulled model, whether its licence was accepted at the pull; else null."
    )


class ModelInfo(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "kinema"
    backend: str
    ready: bool
    detail: str
    description: str
    aliases: list[str]
    role: Literal["backend", "model", "component"] = Field(
        description="backend: a backend's name; model: a pipeline a job may name as its model; component: weights"
        " a backend loads beside its model (wan's sound model), pulled but never named in a job."
    )
    installed: bool = Field(description="Whether its weights are on the server's machine (embedded ones always are).")
    licence: ModelLicence | None = Field(
        description="The licence of its weights (a backend's: its default model's); null when kinema cannot say"
        " (a remote backend, a plugin without a default model)."
    )
    requires: list[str] = Field(
        description="Model ids to pull (POST /v1/models/pulls) before this can run; empty when nothing is missing"
        " or nothing can be pulled."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


# A model id on the Hugging Face Hub: owner/name, letters, digits, '_', '-' and single dots (never '..').
HUB_PART_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.?"
HUB_ID_PATTERN = f"^{HUB_PART_PATTERN}/{HUB_PART_PATTERN}$"


class ModelPullRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(pattern=HUB_ID_PATTERN, max_length=200)] = Field(
        description="The model to download, a Hugging Face Hub id such as Lightricks/LTX-2 (safetensors only)."
    )
    accept_license: StrictBool = Field(
        description="That the user was shown the model's licence (GET /v1/models, its licence) and accepts it;"
        " a licence with must_accept is refused (403 licence_not_accepted) without true, before any download."
    )
    revision: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$")] | None = Field(
        default=None, description="A branch, tag or commit; the default branch when null."
    )


class ModelPull(BaseModel):
    object: Literal["model.pull"] = "model.pull"
    model: str
    revision: str | None
    status: Literal["queued", "downloading", "completed", "failed"]
    progress: float | None = Field(
        description="0 to 1 while it downloads, 1 when completed; null until the download knows its size."
    )
    downloaded_bytes: int | None = Field(description="Bytes received so far; null while only files are counted.")
    total_bytes: int | None = Field(description="Bytes to receive in all; null until known.")
    created_at: int
    completed_at: int | None
    error: ErrorDetail | None = Field(description="Why it failed, in one line with what to do; null otherwise.")
    licence: ModelLicence


class ModelPullList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelPull]


def server_pulls(request: Request) -> ModelPulls:
    """The app's downloads, made on first use; paused (queued, never run) when its job workers are paused."""
    state = request.app.state
    with _made:
        if getattr(state, "model_pulls", None) is None:
            state.model_pulls = ModelPulls(paused=not getattr(state.manager, "start_workers", True))
        return state.model_pulls


_made = threading.Lock()


def models_router() -> APIRouter:
    router = APIRouter()

    @router.get("/models", response_model=ModelList, tags=["kinema"], responses=error_responses())
    def list_models() -> dict:
        """Backends and models: ``model`` values for ``POST /v1/videos``, each with its licence and whether its
        weights are here, and the models the backends load that can be pulled (``POST /v1/models/pulls``)."""
        return {"object": "list", "data": model_list()}

    @router.post(
        "/models/pulls",
        response_model=ModelPull,
        status_code=202,
        tags=["kinema"],
        responses={
            200: {"model": ModelPull, "description": "A pull of this model was already under way: that one."},
            **error_responses(403),
        },
    )
    def pull_model(
        body: ModelPullRequest,
        response: Response,
        user: str = Depends(authorize),
        pulls: ModelPulls = Depends(server_pulls),
    ) -> dict:
        """Download a model into the server's model folder, in the background; poll
        ``GET /v1/models/pulls/{owner}/{name}`` for its progress. Only the server's owner (its API key, or no key
        on loopback) may pull. A licence that restricts use needs ``accept_license: true`` (403 otherwise, before
        any download); kinema's embedded models (``kinema/...``) are never downloaded."""
        if user != SERVER_OWNER:
            raise APIError(
                403,
                "only the server's owner may download models: ask them to run"
                f" `{licences.pull_command(body.model)}` on the server",
                type="permission_error",
                code="owner_only",
            )
        if embedded(body.model):
            if not model_store.is_present(body.model) and body.model not in _embedded_models():
                raise APIError(
                    404,
                    f"no model {body.model}: kinema/ names kinema's embedded models, which are never downloaded",
                    param="model",
                    code="model_not_found",
                )
            response.status_code = 200
            return _built_in(body.model)
        try:
            pull, new = pulls.start(body.model, revision=body.revision, accept_license=body.accept_license)
        except LicenceNotAcceptedError:
            licence = licences.licence_for(body.model)
            raise APIError(
                403,
                f"{body.model} is under the {licence.name if licence else 'licence on its model card'}, which restricts"
                f" its use: show it (GET /v1/models, its licence; {licences.card_url(body.model)}) and pull again with"
                " accept_license true once it is accepted",
                type="permission_error",
                param="accept_license",
                code="licence_not_accepted",
            ) from None
        if not new:
            response.status_code = 200
        return pull.as_dict()

    @router.get("/models/pulls", response_model=ModelPullList, tags=["kinema"], responses=error_responses())
    def list_pulls(pulls: ModelPulls = Depends(server_pulls)) -> dict:
        """The pulls this server has run since it started, oldest first."""
        return {"object": "list", "data": [pull.as_dict() for pull in pulls.all()]}

    @router.get("/models/pulls/{owner}/{name}", response_model=ModelPull, tags=["kinema"], responses=error_responses())
    def get_pull(
        pulls: ModelPulls = Depends(server_pulls),
        owner: str = Path(pattern=f"^{HUB_PART_PATTERN}$", max_length=100),
        name: str = Path(pattern=f"^{HUB_PART_PATTERN}$", max_length=100),
    ) -> dict:
        """One pull's progress (404 when this server has not pulled that model since it started)."""
        pull = pulls.get(f"{owner}/{name}")
        if pull is None:
            raise APIError(404, f"no pull of {owner}/{name} on this server", param="model", code="pull_not_found")
        return pull.as_dict()

    return router


def _embedded_models() -> set[str]:
    return {model for backend in get_backends().values() for model in _weights(backend)}


def _built_in(model: str) -> dict:
    """The answer to a pull of an embedded model: nothing to download, already there."""
    from kinema.server.pulls import Pull

    pull = Pull(model, None, True, status="completed")
    pull.completed_at = pull.created_at
    return pull.as_dict()


def _weights(backend) -> list[str]:
    """The model ids a backend loads by default: its model, and its sound model where it has one of its own."""
    names = [getattr(backend, "default_model", None), getattr(backend, "default_audio_model", None)]
    return [name for name in names if isinstance(name, str) and name]


def _missing(names: list[str]) -> list[str]:
    return [name for name in names if not embedded(name) and not model_store.is_present(name)]


def model_list() -> list[dict]:
    registry = get_backends()
    aliases: dict[int, list[str]] = {}
    for name, backend in registry.items():
        aliases.setdefault(id(backend), []).append(name)
    rows, seen = [], set()
    hub_models: dict[str, tuple[str, str]] = {}  # model id -> (backend, role) of models backends load
    for backend in registry.values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        try:
            status = backend.status()
            ready, detail = status.ready, status.detail
        except Exception as error:  # a broken plugin must not break the list
            ready, detail = False, f"status failed: {type(error).__name__}: {error}"
        weights = _weights(backend)
        for index, model in enumerate(weights):
            if not embedded(model):
                hub_models.setdefault(model, (backend.name, "model" if index == 0 else "component"))
        missing = _missing(weights)
        rows.append(
            {
                "id": backend.name,
                "backend": backend.name,
                "ready": ready,
                "detail": detail,
                "description": backend.description,
                "aliases": aliases[id(backend)][1:],
                "role": "backend",
                "installed": not missing if weights else ready,
                "licence": licences.listing(weights[0]) if weights else None,
                "requires": missing,
            }
        )
    pulled: list[str] = []
    with contextlib.suppress(Exception):
        pulled = model_store.pulled()
    for model in sorted(set(pulled) | set(hub_models)):
        lowered = model.lower()
        family = next((backend for word, backend in FAMILIES if word in lowered), "")
        runs_on, role = hub_models.get(model, (family, "model"))
        here = model in pulled
        folder = model_store.local_dir_for(model) if here else None
        rows.append(
            {
                "id": model,
                "backend": runs_on,
                "ready": here,
                "detail": "downloaded" if here else model_store.missing_detail(model),
                "description": "a model pulled with `kinema models pull`"
                if here and model not in hub_models
                else f"the {'sound model' if role == 'component' else 'model'} {runs_on} loads by default",
                "aliases": [],
                "role": role,
                "installed": here,
                "licence": licences.listing(model, folder),
                "requires": [] if here else [model],
            }
        )
    return rows
