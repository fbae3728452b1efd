"""Style presets: data files that add to the prompt and adjust defaults.

Built-ins ship in ``kinema/styles/``; users drop their own ``NAME.json`` into
``$KINEMA_HOME/styles/`` (a user file wins over a built-in of the same name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from .errors import InvalidRequestError
from .home import kinema_home
from .request import GenerationRequest


@dataclass(frozen=True)
class Style:
    name: str
    description: str = ""
    prompt: str = ""  # appended to the user's prompt
    negative_prompt: str = ""  # appended to the negative prompt
    guidance: Optional[float] = None  # used when the request leaves guidance unset
    steps: Optional[int] = None  # likewise for steps
    source: str = "built-in"


def _parse(text: str, source: str) -> Style:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidRequestError(f"style file {source} is not valid JSON: line {error.lineno}: {error.msg}") from None
    known = {"name", "description", "prompt", "negative_prompt", "guidance", "steps"}
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or set(data) - known:
        raise InvalidRequestError(f"style file {source} must be an object with 'name' and only {sorted(known)}")
    return Style(**data, source=source)


def list_styles() -> dict[str, Style]:
    styles: dict[str, Style] = {}
    for entry in sorted(resources.files("kinema").joinpath("styles").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            style = _parse(entry.read_text(encoding="utf-8"), "built-in")
            styles[style.name] = style
    user_dir = kinema_home() / "styles"
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.json")):
            style = _parse(path.read_text(encoding="utf-8"), str(path))
            styles[style.name] = style
    return styles


def get_style(name: str) -> Style:
    styles = list_styles()
    if name not in styles:
        raise InvalidRequestError(f"unknown style {name!r}; choose one of: {', '.join(sorted(styles))} (see `kinema styles`)")
    return styles[name]


def apply_style(request: GenerationRequest) -> GenerationRequest:
    if not request.style:
        return request
    style = get_style(request.style)
    join = lambda *parts: ", ".join(p for p in parts if p)  # noqa: E731
    return request.with_(
        prompt=join(request.prompt, style.prompt),
        negative_prompt=join(request.negative_prompt, style.negative_prompt),
        guidance=request.guidance if request.guidance is not None else style.guidance,
        steps=request.steps if request.steps is not None else style.steps,
        image=request.image,
    )
