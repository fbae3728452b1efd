"""The job server's request and response shapes (pydantic), and ``to_video``: a job record as OpenAI's ``Video``.

Their names and fields are the published OpenAPI schema (``GET /openapi.json``);
renaming a class renames a schema clients may have generated code from.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    model_validator,
)

from kinema.cameo.store import MAX_CAMEOS_PER_REQUEST
from kinema.media.tts import MAX_LINE_CHARS
from kinema.request import MAX_FPS, MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_SECONDS, MAX_SEED, MAX_SIDE, MIN_SIDE
from kinema.storyboard.model import MAX_SHOTS
from kinema.tiers import DEFAULT_TIER, MAX_STEPS, tier_names

_TIERS = [f"{name} (default)" if name == DEFAULT_TIER else name for name in tier_names()]
TIER_DESCRIPTION = f"Quality tier: {', '.join(_TIERS[:-1])} or {_TIERS[-1]}."  # "draft, standard (default) or final"


# What the schema says is valid is exactly what the server accepts: each pattern below is also what pydantic
# checks, so a request the schema allows is never refused for its form, and one it forbids never slips through.


def int_range_pattern(low: int, high: int) -> str:
    """A regular expression (no anchors) for the whole numbers low..high written without leading zeros."""
    parts = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        start, end = max(low, 10 ** (digits - 1) if digits > 1 else 0), min(high, 10**digits - 1)
        if start <= end:
            parts.extend(_range_parts(str(start), str(end)))
    return "(?:" + "|".join(parts) + ")"


def _range_parts(start: str, end: str) -> list[str]:
    """Patterns for the numbers start..end, both with the same number of digits."""
    width = len(start) - 1
    any_rest = f"[0-9]{{{width}}}" if width > 1 else "[0-9]" * width
    if start == end:
        return [start]
    if start[0] == end[0]:
        return [start[0] + rest for rest in _range_parts(start[1:], end[1:])]
    first, last, parts, tail = int(start[0]), int(end[0]), [], []
    if start[1:] != "0" * width:
        parts = [start[0] + rest for rest in _range_parts(start[1:], "9" * width)]
        first += 1
    if end[1:] != "9" * width:
        tail = [end[0] + rest for rest in _range_parts("0" * width, end[1:])]
        last -= 1
    if first <= last:
        parts.append((str(first) if first == last else f"[{first}-{last}]") + any_rest)
    return parts + tail


_SIDE = int_range_pattern(MIN_SIDE, MAX_SIDE)
SIZE_PATTERN = f"^({_SIDE})[x\u00d7X]({_SIDE})$"  # 768x512: each side {MIN_SIDE}..{MAX_SIDE}
# A length in (0, MAX_SECONDS] as text: '4', '2.5', '0.375' (seconds_problem's rule).
_WHOLE_SECONDS = int_range_pattern(1, int(MAX_SECONDS) - 1)
SECONDS_PATTERN = f"^(?:{_WHOLE_SECONDS}(?:\\.[0-9]+)?|0?\\.[0-9]*[1-9][0-9]*|{int(MAX_SECONDS)}(?:\\.0+)?)$"
NAME_PATTERN = "^[a-z0-9][a-z0-9_-]{0,39}$"  # a cameo's name (kinema.cameo.store.NAME_PATTERN)
# A cameo as a request names it: its name, or its id as char_ID (kinema.cameo.store.REF_PATTERN).
CAMEO_REF_PATTERN = "^(?:char_)?[a-z0-9][a-z0-9_-]{0,39}$"
_NAME = CAMEO_REF_PATTERN[1:-1]
CAMEO_LIST_PATTERN = f"^ *{_NAME} *(?:, *{_NAME} *){{0,{MAX_CAMEOS_PER_REQUEST - 1}}}$"
# At least one character that is not white space, as Python's str.strip() sees it (the server's check): spelled
# out, because \S differs between regex dialects (ECMA's, which clients read the schema with, keeps U+0085).
TEXT = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
VIDEO_ID_PATTERN = "^video_[0-9a-f]{32}$"
_VIDEO_ID = re.compile(VIDEO_ID_PATTERN)


def _one_of(names: tuple[str, ...]) -> Any:
    def check(value: str) -> str:
        if value not in names:
            raise ValueError(f"must be one of {', '.join(names)}, got {value[:32]!r}")
        return value

    return check


# The tier names live in kinema.tiers; the schema shows them as an enum.
Tier = Annotated[
    str, AfterValidator(_one_of(tier_names())), WithJsonSchema({"type": "string", "enum": list(tier_names())})
]
Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=TEXT)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, strict=True)] | Annotated[str, Field(pattern=SECONDS_PATTERN)]
Size = Annotated[str, Field(pattern=SIZE_PATTERN, description="WIDTHxHEIGHT, e.g. '768x512'.")]


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1
        raise ValueError("must be a number, not true or false")
    return value


Number = BeforeValidator(_not_a_bool)  # after a Field's bounds (before them, pydantic publishes ge/le as such)
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS), Number]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), Number]
Guidance = Annotated[float, Field(ge=0, le=MAX_GUIDANCE), Number]
Fps = Annotated[float, Field(ge=1, le=MAX_FPS), Number]
NegativePrompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
CameoName = Annotated[str, Field(pattern=CAMEO_REF_PATTERN)]


def model_and_backend_agree(schema: dict[str, Any]) -> None:
    """A ``model`` that names one backend with a ``backend`` that names another is refused (400, resolve_model):
    the schema says so, one ``not`` per backend, from the backends this server has (plugins' included)."""
    from kinema.engine import get_backends

    names: dict[int, list[str]] = {}
    for name, backend in get_backends().items():
        names.setdefault(id(backend), []).append(name)
    every = [name for group in names.values() for name in group]
    schema["allOf"] = [
        {
            "not": {
                "required": ["model", "backend"],
                "properties": {"model": {"enum": group}, "backend": {"enum": [n for n in every if n not in group]}},
            }
        }
        for group in names.values()
    ]


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
    two_stage: bool = Field(False, description="Whether the clip is made by the two-stage recipe (see two_stage).")
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


FILE_ID_PATTERN = "^file-[0-9a-f]{24}$"  # an upload of POST /v1/files (kinema.server.files)


def _one_property(schema: dict[str, Any]) -> None:
    """Exactly one of the object's properties, each a string when given (never null)."""
    schema.update(minProperties=1, maxProperties=1)
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class ImageReference(BaseModel):
    """An image by value (a data URL) or by an earlier upload (``POST /v1/files``): one of the two."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda schema: _one_property(schema))

    # Absent, never null: exactly one of the two is given (_one_of_them), so neither field is Optional.
    image_url: str = Field(
        None,  # type: ignore[assignment]
        pattern="^data:image/(?:png|jpeg|webp);base64,",
        json_schema_extra={"format": "data-url"},
        description="A data URL of a PNG, JPEG or WebP image: data:image/png;base64,... (no remote URLs).",
    )
    file_id: str = Field(
        None,  # type: ignore[assignment]
        pattern=FILE_ID_PATTERN,
        description="An image you uploaded with POST /v1/files (purpose vision or user_data).",
    )

    @model_validator(mode="after")
    def _one_of_them(self) -> ImageReference:
        if len(self.model_fields_set) != 1:
            raise ValueError("give either image_url or file_id, not both")
        return self


class VideoCreateParams(BaseModel):
    """OpenAI's create-video fields, plus kinema's (send them with the SDK's ``extra_body``).

    ``audio`` is true or false, not 0 or "no" (a multipart form's "true" and "false" are read as those).
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=model_and_backend_agree)

    prompt: Prompt = Field(description="What the clip shows and sounds like.")
    model: str | None = Field(
        None, description="A backend (tiny, ltx2, wan) or a pulled model id; sora-* = the server default."
    )
    seconds: Seconds | None = Field(
        None, description=f"Length in seconds, up to {MAX_SECONDS:g}, e.g. '4' (snapped to the model's frame grid)."
    )
    size: Size | None = Field(None, description="WIDTHxHEIGHT, e.g. '768x512' (snapped to the model's grid).")
    input_reference: ImageReference | None = Field(None, description="First frame (multipart: a PNG/JPEG/WebP file).")
    negative_prompt: NegativePrompt | None = None
    seed: Seed | None = None
    steps: Steps | None = None
    guidance: Guidance | None = None
    fps: Fps | None = None
    style: str | None = Field(None, description="A style preset (`kinema styles`); an unknown one answers 404.")
    tier: Tier | None = Field(None, description=TIER_DESCRIPTION)
    two_stage: StrictBool | None = Field(
        None,
        description="LTX-2.x's two-stage recipe: the clip at half size, the latent upsampler x2, then a few"
        " refining steps, by distilled weights where the checkpoint has them. true asks for it (400 on a backend or"
        " checkpoint without a second stage), false never; null: the final tier's path when the checkpoint has a"
        " latent upsampler.",
    )
    backend: str | None = None
    audio: StrictBool | None = Field(None, description="false for picture only (default true).")
    cameos: (
        Annotated[list[CameoName], Field(max_length=MAX_CAMEOS_PER_REQUEST, json_schema_extra={"uniqueItems": True})]
        | Annotated[str, Field(pattern=CAMEO_LIST_PATTERN)]
        | None
    ) = Field(
        None,
        description="Cameos (people) to put in the clip, used only with their owners' consent for your API"
        " key's user; multipart: comma-separated. A name means your own cameo of that name first, else the one"
        " others share with you; char_ID names any by its id.",
    )
    speech: CameoName | None = Field(
        None, description="A cameo whose recorded voice drives the clip (ltx2); it joins the clip's cameos."
    )
    dialogue: Annotated[str, Field(min_length=1, max_length=MAX_LINE_CHARS, pattern=TEXT)] | None = Field(
        None,
        description="A line to speak, in the voice of the cameo `speech` names (or of the only cameo), by the"
        " installed voice model; the spoken line drives the clip (ltx2) and is its sound. Others' cameos need"
        " their owner's voice permission.",
    )


class FollowUpParams(BaseModel):
    """What remix, extend and storyboard share with create: kinema's generation settings (all optional)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=model_and_backend_agree)

    model: str | None = Field(
        None, description="Backend or pulled model id (default: the one that made the source video)."
    )
    backend: str | None = None
    negative_prompt: NegativePrompt | None = None
    seed: Seed | None = None
    steps: Steps | None = None
    guidance: Guidance | None = None
    style: str | None = Field(None, description="A style preset (`kinema styles`); an unknown one answers 404.")
    tier: Tier | None = Field(None, description=TIER_DESCRIPTION)


class VideoRemixParams(FollowUpParams):
    """OpenAI's remix (``prompt``), plus kinema's ``strength`` and ``keep_audio``."""

    prompt: Prompt = Field(description="What the remixed clip shows and sounds like.")
    strength: Annotated[float, Number] = Field(
        0.6, gt=0, le=1, description="How far to move from the source: near 0 keeps it, 1 keeps only its length."
    )
    keep_audio: StrictBool = Field(
        False, description="Keep the source's sound instead of making new sound for the prompt."
    )


class VideoExtendParams(FollowUpParams):
    """kinema's extend: the same clip, ``seconds`` longer."""

    seconds: Seconds = Field(description="How many seconds to add, e.g. '3'.")
    prompt: Prompt | None = Field(None, description="What happens next (default: the source video's prompt).")


# A storyboard's text is a small language of its own (the README's Storyboards section), so the schema names
# it with a format; kinema.storyboard checks it and answers 400 with every mistake and its line.
StoryboardText = Annotated[
    str,
    Field(
        min_length=1,
        pattern=TEXT,
        json_schema_extra={"format": "kinema-storyboard"},
        description="'Shot 1 (2s): …' lines, or the same as YAML or JSON.",
    ),
]
# The object form's core: the shots. kinema.storyboard accepts the text form's other keys too (title, world,
# setting, characters, style, seed, …; a shot's camera, dialogue, cut, image, cameos).
_SHOT_SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": TEXT},
        "seconds": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_SECONDS},
    },
    "additionalProperties": False,
}
StoryboardObject = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "required": ["shots"],
            "properties": {
                # null reads as no title, and a number as its text (YAML's `title: 2026`)
                "title": {"type": ["string", "number", "null"], "maxLength": MAX_PROMPT_CHARS},
                "shots": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SHOTS,
                    "items": {"anyOf": [_SHOT_SCHEMA, _SHOT_SCHEMA["properties"]["prompt"]]},  # a shot or its prompt
                },
            },
            "additionalProperties": False,
        }
    ),
]


