"""The Blender host adapter: ``kinema install blender`` builds, validates and installs the extension.

The extension is ``plugins/blender/`` plus kinema's stdlib client (``client.py``,
shipped inside as ``kinema_client.py`` so the repository holds one client) and
``kinema_defaults.json`` with kinema's style presets and tiers, for the panel's suggestions. The zip holds no
path of this machine, so it can be shared: where kinema is installed goes into the add-on's preferences of the
Blender it is installed into (so that Blender can start ``kinema serve`` by itself); elsewhere the add-on finds
kinema at first use (``KINEMA_PYTHON``, the ``kinema`` command on PATH) or asks for it. Blender's own
``extension build`` on ``plugins/blender`` makes an equivalent zip: the client is checked in there as
``kinema_client.py`` (byte for byte ``client.py``; a test keeps them equal). Blender validates and installs the
extension with its own code: a Blender 4.2+ executable (``blender --command extension ...``), or a Python that
imports the ``bpy`` module (Blender as a Python module), which runs the same code.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import click

from kinema import client
from kinema.errors import KinemaError
from kinema.home import kinema_home
from kinema.hookspecs import hookimpl
from kinema.styles import list_styles
from kinema.tiers import TIERS
from kinema.version import __version__

EXTENSION_ID = "kinema"
MIN_BLENDER = (4, 2)
CLIENT_FILE = "kinema_client.py"
DEFAULTS_FILE = "kinema_defaults.json"
MANIFEST_FILE = "blender_manifest.toml"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)  # fixed, so the same sources build the same zip
_SKIP = re.compile(r"(^|/)(__pycache__|\.[^/]*)(/|$)|\.py[co]$")


class HostInstallError(KinemaError):
    """The extension could not be built, validated or installed; the message says what to do."""


def addon_source() -> Path:
    """The add-on's source folder: the installed ``kinema_blender`` package, or ``plugins/blender`` in a source tree."""
    spec = importlib.util.find_spec("kinema_blender")
    folders = [Path(p) for p in (spec.submodule_search_locations or [])] if spec is not None else []
    folders.append(Path(__file__).resolve().parents[3] / "plugins" / "blender")
    for folder in folders:
        if (folder / MANIFEST_FILE).is_file():
            return folder
    raise HostInstallError(
        "kinema's Blender add-on is not in this installation; reinstall kinema (pip install -U kinema)"
    )


def extension_version() -> str:
    """kinema's version as Blender wants it (MAJOR.MINOR.PATCH)."""
    match = re.match(r"\d+\.\d+\.\d+", __version__)
    return match.group(0) if match else "0.0.0"


def build(output_dir: Path) -> Path:
    """Write ``kinema-<version>.zip`` into ``output_dir`` (atomically) and return its path.

    Nothing in it names this machine: no interpreter, no folder (``install_into`` tells the
    Blender it installs into where kinema is).
    """
    source = addon_source()
    version = extension_version()
    manifest = (source / MANIFEST_FILE).read_text(encoding="utf-8")
    manifest, stamped = re.subn(r'(?m)^version\s*=\s*"[^"]*"', f'version = "{version}"', manifest, count=1)
    if not stamped:
        raise HostInstallError(f"{source / MANIFEST_FILE} has no version line")
    # The panel's tier menu and its tooltips come from the kinema that built the add-on (Blender cannot import it).
    defaults = {
        "kinema_version": version,
        "styles": sorted(list_styles()),
        "tiers": {name: entry["description"] for name, entry in TIERS.items()},
    }
    extra = {
        MANIFEST_FILE: manifest.encode("utf-8"),
        CLIENT_FILE: Path(client.__file__).read_bytes(),
        DEFAULTS_FILE: (json.dumps(defaults, indent=2) + "\n").encode("utf-8"),
    }
    files = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and not _SKIP.search(relative):
            files[relative] = path.read_bytes()
    files.update(extra)

    output_dir = Path(output_dir).expanduser()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HostInstallError(f"cannot create {output_dir}: {error.strerror}; pick another --output") from None
    target = output_dir / f"{EXTENSION_ID}-{version}.zip"
    handle = tempfile.NamedTemporaryFile(dir=output_dir, prefix=f".{target.name}.", suffix=".part", delete=False)  # noqa: SIM115 - `with handle` closes it; its name outlives it for os.replace
    try:
        with handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, files[name])
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- finding Blender


@dataclasses.dataclass(frozen=True)
class Blender:
    """A Blender executable (``kind='binary'``) or a Python with the bpy module (``kind='python'``)."""

    path: str
    kind: str
    version: tuple

    @property
    def label(self) -> str:
        what = "Blender" if self.kind == "binary" else "bpy (Blender as a Python module)"
        return f"{what} {'.'.join(map(str, self.version))} at {self.path}"


def _run(command: list, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env
        )
    except OSError as error:
        raise HostInstallError(f"cannot run {command[0]}: {error.strerror or error}") from None
    except subprocess.TimeoutExpired:
        raise HostInstallError(f"{command[0]} did not finish within {timeout:g} s") from None


