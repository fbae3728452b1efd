"""OpenAI's Files API, as much of it as kinema uses: images uploaded once and named by ``file_id`` afterwards.

``POST /v1/files`` (purpose ``vision`` or ``user_data``) keeps a PNG, JPEG or WebP image that passes the checks an
uploaded first frame passes; a create request then sends ``"input_reference": {"file_id": "file-..."}``. Each
file is its uploader's: another user's id is a file that does not exist (404), as with videos. Files live in
``KINEMA_HOME/files/<id>/`` (the image and its record), written whole or not at all.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParameter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from kinema.home import kinema_home
from kinema.media.files import MAX_UPLOAD_IMAGE_BYTES, MediaReadError, decode_image_bytes
from kinema.server.dependencies import current_user
from kinema.server.errors import APIError, BodyTooLarge, error_responses
from kinema.server.schemas import FILE_ID_PATTERN

PURPOSES = ("vision", "user_data")  # what an input_reference is; kinema keeps no other kind of file
RECORD = "file.json"
CONTENT = "content"
_FILE_ID = re.compile(FILE_ID_PATTERN)


class FileObject(BaseModel):
    """OpenAI's ``FileObject``."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["vision", "user_data"]
    status: Literal["processed"] = "processed"


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


def files_root() -> Path:
    return kinema_home() / "files"


def _folder(file_id: str) -> Path:
    return files_root() / file_id


def _record(file_id: str, user: str) -> dict[str, Any]:
    """The record of ``user``'s file ``file_id``; 404 for an unknown id, a malformed one, or another user's."""
    record = None
    if _FILE_ID.fullmatch(file_id):
        try:
            record = json.loads((_folder(file_id) / RECORD).read_text())
        except (OSError, ValueError):
            record = None
    if not isinstance(record, dict) or record.get("owner") != user:
        raise APIError(404, f"no file with id {file_id[:64]!r}", param="file_id", code="file_not_found")
    return record


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record[key] for key in ("id", "bytes", "created_at", "filename", "purpose")} | {
        "object": "file",
        "status": "processed",
    }


def file_bytes(file_id: str, user: str) -> bytes:
    """The content of ``user``'s file ``file_id`` (a request's ``input_reference.file_id``); 404 otherwise."""
    _record(file_id, user)
    return (_folder(file_id) / CONTENT).read_bytes()


def _keep(data: bytes, record: dict[str, Any]) -> None:
    """The file and its record, in place at once (a folder renamed into ``files/``), readable by this OS user."""
    root = files_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        for name, content in ((CONTENT, data), (RECORD, json.dumps(record).encode())):
            fd = os.open(staging / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
        os.replace(staging, root / record["id"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


router = APIRouter(tags=["files"], responses=error_responses())
User = Depends(current_user)
# Any other string is a file that does not exist (404), as a video id is.
FileId = Annotated[str, PathParameter(max_length=80, description="A file id from POST /v1/files (file-...).")]


@router.post(
    "/files",
    response_model=FileObject,
    responses=error_responses(413),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "purpose"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "purpose": {"type": "string", "enum": list(PURPOSES)},
                        },
                        "additionalProperties": False,
                    },
                    "encoding": {"file": {"contentType": "image/png, image/jpeg, image/webp"}},
                }
            },
        }
    },
)
async def create_file(request: Request, user: str = User) -> dict:
    """Keep an image to send later as ``input_reference: {"file_id": ...}`` (OpenAI ``files.create``, purpose
    ``vision`` or ``user_data``): a PNG, JPEG or WebP image within the limits of an uploaded first frame."""
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=1024 * 1024)
    except BodyTooLarge:
        raise
    except Exception as error:  # malformed multipart, or not multipart at all
        raise APIError(400, f"send multipart/form-data with file and purpose: {error}", code="invalid_body") from None
    unknown = sorted(set(form) - {"file", "purpose"})
    if unknown:
        raise APIError(400, f"unknown parameter {unknown[0][:64]!r}", param=unknown[0][:64], code="invalid_value")
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise APIError(
            400, "file is required: a PNG, JPEG or WebP image", param="file", code="missing_required_parameter"
        )
    if purpose not in PURPOSES:
        raise APIError(
            400,
            f"purpose must be one of {', '.join(PURPOSES)} (kinema keeps images for input_reference only),"
            f" got {str(purpose)[:32]!r}",
            param="purpose",
            code="invalid_value",
        )
    data = await upload.read(MAX_UPLOAD_IMAGE_BYTES + 1)
    if len(data) > MAX_UPLOAD_IMAGE_BYTES:
        raise APIError(
            413, f"file is larger than {MAX_UPLOAD_IMAGE_BYTES // 2**20} MiB", param="file", code="file_too_large"
        )
    try:  # what input_reference would refuse is refused now
        await run_in_threadpool(decode_image_bytes, data, what="file")
    except MediaReadError as error:
        raise APIError(400, str(error), param="file", code="invalid_image") from None
    record = {
        "id": f"file-{secrets.token_hex(12)}",
        "owner": user,
        "bytes": len(data),
        "created_at": int(time.time()),
        "filename": Path(upload.filename or "image").name[:255],
        "purpose": purpose,
    }
    await run_in_threadpool(_keep, data, record)
    return _public(record)


@router.get("/files", response_model=FileList)
def list_files(user: str = User) -> dict:
    """Your files, newest first (OpenAI ``files.list``)."""
    records = []
    root = files_root()
    for folder in root.iterdir() if root.is_dir() else ():
        if _FILE_ID.fullmatch(folder.name):
            try:
                records.append(_record(folder.name, user))
            except APIError:
                continue
    records.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return {"object": "list", "data": [_public(r) for r in records], "has_more": False}


@router.get("/files/{file_id}", response_model=FileObject)
def retrieve_file(file_id: FileId, user: str = User) -> dict:
    """One of your files (OpenAI ``files.retrieve``)."""
    return _public(_record(file_id, user))


@router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def file_content(file_id: FileId, user: str = User) -> Response:
    """The bytes you uploaded (OpenAI ``files.content``)."""
    return Response(file_bytes(file_id, user), media_type="application/octet-stream")


@router.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(file_id: FileId, user: str = User) -> dict:
    """Delete one of your files (OpenAI ``files.delete``); videos already made from it keep their first frame."""
    _record(file_id, user)
    trash = files_root() / f".{file_id}.{secrets.token_hex(4)}.deleted"
    os.replace(_folder(file_id), trash)  # gone for every reader at once, then removed
    shutil.rmtree(trash, ignore_errors=True)
    return {"id": file_id, "object": "file", "deleted": True}