class StoryboardCreateParams(FollowUpParams):
    """A storyboard as text ('Shot 1 (2s): …' lines, YAML or JSON) or as an object with 'shots'."""

    storyboard: StoryboardText | StoryboardObject = Field(
        description="The storyboard (see the README's Storyboards section)."
    )
    format: Literal["auto", "text", "yaml", "json"] = "auto"
    size: Size | None = Field(None, description="WIDTHxHEIGHT for every shot.")
    fps: Fps | None = None
    audio: StrictBool | None = None


def public_status(record: dict) -> str:
    """OpenAI's status enum has no "cancelled": such a job reads "failed" (``kinema.status`` says which)."""
    return "failed" if record["status"] == "cancelled" else record["status"]


def to_video(record: dict) -> dict:
    """A job record as OpenAI's Video object (with kinema's detail under ``kinema``)."""
    plan, request = record["plan"], record["request"]
    task = plan.get("task") or {}
    parent = task.get("parent")
    parent = parent if isinstance(parent, str) and _VIDEO_ID.match(parent) else None  # None: an uploaded video
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
        "remixed_from_video_id": parent if task.get("kind") == "remix" else None,
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
            "two_stage": bool(plan.get("two_stage")),
            "has_image": record["has_image"],
            "attempts": record["attempts"],
            "cancel_requested": record["cancel_requested"],
            "started_at": record["started_at"],
            "notes": plan["notes"],
            "kind": task.get("kind", "generate"),
            "parent": parent,
        },
    }


