"""The OBS host adapter: ``kinema install obs`` puts the OBS script where OBS can load it.

OBS runs scripts with its own Python, which has no kinema: the script imports
``client.py`` from its own folder, so both files are copied side by side (one
client, no second copy in the repository), plus ``kinema_obs.json`` naming
this Python so the script can start ``kinema serve`` when none is running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from kinema import client
from kinema.errors import KinemaError
from kinema.home import kinema_home
from kinema.hookspecs import hookimpl

SCRIPT = "kinema_obs.py"
CLIENT = "client.py"
DEFAULTS = "kinema_obs.json"


class ObsHost:
    name = "obs"
    description = "OBS Studio script: generate clips from a prompt and play them on air"

    install_params = [
        click.Option(
            ["--dir", "target"],
            type=click.Path(file_okay=False, path_type=Path),
            help="Folder to put the script in [default: obs/ in kinema's data directory].",
        ),
        click.Option(["--server-url"], help="The kinema server the script talks to [default: http://127.0.0.1:8765]."),
    ]

    def script_source(self) -> Path:
        """The OBS script: from the installed ``kinema_obs_script`` package, or ``plugins/obs`` in a source tree."""
        spec = importlib.util.find_spec("kinema_obs_script")
        folders = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
        folders.append(Path(__file__).resolve().parents[3] / "plugins" / "obs")
        for folder in folders:
            if (folder / SCRIPT).is_file():
                return folder / SCRIPT
        raise KinemaError(
            f"the OBS script {SCRIPT} is not in this kinema installation; reinstall kinema (pip install -U kinema)"
        )

    def default_target(self) -> Path:
        return kinema_home() / "obs"

    def install(self, target: str | os.PathLike | None = None, *, server_url: str | None = None, **_options) -> Path:
        """Put the OBS script (with kinema's client beside it) in a folder. Example: kinema install obs"""
        folder = (Path(target).expanduser() if target else self.default_target()).resolve()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise KinemaError(f"cannot create {folder}: {error.strerror}; pick another folder") from None
        if not os.access(folder, os.W_OK):
            raise KinemaError(f"{folder} is not writable; pick another folder")
        defaults = {"kinema_python": sys.executable}
        if server_url:
            defaults["server_url"] = server_url
        _write(folder / SCRIPT, self.script_source().read_bytes())
        _write(folder / CLIENT, Path(client.__file__).read_bytes())
        _write(folder / DEFAULTS, (json.dumps(defaults, indent=2) + "\n").encode())
        return folder / SCRIPT

    def instructions(self, script: Path) -> str:
        return (
            f"kinema's OBS script: {script} (with client.py and kinema_obs.json beside it)\n"
            f"In OBS: Tools → Scripts → + → {script}\n"
            "OBS runs scripts with its own Python 3.9+: on Linux the system python3; on Windows and macOS the"
            " one set in Tools → Scripts → Python Settings (see README, 'OBS'). Re-run this after upgrading"
            " kinema: the files are copies."
        )


def _write(path: Path, data: bytes) -> None:
    """Atomically, so OBS never loads half a script."""
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False)  # noqa: SIM115 - `with handle` closes it; its name outlives it for os.replace
    try:
        with handle:
            handle.write(data)
        if path.exists():
            shutil.copymode(path, handle.name)
        else:
            os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes 0600; OBS may run as another user
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@hookimpl
def register_commands(cli: click.Group) -> None:
    from kinema.hosts.obs_cli import obs

    cli.add_command(obs)


@hookimpl
def register_hosts(register):
    register(ObsHost())
