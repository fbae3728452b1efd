"""Parsed storyboard data (from any format, or a JSON request body) to a ``Storyboard``, every problem found at once."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema.cameo.store import CameoStore
from kinema.home import kinema_home
from kinema.media.files import MediaReadError, decode_data_url, is_data_url
from kinema.request import (
    MAX_FPS,
    MAX_GUIDANCE,
    MAX_PROMPT_CHARS,
    MAX_SECONDS,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
    seconds_problem,
)
from kinema.storyboard.model import CUTS, MAX_SHOTS, Line, Shot, Storyboard, StoryboardError, World
from kinema.storyboard.parse import SECONDS, line_of, suggest
from kinema.styles import list_styles
from kinema.tiers import TIERS

_TOP_KEYS = {
    "title",
    "world",
    "setting",
    "characters",
    "style",
    "seed",
    "seconds",
    "negative_prompt",
    "negative",
    "backend",
    "model",
    "size",
    "width",
    "height",
    "fps",
    "steps",
    "guidance",
    "tier",
    "audio",
    "shots",
}
_WORLD_KEYS = {"setting", "characters", "style"}
_SHOT_FIELDS = {
    "prompt",
    "seconds",
    "camera",
    "dialogue",
    "cameos",
    "cameo",
    "cut",
    "seed",
    "style",
    "negative_prompt",
    "negative",
    "image",
}


class _Checker:
    """Collects problems with the line they are on, so one run reports them all."""

    def __init__(self, source: str, files: bool = True):
        self.source = source
        self.files = files  # may shots name pictures on this machine's disk?
        self.problems: list[tuple[int | None, str]] = []

    def add(self, line: int | None, message: str) -> None:
        self.problems.append((line, message))

    def done(self) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
            raise StoryboardError(self.source, self.problems)


def from_dict(
    data: Any,
    *,
    source: str = "<storyboard>",
    base_dir: Path | None = None,
    files: bool = True,
    _lines: dict | None = None,
) -> Storyboard:
    """Build and validate a Storyboard from parsed data (e.g. a JSON request body).

    A shot's ``image`` is a picture file (relative to ``base_dir``) or a ``data:image/…;base64,…`` URL.
    ``files=False`` accepts only the URLs: a storyboard from someone else (a server request) must not
    read, or even probe, files on this machine.
    """
    check = _Checker(source, files)
    header_lines = (_lines or {}).get("header", {})
    shot_lines = (_lines or {}).get("shots", [])

    def top_line(key: str) -> int | None:
        return header_lines.get(key) or line_of(data, key)

    if not isinstance(data, dict):
        check.add(
            getattr(data, "line", None) or 1,
            "a storyboard must be a mapping with a 'shots' list (or shot lines like 'Shot 1 (2s): …')",
        )
        check.done()
    for key in data:
        if key not in _TOP_KEYS:
            check.add(top_line(key), f"unknown key {key!r}{suggest(str(key), _TOP_KEYS)}")

    fields: dict[str, Any] = {"source": source}
    fields["title"] = _text(check, data, "title", top_line("title")) or ""
    fields["negative_prompt"] = (
        _text(check, data, "negative_prompt", top_line("negative_prompt"))
        or _text(check, data, "negative", top_line("negative"))
        or ""
    )
    for name in ("backend", "model"):
        value = _text(check, data, name, top_line(name))
        if value:
            fields[name] = value
    fields["seed"] = _integer(check, data, "seed", top_line("seed"), 0, MAX_SEED)
    fields["seconds"] = _seconds(check, data.get("seconds"), top_line("seconds"), "seconds")
    fields["fps"] = _number(check, data.get("fps"), top_line("fps"), "fps", 1.0, MAX_FPS)
    fields["steps"] = _integer(check, data, "steps", top_line("steps"), 1, MAX_STEPS)
    fields["guidance"] = _number(check, data.get("guidance"), top_line("guidance"), "guidance", 0.0, MAX_GUIDANCE)
    tier = _text(check, data, "tier", top_line("tier"))
    if tier:
        if tier in TIERS:
            fields["tier"] = tier
        else:
            check.add(top_line("tier"), f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    fields["width"], fields["height"] = _size(check, data, top_line)
    if "audio" in data:
        audio = data["audio"]
        if isinstance(audio, str) and audio.lower() in ("yes", "no", "true", "false", "on", "off"):
            audio = audio.lower() in ("yes", "true", "on")
        if not isinstance(audio, bool):
            check.add(top_line("audio"), f"audio must be true or false, got {audio!r}")
        else:
            fields["audio"] = audio
    fields["world"] = _world(check, data, top_line, header_lines)

    shots_data = data.get("shots")
    shots: list[Shot] = []
    if shots_data is None or (isinstance(shots_data, list) and not shots_data):
        hint = (
            "add lines like 'Shot 1 (2s): a fox runs through snow'"
            if _lines is not None
            else "add a 'shots' list, e.g. shots: [{prompt: a fox runs through snow, seconds: 2}]"
        )
        where = top_line("shots") if shots_data is not None else None
        if where is None:  # nothing says "shots": point where they would go (after a text's last line)
            where = (_lines or {}).get("end") or getattr(data, "line", None)
        check.add(where, f"the storyboard has no shots: {hint}")
    elif not isinstance(shots_data, list):
        check.add(top_line("shots"), f"'shots' must be a list of shots, got {type(shots_data).__name__}")
    elif len(shots_data) > MAX_SHOTS:
        check.add(
            top_line("shots"),
            f"{len(shots_data)} shots is too many; split the film into storyboards of at most {MAX_SHOTS}",
        )
    else:
        for index, item in enumerate(shots_data):
            where = shot_lines[index] if index < len(shot_lines) else None
            line = (where or {}).get("") or line_of(shots_data, index)
            shot = _shot(check, item, index, line, where, base_dir)
            if shot is not None:
                shots.append(shot)
    fields = {k: v for k, v in fields.items() if v is not None}
    if shots and len(shots) == len(shots_data or ()):
        first = shots[0]
        if first.cut == "continue":
            check.add(
                first.line,
                "shot 1 cannot 'continue': there is no shot before it (give it an 'image' to start from a picture)",
            )
    check.done()
    _check_names(check, shots, fields["world"])
    check.done()
    return Storyboard(shots=tuple(shots), **fields)


def _shot(
    check: _Checker, item: Any, index: int, line: int | None, where: dict | None, base_dir: Path | None
) -> Shot | None:
    label = f"shot {index + 1}"
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        check.add(
            line, f"{label} must be a mapping with a 'prompt' (or just the prompt text), got {type(item).__name__}"
        )
        return None

    def at(key: str) -> int | None:
        if where:
            return where.get(key, where.get(""))
        return line_of(item, key, line)

    before = len(check.problems)
    for key in item:
        if key not in _SHOT_FIELDS:
            check.add(at(key), f"{label}: unknown key {key!r}{suggest(str(key), _SHOT_FIELDS)}")
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        check.add(at("prompt"), f"{label} has no prompt: say what happens in it")
        prompt = ""
    elif len(prompt) > MAX_PROMPT_CHARS:
        check.add(at("prompt"), f"{label}: the prompt is {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
    seconds = _seconds(check, item.get("seconds"), at("seconds"), f"{label}: seconds")
    cut = item.get("cut", "hard")
    if not isinstance(cut, str) or cut.strip().lower() not in CUTS:
        check.add(at("cut"), f"{label}: cut must be 'hard' or 'continue', got {cut!r}")
        cut = "hard"
    cut = cut.strip().lower()
    seed = _integer(check, item, "seed", at("seed"), 0, MAX_SEED, label=f"{label}: seed")
    camera = _text(check, item, "camera", at("camera"), label=f"{label}: camera") or ""
    style = _text(check, item, "style", at("style"), label=f"{label}: style")
    negative = (
        _text(check, item, "negative_prompt", at("negative_prompt"), label=f"{label}: negative_prompt")
        or _text(check, item, "negative", at("negative"), label=f"{label}: negative")
        or ""
    )
    cameos = _cameos(check, item, at, label)
    dialogue = _dialogue(check, item.get("dialogue"), at("dialogue"), label, where)
    image = _image(check, item.get("image"), at("image"), label, base_dir)
    if image is not None and cut == "continue":
        check.add(
            at("image"),
            f"{label}: a 'continue' shot starts from the previous shot's last frame;"
            " drop its image or make it a hard cut",
        )
    if len(check.problems) > before:
        return None
    return Shot(
        prompt=prompt.strip(),
        seconds=seconds,
        camera=camera.strip(),
        dialogue=dialogue,
        cameos=cameos,
        cut=cut,
        seed=seed,
        style=style,
        negative_prompt=negative,
        image=image,
        line=line,
    )


def _text(check: _Checker, data: dict, key: str, line: int | None, *, label: str | None = None) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("title", "model"):
        value = str(value)
    if not isinstance(value, str):
        check.add(line, f"{label or key} must be text, got {value!r}")
        return None
    if len(value) > MAX_PROMPT_CHARS:
        check.add(line, f"{label or key} is {len(value)} characters; keep it under {MAX_PROMPT_CHARS}")
        return None
    return value


def _seconds(check: _Checker, value: Any, line: int | None, label: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        match = SECONDS.match(value.strip())
        value = float(match["value"]) if match else value
    problem = seconds_problem(value)  # kinema.request's one rule, worded for a storyboard's line
    if problem == "not a number":
        check.add(line, f"{label} must be a number of seconds like 2 or 2.5, got {value!r}")
    elif problem == "too short":
        check.add(line, f"{label} must be more than 0, got {value:g}")
    elif problem == "too long":
        check.add(line, f"{label} is {value:g}; a shot can be at most {MAX_SECONDS:g} s: split it into several shots")
    return None if problem else float(value)


def _number(check: _Checker, value: Any, line: int | None, label: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        check.add(line, f"{label} must be a number from {low:g} to {high:g}, got {value!r}")
        return None
    return float(value)


def _integer(
    check: _Checker, data: dict, key: str, line: int | None, low: int, high: int, *, label: str | None = None
) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        check.add(line, f"{label or key} must be a whole number from {low} to {high}, got {value!r}")
        return None
    return value


def _size(check: _Checker, data: dict, top_line: Callable[[str], int | None]) -> tuple[int | None, int | None]:
    width = data.get("width")
    height = data.get("height")
    if "size" in data:
        size = data["size"]
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", size) if isinstance(size, str) else None
        if not match:
            check.add(top_line("size"), f"size must be WIDTHxHEIGHT like 768x512, got {size!r}")
            return None, None
        width, height = int(match[1]), int(match[2])
    for name, value in (("width", width), ("height", height)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE
        ):
            check.add(
                top_line("size" if "size" in data else name),
                f"{name} must be a whole number from {MIN_SIDE} to {MAX_SIDE}, got {value!r}",
            )
            return None, None
    return width, height


def _world(check: _Checker, data: dict, top_line: Callable[[str], int | None], header_lines: dict) -> World:
    world = data.get("world") or {}
    if not isinstance(world, dict):
        check.add(top_line("world"), f"world must be a mapping with {sorted(_WORLD_KEYS)}, got {type(world).__name__}")
        world = {}
    for key in world:
        if key not in _WORLD_KEYS:
            check.add(
                line_of(world, key, top_line("world")), f"world: unknown key {key!r}{suggest(str(key), _WORLD_KEYS)}"
            )
    merged: dict[str, Any] = {}
    for key in _WORLD_KEYS:
        if key in data and key in world:
            check.add(top_line(key), f"{key!r} is given both at the top and under 'world': keep one")
        if key in world:
            merged[key] = (world[key], line_of(world, key, top_line("world")), world)
        elif key in data:
            merged[key] = (data[key], top_line(key), data)
    setting = style = None
    characters: list[tuple[str, str]] = []
    if "setting" in merged:
        value, line, container = merged["setting"]
        setting = _text(check, {"setting": value}, "setting", line)
    if "style" in merged:
        value, line, container = merged["style"]
        style = _text(check, {"style": value}, "style", line)
    if "characters" in merged:
        value, line, container = merged["characters"]
        characters = _characters(check, value, line, header_lines)
    return World(setting=(setting or "").strip(), characters=tuple(characters), style=style)


_NAMED = re.compile(r"^\s*(?P<name>[^:=—–]{1,60}?)\s*(?::|=|—|–| - )\s*(?P<description>.+)$")


def _characters(check: _Checker, value: Any, line: int | None, header_lines: dict) -> list[tuple[str, str]]:
    characters: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name, description in value.items():
            if isinstance(description, dict):
                description = description.get("description")
            if not isinstance(description, str) or not description.strip():
                check.add(line_of(value, name, line), f"character {name!r} needs a description (text)")
                continue
            characters.append((str(name).strip(), description.strip()))
        return characters
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        check.add(line, f"characters must be a mapping of name: description (or a list), got {type(value).__name__}")
        return characters
    for index, item in enumerate(value):
        item_line = header_lines.get(f"character {index + 1}") or line_of(value, index, line)
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("description"), str):
            characters.append((item["name"].strip(), item["description"].strip()))
        elif isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), str):
            name, description = next(iter(item.items()))
            characters.append((str(name).strip(), description.strip()))
        elif isinstance(item, str) and item.strip():
            named = _NAMED.match(item)
            characters.append((named["name"].strip(), named["description"].strip()) if named else ("", item.strip()))
        else:
            check.add(item_line, f"cannot read character {item!r}: write 'Name: description'")
    return characters


def _cameos(check: _Checker, item: dict, at: Callable[[str], int | None], label: str) -> tuple[str, ...]:
    names: list[str] = []
    for key in ("cameos", "cameo"):
        value = item.get(key)
        if value is None:
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            check.add(at(key), f"{label}: cameos must be a list of cameo names, got {value!r}")
            continue
        names.extend(v.strip() for v in values)
    return tuple(dict.fromkeys(names))


def _dialogue(check: _Checker, value: Any, line: int | None, label: str, where: dict | None) -> tuple[Line, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: Any = [value]
    elif isinstance(value, dict):  # {speaker: x, text: y}, or {Mara: line, Kip: line}
        items = [value] if "text" in value else [{k: v} for k, v in value.items()]
    else:
        items = value
    if not isinstance(items, list):
        check.add(line, f"{label}: dialogue must be a list of lines like 'Mara: Where did it go?', got {value!r}")
        return ()
    lines: list[Line] = []
    text_lines = (where or {}).get("dialogue_lines", [])
    for index, entry in enumerate(items):
        entry_line = text_lines[index] if index < len(text_lines) else line_of(items, index, line)
        speaker, text = "", None
        if isinstance(entry, str):
            named = re.match(r"^\s*([^:\"“]{1,60}?)\s*:\s*(.+)$", entry)
            speaker, text = (named[1], named[2]) if named else ("", entry)
        elif isinstance(entry, dict) and "text" in entry:
            speaker, text = entry.get("speaker") or "", entry.get("text")
        elif isinstance(entry, dict) and len(entry) == 1:
            speaker, text = next(iter(entry.items()))
        if not isinstance(text, str) or not text.strip() or not isinstance(speaker, str):
            check.add(entry_line, f"{label}: cannot read dialogue line {entry!r}: write 'Name: what they say'")
            continue
        text = text.strip().strip("\"“”'")
        lines.append(Line(speaker.strip(), text))
    return tuple(lines)


def _image(check: _Checker, value: Any, line: int | None, label: str, base_dir: Path | None) -> Any:
    """The shot's first frame: a path (read when the shot runs) or, from a data URL, the pixels themselves."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        check.add(line, f"{label}: image must be a path to a picture or a data:image/... URL, got {value!r}")
        return None
    if is_data_url(value):
        try:
            return decode_data_url(value.strip(), what=f"{label}: image")
        except MediaReadError as error:
            check.add(line, str(error))
            return None
    if not check.files:
        check.add(
            line,
            f"{label}: image {value[:60]!r}: a storyboard sent to a server cannot name files on its disk;"
            " send the picture as a data URL (data:image/png;base64,...)",
        )
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        check.add(line, f"{label}: image {value!r} does not exist (relative paths start at the storyboard's folder)")
        return None
    return str(path)


