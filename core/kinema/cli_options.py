"""Option parsing shared by kinema's command-line commands, the core's and the hosts' (``register_commands``)."""

from __future__ import annotations

import os
from pathlib import Path

import click


def parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 768x512") from None
    return width, height


def check_output(path: Path) -> Path:
    path = path.expanduser()
    if path.suffix.lower() != ".mp4":
        raise click.BadParameter(f"{path} must end in .mp4", param_hint="'-o'")
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name ending in .mp4", param_hint="'-o'")
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {path.parent} does not exist; create it first", param_hint="'-o'")
    if not os.access(path.parent, os.W_OK):
        raise click.BadParameter(f"directory {path.parent} is not writable", param_hint="'-o'")
    return path
