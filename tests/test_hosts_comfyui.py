"""`kinema install comfyui`: the node folder goes into custom_nodes/, and ComfyUI's Python is checked for kinema."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kinema.cli import cli

NODE_FOLDER = Path(__file__).resolve().parent.parent / "plugins" / "comfyui"


@pytest.fixture
def comfy_dir(tmp_path):
    """The layout `kinema install` looks for: ComfyUI's main.py and comfy/ package."""
    folder = tmp_path / "ComfyUI"
    (folder / "comfy").mkdir(parents=True)
    (folder / "main.py").write_text("")
    return folder


def install(*args):
    return CliRunner().invoke(cli, ["install", "comfyui", *map(str, args)])


def test_install_links_the_nodes_and_checks_comfyuis_python(comfy_dir):
    result = install("--comfy-dir", comfy_dir, "--python", sys.executable)
    assert result.exit_code == 0, result.output
    target = comfy_dir / "custom_nodes" / "comfyui-kinema"
    assert target.is_symlink() and target.resolve() == NODE_FOLDER
    assert f"ComfyUI's Python ({sys.executable}) imports kinema" in result.output
    assert "Error" not in result.output

    again = install("--comfy-dir", comfy_dir, "--python", sys.executable)
    assert again.exit_code == 0 and "already linked" in again.output


def test_install_can_copy_and_replaces_only_its_own_folder(comfy_dir):
    target = comfy_dir / "custom_nodes" / "comfyui-kinema"
    target.mkdir(parents=True)
    (target / "something.py").write_text("")
    refused = install("--comfy-dir", comfy_dir, "--python", sys.executable, "--copy")
    assert refused.exit_code == 1 and "not kinema's nodes; move it away or add --force" in refused.output

    forced = install("--comfy-dir", comfy_dir, "--python", sys.executable, "--copy", "--force")
    assert forced.exit_code == 0, forced.output
    assert not target.is_symlink() and (target / "__init__.py").is_file() and not (target / "something.py").exists()
    assert (target / "example_workflows" / "kinema_text_to_video.json").is_file()
    assert not list(target.rglob("__pycache__"))
    relinked = install("--comfy-dir", comfy_dir, "--python", sys.executable)  # its own copy: replaced without --force
    assert relinked.exit_code == 0 and target.is_symlink()


def test_install_finds_comfyuis_venv_and_says_exactly_what_to_run(comfy_dir):
    # A real Python without kinema: ComfyUI's own venv before kinema is installed into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(comfy_dir / "venv")], check=True)
    result = install("--comfy-dir", comfy_dir)
    assert result.exit_code == 1
    python = comfy_dir / "venv" / "bin" / "python"
    assert f"ComfyUI's Python ({python}) cannot import kinema (ModuleNotFoundError" in result.output
    assert result.output.startswith("kinema's ComfyUI nodes linked")  # the link is said first, not as an error
    assert f"{python} -m pip install" in result.output and "then restart ComfyUI" in result.output
    assert (comfy_dir / "custom_nodes" / "comfyui-kinema").is_symlink()  # the nodes are in place already


def test_install_explains_a_missing_python_and_a_wrong_folder(comfy_dir, tmp_path):
    unknown = install("--comfy-dir", comfy_dir)
    # The nodes are in place: a Python it cannot find is not checked, and nothing reads as an error.
    assert unknown.exit_code == 0 and "--python PATH_TO_COMFYUI_PYTHON" in unknown.output
    assert "Error" not in unknown.output and unknown.output.startswith("kinema's ComfyUI nodes linked")
    wrong = install("--comfy-dir", tmp_path)
    assert wrong.exit_code == 1 and "is not a ComfyUI folder" in wrong.output


def test_install_lists_the_registered_hosts():
    result = CliRunner().invoke(cli, ["install", "--help"])
    assert result.exit_code == 0 and "comfyui" in result.output
    assert "--comfy-dir" in CliRunner().invoke(cli, ["install", "comfyui", "--help"]).output