def as_form(json_schema: dict, title: str) -> dict:
    """A JSON body's schema as that of the multipart form with the same fields. A form's fields are text: no nulls
    (leave a field out instead), and seconds and cameos only in their text forms."""
    form = json.loads(json.dumps(json_schema))
    form["title"] = title
    for field in form["properties"].values():
        choices = [c for c in field.pop("anyOf", [field]) if c.get("type") != "null"]
        if len(choices) > 1:
            choices = [c for c in choices if c.get("type") == "string"] or choices
        field.pop("default", None)
        field.update(choices[0] if len(choices) == 1 else {"anyOf": choices})
    return form


def two_stage_needs_a_second_stage(schema: dict[str, Any], default_backend: str) -> None:
    """``two_stage`` true on a backend without a second stage is refused (400, ``Backend.has_second_stage``): the
    schema says so, from this server's backends and its default one (a request naming neither runs on it)."""
    from kinema.engine import get_backends

    backends = get_backends()
    without = sorted(name for name, backend in backends.items() if not getattr(backend, "has_second_stage", False))
    if not without:
        return
    rules: list[dict[str, Any]] = [
        {"not": {"required": [field], "properties": {field: {"enum": without}}}} for field in ("model", "backend")
    ]
    if default_backend in without:
        rules.append({"anyOf": [{"required": ["model"]}, {"required": ["backend"]}]})
    schema.setdefault("allOf", []).append(
        {"if": {"required": ["two_stage"], "properties": {"two_stage": {"const": True}}}, "then": {"allOf": rules}}
    )


def add_create_video_schemas(components: dict, default_backend: str | None = None) -> None:
    """Publish ``POST /v1/videos``'s bodies, which the route reads itself (JSON or multipart) rather than by type."""
    from kinema.request import DEFAULT_BACKEND

    json_schema = VideoCreateParams.model_json_schema(ref_template="#/components/schemas/{model}")
    two_stage_needs_a_second_stage(json_schema, default_backend or DEFAULT_BACKEND)
    components.update(json_schema.pop("$defs", {}))
    components["VideoCreateParams"] = json_schema
    form = as_form(json_schema, "VideoCreateForm")
    form["properties"]["input_reference"] = {
        "type": "string",
        "format": "binary",
        "description": "First frame: a PNG, JPEG or WebP file.",
    }
    components["VideoCreateForm"] = form
