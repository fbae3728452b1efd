"""Style presets: data files that add to the prompt and adjust defaults.

Built-ins ship in ``kinema/styles/``; users drop their own ``NAME.json`` or
``NAME.yaml`` into ``$KINEMA_HOME/styles/`` (a user file wins over a built-in of
the same name). A style may bring LoRA weights::

    {"name": "ink", "prompt": "ink wash painting",
     "loras": [{"path": "ink-wash.safetensors", "weight": 0.8, "backends": ["ltx2"]}]}

A relative LoRA path starts at the style file's folder, else ``$KINEMA_HOME/loras``;
``backends`` (optional) limits a LoRA to the model families it was trained for.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kinema.errors import InvalidRequestError
from kinema.home import kinema_home
from kinema.plugins import get_backends
from kinema.request import GenerationRequest


@dataclass(frozen=True)
class Style:
    name: str
    description: str = ""
    prompt: str = ""  # appended to the user's prompt
    negative_prompt: str = ""  # appended to the negative prompt
    guidance: float | None = None  # used when the request leaves guidance unset
    steps: int | None = None  # likewise for steps
    source: str = "built-in"
    loras: tuple[StyleLora, ...] = ()


@dataclass(frozen=True)
class StyleLora:
    path: str  # absolute, resolved when the style is read; checked when a clip uses it
    weight: float = 1.0
    backends: tuple[str, ...] = ()  # backend names or families it fits; empty: any

    def fits(self, names: set[str]) -> bool:
        return not self.backends or bool(names & set(self.backends))


_KNOWN = {"name", "description", "prompt", "negative_prompt", "guidance", "steps", "loras"}


def _parse(text: str, source: str, *, kind: str = "json", folder: Path | None = None) -> Style:
    if kind == "yaml":
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise InvalidRequestError(
                f"style file {source} is not valid YAML:{where} {getattr(error, 'problem', error)}"
            ) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidRequestError(
                f"style file {source} is not valid JSON: line {error.lineno}: {error.msg}"
            ) from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or set(data) - _KNOWN:
        raise InvalidRequestError(f"style file {source} must be a mapping with 'name' and only {sorted(_KNOWN)}")

    def bad(message: str) -> InvalidRequestError:
        return InvalidRequestError(f"style file {source}: {message}")

    for key in ("description", "prompt", "negative_prompt"):
        if not isinstance(data.get(key, ""), str):
            raise bad(f"{key} must be text")
    guidance, steps = data.get("guidance"), data.get("steps")
    if guidance is not None and (
        isinstance(guidance, bool)
        or not isinstance(guidance, (int, float))
        or not math.isfinite(guidance)
        or not 0 <= guidance <= 50
    ):
        raise bad(f"guidance must be a number from 0 to 50, got {guidance!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 500):
        raise bad(f"steps must be a whole number from 1 to 500, got {steps!r}")
    loras = tuple(_lora(entry, folder, bad) for entry in _as_list(data.get("loras"), bad))
    return Style(**{**data, "loras": loras}, source=source)


def _as_list(value: Any, bad) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad("loras must be a list of {path, weight, backends}")
    return value


def _lora(entry: Any, folder: Path | None, bad) -> StyleLora:
    if isinstance(entry, str):
        entry = {"path": entry}
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("path"), str)
        or set(entry) - {"path", "weight", "backends"}
    ):
        raise bad(f"each LoRA is a path or {{path, weight, backends}}, got {entry!r}")
    path = Path(entry["path"]).expanduser()
    if path.suffix != ".safetensors":
        raise bad(f"LoRA {entry['path']!r} must be a .safetensors file (kinema loads no pickled weights)")
    if not path.is_absolute():
        beside = folder / path if folder is not None else None
        path = beside if beside is not None and beside.is_file() else kinema_home() / "loras" / path
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -4 <= weight <= 4:
        raise bad(f"LoRA weight must be a number from -4 to 4, got {weight!r}")
    backends = entry.get("backends", [])
    if isinstance(backends, str):
        backends = [backends]
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        raise bad(f"LoRA backends must be a list of backend names, got {backends!r}")
    return StyleLora(str(path), float(weight), tuple(backends))


def list_styles() -> dict[str, Style]:
    styles: dict[str, Style] = {}
    for entry in sorted(resources.files("kinema").joinpath("styles").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            style = _parse(entry.read_text(encoding="utf-8"), "built-in")
            styles[style.name] = style
    user_dir = kinema_home() / "styles"
    if user_dir.is_dir():
        for path in sorted(p for p in user_dir.iterdir() if p.suffix in (".json", ".yaml", ".yml")):
            kind = "json" if path.suffix == ".json" else "yaml"
            style = _parse(path.read_text(encoding="utf-8"), str(path), kind=kind, folder=path.parent)
            styles[style.name] = style
    return styles


def get_style(name: str) -> Style:
    styles = list_styles()
    if name not in styles:
        raise InvalidRequestError(
            f"unknown style {name!r}; choose one of: {', '.join(sorted(styles))} (see `kinema styles`)"
        )
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
        loras=tuple(request.loras)
        + tuple((lora.path, lora.weight) for lora in style.loras if lora.fits(_backend_names(request))),
    )


def _backend_names(request: GenerationRequest) -> set[str]:
    """What a LoRA's ``backends`` may name for this request: the backend as asked, its real name and family."""
    names = {request.backend}
    backend = get_backends().get(request.backend)
    if backend is not None:
        names |= {backend.name, getattr(backend, "family", backend.name)}
    return names
