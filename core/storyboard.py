"""Storyboards: several shots in one world, made into one film with sound.

A storyboard is a YAML/JSON file or plain text with one shot per line::

    Title: The night market
    Setting: a rain-soaked night market, neon signs, steam from food stalls
    Character: Mara: a woman in a yellow raincoat with short black hair
    Style: cinematic

    Shot 1 (2s): Mara walks between the stalls, looking for someone
      Camera: slow dolly in
    Shot 2 (3s, continue): Mara stops and turns
      Mara: "Where did it go?"
    Shot 3 (2s): a small grey robot hides behind a crate

Every shot's prompt carries the world (setting, characters, style), so the
places and people stay the same. A ``continue`` shot starts from the previous
shot's last frame (image-to-video), a ``hard`` cut starts afresh. Shot N gets
seed ``seed + N - 1``. Finished shots are cached by everything that affects
them, so editing shot 2 regenerates shot 2 and the ``continue`` shots after it.

Each shot is generated a little longer than asked (backends make 8k+1 or 4k+1
frames; a shot after a cut also makes one frame before its first, and every
shot but the last one frame after its end) and trimmed to the frames it asked
for, so the film lasts exactly the sum of the shots. The spare sound is what
the audio crossfades at the cuts overlap (see ``kinema.assemble``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from .errors import InvalidRequestError
from .request import MAX_PROMPT_CHARS, MAX_SECONDS, MAX_SEED, MAX_STEPS

CUTS = ("hard", "continue")
TEXT_SUFFIXES = (".txt", ".md", ".text", ".storyboard")
STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SHOTS = 500


class StoryboardError(InvalidRequestError):
    """A storyboard has problems; ``problems`` lists ``(line or None, message)`` for each."""

    def __init__(self, source: str, problems: list[tuple[Optional[int], str]]):
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            line, message = problems[0]
            text = f"{source}, line {line}: {message}" if line else f"{source}: {message}"
        else:
            shown = [f"  line {line}: {message}" if line else f"  {message}" for line, message in problems[:20]]
            more = [f"  … and {len(problems) - 20} more"] if len(problems) > 20 else []
            text = "\n".join([f"{source} has {len(problems)} problems:", *shown, *more])
        super().__init__(text)


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Line:
    """One line of dialogue; LTX-2 voices quoted speech in the prompt, other backends take it as a description."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Shot:
    prompt: str
    seconds: Optional[float] = None  # None: the storyboard's default shot length
    camera: str = ""
    dialogue: tuple[Line, ...] = ()
    cameos: tuple[str, ...] = ()
    cut: str = "hard"  # how this shot follows the previous one: "hard" or "continue"
    seed: Optional[int] = None  # None: storyboard seed + shot index
    style: Optional[str] = None  # overrides the world's style
    negative_prompt: str = ""
    image: Optional[str] = None  # a first frame for this shot (path), instead of a hard start
    line: Optional[int] = None  # where the shot is written, for messages


@dataclass(frozen=True)
class World:
    """What every shot shares. Characters are ``(name, description)``; a nameless one is in every shot."""

    setting: str = ""
    characters: tuple[tuple[str, str], ...] = ()
    style: Optional[str] = None