def identify(path: str) -> Blender:
    """What ``path`` is: a Blender executable or a Python that imports bpy."""
    resolved = shutil.which(str(path)) or str(path)
    if not os.path.isfile(resolved):
        raise HostInstallError(f"{path} does not exist; pass --blender the Blender executable (4.2 or newer)")
    done = _run([resolved, "--version"], timeout=120)
    text = (done.stdout + done.stderr).strip()
    match = re.search(r"^Blender (\d+)\.(\d+)(?:\.(\d+))?", text, re.MULTILINE)
    if match:
        return Blender(resolved, "binary", tuple(int(p or 0) for p in match.groups()))
    if text.startswith("Python"):
        done = _run([resolved, "-c", "import bpy; print('bpy', *bpy.app.version)"], timeout=300)
        match = re.search(r"^bpy (\d+) (\d+) (\d+)", done.stdout, re.MULTILINE)
        if match:
            return Blender(resolved, "python", tuple(int(p) for p in match.groups()))
        raise HostInstallError(
            f"{path} is a Python without the bpy module; pass --blender a Blender executable"
            " (or a Python with `pip install bpy`)"
        )
    raise HostInstallError(f"{path} is neither Blender nor Python (its --version said {text[:80]!r})")


def find_blender() -> Blender | None:
    """A Blender 4.2+ where installers put it, or None."""
    candidates: list[str | Path | None] = [shutil.which("blender"), "/Applications/Blender.app/Contents/MacOS/Blender"]
    for root in (os.environ.get("PROGRAMFILES"), os.environ.get("PROGRAMFILES(X86)")):
        if root:
            candidates += sorted(Path(root, "Blender Foundation").glob("Blender */blender.exe"), reverse=True)
    for candidate in [c for c in candidates if c]:
        if os.path.isfile(candidate):
            try:
                blender = identify(str(candidate))
            except HostInstallError:
                continue
            if blender.version[:2] >= MIN_BLENDER:
                return blender
    return None


# --------------------------------------------------------------------------- Blender's own validate and install

# Runs Blender's `blender --command extension ...` code inside a Python that imports bpy.
_BPY_EXTENSION_CLI = """
import sys
import bpy
from bl_pkg import bl_extension_cli
code = bl_extension_cli.cli_extension_handler(sys.argv[1:])
if code == 0 and sys.argv[1] == "install-file":
    repo = sys.argv[sys.argv.index("--repo") + 1]
    module = "bl_ext." + repo + ".{id}"
    code = 0 if module in bpy.context.preferences.addons else 3
    print(("enabled " if code == 0 else "not enabled: ") + module)
    if code == 0:
{record}
sys.stdout.flush()
sys.exit(code)
"""

# Tells the installed add-on where kinema is (this Python), in that Blender's preferences: not in the zip.
_RECORD_PYTHON = """
import os
import bpy
prefs = bpy.context.preferences.addons[module].preferences
if not os.path.isfile(bpy.path.abspath(prefs.python_path)):  # unset, or a venv that is gone
    prefs.python_path = os.environ["KINEMA_INSTALL_PYTHON"]
    bpy.ops.wm.save_userpref()
print("kinema python:", prefs.python_path)
"""
_BPY_EXTENSION_CLI = _BPY_EXTENSION_CLI.replace("{id}", EXTENSION_ID).replace(
    "{record}", "\n".join("        " + line for line in _RECORD_PYTHON.strip().splitlines())
)


def extension_command(blender: Blender, *arguments: str) -> list:
    if blender.kind == "binary":
        return [blender.path, "--command", "extension", *arguments]
    return [blender.path, "-c", _BPY_EXTENSION_CLI, *arguments]


def validate(blender: Blender, archive: Path) -> str:
    """Blender's own extension validation; returns its report, raises HostInstallError if it fails."""
    done = _run(extension_command(blender, "validate", str(archive)))
    report = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise HostInstallError(f"{blender.label} rejected {archive}:\n{report}")
    return report


def install_into(blender: Blender, archive: Path, repo: str) -> str:
    """Install and enable with Blender's own installer, then check that Blender sees it enabled.

    The check is not redundant: ``install-file`` exits 0 even when its installer
    subprocess failed ("Package should have been installed but not found"). The
    add-on's 'Python with kinema' preference is set to this Python, unless the user
    already chose one.
    """
    env = {**os.environ, "KINEMA_INSTALL_PYTHON": sys.executable}
    done = _run(extension_command(blender, "install-file", "--repo", repo, "--enable", str(archive)), env=env)
    report = (done.stdout + done.stderr).strip()
    failed = f"{blender.label} could not install {archive} into repository {repo!r}"
    if done.returncode != 0:
        raise HostInstallError(f"{failed}:\n{report}")
    if blender.kind == "binary":  # the bpy route checks in the same process (_BPY_EXTENSION_CLI)
        module = f"bl_ext.{repo}.{EXTENSION_ID}"
        check_program = (
            f"import bpy\nmodule = {module!r}\nprint('kinema-extension:', module in bpy.context.preferences.addons)\n"
            f"if module in bpy.context.preferences.addons:\n"
            + "\n".join("    " + line for line in _RECORD_PYTHON.strip().splitlines())
        )
        check = _run([blender.path, "--background", "--python-expr", check_program], env=env)
        if "kinema-extension: True" not in check.stdout:
            raise HostInstallError(f"{failed}: Blender does not list {module} as enabled afterwards.\n{report}")
    return report


