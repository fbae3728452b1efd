"""The job server's request and response shapes (pydantic), and ``to_video``: a job record as OpenAI's ``Video``.

Their names and fields are the published OpenAPI schema (``GET /openapi.json``);
renaming a class renames a schema clients may have generated code from.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kinema.tiers import DEFAULT_TIER, tier_names

_TIERS = [f"{name} (default)" if name == DEFAULT_TIER else name for name in tier_names()]
TIER_DESCRIPTION = f"Quality tier: {', '.join(_TIERS[:-1])} or {_TIERS[-1]}."  # "draft, standard (default) or final"


class VideoError(BaseModel):
    code: str
    message: str


class KinemaVideoInfo(BaseModel):
    """kinema's extra detail on a job (OpenAI clients ignore it)."""

    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"]
    backend: str
    device: str
    step: int
    total: int
    stage: str
    width: int
    height: int
    num_frames: int
    fps: str
    steps: int
    guidance: float
    seed: int
    audio: bool
    negative_prompt: str
    style: str | None
    tier: str = DEFAULT_TIER
    has_image: bool
    attempts: int
    cancel_requested: bool
    started_at: int | None
    notes: list[str]
    kind: Literal["generate", "remix", "extend", "storyboard"] = "generate"
    parent: str | None = Field(None, description="The video a remix or extend builds on.")


class Video(BaseModel):
    """A video job, shaped like OpenAI's ``Video`` object."""

    id: str
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    model: str
    prompt: str | None = None
    remixed_from_video_id: str | None = None
    seconds: str = Field(description="Duration that will actually be made, e.g. '0.375'.")
    size: str = Field(description="WIDTHxHEIGHT that will actually be made.")
    error: VideoError | None = None
    kinema: KinemaVideoInfo


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool


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


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: bool = Field(description="Whether /v1 needs an 'Authorization: Bearer <KINEMA_API_KEY>' header.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ImageReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(None, description="A data URL: data:image/png;base64,... (no remote URLs).")
    file_id: str | None = Field(None, description="Not supported by kinema (there is no files API).")


class VideoCreateParams(BaseModel):
    """OpenAI's create-video fields, plus kinema's (send them with the SDK's ``extra_body``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What the clip shows and sounds like.")
    model: str | None = Field(
        None, description="A backend (tiny, ltx2, wan) or a pulled model id; sora-* = the server default."
    )
    seconds: str | float | None = Field(
        None, description="Length in seconds, e.g. '4' (snapped to the model's frame grid)."
    )
    size: str | None = Field(None, description="WIDTHxHEIGHT, e.g. '768x512' (snapped to the model's grid).")
    input_reference: ImageReference | None = Field(None, description="First frame (multipart: a PNG/JPEG/WebP file).")
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    fps: float | None = None
    style: str | None = None
    tier: str | None = Field(None, description=TIER_DESCRIPTION)
    backend: str | None = None
    audio: bool | None = Field(None, description="false for picture only (default true).")
    cameos: list[str] | str | None = Field(
        None,
        description="Cameos (people) to put in the clip, used only with their owners' consent for your API"
        " key's user; multipart: comma-separated.",
    )
    speech: str | None = Field(None, description="One of the cameos: its recorded voice drives the clip (ltx2).")


class FollowUpParams(BaseModel):
    """What remix, extend and storyboard share with create: kinema's generation settings (all optional)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="Backend or pulled model id (default: the one that made the source video)."
    )
    backend: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    style: str | None = None
    tier: str | None = Field(None, description=TIER_DESCRIPTION)


class VideoRemixParams(FollowUpParams):
    """OpenAI's remix (``prompt``), plus kinema's ``strength`` and ``keep_audio``."""

    prompt: str = Field(description="What the remixed clip shows and sounds like.")
    strength: float = Field(
        0.6, gt=0, le=1, description="How far to move from the source: near 0 keeps it, 1 keeps only its length."
    )
    keep_audio: bool = Field(False, description="Keep the source's sound instead of making new sound for the prompt.")


class VideoExtendParams(FollowUpParams):
    """kinema's extend: the same clip, ``seconds`` longer."""

    seconds: str | float = Field(description="How many seconds to add, e.g. '3'.")
    prompt: str | None = Field(None, description="What happens next (default: the source video's prompt).")


class StoryboardCreateParams(FollowUpParams):
    """A storyboard as text ('Shot 1 (2s): …' lines, YAML or JSON) or as an object with 'shots'."""

    storyboard: str | dict[str, Any] = Field(description="The storyboard (see the README's Storyboards section).")
    format: Literal["auto", "text", "yaml", "json"] = "auto"
    size: str | None = Field(None, description="WIDTHxHEIGHT for every shot.")
    fps: float | None = None
    audio: bool | None = None


def public_status(record: dict) -> str:
    """OpenAI's status enum has no "cancelled": such a job reads "failed" (``kinema.status`` says which)."""
    return "failed" if record["status"] == "cancelled" else record["status"]


def to_video(record: dict) -> dict:
    """A job record as OpenAI's Video object (with kinema's detail under ``kinema``)."""
    plan, request = record["plan"], record["request"]
    task = plan.get("task") or {}
    error = None
    if record["status"] in ("failed", "cancelled"):
        error = {"code": record["error_code"] or "failed", "message": record["error_message"] or "failed"}
    return {
        "id": record["id"],
        "object": "video",
        "status": public_status(record),
        "progress": record["progress"],
        "created_at": record["created_at"],
        "completed_at": record["completed_at"],
        "expires_at": None,
        "model": record["model"],
        "prompt": record["prompt"],
        "remixed_from_video_id": task.get("parent") if task.get("kind") == "remix" else None,
        "seconds": f"{plan['seconds']:g}",
        "size": f"{plan['width']}x{plan['height']}",
        "error": error,
        "kinema": {
            "status": record["status"],
            "backend": record["backend"],
            "device": record["device"],
            "step": record["step"],
            "total": record["total"] or plan["steps"],
            "stage": record["stage"],
            "width": plan["width"],
            "height": plan["height"],
            "num_frames": plan["num_frames"],
            "fps": plan["fps"],
            "steps": plan["steps"],
            "guidance": plan["guidance"],
            "seed": plan["seed"],
            "audio": plan["audio"],
            "negative_prompt": request.get("negative_prompt") or "",
            "style": request.get("style"),
            "tier": request.get("tier") or DEFAULT_TIER,
            "has_image": record["has_image"],
            "attempts": record["attempts"],
            "cancel_requested": record["cancel_requested"],
            "started_at": record["started_at"],
            "notes": plan["notes"],
            "kind": task.get("kind", "generate"),
            "parent": task.get("parent"),
        },
    }


def add_create_video_schemas(components: dict) -> None:
    """Publish ``POST /v1/videos``'s bodies, which the route reads itself (JSON or multipart) rather than by type."""
    json_schema = VideoCreateParams.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(json_schema.pop("$defs", {}))
    components["VideoCreateParams"] = json_schema
    form = json.loads(json.dumps(json_schema))
    form["title"] = "VideoCreateForm"
    form["properties"]["input_reference"] = {
        "type": "string",
        "format": "binary",
        "description": "First frame: a PNG, JPEG or WebP file.",
    }
    components["VideoCreateForm"] = form
