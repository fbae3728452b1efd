"""The ComfyUI host adapter: ``kinema install comfyui --comfy-dir PATH``.

Links (or copies) kinema's node folder into ``ComfyUI/custom_nodes/`` and
checks that ComfyUI's own Python can import kinema, which the nodes need.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from kinema.errors import KinemaError
from kinema.hookspecs import hookimpl

NODE_FOLDER_NAME = "comfyui-kinema"


class HostInstallError(KinemaError):
    """The host could not be set up; the message says what to do."""


def node_folder() -> Path:
    """kinema's ComfyUI node folder: the installed ``kinema_comfyui`` package, or ``plugins/comfyui`` in a source tree."""
    spec = importlib.util.find_spec("kinema_comfyui")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    source = Path(__file__).resolve().parents[3] / "plugins" / "comfyui"
    if (source / "__init__.py").is_file():
        return source
    raise HostInstallError(
        "kinema's ComfyUI nodes are not in this installation; reinstall kinema (pip install -U kinema)"
    )


def comfy_python(comfy_dir: Path) -> Path | None:
    """ComfyUI's Python when it sits where ComfyUI's installers put it (a venv inside, or the Windows portable build)."""
    candidates = [comfy_dir / "venv", comfy_dir / ".venv", comfy_dir.parent / "python_embeded"]
    for base in candidates:
        for executable in (base / "bin" / "python", base / "Scripts" / "python.exe", base / "python.exe"):
            if executable.is_file():
                return executable
    return None


def check_import(python: Path) -> tuple[bool, str]:
    """Whether ``python`` imports kinema: (True, version and place) or (False, the error)."""
    code = "import kinema, os; print(kinema.__version__, os.path.dirname(kinema.__file__))"
    try:
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit status {done.returncode}"
    return True, done.stdout.strip()


def _pip_command(python: Path) -> str:
    source = Path(__file__).resolve().parents[3]
    target = f"-e {source}" if (source / "pyproject.toml").is_file() and (source / "core").is_dir() else "kinema"
    return f"{python} -m pip install {target}"


def _place(source: Path, target: Path, copy: bool) -> str:
    """Put the node folder at ``target``: a symlink (follows kinema's updates) or a copy, swapped in atomically."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staged = staging / target.name
        if copy:
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            staged.symlink_to(source, target_is_directory=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return "copied" if copy else "linked"


class ComfyUIHost:
    name = "comfyui"
    description = "ComfyUI custom nodes: Kinema Model Loader, Generate (video + audio) and Save Clip"
    install_params = [
        click.Option(
            ["--comfy-dir"],
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="The ComfyUI folder (the one with main.py and custom_nodes/).",
        ),
        click.Option(
            ["--python"],
            type=click.Path(dir_okay=False, path_type=Path),
            help="ComfyUI's Python, if not its venv/, .venv/ or the portable build's python_embeded/.",
        ),
        click.Option(
            ["--copy"],
            is_flag=True,
            help="Copy the nodes instead of linking them (links follow kinema's updates; copies do not).",
        ),
        click.Option(["--force"], is_flag=True, help="Replace a different folder already installed under that name."),
    ]

    def install(self, comfy_dir: Path, python: Path | None = None, copy: bool = False, force: bool = False) -> str:
        """Install kinema's nodes into ComfyUI. Example: kinema install comfyui --comfy-dir ~/ComfyUI"""
        comfy_dir = Path(comfy_dir).expanduser().resolve()
        if not (comfy_dir / "main.py").is_file() or not (comfy_dir / "comfy").is_dir():
            raise HostInstallError(
                f"{comfy_dir} is not a ComfyUI folder (no main.py and comfy/ in it); pass the folder"
                " you start ComfyUI from"
            )
        custom_nodes = comfy_dir / "custom_nodes"
        custom_nodes.mkdir(exist_ok=True)
        source = node_folder().resolve()
        target = custom_nodes / NODE_FOLDER_NAME
        if os.name == "nt":
            copy = True  # symlinks need administrator rights or developer mode on Windows
        if target.is_symlink() and target.resolve() == source and not copy:
            done = "already linked"
        else:
            if (target.exists() or target.is_symlink()) and not force and not self._ours(target):
                raise HostInstallError(
                    f"{target} already exists and is not kinema's nodes; move it away or add --force"
                )
            done = _place(source, target, copy)
        # Said at once, so that a problem with ComfyUI's Python below never reads as a failed install.
        click.echo(f"kinema's ComfyUI nodes {done}: {target}" + (f" -> {source}" if done != "copied" else ""))

        python = Path(python).expanduser() if python else comfy_python(comfy_dir)
        if python is None:
            return (
                "Could not find ComfyUI's Python (no venv/, .venv/ or python_embeded/ beside ComfyUI), so it is not"
                " checked. The nodes need kinema in the Python that runs ComfyUI: check with"
                " `kinema install comfyui --comfy-dir DIR --python PATH_TO_COMFYUI_PYTHON`, or install it there"
                " (`PYTHON -m pip install kinema`); then restart ComfyUI."
            )
        ok, detail = check_import(python)
        if not ok:
            raise HostInstallError(
                f"ComfyUI's Python ({python}) cannot import kinema ({detail}). Run:\n"
                f"  {_pip_command(python)}\n"
                "then restart ComfyUI."
            )
        return (
            f"ComfyUI's Python ({python}) imports kinema {detail}\n"
            "Restart ComfyUI; the nodes are under 'kinema' (example workflows: Workflow > Browse Templates)."
        )

    @staticmethod
    def _ours(target: Path) -> bool:
        init = target / "__init__.py"
        try:
            return init.is_file() and "kinema's ComfyUI nodes" in init.read_text(encoding="utf-8")
        except OSError:
            return False


@hookimpl
def register_hosts(register):
    register(ComfyUIHost())