def check_manifest(archive: Path) -> None:
    """kinema's own checks, for when no Blender is at hand (Blender's validator is stricter)."""
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
        text = opened.read(MANIFEST_FILE).decode("utf-8")
    missing = {"__init__.py", CLIENT_FILE, MANIFEST_FILE} - names
    if missing:
        raise HostInstallError(f"{archive} lacks {', '.join(sorted(missing))}")
    if sys.version_info >= (3, 11):  # Python 3.10 has no tomllib: there the file list is all that is checked
        import tomllib

        _check_manifest_fields(tomllib.loads(text))


def _check_manifest_fields(manifest: dict) -> None:
    for key in (
        "schema_version",
        "id",
        "version",
        "name",
        "tagline",
        "maintainer",
        "type",
        "blender_version_min",
        "license",
    ):
        if key not in manifest:
            raise HostInstallError(f"{MANIFEST_FILE} lacks {key!r}")
    tagline = manifest["tagline"]
    if len(tagline) > 64 or not tagline[-1].isalnum():
        raise HostInstallError(f"the tagline must be at most 64 characters and not end in punctuation: {tagline!r}")


# --------------------------------------------------------------------------- the host


@dataclasses.dataclass
class InstallResult:
    archive: Path
    blender: Blender | None = None
    validation: str = ""
    installed_into: str | None = None  # the repository, if installed
    install_command: str = ""  # for the user to run, if not installed


class BlenderHost:
    name = "blender"
    description = "Blender 4.2+ extension: generate clips with sound into the Video Sequencer"
    install_params = [
        click.Option(
            ["--blender", "blender_path"],
            metavar="PATH",
            help="Blender 4.2+ executable (or a Python with the bpy module) to validate and install into"
            " [default: `blender` on PATH, or the usual install folders].",
        ),
        click.Option(
            ["--output", "output"],
            type=click.Path(file_okay=False, path_type=Path),
            help="Folder for the extension zip [default: blender/ in kinema's data directory].",
        ),
        click.Option(
            ["--repo"], default="user_default", show_default=True, help="Blender extension repository to install into."
        ),
        click.Option(["--no-install"], is_flag=True, help="Build and validate only."),
    ]

    def install(
        self,
        blender_path: str | None = None,
        output: Path | None = None,
        repo: str = "user_default",
        no_install: bool = False,
    ) -> InstallResult:
        """Build the Blender extension, validate it with Blender and install it. Example: kinema install blender"""
        if output is None:
            output = kinema_home() / "blender"
        archive = build(Path(output))
        blender = identify(blender_path) if blender_path else find_blender()
        result = InstallResult(archive, blender)
        if blender is not None and blender.version[:2] < MIN_BLENDER:
            raise HostInstallError(
                f"{blender.label} is too old: the Kinema extension needs Blender"
                f" {'.'.join(map(str, MIN_BLENDER))} or newer"
            )
        if blender is None:
            check_manifest(archive)
            result.install_command = f'blender --command extension install-file --repo {repo} --enable "{archive}"'
            return result
        result.validation = validate(blender, archive)
        if no_install:
            result.install_command = (
                f'"{blender.path}" ' if blender.kind == "binary" else "blender "
            ) + f'--command extension install-file --repo {repo} --enable "{archive}"'
            return result
        install_into(blender, archive, repo)
        result.installed_into = repo
        return result

    def instructions(self, result: InstallResult) -> str:
        lines = [f"Blender extension: {result.archive}"]
        if result.blender is None:
            lines.append(
                "No Blender 4.2+ found to validate and install it (pass --blender PATH); it passed kinema's"
                " own checks. Install it with:"
            )
            lines.append(f"  {result.install_command}")
            lines.append("or in Blender: Edit > Preferences > Get Extensions > (menu) Install from Disk.")
            return "\n".join(lines)
        lines.append(f"Validated by {result.blender.label}.")
        if result.installed_into:
            lines.append(
                f"Installed and enabled in repository {result.installed_into!r}. Restart Blender if it is"
                " running; the Kinema tab is in the Video Sequencer's sidebar (N)."
            )
        else:
            lines.append(f"Install it with:\n  {result.install_command}")
        return "\n".join(lines)


@hookimpl
def register_hosts(register):
    register(BlenderHost())
