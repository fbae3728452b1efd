"""Storyboard text to plain data: YAML and JSON that remember the line of every value, and plain shot lines.

Every format gives the same dict (plus, for plain text, where each part was
written); ``kinema.storyboard.check.from_dict`` turns it into a ``Storyboard``.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from kinema.storyboard.model import StoryboardError


def sniff_format(text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "json"
    if re.search(r"^shots\s*:", text, re.MULTILINE):
        return "yaml"
    return "text"


# ---- YAML and JSON, remembering the line of every value


class LinedDict(dict):
    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}


class LinedList(list):
    line: int | None = None

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines: list[int | None] = []


def line_of(container: Any, key: Any, fallback: int | None = None) -> int | None:
    if isinstance(container, LinedDict):
        return container.lines.get(key, container.line)
    if isinstance(container, LinedList) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return fallback


def _yaml_loader(source: str, duplicates: list):
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        result = LinedDict()
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
        result = LinedList(loader.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.lines = [child.start_mark.line + 1 for child in node.value]
        return result

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, sequence)
    return Loader


def parse_structured(text: str, format: str, source: str) -> Any:
    import yaml

    if format == "json":
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            raise StoryboardError(
                source, [(error.lineno, f"not valid JSON: {error.msg} (column {error.colno})")]
            ) from None
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

_SHOT = re.compile(
    r"^\s*shot\b\s*(?P<number>\d+)?\s*(?:\((?P<options>[^)]*)\))?\s*[:.\-–—]\s*(?P<prompt>.*)$", re.IGNORECASE
)
_KEY = re.compile(r"^\s*(?P<key>[A-Za-z][\w \-]{0,30}?)\s*:\s*(?P<value>.*)$")
SECONDS = re.compile(r"^(?P<value>[-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*(?:s|sec|secs|second|seconds)?$", re.IGNORECASE)
_HEADER_KEYS = {
    "title",
    "setting",
    "character",
    "characters",
    "style",
    "seed",
    "seconds",
    "negative",
    "negative prompt",
    "negative_prompt",
    "backend",
    "model",
    "size",
    "fps",
    "steps",
    "guidance",
    "tier",
    "audio",
}
_SHOT_KEYS = {
    "camera",
    "cut",
    "cameo",
    "cameos",
    "seed",
    "style",
    "negative",
    "negative prompt",
    "negative_prompt",
    "image",
    "dialogue",
    "say",
    "seconds",
}


def parse_text(text: str, source: str) -> tuple[dict, dict]:
    """Plain text to the same dict a YAML file gives, plus where each part came from."""
    problems: list[tuple[int | None, str]] = []
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
            expected = (
                "a shot line or one of its keys (" + ", ".join(sorted(_SHOT_KEYS)) + ")"
                if shots
                else "'Shot 1 (2s): what happens' or a header ("
                + ", ".join(sorted(k.title() for k in _HEADER_KEYS))
                + ")"
            )
            guess = suggest(key, _SHOT_KEYS if shots else _HEADER_KEYS) if keyed else ""
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
    # Where the first shot line would go: the line after the last one, so "no shots" can point there.
    lines = {"header": header_lines, "shots": shot_lines, "end": len(text.splitlines()) + 1}
    return data, lines


def _read_option(option: str, entry: dict, where: dict, number: int, problems: list) -> None:
    lowered = option.lower()
    seconds = SECONDS.match(option)
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
            problems.append((number, f"unknown shot option {key!r}{suggest(key.lower(), _SHOT_KEYS)}"))
    else:
        problems.append(
            (
                number,
                f"cannot read shot option {option!r}: use a length like '2s', 'continue',"
                " 'hard' or 'key: value' (e.g. 'camera: close-up')",
            )
        )


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


def suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