def _check_names(check: _Checker, shots: list[Shot], world: World) -> None:
    """Styles and cameos must exist: say so before anything is generated."""
    styles = list_styles()
    if world.style and world.style not in styles:
        check.add(
            None, f"unknown style {world.style!r}; choose one of: {', '.join(sorted(styles))} (see `kinema styles`)"
        )
    known_cameos = _known_cameos()
    for index, shot in enumerate(shots):
        if shot.style and shot.style not in styles:
            check.add(
                shot.line,
                f"shot {index + 1}: unknown style {shot.style!r}{suggest(shot.style, styles)};"
                f" choose one of: {', '.join(sorted(styles))}",
            )
        for name in shot.cameos:
            if name not in known_cameos:
                listed = ", ".join(sorted(known_cameos)) or "none yet"
                check.add(
                    shot.line,
                    f"shot {index + 1}: unknown cameo {name!r}{suggest(name, known_cameos)};"
                    f" cameos here: {listed} (see `kinema cameo list`)",
                )


def _known_cameos() -> set[str]:
    """Names and ids of the cameos on this machine (whether the person asking may use them, and which of several
    of one name they mean, is checked per shot)."""
    if not (kinema_home() / "cameos").is_dir():
        return set()
    rows = [row for row in CameoStore().list() if "error" not in row]
    return {*CameoStore().names(), *(row["name"] for row in rows), *(row["character_id"] for row in rows)}
