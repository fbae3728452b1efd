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

from kinema.cameo import store as cameo_lib
from kinema.cameo.capture import CaptureError, capture
from kinema.cameo.store import SERVER_OWNER, USER_PATTERN
from kinema.server.dependencies import cameo_store, current_user, job_manager
from kinema.server.errors import APIError, BodyTooLarge, error_responses
from kinema.server.jobs import VIDEO_FILE, JobManager
from kinema.server.schemas import NAME_PATTERN

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


router = APIRouter(tags=["cameos"], responses=error_responses(403, 409))
User = Depends(current_user)
Store = Depends(cameo_store)
Name = Annotated[str, PathParameter(pattern=NAME_PATTERN, description="The cameo's name, e.g. 'alice'.")]


def visible(store: cameo_lib.CameoStore, name: str, user: str) -> cameo_lib.Cameo:
    """The cameo if ``user`` owns it or may use it now; otherwise it does not exist for them."""
    try:
        cameo = store.get(name, verify_files=False)
    except cameo_lib.CameoNotFoundError:
        raise APIError(404, f"no cameo named {name!r}", code="cameo_not_found", param="name") from None
    if cameo.owner != user and not cameo.may_use(user)[0]:
        raise APIError(404, f"no cameo named {name!r}", code="cameo_not_found", param="name")
    return cameo


def row(cameo: cameo_lib.Cameo, user: str) -> dict[str, Any]:
    usable, reason, _ = cameo.may_use(user)
    return {"object": "cameo", "id": cameo.name, **cameo.public(), "usable": usable, "status": reason}


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
    folder = Path(tempfile.mkdtemp(prefix="kinema-cameo-upload-"))
    try:
        video_path = await _save_upload(video, folder, "video")
        audio_path = await _save_upload(audio, folder, "audio") if isinstance(audio, UploadFile) else None
        try:
            captured = await run_in_threadpool(capture, video_path, audio_path)
        except CaptureError as error:
            raise APIError(
                400, str(error).replace(str(folder) + "/", ""), param=error.source, code=f"cameo_{error.reason}"
            ) from None
        made = await run_in_threadpool(
            store.create,
            name,
            user,
            captured,
            permission=str(permission),
            allowed_users=tuple(allowed),
            expires=form.get("expires") or None,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**row(made, user), "capture": {**made.capture}}


@router.get("/cameos")
def list_cameos(user: str = User, store: cameo_lib.CameoStore = Store) -> dict:
    """Cameos you own or may use now (for hosts' cameo pickers)."""
    rows = [r for r in store.list(user) if "error" not in r]  # a damaged record proves no owner
    return {"object": "list", "data": [{"object": "cameo", "id": r["name"], **r} for r in rows]}


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
    store.get(name)  # the picture shown must be the one consented to
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
