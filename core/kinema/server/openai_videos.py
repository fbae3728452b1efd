"""OpenAI's video edits and extensions (``POST /v1/videos/edits``, ``POST /v1/videos/extensions``): the source
video is uploaded, or named by id (``{"id": ...}``; in the SDK's forms ``video[id]``).

An edit is kinema's remix and an extension kinema's extend, run by the same job tasks as
``/v1/videos/{id}/remix`` and ``/v1/videos/{id}/extend`` (``kinema.server.tasks``). An uploaded video is kept in
the job's folder and checked against the limits a generated one meets: readable, each side and the length within
what a request may ask, and the generation it needs planned (so within the backend's limits) before it is queued.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.datastructures import UploadFile

from kinema.cameo import store as cameo_lib
from kinema.cameo.challenge import ID_PATTERN as CHALLENGE_ID
from kinema.cameo.store import NAME_PATTERN as NAME
from kinema.cameo.store import CameoStore
from kinema.media.files import MediaError, probe
from kinema.request import MAX_SECONDS, MAX_SIDE, MIN_SIDE
from kinema.server.cameos import run_make_cameo, visible
from kinema.server.dependencies import cameo_store, default_backend, job_manager
from kinema.server.errors import APIError, error_responses, hide_paths, validation_response, video_not_found
from kinema.server.hosted import fit_seconds
from kinema.server.jobs import JobManager
from kinema.server.schemas import VIDEO_ID_PATTERN, FollowUpParams, Prompt, Seconds, Video, as_form
from kinema.server.tasks import UPLOADED
from kinema.server.video_requests import parse_seconds, queue_follow_up, read_create_body, resolve_model

MAX_VIDEO_UPLOAD_BYTES = 200 * 2**20  # as a cameo recording (kinema.server.cameos.MAX_UPLOAD_BYTES)
CHUNK = 1 << 20

router = APIRouter()
Manager = Depends(job_manager)
DefaultBackend = Depends(default_backend)


class VideoReference(BaseModel):
    """A finished video of yours, by id."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=VIDEO_ID_PATTERN, description="The id of one of your completed videos.")]


class VideoEditParams(FollowUpParams):
    """OpenAI's edit: the video redone to follow ``prompt`` (kinema's remix, with its ``strength`` and ``keep_audio``)."""

    prompt: Prompt = Field(description="What the edited clip shows and sounds like.")
    video: VideoReference | None = Field(None, description="The video to edit (or upload it as the form's video).")
    strength: float = Field(
        0.6, gt=0, le=1, description="How far to move from the source: near 0 keeps it, 1 keeps only its length."
    )
    keep_audio: StrictBool = Field(False, description="Keep the source's sound instead of making new sound.")


class VideoExtensionParams(FollowUpParams):
    """OpenAI's extension: the video plus ``seconds`` of new footage, as one clip (kinema's extend)."""

    prompt: Prompt = Field(description="What happens next.")
    seconds: Seconds = Field(description="Seconds of new footage (the hosted API: 4, 8, 12, 16 or 20).")
    video: VideoReference | None = Field(None, description="The video to extend (or upload it as the form's video).")