@dataclass(frozen=True)
class Storyboard:
    shots: tuple[Shot, ...]
    world: World = World()
    title: str = ""
    seed: int = 0  # storyboards are reproducible by default: another seed is another take
    seconds: Optional[float] = None  # default shot length; None: the backend's default clip length
    negative_prompt: str = ""
    backend: str = "tiny"
    model: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    steps: Optional[int] = None
    guidance: Optional[float] = None
    tier: str = "standard"  # quality tier of every shot (kinema.tiers.TIERS)
    audio: bool = True
    source: str = "<storyboard>"

    def with_(self, **changes: Any) -> "Storyboard":
        """A copy with ``changes``; ``None`` values are ignored (handy for optional CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# --------------------------------------------------------------------------- reading


def load_storyboard(path: Union[str, "os.PathLike[str]"]) -> Storyboard:
    """Read a storyboard file: ``.yaml``/``.yml``/``.json`` as structured data, anything else as shot lines."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"storyboard {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"storyboard {path} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    suffix = path.suffix.lower()
    kind = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else "text" if suffix in TEXT_SUFFIXES else "auto"
    return parse_storyboard(text, format=kind, source=str(path), base_dir=path.parent)


def parse_storyboard(text: str, *, format: str = "auto", source: str = "<storyboard>",
                     base_dir: Optional[Path] = None) -> Storyboard:
    """Parse storyboard ``text``; ``format`` is "yaml", "json", "text" or "auto" (sniffed)."""
    if format == "auto":
        format = _sniff(text)
    if format == "text":
        data, lines = _parse_text(text, source)
    elif format in ("yaml", "json"):
        data = _parse_structured(text, format, source)
        lines = None
    else:
        raise ValueError(f"unknown storyboard format {format!r}")
    return from_dict(data, source=source, base_dir=base_dir, _lines=lines)


def _sniff(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "json"
    if re.search(r"^shots\s*:", text, re.MULTILINE):
        return "yaml"
    return "text"


# ---- YAML and JSON, remembering the line of every value


class _Map(dict):
    line: Optional[int] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}


class _Seq(list):
    line: Optional[int] = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: list[Optional[int]] = []


def _yaml_loader(source: str, duplicates: list):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        result = _Map()
        result.line = node.start_mark.line + 1
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                duplicates.append((key_node.start_mark.line + 1, f"{key!r} is given twice"))
            result[key] = loader.construct_object(value_node, deep=True)
            result.lines[key] = key_node.start_mark.line + 1
        return result

    def sequence(loader, node):
        result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def _parse_structured(text: str, format: str, source: str) -> Any:
    import yaml

    if format == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            raise StoryboardError(source, [(error.lineno, f"not valid JSON: {error.msg} (column {error.colno})")]) from None
    duplicates: list = []
    try:
        data = yaml.load(text, Loader=_yaml_loader(source, duplicates))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        what = error.problem or error.context or "unreadable"
        raise StoryboardError(source, [(line, f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as error:
        if format == "json":  # valid JSON PyYAML cannot read (rare): fine, just without line numbers
            return json.loads(text)
        raise StoryboardError(source, [(None, f"not valid YAML: {error}")]) from None
    if duplicates:
        raise StoryboardError(source, duplicates)
    return data


# ---- plain text: "Shot 1 (2s): ..." lines

_SHOT = re.compile(r"^\s*shot\b\s*(?P<number>\d+)?\s*(?:\((?P<options>[^)]*)\))?\s*[:.\-–—]\s*(?P<prompt>.*)$", re.IGNORECASE)
_KEY = re.compile(r"^\s*(?P<key>[A-Za-z][\w \-]{0,30}?)\s*:\s*(?P<value>.*)$")
_SECONDS = re.compile(r"^(?P<value>[-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*(?:s|sec|secs|second|seconds)?$", re.IGNORECASE)
_HEADER_KEYS = {"title", "setting", "character", "characters", "style", "seed", "seconds", "negative", "negative prompt",
                "negative_prompt", "backend", "model", "size", "fps", "steps", "guidance", "tier", "audio"}
_SHOT_KEYS = {"camera", "cut", "cameo", "cameos", "seed", "style", "negative", "negative prompt", "negative_prompt",
              "image", "dialogue", "say", "seconds"}


def _parse_text(text: str, source: str) -> tuple[dict, dict]:
    """Plain text to the same dict a YAML file gives, plus where each part came from."""
    problems: list[tuple[Optional[int], str]] = []
    header: dict[str, Any] = {}
    header_lines: dict[str, int] = {}
    characters: list[str] = []
    shots: list[dict] = []
    shot_lines: list[dict] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        shot = _SHOT.match(line)
        if shot:
            entry, where = {"prompt": shot["prompt"].strip()}, {"prompt": number, "": number}
            for option in filter(None, (o.strip() for o in (shot["options"] or "").split(","))):
                _read_option(option, entry, where, number, problems)
            shots.append(entry)
            shot_lines.append(where)
            continue
        keyed = _KEY.match(line)
        key = keyed["key"].strip().lower() if keyed else ""
        value = keyed["value"].strip() if keyed else ""
        if shots and not keyed and raw[:1].isspace():  # an indented line goes on with the shot's prompt
            shots[-1]["prompt"] = f"{shots[-1]['prompt']} {line}".strip()
        elif shots and keyed and key not in _SHOT_KEYS and value[:1] in ('"', "“", "'"):
            _add_dialogue(shots[-1], shot_lines[-1], f"{keyed['key'].strip()}: {value}", number)
        elif shots and keyed and key in _SHOT_KEYS:
            _read_shot_key(key, value, shots[-1], shot_lines[-1], number, problems)
        elif not shots and keyed and key in _HEADER_KEYS:
            if key in ("character", "characters"):
                characters.append(value)
                header_lines.setdefault("characters", number)
                header_lines[f"character {len(characters)}"] = number
                continue
            key = "negative_prompt" if key.startswith("negative") else key
            if key in header:
                problems.append((number, f"{keyed['key'].strip()!r} is given twice"))
            header[key] = value
            header_lines[key] = number
        else:
            expected = "a shot line or one of its keys (" + ", ".join(sorted(_SHOT_KEYS)) + ")" if shots else \
                "'Shot 1 (2s): what happens' or a header (" + ", ".join(sorted(k.title() for k in _HEADER_KEYS)) + ")"
            guess = _suggest(key, _SHOT_KEYS if shots else _HEADER_KEYS) if keyed else ""
            problems.append((number, f"cannot read {_clip(line)!r}: expected {expected}{guess}"))
    if problems:
        raise StoryboardError(source, problems)
    data: dict[str, Any] = {}
    world: dict[str, Any] = {}
    for key, value in header.items():
        if key in ("setting", "style"):
            world[key] = value
        else:
            data[key] = _number_or_text(value)
    if characters:
        world["characters"] = characters
    if world:
        data["world"] = world
    data["shots"] = shots
    lines = {"header": header_lines, "shots": shot_lines}
    return data, lines


def _read_option(option: str, entry: dict, where: dict, number: int, problems: list) -> None:
    lowered = option.lower()
    seconds = _SECONDS.match(option)
    if seconds:
        entry["seconds"] = float(seconds["value"])
        where["seconds"] = number
    elif lowered in ("continue", "continued", "cont", "continuous", "cut: continue"):
        entry["cut"], where["cut"] = "continue", number
    elif lowered in ("hard", "hard cut", "cut", "cut: hard"):
        entry["cut"], where["cut"] = "hard", number
    elif ":" in option:
        key, value = (part.strip() for part in option.split(":", 1))
        if key.lower() in _SHOT_KEYS:
            _read_shot_key(key.lower(), value, entry, where, number, problems)
        else:
            problems.append((number, f"unknown shot option {key!r}{_suggest(key.lower(), _SHOT_KEYS)}"))
    else:
        problems.append((number, f"cannot read shot option {option!r}: use a length like '2s', 'continue',"
                                 " 'hard' or 'key: value' (e.g. 'camera: close-up')"))


def _read_shot_key(key: str, value: str, entry: dict, where: dict, number: int, problems: list) -> None:
    if key in ("dialogue", "say"):
        _add_dialogue(entry, where, value, number)
        return
    if key in ("cameo", "cameos"):
        entry.setdefault("cameos", []).extend(v.strip() for v in value.split(",") if v.strip())
        where["cameos"] = number
        return
    key = "negative_prompt" if key.startswith("negative") else key
    if key in entry and key != "cut":
        problems.append((number, f"{key!r} is given twice for this shot"))
    entry[key] = _number_or_text(value) if key in ("seed", "seconds") else value
    where[key] = number


def _add_dialogue(entry: dict, where: dict, value: str, number: int) -> None:
    entry.setdefault("dialogue", []).append(value)
    where.setdefault("dialogue_lines", []).append(number)
    where.setdefault("dialogue", number)


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- the dict (from any format) to a Storyboard, with every problem found at once

_TOP_KEYS = {"title", "world", "setting", "characters", "style", "seed", "seconds", "negative_prompt", "negative",
             "backend", "model", "size", "width", "height", "fps", "steps", "guidance", "tier", "audio", "shots"}
_WORLD_KEYS = {"setting", "characters", "style"}
_SHOT_FIELDS = {"prompt", "seconds", "camera", "dialogue", "cameos", "cameo", "cut", "seed", "style",
                "negative_prompt", "negative", "image"}


class _Checker:
    """Collects problems with the line they are on, so one run reports them all."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[tuple[Optional[int], str]] = []

    def add(self, line: Optional[int], message: str) -> None:
        self.problems.append((line, message))

    def done(self) -> None:
        if self.problems:
            self.problems.sort(key=lambda p: (p[0] is None, p[0] or 0))
            raise StoryboardError(self.source, self.problems)


def _line_of(container: Any, key: Any, fallback: Optional[int] = None) -> Optional[int]:
    if isinstance(container, _Map):
        return container.lines.get(key, container.line)
    if isinstance(container, _Seq) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return fallback


def from_dict(data: Any, *, source: str = "<storyboard>", base_dir: Optional[Path] = None,
              _lines: Optional[dict] = None) -> Storyboard:
    """Build and validate a Storyboard from parsed data (e.g. a JSON request body)."""
    check = _Checker(source)
    header_lines = (_lines or {}).get("header", {})
    shot_lines = (_lines or {}).get("shots", [])

    def top_line(key: str) -> Optional[int]:
        return header_lines.get(key) or _line_of(data, key)

    if not isinstance(data, dict):
        check.add(getattr(data, "line", None) or 1,
                  "a storyboard must be a mapping with a 'shots' list (or shot lines like 'Shot 1 (2s): …')")
        check.done()
    for key in data:
        if key not in _TOP_KEYS:
            check.add(top_line(key), f"unknown key {key!r}{_suggest(str(key), _TOP_KEYS)}")

    fields: dict[str, Any] = {"source": source}
    fields["title"] = _text(check, data, "title", top_line("title")) or ""
    fields["negative_prompt"] = _text(check, data, "negative_prompt", top_line("negative_prompt")) or \
        _text(check, data, "negative", top_line("negative")) or ""
    for name in ("backend", "model"):
        value = _text(check, data, name, top_line(name))
        if value:
            fields[name] = value
    fields["seed"] = _integer(check, data, "seed", top_line("seed"), 0, MAX_SEED)
    fields["seconds"] = _seconds(check, data.get("seconds"), top_line("seconds"), "seconds")
    fields["fps"] = _number(check, data.get("fps"), top_line("fps"), "fps", 1.0, 120.0)
    fields["steps"] = _integer(check, data, "steps", top_line("steps"), 1, MAX_STEPS)
    fields["guidance"] = _number(check, data.get("guidance"), top_line("guidance"), "guidance", 0.0, 50.0)
    tier = _text(check, data, "tier", top_line("tier"))
    if tier:
        from .tiers import TIERS

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
        hint = "add lines like 'Shot 1 (2s): a fox runs through snow'" if _lines is not None else \
            "add a 'shots' list, e.g. shots: [{prompt: a fox runs through snow, seconds: 2}]"
        check.add(top_line("shots") if shots_data is not None else None, f"the storyboard has no shots: {hint}")
    elif not isinstance(shots_data, list):
        check.add(top_line("shots"), f"'shots' must be a list of shots, got {type(shots_data).__name__}")
    elif len(shots_data) > MAX_SHOTS:
        check.add(top_line("shots"), f"{len(shots_data)} shots is too many; split the film into storyboards of at most {MAX_SHOTS}")
    else:
        for index, item in enumerate(shots_data):
            where = shot_lines[index] if index < len(shot_lines) else None
            line = (where or {}).get("") or _line_of(shots_data, index)
            shot = _shot(check, item, index, line, where, base_dir)
            if shot is not None:
                shots.append(shot)
    fields = {k: v for k, v in fields.items() if v is not None}
    if shots and len(shots) == len(shots_data or ()):
        first = shots[0]
        if first.cut == "continue":
            check.add(first.line, "shot 1 cannot 'continue': there is no shot before it"
                                  " (give it an 'image' to start from a picture)")
    check.done()
    _check_names(check, shots, fields["world"])
    check.done()
    return Storyboard(shots=tuple(shots), **fields)


def _shot(check: _Checker, item: Any, index: int, line: Optional[int], where: Optional[dict],
          base_dir: Optional[Path]) -> Optional[Shot]:
    label = f"shot {index + 1}"
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        check.add(line, f"{label} must be a mapping with a 'prompt' (or just the prompt text), got {type(item).__name__}")
        return None

    def at(key: str) -> Optional[int]:
        if where:
            return where.get(key, where.get(""))
        return _line_of(item, key, line)

    before = len(check.problems)
    for key in item:
        if key not in _SHOT_FIELDS:
            check.add(at(key), f"{label}: unknown key {key!r}{_suggest(str(key), _SHOT_FIELDS)}")
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
    negative = _text(check, item, "negative_prompt", at("negative_prompt"), label=f"{label}: negative_prompt") or \
        _text(check, item, "negative", at("negative"), label=f"{label}: negative") or ""
    cameos = _cameos(check, item, at, label)
    dialogue = _dialogue(check, item.get("dialogue"), at("dialogue"), label, where)
    image = _image(check, item.get("image"), at("image"), label, base_dir)
    if image and cut == "continue":
        check.add(at("image"), f"{label}: a 'continue' shot starts from the previous shot's last frame;"
                               " drop its image or make it a hard cut")
    if len(check.problems) > before:
        return None
    return Shot(prompt=prompt.strip(), seconds=seconds, camera=camera.strip(), dialogue=dialogue, cameos=cameos,
                cut=cut, seed=seed, style=style, negative_prompt=negative, image=image, line=line)


def _text(check: _Checker, data: dict, key: str, line: Optional[int], *, label: Optional[str] = None) -> Optional[str]:
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


def _seconds(check: _Checker, value: Any, line: Optional[int], label: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, str):
        match = _SECONDS.match(value.strip())
        value = float(match["value"]) if match else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        check.add(line, f"{label} must be a number of seconds like 2 or 2.5, got {value!r}")
        return None
    if value <= 0:
        check.add(line, f"{label} must be more than 0, got {value:g}")
        return None
    if value > MAX_SECONDS:
        check.add(line, f"{label} is {value:g}; a shot can be at most {MAX_SECONDS:g} s: split it into several shots")
        return None
    return float(value)


def _number(check: _Checker, value: Any, line: Optional[int], label: str, low: float, high: float) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        check.add(line, f"{label} must be a number from {low:g} to {high:g}, got {value!r}")
        return None
    return float(value)


def _integer(check: _Checker, data: dict, key: str, line: Optional[int], low: int, high: int, *,
             label: Optional[str] = None) -> Optional[int]:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        check.add(line, f"{label or key} must be a whole number from {low} to {high}, got {value!r}")
        return None
    return value


def _size(check: _Checker, data: dict, top_line: Callable[[str], Optional[int]]) -> tuple[Optional[int], Optional[int]]:
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
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096):
            check.add(top_line("size" if "size" in data else name), f"{name} must be a whole number from 16 to 4096, got {value!r}")
            return None, None
    return width, height


def _world(check: _Checker, data: dict, top_line: Callable[[str], Optional[int]], header_lines: dict) -> World:
    world = data.get("world") or {}
    if not isinstance(world, dict):
        check.add(top_line("world"), f"world must be a mapping with {sorted(_WORLD_KEYS)}, got {type(world).__name__}")
        world = {}
    for key in world:
        if key not in _WORLD_KEYS:
            check.add(_line_of(world, key, top_line("world")), f"world: unknown key {key!r}{_suggest(str(key), _WORLD_KEYS)}")
    merged: dict[str, Any] = {}
    for key in _WORLD_KEYS:
        if key in data and key in world:
            check.add(top_line(key), f"{key!r} is given both at the top and under 'world': keep one")
        if key in world:
            merged[key] = (world[key], _line_of(world, key, top_line("world")), world)
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


def _characters(check: _Checker, value: Any, line: Optional[int], header_lines: dict) -> list[tuple[str, str]]:
    characters: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name, description in value.items():
            if isinstance(description, dict):
                description = description.get("description")
            if not isinstance(description, str) or not description.strip():
                check.add(_line_of(value, name, line), f"character {name!r} needs a description (text)")
                continue
            characters.append((str(name).strip(), description.strip()))
        return characters
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        check.add(line, f"characters must be a mapping of name: description (or a list), got {type(value).__name__}")
        return characters
    for index, item in enumerate(value):
        item_line = header_lines.get(f"character {index + 1}") or _line_of(value, index, line)
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


def _cameos(check: _Checker, item: dict, at: Callable[[str], Optional[int]], label: str) -> tuple[str, ...]:
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


def _dialogue(check: _Checker, value: Any, line: Optional[int], label: str, where: Optional[dict]) -> tuple[Line, ...]:
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
        entry_line = text_lines[index] if index < len(text_lines) else _line_of(items, index, line)
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
        text = text.strip().strip('"“”\'')
        lines.append(Line(speaker.strip(), text))
    return tuple(lines)


def _image(check: _Checker, value: Any, line: Optional[int], label: str, base_dir: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        check.add(line, f"{label}: image must be a path to a picture, got {value!r}")
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
    from .styles import list_styles

    styles = list_styles()
    if world.style and world.style not in styles:
        check.add(None, f"unknown style {world.style!r}; choose one of: {', '.join(sorted(styles))} (see `kinema styles`)")
    known_cameos = _known_cameos()
    for index, shot in enumerate(shots):
        if shot.style and shot.style not in styles:
            check.add(shot.line, f"shot {index + 1}: unknown style {shot.style!r}{_suggest(shot.style, styles)};"
                                 f" choose one of: {', '.join(sorted(styles))}")
        for name in shot.cameos:
            if name not in known_cameos:
                listed = ", ".join(sorted(known_cameos)) or "none yet"
                check.add(shot.line, f"shot {index + 1}: unknown cameo {name!r}{_suggest(name, known_cameos)};"
                                     f" cameos here: {listed} (see `kinema cameo list`)")


def _known_cameos() -> set[str]:
    """Names of the cameos on this machine (whether the person asking may use them is checked per shot)."""
    from .home import kinema_home

    if not (kinema_home() / "cameos").is_dir():
        return set()
    from .cameos import CameoStore

    return set(CameoStore().names())


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ShotPlan:
    """How one shot is made: the frames it keeps and the slightly longer generation they are cut from."""

    index: int  # 0-based
    shot: Shot
    prompt: str  # with the world folded in (the style is added by the engine)
    style: Optional[str]
    seed: int
    start_frame: int  # in the film
    frames: int  # kept in the film
    head: int  # generated frames dropped before the kept ones
    generated: int  # frames the backend makes
    fps: Fraction

    @property
    def seconds(self) -> float:
        return float(self.frames / self.fps)

    @property
    def start(self) -> float:
        return float(self.start_frame / self.fps)


_PRONOUNS = re.compile(r"\b(he|she|they|him|her|his|hers|them|their|theirs|we|us|our)\b", re.IGNORECASE)


def compose_prompt(board: Storyboard, shot: Shot) -> str:
    """The shot's prompt with the world folded in: its characters, the setting, the camera, the lines spoken.

    A character is described in every shot that names it; a shot that names
    nobody but says "she" or "they" gets every character (it means them).
    Nameless characters are in every shot.
    """
    parts = [shot.prompt.strip().rstrip(".")]
    mentioned_text = " ".join([shot.prompt, shot.camera, *(line.speaker for line in shot.dialogue), *shot.cameos])
    named = [(n, d) for n, d in board.world.characters if n]
    mentioned = [(n, d) for n, d in named if re.search(rf"\b{re.escape(n)}\b", mentioned_text, re.IGNORECASE)]
    if not mentioned and _PRONOUNS.search(shot.prompt):
        mentioned = named
    chosen = mentioned + [(n, d) for n, d in board.world.characters if not n]
    for name, description in chosen:
        parts.append(f"{name}: {description}".rstrip(".") if name else description.rstrip("."))
    if board.world.setting:
        parts.append(f"Setting: {board.world.setting.rstrip('.')}")
    if shot.camera:
        parts.append(f"Camera: {shot.camera.rstrip('.')}")
    for line in shot.dialogue:
        who = f"{line.speaker} says" if line.speaker else "A voice says"
        parts.append(f'{who}: "{line.text}"')
    return ". ".join(parts)


def plan_storyboard(board: Storyboard, backend: Any = None) -> list[ShotPlan]:
    """Frame-exact plan of every shot: what it keeps, what is generated, with which seed and prompt."""
    from .engine import get_backend

    backend = backend or get_backend(board.backend)
    fps = Fraction(board.fps or backend.defaults.fps).limit_denominator(1001)
    multiple = max(1, int(getattr(backend, "frame_multiple", 1)))
    minimum = max(1, int(getattr(backend, "min_frames", 1)))
    plans: list[ShotPlan] = []
    elapsed = Fraction(0)
    problems: list[tuple[Optional[int], str]] = []
    last = len(board.shots) - 1
    for index, shot in enumerate(board.shots):
        if (shot.cut == "continue" or shot.image) and not backend.supports_image:
            problems.append((shot.line, f"shot {index + 1}: backend {backend.name!r} cannot start a shot from a frame;"
                                        " make it a hard cut without an image, or pick another backend"))
        seconds = Fraction(shot.seconds or board.seconds or backend.defaults.seconds).limit_denominator(10**6)
        # Cumulative rounding: the film's frame count is the total length rounded once, never N roundings.
        start, end = round(elapsed * fps), round((elapsed + seconds) * fps)
        elapsed += seconds
        frames = end - start
        if frames < 1:
            problems.append((shot.line, f"shot {index + 1}: {float(seconds):g} s is less than one frame at {float(fps):g} fps"))
            continue
        head = 0 if index == 0 else 1  # sound from before the cut, to crossfade with; and no repeated frame after a continue
        tail = 0 if index == last else 1  # sound from after the cut
        need = head + frames + tail
        generated = max(minimum, multiple * math.ceil((need - 1) / multiple) + 1)
        seed = shot.seed if shot.seed is not None else (board.seed + index) % (MAX_SEED + 1)
        plans.append(ShotPlan(index, shot, compose_prompt(board, shot), shot.style or board.world.style, seed,
                              start, frames, head, generated, fps))
    if problems:
        raise StoryboardError(board.source, problems)
    return plans


# --------------------------------------------------------------------------- making the film


@dataclass
class ShotResult:
    plan: ShotPlan
    clip: Any  # kinema.Clip: the kept frames and their sound
    generated: Any  # kinema.Clip: everything the backend made (the spare sound feeds the crossfades)
    cached: bool
    request: Any  # the GenerationRequest that made it
    conditioning: Optional[np.ndarray] = None  # the first frame it was given (continue shots: the previous last frame)


@dataclass
class StoryboardResult:
    film: Any  # kinema.Clip
    shots: list[ShotResult] = field(default_factory=list)

    @property
    def regenerated(self) -> list[int]:
        """1-based numbers of the shots that were generated (not taken from the cache)."""
        return [r.plan.index + 1 for r in self.shots if not r.cached]


def shot_request(board: Storyboard, plan: ShotPlan, image: Optional[np.ndarray], user: Optional[str] = None):
    from .request import GenerationRequest

    shot = plan.shot
    negative = ", ".join(p for p in (board.negative_prompt, shot.negative_prompt) if p)
    fields: dict[str, Any] = {"cameos": tuple(shot.cameos)} if shot.cameos else {}
    if user is not None:
        fields["user"] = user
    try:
        return GenerationRequest(
            prompt=plan.prompt, negative_prompt=negative, seconds=float(plan.generated / plan.fps), fps=float(plan.fps),
            width=board.width, height=board.height, seed=plan.seed, steps=board.steps, guidance=board.guidance,
            tier=board.tier,
            style=plan.style, image=image if image is not None else shot.image, audio=board.audio,
            backend=board.backend, model=board.model, **fields,
        )
    except InvalidRequestError as error:
        raise StoryboardError(board.source, [(shot.line, f"shot {plan.index + 1}: {error}")]) from None


def run_storyboard(
    board: Storyboard,
    *,
    progress: Optional[Callable[[Any], None]] = None,
    cancel: Any = None,
    cache: bool = True,
    backend: Any = None,
    on_shot: Optional[Callable[[ShotResult], None]] = None,
    user: Optional[str] = None,
    start_image: Optional[np.ndarray] = None,
) -> StoryboardResult:
    """Make every shot (or take it from the cache) and assemble the film.

    ``progress`` gets ``Progress`` events whose stage names the shot
    ("shot 2/3 video"); ``cancel`` stops within one step; ``on_shot`` is called
    as each shot is ready. ``user`` is who asks (for cameo consent; None is the
    local user). ``start_image`` (uint8 [H, W, 3]) is the first shot's first
    frame, unless that shot names an image of its own.
    """
    from . import __version__, engine
    from .assemble import Piece, join
    from .clip import Clip
    from .progress import CancelToken, Progress
    from .request import GenerationRequest

    backend = backend or engine.resolve_backend(GenerationRequest("storyboard", backend=board.backend, model=board.model))
    plans = plan_storyboard(board, backend)
    cancel = cancel or CancelToken()
    store = ShotCache() if cache else None
    started = time.time()
    results: list[ShotResult] = []
    previous_last: Optional[np.ndarray] = None
    done_steps = 0
    per_shot = board.steps or backend.defaults.steps  # a first guess at each shot's steps, corrected by its events
    for plan in plans:
        cancel.raise_if_cancelled()
        conditioning = previous_last if plan.shot.cut == "continue" else None
        if plan.index == 0 and start_image is not None and plan.shot.image is None:
            conditioning = start_image
        request = shot_request(board, plan, conditioning, user)
        key = cache_key(request, backend)
        clip = store.get(key) if store else None
        if clip is not None and request.cameos:
            from .cameos import authorize_request

            authorize_request(request)  # consent is asked again: a cached likeness is still a likeness
        cached = clip is not None
        if clip is None:
            remaining = len(plans) - plan.index - 1
            seen = {"total": per_shot}

            def on_progress(event, _plan=plan, _remaining=remaining, _seen=seen):
                _seen["total"] = event.total
                if progress is not None:
                    progress(Progress(step=done_steps + event.step, total=done_steps + event.total * (1 + _remaining),
                                      stage=f"shot {_plan.index + 1}/{len(plans)} {event.stage}", preview=event.preview))

            try:
                clip = engine.generate(request, progress=on_progress, cancel=cancel, backend=backend)
            except InvalidRequestError as error:
                raise StoryboardError(board.source, [(plan.shot.line, f"shot {plan.index + 1}: {error}")]) from None
            done_steps += seen["total"]
            per_shot = seen["total"]
            if store:
                store.put(key, clip)
        if clip.frame_count < plan.head + plan.frames:
            raise InvalidRequestError(f"shot {plan.index + 1}: backend {backend.name!r} made {clip.frame_count} frames"
                                      f" where {plan.generated} were planned")
        result = ShotResult(plan, _kept_clip(clip, plan), clip, cached, request, conditioning)
        results.append(result)
        previous_last = result.clip.frames[-1]
        if on_shot is not None:
            on_shot(result)

    sample_rate = next((r.generated.sample_rate for r in results if r.generated.sample_rate), None)
    pieces = [Piece(r.clip.frames, r.generated.audio, round(Fraction(r.plan.head) * (sample_rate or 0) / r.plan.fps))
              for r in results]
    frames, audio = join(pieces, plans[0].fps, sample_rate)
    metadata = {
        "kind": "storyboard",
        "title": board.title,
        "prompt": board.title or " / ".join(p.shot.prompt for p in plans)[:1000],
        "world": dataclasses.asdict(board.world),
        "seed": board.seed,
        "backend": backend.name,
        "model": backend.model_id,
        "width": int(frames.shape[2]),
        "height": int(frames.shape[1]),
        "num_frames": int(frames.shape[0]),
        "fps": str(plans[0].fps),
        "audio": audio is not None,
        "kinema_version": __version__,
        "created_at": int(started),
        "generation_seconds": round(time.time() - started, 3),
        "shots": [_shot_metadata(r) for r in results],
    }
    film = Clip(frames, plans[0].fps, audio, sample_rate if audio is not None else None, metadata)
    return StoryboardResult(film, results)


def _kept_clip(clip: Any, plan: ShotPlan) -> Any:
    """The frames the shot keeps, with exactly their sound."""
    from .clip import Clip, fit_audio

    frames = clip.frames[plan.head:plan.head + plan.frames]
    audio = None
    if clip.audio is not None:
        start = round(Fraction(plan.head) * clip.sample_rate / plan.fps)
        audio = fit_audio(clip.audio[:, start:], clip.sample_rate, plan.frames, plan.fps)
    kept = Clip(frames, plan.fps, audio, clip.sample_rate if audio is not None else None, dict(clip.metadata))
    kept.metadata.update({"num_frames": plan.frames, "generated_frames": clip.frame_count})
    return kept


def _shot_metadata(result: ShotResult) -> dict:
    plan = result.plan
    notes = []
    if plan.generated != plan.frames:
        notes.append(f"generated {plan.generated} frames, kept {plan.frames} ({plan.seconds:.3f} s) from frame {plan.head}")
    return {
        "shot": plan.index + 1,
        "line": plan.shot.line,
        "prompt": plan.shot.prompt,
        "full_prompt": result.clip.metadata.get("prompt", plan.prompt),
        "cut": plan.shot.cut,
        "camera": plan.shot.camera,
        "dialogue": [dataclasses.asdict(line) for line in plan.shot.dialogue],
        "cameos": list(plan.shot.cameos),
        "style": plan.style,
        "seed": plan.seed,
        "start": round(plan.start, 6),
        "seconds": round(plan.seconds, 6),
        "frames": plan.frames,
        "generated_frames": plan.generated,
        "cached": result.cached,
        "notes": notes + list(result.clip.metadata.get("notes", [])),
    }


# --------------------------------------------------------------------------- the shot cache


def cache_key(request: Any, backend: Any) -> str:
    """A hash of everything that changes what a shot looks and sounds like."""
    from . import __version__
    from .styles import apply_style

    effective = apply_style(request)
    fields = {f.name: _fingerprint(getattr(effective, f.name)) for f in dataclasses.fields(effective)}
    if effective.cameos:  # a cameo re-recorded under the same name must not bring back the old likeness
        from .cameos import RECORD_FILE, CameoStore

        store = CameoStore()
        fields["cameo_records"] = [_fingerprint(store.path(name) / RECORD_FILE) for name in effective.cameos]
    identity = {"request": fields, "backend": backend.name, "backend_class": type(backend).__qualname__,
                "model": backend.model_id, "kinema": __version__}
    blob = json.dumps(identity, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()


def _fingerprint(value: Any) -> Any:
    """A JSON-able stand-in for ``value`` that changes whenever its content does (arrays and files by hash)."""
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, Path) or (isinstance(value, str) and os.sep in value and os.path.isfile(value)):
        path = Path(value)
        if path.is_file():
            return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return str(path)
    if isinstance(value, (list, tuple)):
        return [_fingerprint(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _fingerprint(v) for k, v in value.items()}
    return value


class ShotCache:
    """Finished shots as ``.npz`` (raw frames and samples: exact, so a continue shot sees the very same last frame)."""

    def __init__(self, folder: Optional[Path] = None):
        from .home import kinema_home

        self.folder = folder or kinema_home() / "cache" / "shots"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def get(self, key: str) -> Any:
        from .clip import Clip

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                audio = data["audio"] if data["audio"].size else None
                rate = int(data["sample_rate"]) or None
                fps = Fraction(int(data["fps"][0]), int(data["fps"][1]))
                clip = Clip(data["frames"], fps, audio, rate if audio is not None else None,
                            json.loads(str(data["metadata"])))
        except (OSError, ValueError, KeyError):  # a damaged entry is just a miss; it gets rewritten
            return None
        os.utime(path)  # recently used: what a size-based cleanup would keep
        return clip

    def put(self, key: str, clip: Any) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.part")
        try:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    frames=clip.frames,
                    audio=clip.audio if clip.audio is not None else np.zeros((0, 0), np.float32),
                    sample_rate=np.int64(clip.sample_rate or 0),
                    fps=np.array([clip.fps.numerator, clip.fps.denominator], np.int64),
                    metadata=np.array(json.dumps(clip.metadata, sort_keys=True, default=str)),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
