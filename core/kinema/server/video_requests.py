"""Reading the job server's requests: the create body (JSON or multipart), the first frame, sizes, seconds, models.

Each helper raises ``APIError`` with the field it is about, so a bad request
fails at once with 400 instead of becoming a failed job.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from kinema.errors import UnknownBackendError
from kinema.media.files import MAX_UPLOAD_IMAGE_BYTES as MAX_IMAGE_BYTES  # an uploaded first frame
from kinema.media.files import MAX_UPLOAD_IMAGE_SIDE as MAX_IMAGE_SIDE  # noqa: F401 (the server re-exports it)
from kinema.media.files import MediaReadError, data_url_bytes, decode_image_bytes
from kinema.server.errors import APIError, BodyTooLarge
from kinema.server.files import file_bytes
from kinema.server.hosted import Fitted, fit_request, hosted_model
from kinema.server.jobs import JobManager
from kinema.server.schemas import SIZE_PATTERN, FollowUpParams, ImageReference, to_video
from kinema.styles import list_styles
from kinema.tiers import DEFAULT_TIER

# Model names clients written for OpenAI send by default (sora-2, sora-2-pro): kinema.server.hosted runs them.
OPENAI_MODEL_PREFIX = "sora-"


_NESTED = re.compile(r"([a-z_]{1,40})\[([a-z_]{1,40})\]")  # the SDK's form key for an object's field: video[id]


async def read_create_body(
    request: Request, file_field: str = "input_reference", what: str = "the image"
) -> tuple[dict, UploadFile | None]:
    """The body's fields (JSON, or a form as the openai SDK sends it) and the file sent as ``file_field``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_files=1, max_fields=64, max_part_size=1024 * 1024)
        except BodyTooLarge:
            raise
        except Exception as error:  # malformed multipart
            raise APIError(400, f"could not read the form: {error}", code="invalid_body") from None
        fields: dict[str, Any] = {}
        upload = None
        for key, value in form.multi_items():
            nested = _NESTED.fullmatch(key)
            if isinstance(value, UploadFile):
                if key != file_field:
                    raise APIError(
                        400,
                        f"unexpected file field {key[:64]!r}; send {what} as {file_field}",
                        param=key[:64],
                        code="invalid_value",
                    )
                upload = value
            elif nested is not None and isinstance(fields.setdefault(nested[1], {}), dict):
                fields[nested[1]][nested[2]] = value
            elif key.endswith("[]"):  # the SDK sends a list (extra_body={"cameos": [...]}) as repeated key[]
                fields.setdefault(key[:-2], []).append(value)
            elif value != "":  # the SDK sends None as ''
                boolean = key in ("audio", "keep_audio", "two_stage")
                fields[key] = {"true": True, "false": False}.get(value, value) if boolean else value
        return fields, upload
    if content_type not in ("application/json", ""):
        raise APIError(
            415, f"send JSON or multipart/form-data, not {content_type[:64]!r}", code="unsupported_media_type"
        )
    body = await request.body()
    try:
        fields = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the body is not valid JSON", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_json")
    return fields, None


async def read_image(upload: UploadFile | None, reference: ImageReference | None, user: str = "") -> Any:
    """An uploaded first frame as uint8 [H, W, 3], or None. Only PNG, JPEG, WebP up to the size limits.
    ``reference.file_id`` names one of ``user``'s files (``POST /v1/files``); another user's is 404."""
    if upload is not None:
        data = await upload.read(MAX_IMAGE_BYTES + 1)
    elif reference is not None:
        if reference.file_id:
            try:
                data = await run_in_threadpool(file_bytes, reference.file_id, user)
            except APIError as error:
                raise APIError(404, error.message, param="input_reference.file_id", code=error.code) from None
            return await run_in_threadpool(decode_image, data)
        try:
            data = data_url_bytes(reference.image_url or "", what="input_reference.image_url")
        except MediaReadError as error:
            raise APIError(400, str(error), param="input_reference", code="invalid_value") from None
    else:
        return None
    if len(data) > MAX_IMAGE_BYTES:
        raise APIError(
            413,
            f"input_reference is larger than {MAX_IMAGE_BYTES // 2**20} MiB",
            param="input_reference",
            code="image_too_large",
        )
    return await run_in_threadpool(decode_image, data)


def decode_image(data: bytes) -> Any:
    """Validate and decode image bytes: format allow-list and size checked before any pixel is decoded."""
    try:
        return decode_image_bytes(data, what="input_reference")
    except MediaReadError as error:
        raise APIError(400, str(error), param="input_reference", code="invalid_image") from None


_SIZE = re.compile(SIZE_PATTERN)


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    """(width, height) from 'WIDTHxHEIGHT' (``SIZE_PATTERN``, which the request's schema checked already)."""
    if size is None:
        return None, None
    match = _SIZE.match(size)
    if match is None:
        raise APIError(
            400, f"size must be WIDTHxHEIGHT like '768x512', got {size[:32]!r}", param="size", code="invalid_value"
        )
    return int(match[1]), int(match[2])


def parse_seconds(seconds: str | float | None) -> float | None:
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise APIError(
            400, f"seconds must be a number like '4', got {str(seconds)[:32]!r}", param="seconds", code="invalid_value"
        )
    return value