def _request_body(params: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route that reads JSON or a multipart form with a ``video`` file itself."""
    schema = _inline(params.model_json_schema())
    form = as_form(schema, f"{schema['title']}Form")
    form["required"] = [name for name in schema.get("required", []) if name != "video"] + ["video"]
    form["properties"]["video"] = {
        "type": "string",
        "format": "binary",
        "description": "An MP4 (or another video PyAV reads).",
    }
    # JSON cannot carry an upload: there the video is named by id, and required.
    schema["required"] = [*schema.get("required", []), "video"]
    video = schema["properties"]["video"]
    video.update(next(choice for choice in video.pop("anyOf") if choice.get("type") != "null"))
    video.pop("default", None)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": schema},
                "multipart/form-data": {"schema": form, "encoding": {"video": {"contentType": "video/*"}}},
            },
        }
    }


def _inline(schema: dict) -> dict:
    """``schema`` with its ``$defs`` written where they are used (a route's own body, not a shared component)."""
    defs = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return expand(defs[ref[len("#/$defs/") :]])
            return {key: expand(value) for key, value in node.items()}
        if isinstance(node, list):
            return [expand(item) for item in node]
        return node

    return expand(schema)


async def _read(request: Request, params: type[BaseModel]) -> tuple[Any, UploadFile | None] | JSONResponse:
    fields, upload = await read_create_body(request, "video", "the video")
    try:
        parsed = params.model_validate(fields)
    except ValidationError as error:
        return validation_response(error.errors(), prefix=())
    given = (upload is not None) + (parsed.video is not None)  # type: ignore[attr-defined]
    if given != 1:
        raise APIError(
            400,
            'send the video either as an upload (the form\'s video file) or by id ({"id": "video_..."}), once',
            param="video",
            code="missing_required_parameter" if given == 0 else "invalid_value",
        )
    return parsed, upload


def finished_video(manager: JobManager, video_id: str, caller: str) -> dict:
    """The caller's completed video ``video_id`` (404 for an unknown or another user's, 409 for an unfinished one)."""
    record = manager.find(video_id, caller)
    if record is None:
        raise APIError(404, video_not_found(video_id).message, param="video", code="not_found")
    if record["status"] != "completed":
        raise APIError(
            409,
            f"video {video_id!r} is {record['status']}; only a completed video can be edited or extended",
            param="video",
            code="video_not_ready",
        )
    return record


async def save_video_upload(upload: UploadFile, folder: Path) -> Path:
    """The upload written to ``folder``, at most ``MAX_VIDEO_UPLOAD_BYTES``."""
    path = folder / "video.mp4"
    total = 0
    with open(path, "wb") as out:
        while chunk := await upload.read(CHUNK):
            total += len(chunk)
            if total > MAX_VIDEO_UPLOAD_BYTES:
                raise APIError(
                    413,
                    f"video is larger than the limit of {MAX_VIDEO_UPLOAD_BYTES // 2**20} MiB",
                    param="video",
                    code="upload_too_large",
                )
            out.write(chunk)
    return path


def check_uploaded_video(path: Path) -> Any:
    """Probe an uploaded video; 400 unless it is one a request could have made (sides, length)."""
    try:
        info = probe(path)
    except MediaError as error:
        message = hide_paths(str(error), path, path.parent).replace("<kinema data>", "the video")
        raise APIError(400, f"cannot read the uploaded video: {message}", param="video", code="invalid_video") from None
    if not (MIN_SIDE <= info.width <= MAX_SIDE and MIN_SIDE <= info.height <= MAX_SIDE):
        raise APIError(
            400,
            f"the uploaded video is {info.width}x{info.height}; each side must be {MIN_SIDE} to {MAX_SIDE} px",
            param="video",
            code="limit_exceeded",
        )
    if info.frame_count < 1 or info.video_duration > MAX_SECONDS:
        raise APIError(
            400,
            f"the uploaded video lasts {info.video_duration:g} s with {info.frame_count} frames; send one frame to"
            f" {MAX_SECONDS:g} s",
            param="video",
            code="limit_exceeded",
        )
    return info


async def _queue(
    request: Request,
    manager: JobManager,
    backend_default: str,
    params: Any,
    upload: UploadFile | None,
    task: dict,
    prompt: str,
    fit: Any = None,
) -> dict:
    """Queue the task on the uploaded video or the one named by id; ``fit(backend, fps)`` -> (task changes, notes)."""
    caller = request.state.kinema_user
    parent = None if params.video is None else finished_video(manager, params.video.id, caller)
    folder = None
    try:
        if upload is not None:
            folder = Path(tempfile.mkdtemp(prefix=".upload-", dir=manager.directory))
            source = await save_video_upload(upload, folder)
            info = await run_in_threadpool(check_uploaded_video, source)
            task = {**task, "parent": UPLOADED}
        else:
            source, info = None, None
            task = {**task, "parent": parent["id"]}  # type: ignore[index]
        notes: tuple[str, ...] = ()
        if fit is not None:
            if parent is not None and params.model is None and params.backend is None:
                backend = parent["backend"]
            else:
                backend = (await run_in_threadpool(resolve_model, params.model, params.backend, backend_default))[0]
            fps = float(info.fps if info is not None else Fraction(parent["plan"]["fps"]))  # type: ignore[index]
            changes, notes = await run_in_threadpool(fit, backend, fps)
            task = {**task, **changes}
        return await queue_follow_up(
            manager, backend_default, params, prompt, task, parent, owner=caller, source_video=source, notes=notes
        )
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@router.post(
    "/videos/edits",
    response_model=Video,
    tags=["videos"],
    responses=error_responses(409, 410, 413, 415),
    openapi_extra=_request_body(VideoEditParams),
)
async def edit_video(
    request: Request, manager: JobManager = Manager, backend_default: str = DefaultBackend
) -> dict | JSONResponse:
    """A new video: the given one redone to follow ``prompt`` (OpenAI ``videos.edit``; kinema's remix)."""
    read = await _read(request, VideoEditParams)
    if isinstance(read, JSONResponse):
        return read
    params, upload = read
    task = {"kind": "remix", "strength": params.strength, "keep_audio": params.keep_audio}
    return await _queue(request, manager, backend_default, params, upload, task, params.prompt)


@router.post(
    "/videos/extensions",
    response_model=Video,
    tags=["videos"],
    responses=error_responses(409, 410, 413, 415),
    openapi_extra=_request_body(VideoExtensionParams),
)
async def extend_video(
    request: Request, manager: JobManager = Manager, backend_default: str = DefaultBackend
) -> dict | JSONResponse:
    """A new video: the given one followed by ``seconds`` of new footage, as one clip (OpenAI ``videos.extend``;
    kinema's extend). Its ``seconds`` is the whole clip's; a length beyond what the backend makes in one
    generation is its longest (``kinema.notes`` says so)."""
    read = await _read(request, VideoExtensionParams)
    if isinstance(read, JSONResponse):
        return read
    params, upload = read
    seconds = parse_seconds(params.seconds) or 0.0  # the schema requires it, above 0

    def fit(backend_name: str, fps: float) -> tuple[dict, tuple[str, ...]]:
        from kinema.engine import get_backends

        backend = get_backends()[backend_name]
        fitted, note = fit_seconds(backend, seconds, fps, context_frames=backend.max_start_frames)
        return {"seconds": fitted}, (note,) if note else ()

    task = {"kind": "extend", "seconds": seconds, "prompt_given": True}
    return await _queue(request, manager, backend_default, params, upload, task, params.prompt, fit)


# --------------------------------------------------------------------------- characters (kinema's cameos)

CHARACTER_PREFIX = cameo_lib.ID_PREFIX
# @alice in a prompt: a character by name (yours first, else one shared with you); @char_ID by its id.
MENTION = re.compile(r"(?<![\w@])@((?:char_)?[a-z0-9][a-z0-9_-]{0,39})")


def character(cameo: Any) -> dict:
    """A cameo as OpenAI's character (``VideoCreateCharacterResponse``), with kinema's consent detail: its id is
    global (``char_`` and the cameo's id), its name unique among its owner's."""
    return {
        "id": cameo_lib.character_id(cameo),
        "object": "character",
        "created_at": int(cameo.created_at),
        "name": cameo.name,
        "kinema": {
            "owner": cameo.owner,
            "permission": cameo.permission,
            "has_voice": cameo.voice is not None,
            "verified": cameo.verified,
        },
    }


def cameo_name(display_name: str) -> str:
    """The cameo name for a character's display name: lowercase, spaces and other signs as '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", display_name.strip().lower()).strip("-_")[:40]
    if not NAME.fullmatch(name):
        raise APIError(
            400,
            f"name {display_name[:64]!r} has no letters or digits to name the character by",
            param="name",
            code="invalid_value",
        )
    return name


def characters_in(fields: dict, store: CameoStore, user: str) -> tuple[str, ...]:
    """The cameos a create request names as characters: ``characters`` (ids, or ``{"id": ...}``; extra_body) and
    ``@name`` or ``@char_ID`` in the prompt, as ``char_ID`` each. Removes ``characters`` from ``fields``; 400
    naming one that does not exist (or is not visible to ``user``) or a name several cameos shared with ``user``
    answer to, 403 for one ``user`` may not use."""
    given = fields.pop("characters", None)
    single = fields.pop("characters[][id]", None)
    items = ([given] if isinstance(given, (str, dict)) else list(given or ())) + ([single] if single else [])
    names = []
    for item in items:
        ident = item.get("id") if isinstance(item, dict) else item
        if not isinstance(ident, str) or not ident.startswith(CHARACTER_PREFIX):
            raise APIError(400, f"characters: {str(ident)[:64]!r} is not a character id (char_...)", param="characters")
        names.append((ident, ident, "characters"))
    prompt = fields.get("prompt")
    if isinstance(prompt, str):
        names += [(m, f"@{m}", "prompt") for m in MENTION.findall(prompt)]
    found: dict[str, None] = {}
    for ref, shown, param in names:
        try:
            cameo = store.resolve(ref, user) if cameo_lib.REF_PATTERN.fullmatch(ref) else None
        except cameo_lib.CameoNotFoundError:
            cameo = None
        except cameo_lib.CameoAmbiguousError as error:
            raise APIError(400, f"{shown[:64]}: {error}", param=param, code="character_ambiguous") from None
        if cameo is None or (cameo.owner != user and cameo.permission == "only_me"):
            raise APIError(400, f"unknown character {shown[:64]!r}", param=param, code="character_not_found")
        allowed, reason, why = cameo.may_use(user)
        if not allowed:
            raise APIError(403, why, type="permission_error", param=param, code=f"cameo_{reason}")
        found[cameo_lib.character_id(cameo)] = None
    return tuple(found)


@router.post(
    "/videos/characters",
    tags=["videos"],
    responses=error_responses(403, 409, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["name", "video"],
                        "properties": {
                            # a letter or digit to name the character's cameo by (cameo_name)
                            "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "[A-Za-z0-9]"},
                            "video": {"type": "string", "format": "binary"},
                            # kinema's: the challenge the video shows the person saying (extra_body)
                            "challenge": {"type": "string", "pattern": CHALLENGE_ID.pattern},
                        },
                        "additionalProperties": False,
                    },
                    "encoding": {"video": {"contentType": "video/*"}},
                }
            },
        }
    },
)
async def create_character(request: Request, store: CameoStore = Depends(cameo_store)) -> dict:
    """A character from a video of one person, alone, facing the camera (OpenAI ``videos.create_character``): a
    cameo owned by the caller, usable by them only until they widen it (``POST /v1/cameos/{name}/permissions``).
    kinema's ``challenge`` (in ``extra_body``: the id from ``POST /v1/cameos/challenge`` whose phrase the video
    shows the person saying) verifies it; without one it stays unverified, its owner's alone."""
    fields, upload = await read_create_body(request, "video", "the video")
    display = fields.get("name")
    if not isinstance(display, str) or not display.strip():
        raise APIError(400, "name is required (e.g. 'Alice')", param="name", code="missing_required_parameter")
    if upload is None:
        raise APIError(400, "video is required: a file of one person", param="video", code="missing_required_parameter")
    unknown = sorted(set(fields) - {"name", "challenge"})
    if unknown:
        raise APIError(400, f"unknown parameter {unknown[0][:64]!r}", param=unknown[0][:64], code="invalid_value")
    challenge = fields.get("challenge")
    if challenge is not None and not isinstance(challenge, str):
        raise APIError(400, "challenge must be a challenge id (chl_...)", param="challenge", code="invalid_value")
    name = cameo_name(display)
    folder = Path(tempfile.mkdtemp(prefix="kinema-character-"))
    try:
        path = await save_video_upload(upload, folder)
        made, _ = await run_make_cameo(
            folder, name, request.state.kinema_user, path, challenge=challenge or None, store=store
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return character(made)


@router.get("/videos/characters/{character_id}", tags=["videos"], responses=error_responses())
def get_character(
    character_id: Annotated[str, PathParameter(max_length=80)],
    request: Request,
    store: CameoStore = Depends(cameo_store),
) -> dict:
    """A character you own or may use (OpenAI ``videos.get_character``), by its id (``char_`` and the cameo's id)."""
    name = character_id[len(CHARACTER_PREFIX) :] if character_id.startswith(CHARACTER_PREFIX) else ""
    if not NAME.fullmatch(name):
        raise APIError(404, f"no character with id {character_id[:64]!r}", param="character_id", code="not_found")
    try:
        cameo = visible(store, character_id, request.state.kinema_user)
    except APIError:
        raise APIError(
            404, f"no character with id {character_id[:64]!r}", param="character_id", code="not_found"
        ) from None
    return character(cameo)
