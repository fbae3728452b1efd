"""The docs that are checked against the code: docs/cli.md (cog) and docs/plugin_hooks.md (datasette's test_docs)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from cogapp import Cog

from kinema import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_cli_reference_is_up_to_date(capsys):
    status = Cog().main(["cog", "--check", "--diff", str(DOCS / "cli.md")])
    assert status == 0, f"docs/cli.md is out of date; run `cog -r docs/cli.md`:\n{capsys.readouterr().out}"


def _hookspecs():
    return [
        (name, function)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "kinema_spec")
    ]


@pytest.mark.parametrize("name, function", _hookspecs(), ids=[name for name, _ in _hookspecs()])
def test_every_hook_is_documented_with_its_signature(name, function):
    arguments = ", ".join(inspect.signature(function).parameters)
    headings = re.findall(r"^## (.+)$", (DOCS / "plugin_hooks.md").read_text(), re.MULTILINE)
    assert f"{name}({arguments})" in headings


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_public_api_lists_every_name_kinema_exports():
    """docs/plugin_hooks.md promises these import paths to plugins; a new export must be promised there too."""
    import kinema
    from kinema.backends.base import Backend  # noqa: F401  (named in the promise)
    from kinema.backends.limits import Limits  # noqa: F401

    public = _section((DOCS / "plugin_hooks.md").read_text(), "The public API")
    assert [name for name in kinema.__all__ if f"`{name}`" not in public] == []


def test_architecture_names_every_room_and_top_level_module():
    """docs/architecture.md is where a newcomer starts: every subpackage and engine module has its line there."""
    import pkgutil

    import kinema

    rooms = _section((DOCS / "architecture.md").read_text(), "The rooms")
    names = [f"`{m.name}/`" if m.ispkg else f"`{m.name}`" for m in pkgutil.iter_modules(kinema.__path__)]
    assert [name for name in names if name not in rooms] == []
