"""The way in: a storyboard file or text to a checked ``Storyboard``."""

from __future__ import annotations

import os
from pathlib import Path

from kinema.errors import InvalidRequestError
from kinema.storyboard import check as storyboard_check
from kinema.storyboard import parse as storyboard_parse
from kinema.storyboard.model import TEXT_SUFFIXES, Storyboard


def load_storyboard(path: str | os.PathLike[str]) -> Storyboard:
    """Read a storyboard file: ``.yaml``/``.yml``/``.json`` as structured data, anything else as shot lines."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"storyboard {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(
            f"storyboard {path} is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    suffix = path.suffix.lower()
    kind = (
        "json"
        if suffix == ".json"
        else "yaml"
        if suffix in (".yaml", ".yml")
        else "text"
        if suffix in TEXT_SUFFIXES
        else "auto"
    )
    return parse_storyboard(text, format=kind, source=str(path), base_dir=path.parent)


def parse_storyboard(
    text: str, *, format: str = "auto", source: str = "<storyboard>", base_dir: Path | None = None, files: bool = True
) -> Storyboard:
    """Parse storyboard ``text``; ``format`` is "yaml", "json", "text" or "auto" (sniffed)."""
    if format == "auto":
        format = storyboard_parse.sniff_format(text)
    if format == "text":
        data, lines = storyboard_parse.parse_text(text, source)
    elif format in ("yaml", "json"):
        data = storyboard_parse.parse_structured(text, format, source)
        lines = None
    else:
        raise ValueError(f"unknown storyboard format {format!r}")
    return storyboard_check.from_dict(data, source=source, base_dir=base_dir, files=files, _lines=lines)