def resolve_model(model: str | None, backend: str | None, default_backend: str) -> tuple[str, str | None, str]:
    """(backend, model id or None, name shown to clients) from OpenAI's ``model`` and kinema's ``backend``.

    ``model`` may name a backend or alias, a model pulled with ``kinema models pull``, or ``sora-*`` (what
    ``kinema.server.hosted`` maps it to; ``backend``, when given, wins). Never a path: requests cannot make
    the server read arbitrary folders.
    """
    from kinema import models as model_store
    from kinema.engine import get_backends

    backends = get_backends()
    if backend is not None and backend not in backends:
        raise APIError(
            404,
            f"unknown backend {backend[:64]!r}; choose one of: {', '.join(sorted(_names(backends)))}",
            param="backend",
            code="model_not_found",
        )
    if not model:
        chosen = backend or default_backend
        return chosen, None, backends[chosen].name if chosen in backends else chosen
    if model.startswith(OPENAI_MODEL_PREFIX):
        hosted = hosted_model(model, backends, default_backend)
        return (backend, None, model) if backend is not None else (hosted.backend, hosted.model, model)
    if model in backends:
        if backend is not None and backends[backend] is not backends[model]:
            raise APIError(
                400,
                f"model {model!r} and backend {backend!r} disagree; send one of them",
                param="backend",
                code="invalid_value",
            )
        return model, None, backends[model].name
    if model_store.is_hub_id(model) and model in model_store.pulled():
        if backend is None:
            lowered = model.lower()
            backend = "ltx2" if "ltx" in lowered else "wan" if "wan" in lowered else None
            if backend is None or backend not in backends:
                raise APIError(
                    400,
                    f"say which backend runs {model!r} with the 'backend' field",
                    param="backend",
                    code="invalid_value",
                )
        return backend, model, model
    raise UnknownBackendError(
        f"unknown model {model[:64]!r}; use a backend ({', '.join(sorted(_names(backends)))}) or a model pulled"
        " with `kinema models pull` (see GET /v1/models)"
    )


def fit_hosted(model: str, backend: str, default_backend: str, **request: Any) -> Fitted:
    """A ``sora-*`` request's tier, size and length on ``backend`` (``kinema.server.hosted.fit_request``)."""
    from kinema.engine import get_backends

    return fit_request(model, backend, get_backends(), default_backend, **request)


def _names(backends: dict) -> set[str]:
    return {b.name for b in backends.values()}


def check_text(params: BaseModel) -> None:
    """Refuse string fields that are not valid text (JSON lets unpaired surrogates through)."""
    for name, value in params:
        if isinstance(value, str) and not _is_utf8(value):
            raise APIError(
                400, f"{name} is not valid text (it has unpaired surrogates)", param=name, code="invalid_value"
            )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cameo_fields(params: Any, characters: tuple[str, ...] = ()) -> dict:
    """The cameo part of a create request (the job's owner is who asks for them).

    Speech may only name a cameo (the server reads no files for clients); that cameo joins the clip's cameos
    if the list leaves it out. The comma-separated form (multipart) may name a cameo twice; it counts once.
    ``characters`` are cameos the request named the OpenAI way (``kinema.server.openai_videos.characters_in``).
    """
    if isinstance(params.cameos, str):
        names = tuple(dict.fromkeys(name.strip() for name in params.cameos.split(",")))
    else:
        names = tuple(params.cameos or ())
    names = tuple(dict.fromkeys((*names, *characters)))
    if params.speech is not None and params.speech not in names:
        names = (*names, params.speech)
    spoken = {"dialogue": params.dialogue} if getattr(params, "dialogue", None) is not None else {}
    return {"cameos": names, "speech": params.speech, **spoken}


def check_style(name: str | None) -> None:
    """404 for a style this server does not have (``kinema styles`` lists them; users add their own)."""
    if name is None:
        return
    styles = list_styles()
    if name not in styles:
        raise APIError(
            404,
            f"unknown style {name[:64]!r}; choose one of: {', '.join(sorted(styles))} (see `kinema styles`)",
            param="style",
            code="style_not_found",
        )


async def queue_follow_up(
    manager: JobManager,
    default_backend: str,
    params: FollowUpParams,
    prompt: str,
    task: dict,
    parent: dict | None = None,
    extra: dict | None = None,
    *,
    owner: str,
    source_video: Any = None,
    notes: tuple[str, ...] = (),
) -> dict:
    """Queue a remix, extend or storyboard job for ``owner``: like create, with a task the worker runs instead.

    Without a model or backend in ``params``, a job made from ``parent`` uses the parent's, else ``default_backend``.
    ``source_video`` is an uploaded video the task builds on, ``notes`` what the server changed (``JobManager.submit``).
    """
    check_text(params)
    await run_in_threadpool(check_style, params.style)
    if parent is not None and params.model is None and params.backend is None:
        backend, model, display = parent["backend"], parent["request"].get("model"), parent["model"]
    else:
        backend, model, display = await run_in_threadpool(resolve_model, params.model, params.backend, default_backend)
    request_fields = {
        "prompt": prompt,
        "negative_prompt": params.negative_prompt or "",
        "seed": params.seed,
        "steps": params.steps,
        "guidance": params.guidance,
        "style": params.style,
        "backend": backend,
        "tier": params.tier or (parent["request"].get("tier") if parent is not None else None) or DEFAULT_TIER,
        "model": model,
        **(extra or {}),
    }
    record = await run_in_threadpool(
        manager.submit,
        request_fields,
        display_model=display,
        task=task,
        owner=owner,
        source_video=source_video,
        notes=notes,
    )
    return to_video(record)
