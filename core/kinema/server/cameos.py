"""The server's cameo endpoints (``/v1/cameos``): create from an upload, list, permissions, revoke, uses, delete.

Every call acts as the API key's user (see ``kinema.server.users``). Only a cameo's
owner can change it, see its uses or delete it; others see only the cameos
they may use, and a cameo they may not use answers 404 as if it did not exist.
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from kinema.cameo import challenge as challenges
from kinema.cameo import store as cameo_lib
from kinema.cameo.capture import CaptureError
from kinema.cameo.make import make_cameo
from kinema.cameo.store import SERVER_OWNER, USER_PATTERN
from kinema.cameo.verify import VerificationError
from kinema.server.dependencies import cameo_store, current_user, job_manager
from kinema.server.errors import APIError, BodyTooLarge, error_responses
from kinema.server.jobs import VIDEO_FILE, JobManager
from kinema.server.schemas import CAMEO_REF_PATTERN, NAME_PATTERN, VIDEO_ID_PATTERN
from kinema.storyboard.cache import ShotCache

MAX_UPLOAD_BYTES = 200 * 2**20  # a cameo recording: a few seconds of phone video
CHUNK = 1 << 20


# A kinema user (kinema.cameo.store.check_identity): a user name, or the server's owner.
USER_NAME_PATTERN = f"^(?:{SERVER_OWNER}|{USER_PATTERN.pattern[1:-1]})$"
EXPIRY_DURATION = r"^[0-9]+(\.[0-9]+)? *[dhm]$"
UserName = Annotated[str, Field(pattern=USER_NAME_PATTERN)]
# When a cameo stops being usable: a Unix time, a date, a date and time, or a duration from now; null: never.
Expiry = float | datetime.datetime | datetime.date | Annotated[str, Field(pattern=EXPIRY_DURATION)]


class CameoPermissions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    permission: Literal["only_me", "listed", "everyone"] | None = None
    add_users: list[UserName] = Field(default_factory=list, description="Users who may use it (implies 'listed').")
    remove_users: list[UserName] = Field(default_factory=list)
    expires: Expiry | None = Field(
        None, description="A date, a Unix time, a duration like '30d', null for never; omit to keep the current one."
    )
    voice: bool | None = Field(
        None, description="Whether others may make it speak (its voice, or new lines in it); omit to keep it."
    )
    remote: bool | None = Field(
        None, description="Whether it may be sent to another server (a remote:NAME backend); omit to keep it."
    )


class CameoRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[UserName] = Field(
        default_factory=list, description="Revoke only these users; empty: everyone, at once."
    )


async def _save_upload(upload: UploadFile, folder: Path, name: str) -> Path:
    suffix = Path(upload.filename or "").suffix[:10] or ".bin"
    path = folder / f"{name}{suffix}"
    total = 0
    with open(path, "wb") as out:
        while chunk := await upload.read(CHUNK):
            total += len(chunk)
            if total > MAX_UPLOAD_BYTES:
                raise APIError(
                    413,
                    f"{name} is larger than the limit of {MAX_UPLOAD_BYTES // 2**20} MiB ({MAX_UPLOAD_BYTES} bytes);"
                    " send a shorter recording (3-10 s is plenty)",
                    param=name,
                    code="upload_too_large",
                )
            out.write(chunk)
    return path


async def run_make_cameo(folder: Path, *args: Any, **kwargs: Any) -> tuple[cameo_lib.Cameo, Any]:
    """``make_cameo`` in a thread, its refusals as API errors: ``challenge_<reason>`` (403 for another user's
    challenge, 404 for an unknown one, 409 for one used or expired), ``cameo_<reason>`` (400) for a capture or a
    verification that failed."""
    try:
        return await run_in_threadpool(make_cameo, *args, **kwargs)
    except challenges.ChallengeError as error:
        # No such challenge is a 404 like any unknown id; one used up or expired cannot be used in its state.
        status = {"not_yours": 403, "unknown": 404}.get(error.reason, 409)
        kind = "permission_error" if status == 403 else "invalid_request_error"
        raise APIError(status, str(error), type=kind, param="challenge", code=f"challenge_{error.reason}") from None
    except (CaptureError, VerificationError) as error:
        raise APIError(
            400, str(error).replace(str(folder) + "/", ""), param=error.source, code=f"cameo_{error.reason}"
        ) from None


router = APIRouter(tags=["cameos"], responses=error_responses(403, 409))
User = Depends(current_user)
Store = Depends(cameo_store)
Name = Annotated[
    str,
    PathParameter(
        pattern=CAMEO_REF_PATTERN,
        description="The cameo's name, e.g. 'alice' (yours first, else one shared with you), or its id: char_ID.",
    ),
]


def visible(store: cameo_lib.CameoStore, name: str, user: str) -> cameo_lib.Cameo:
    """The cameo ``name`` means for ``user`` (``CameoStore.resolve``) if they own it or may use it now; otherwise
    it does not exist for them."""
    try:
        cameo = store.resolve(name, user)
    except cameo_lib.CameoNotFoundError:
        raise APIError(404, f"no cameo named {name!r}", code="cameo_not_found", param="name") from None
    if cameo.owner != user and not cameo.may_use(user)[0]:
        raise APIError(404, f"no cameo named {name!r}", code="cameo_not_found", param="name")
    return cameo


def row(cameo: cameo_lib.Cameo, user: str) -> dict[str, Any]:
    usable, reason, _ = cameo.may_use(user)
    return {"object": "cameo", "id": cameo.id, **cameo.public(), "usable": usable, "status": reason}


form_schema = {
    "type": "object",
    "required": ["name", "video"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "1-40 lowercase letters, digits, - or _ (e.g. alice)",
        },
        "video": {
            "type": "string",
            "format": "binary",
            "description": "the person alone, facing the camera, 3-10 s",
        },
        "audio": {"type": "string", "format": "binary", "description": "optional: the person talking, 3 s or more"},
        "challenge": {
            "type": "string",
            "pattern": challenges.ID_PATTERN.pattern,
            "description": "the id from POST /v1/cameos/challenge whose phrase the video shows the person saying",
        },
        "permission": {"type": "string", "enum": ["only_me", "listed", "everyone"]},
        "allowed_users": {
            "type": "string",
            "pattern": f"^ *(?:{USER_NAME_PATTERN[1:-1]}(?: *, *{USER_NAME_PATTERN[1:-1]})*)? *$",
            "description": "comma-separated kinema user names",
        },
        "expires": {
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time"},
                {"type": "string", "pattern": EXPIRY_DURATION},
            ],
            "description": "a date (2026-01-31), a time, or a duration from now (30d, 12h, 90m)",
        },
    },
}


@router.post(
    "/cameos",
    status_code=201,
    responses=error_responses(413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": form_schema,
                    "encoding": {"video": {"contentType": "video/*"}, "audio": {"contentType": "audio/*"}},
                }
            },
        }
    },
)
async def create_cameo(request: Request, user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Create a cameo from a multipart upload: ``name``, ``video`` (file), optional ``audio`` (file),
    ``challenge`` (the id whose phrase the video shows the person saying: verifies the cameo),
    ``permission``, ``allowed_users`` (comma-separated or repeated), ``expires``."""
    try:
        form = await request.form(max_files=2, max_fields=32, max_part_size=1024 * 1024)
    except BodyTooLarge:
        raise
    except Exception as error:  # malformed multipart, or not multipart at all
        raise APIError(
            400, f"send multipart/form-data with name and a video file: {error}", code="invalid_body"
        ) from None
    name = form.get("name")
    video = form.get("video")
    audio = form.get("audio")
    if not isinstance(name, str) or not name:
        raise APIError(400, "name is required (e.g. 'alice')", param="name", code="missing_required_parameter")
    if not isinstance(video, UploadFile):
        raise APIError(
            400,
            "video is required: a file of the person alone, facing the camera, 3-10 s",
            param="video",
            code="missing_required_parameter",
        )
    cameo_lib.check_name(name)
    allowed = [
        u.strip()
        for value in form.getlist("allowed_users")
        if isinstance(value, str)
        for u in value.split(",")
        if u.strip()
    ]
    permission = form.get("permission") or ("listed" if allowed else "only_me")
    challenge = form.get("challenge")
    folder = Path(tempfile.mkdtemp(prefix="kinema-cameo-upload-"))
    try:
        video_path = await _save_upload(video, folder, "video")
        audio_path = await _save_upload(audio, folder, "audio") if isinstance(audio, UploadFile) else None
        made, _ = await run_make_cameo(
            folder,
            name,
            user,
            video_path,
            audio_path,
            challenge=challenge if isinstance(challenge, str) and challenge else None,
            store=store,
            permission=str(permission),
            allowed_users=tuple(allowed),
            expires=form.get("expires") or None,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**row(made, user), "capture": {**made.capture}}


