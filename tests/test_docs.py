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