@router.post("/cameos/challenge", status_code=201)
def issue_challenge(user: str = User) -> dict:
    """A one-time phrase for you to say on camera while recording a cameo: valid a few minutes, once, for you.
    Send its ``id`` as ``challenge`` with the recording (``POST /v1/cameos``, or ``/v1/videos/characters``)."""
    return challenges.issue(user).public()


@router.get("/cameos")
def list_cameos(user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Cameos you own or may use now (for hosts' cameo pickers)."""
    rows = [r for r in store.list(user) if "error" not in r]  # a damaged record proves no owner
    return {"object": "list", "data": [{"object": "cameo", **r} for r in rows]}


@router.get("/cameos/{name}")
def get_cameo(name: Name, user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    cameo = visible(store, name, user)
    info = row(cameo, user)
    if cameo.owner == user:
        info["capture"] = cameo.capture
    return info


@router.get("/cameos/{name}/reference", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def cameo_reference(name: Name, user: str = User, store: cameo_lib.CameoStore = Store) -> Response:
    """The cameo's best portrait (PNG), for pickers."""
    cameo = visible(store, name, user)
    store.get(cameo.id)  # the picture shown must be the one consented to
    return Response((cameo.directory / cameo.references[0]).read_bytes(), media_type="image/png")


@router.post("/cameos/{name}/permissions")
def set_permissions(name: Name, body: CameoPermissions, user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Who may use it (owner only). Also lifts a revoke."""
    options: dict[str, Any] = {}
    if "expires" in body.model_fields_set:
        options["expires"] = body.expires.isoformat() if isinstance(body.expires, datetime.date) else body.expires
    made = store.allow(
        name,
        user,
        permission=body.permission,
        add_users=tuple(body.add_users),
        remove_users=tuple(body.remove_users),
        voice=body.voice,
        remote=body.remote,
        **options,
    )
    return row(made, user)


@router.post("/cameos/{name}/revoke")
def revoke(name: Name, body: CameoRevoke | None = None, user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Withdraw consent (owner only): queued and running jobs using it fail."""
    made = store.revoke(name, user, users=tuple(body.users) if body else ())
    return row(made, user)


@router.get("/cameos/{name}/uses")
def uses(
    name: Name, user: str = User, store: cameo_lib.CameoStore = Store, manager: JobManager = Depends(job_manager)
) -> dict:
    """Every clip made with it (owner only); ``saved_to`` names the server's videos by id, and other files by
    their file name only (where the server keeps files is not the client's business)."""
    return {"object": "list", "data": [_public_use(entry, manager) for entry in store.uses(name, user)]}


class CameoTakedown(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video: Annotated[str, Field(pattern=VIDEO_ID_PATTERN, description="The id of a video made with the cameo.")]
    reason: Annotated[str, Field(min_length=1, max_length=500, description="Why; its maker is told.")] = (
        "the person shown did not agree to it"
    )


def _server_videos(entries: list[dict[str, Any]], manager: JobManager) -> dict[str, dict[str, Any]]:
    """The server's videos among the uses' saved files: video id -> what the cameo's owner may know of it."""
    jobs = manager.directory.resolve()
    videos: dict[str, dict[str, Any]] = {}
    for entry in entries:
        for place in entry.get("saved_to") or ():
            path = Path(str(place))
            if path.parent.parent != jobs or path.name != VIDEO_FILE:
                continue
            video = videos.setdefault(
                path.parent.name,
                {
                    "object": "cameo.video",
                    "id": path.parent.name,
                    "made_by": entry.get("user"),
                    "prompt": entry.get("prompt"),
                    "created_at": entry.get("at"),
                    "uses": [],
                },
            )
            video["uses"].append(entry["use"])
            if entry.get("taken_down"):
                video["taken_down"] = entry["taken_down"][-1]
    for video_id, video in videos.items():
        record = manager.get(video_id)
        if record is None:
            video["status"] = "deleted"
        elif record.get("taken_down_at") is not None:
            video["status"] = "taken_down"
            video["taken_down"] = {
                "at": record["taken_down_at"],
                "reason": record["takedown_reason"],
                "takedown": video_id,
            }
        else:
            video["status"] = record["status"]
    return videos


@router.get("/cameos/{name}/videos")
def cameo_videos(
    name: Name, user: str = User, store: cameo_lib.CameoStore = Store, manager: JobManager = Depends(job_manager)
) -> dict:
    """Every video on this server made with your cameo (owner only), whoever made it: what you may take down."""
    videos = _server_videos(store.uses(name, user), manager)
    return {"object": "list", "data": sorted(videos.values(), key=lambda v: v.get("created_at") or 0)}


@router.post("/cameos/{name}/takedowns")
def take_down(
    name: Name,
    body: CameoTakedown,
    user: str = User,
    store: cameo_lib.CameoStore = Store,
    manager: JobManager = Depends(job_manager),
) -> dict:
    """Take down a video made with your cameo (owner only): its maker gets 410 ``taken_down`` with your reason,
    everyone else 404; it can no longer be downloaded, remixed, extended or edited; shots of it kept in the shot
    cache are deleted; the takedown is written to the cameo's use log. Copies already downloaded keep their
    provenance."""
    video = _server_videos(store.uses(name, user), manager).get(body.video)
    if video is None or video["status"] == "deleted":
        # 409, not 404: the cameo is there; the video is not one of its (GET /v1/cameos/{name}/videos lists those).
        raise APIError(
            409,
            f"no video {body.video!r} on this server was made with your cameo {name!r}; GET /v1/cameos/{name}/videos"
            " lists those that were",
            param="video",
            code="not_made_with_cameo",
        )
    if video["status"] == "taken_down":
        raise APIError(409, f"video {body.video!r} is already taken down", param="video", code="already_taken_down")
    uses = list(dict.fromkeys(video["uses"]))
    # The log first: if the server stops between the two, the record of the takedown is what survives.
    store.log_takedown(name, user, clip=body.video, uses=uses, maker=video["made_by"], reason=body.reason)
    manager.take_down(body.video, name, body.reason)
    purged = ShotCache(limit_bytes=0).purge_uses(set(uses))
    return {
        "object": "cameo.takedown",
        "cameo": name,
        "video": body.video,
        "made_by": video["made_by"],
        "reason": body.reason,
        "shots_purged": len(purged),
    }


def _public_use(entry: dict[str, Any], manager: JobManager) -> dict[str, Any]:
    jobs = manager.directory.resolve()
    saved = []
    for place in entry.get("saved_to") or ():
        path = Path(str(place))
        inside = path.parent.parent == jobs and path.name == VIDEO_FILE
        saved.append(path.parent.name if inside else path.name)
    return {**entry, "saved_to": saved}


@router.delete("/cameos/{name}")
def delete(name: Name, user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Delete it and every file of it (owner only)."""
    store.delete(name, user)
    return {"object": "cameo.deleted", "id": name, "deleted": True}
