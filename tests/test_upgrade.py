"""Upgrading kinema keeps what the old version put into ComfyUI, OBS and Blender working (issue 14).

The old version is the last commit of the flat ``core/*.py`` layout (``OLD``), taken from this repository's own
history with ``git archive``. It is installed with pip, from that source and offline, into a fresh venv that sees
this venv's dependencies through a ``.pth`` file (so nothing is downloaded and torch is not copied). The old
``kinema`` then runs ``kinema install comfyui`` (a link, and a ``--copy`` as Windows always makes),
``kinema install obs`` and ``kinema install blender --no-install``. Then the venv is upgraded the way
``pip install -U kinema`` does it: pip builds the current tree and replaces the old install. The tests then load
what the old version left behind, as each host would:

- ComfyUI imports the node folder by path (``nodes.load_custom_node``) and asks each input for its choices;
- OBS runs the old ``kinema_obs.py``, which loads the ``client.py`` copied beside it; here it runs in a Python
  with no kinema and no site-packages (as OBS's is), with a stand-in ``obspython``, and its own code starts
  ``kinema serve`` with the Python that the old install recorded, makes a tiny clip and downloads it;
- Blender's extension zip passes the new kinema's manifest check, and its bpy-free runner (``runner.py`` with
  the copied ``kinema_client.py``) makes a tiny clip on that server, as the add-on does from its worker threads.

Blender's own validator is not run here: it checks the zip's bytes, which an upgrade does not touch, and
tests/test_blender.py runs it on the extension the current version builds.
Needs ``git`` and the commit ``OLD`` in this clone (a shallow clone lacks it: ``git fetch --unshallow``);
without them the tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from processes import alive, wait_until_gone

REPO = Path(__file__).resolve().parent.parent
OLD = "c8d5943"  # the last commit before the move to subpackages (issue 14)
NODE_FOLDER_NAME = "comfyui-kinema"
TIMEOUT = 600  # only bounds a hung run; the whole module takes well under a minute on an idle machine


def _skip_or_fail(message: str):
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _run(command: list, *, env: dict, cwd: Path | None = None, timeout: float = TIMEOUT) -> str:
    done = subprocess.run(
        [str(part) for part in command], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def _result(stdout: str) -> dict:
    """The JSON a helper program printed on its line starting with RESULT (the OBS script prints log lines too)."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line in:\n{stdout}"
    return json.loads(lines[-1][len("RESULT ") :])


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _working_tree(target: Path) -> Path:
    """The current tree as pip would build it from a checkout: tracked and new files, without ignored ones.

    Copied, so that pip's in-tree build (build/, *.egg-info) never writes into the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory, shared_models) -> SimpleNamespace:
    """A venv where the old kinema installed into every host, then upgraded to this tree."""
    if shutil.which("git") is None:
        _skip_or_fail("the upgrade tests need git, to take the old version from this repository's history")
    if subprocess.run(["git", "cat-file", "-e", f"{OLD}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        _skip_or_fail(f"commit {OLD} (the old layout) is not in this clone; run `git fetch --unshallow`")

    root = tmp_path_factory.mktemp("upgrade")
    home = root / "kinema-home"
    home.mkdir()
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    env = {
        **os.environ,
        "KINEMA_HOME": str(home),
        "KINEMA_LOAD_PLUGINS": "",
        "KINEMA_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(root),  # the log of the server the OBS script starts lands here
        "PIP_NO_INDEX": "1",  # local installs only
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    for name in ("KINEMA_API_KEY", "KINEMA_PYTHON", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)

    # The old version's source, from git.
    old = root / "old-source"
    old.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", OLD], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)

    # A fresh venv (no pip of its own: this venv's pip, setuptools and dependencies through a .pth file).
    environment = root / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(environment)
    python = environment / "bin" / "python"
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    site = _site_packages(python)
    (site / "kinema-upgrade-test-deps.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    pip = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile", "-q"]
    _run([*pip, old], env=env)
    kinema = environment / "bin" / "kinema"

    # The old kinema installs into each host.
    comfy, comfy_copy = root / "ComfyUI", root / "ComfyUI-copied"
    for folder in (comfy, comfy_copy):
        (folder / "comfy").mkdir(parents=True)
        (folder / "main.py").write_text("")
    obs, blender = root / "obs-scripts", root / "blender"
    said = {
        "comfyui": _run([kinema, "install", "comfyui", "--comfy-dir", comfy, "--python", python], env=env),
        "comfyui-copy": _run(
            [kinema, "install", "comfyui", "--comfy-dir", comfy_copy, "--python", python, "--copy"], env=env
        ),
        "obs": _run([kinema, "install", "obs", "--dir", obs], env=env),
        "blender": _run([kinema, "install", "blender", "--output", blender, "--no-install"], env=env),
    }
    assert "linked" in said["comfyui"] and "copied" in said["comfyui-copy"], said
    (extension,) = blender.glob("kinema-*.zip")
    assert (obs / "kinema_obs.py").is_file(), said
    old_files = {path: path.read_bytes() for path in [*obs.iterdir(), extension]}

    # pip install -U: the current tree replaces the old install.
    _run([*pip, "-U", _working_tree(root / "new-source")], env=env)
    assert {path: path.read_bytes() for path in old_files} == old_files, "the upgrade changed the hosts' copies"

    return SimpleNamespace(
        root=root,
        env=env,
        python=python,
        kinema=kinema,
        site=site,
        comfy_link=comfy / "custom_nodes" / NODE_FOLDER_NAME,
        comfy_copy=comfy_copy / "custom_nodes" / NODE_FOLDER_NAME,
        comfy_copy_dir=comfy_copy,
        obs=obs,
        extension=extension,
    )


# --------------------------------------------------------------------------- the upgrade itself

FACTS_PROGRAM = """
import importlib.util, json, sys
import kinema
from kinema.hosts.blender import check_manifest
check_manifest(sys.argv[1])  # raises if the old extension's manifest fails the new checks
print("RESULT " + json.dumps({
    "kinema": kinema.__file__,
    "old_modules": [name for name in ("kinema.loading", "kinema.server_schemas", "kinema.hosts_comfyui")
                    if importlib.util.find_spec(name)],
    "new_modules": [name for name in ("kinema.backends.loading", "kinema.server.schemas", "kinema.hosts.comfyui")
                    if importlib.util.find_spec(name)],
    "torch": "torch" in sys.modules,
}))
"""


def test_the_new_version_replaced_the_old_one(upgraded):
    facts = _result(_run([upgraded.python, "-c", FACTS_PROGRAM, upgraded.extension], env=upgraded.env))
    assert Path(facts["kinema"]).is_relative_to(upgraded.site)
    assert facts["old_modules"] == [], "the old layout's modules outlived pip install -U"
    assert len(facts["new_modules"]) == 3 and facts["torch"] is False
    assert len(list(upgraded.site.glob("kinema-*.dist-info"))) == 1


# --------------------------------------------------------------------------- ComfyUI

# What ComfyUI's nodes.load_custom_node does with a folder in custom_nodes/, then what building the nodes' schema
# asks of them (every input's choices), then every `from kinema... import ...` in the folder, lazy ones included.
COMFY_PROGRAM = """
import ast, importlib, importlib.util, json, pathlib, sys
folder = pathlib.Path(sys.argv[1])
name = str(folder).replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
choices = {f"{node.node_id}.{item.id}": item.choices() for node in module.spec.NODES for item in node.inputs}
unresolved = []
for path in sorted(folder.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "kinema":
            for alias in node.names:
                try:
                    imported = importlib.import_module(node.module)
                    if not hasattr(imported, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError as error:
                    unresolved.append(f"{path.name}:{node.lineno}: from {node.module} import {alias.name} ({error})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kinema":
                    try:
                        importlib.import_module(alias.name)
                    except ImportError as error:
                        unresolved.append(f"{path.name}:{node.lineno}: import {alias.name} ({error})")
import kinema
print("RESULT " + json.dumps({"kinema": kinema.__file__, "logic": module.logic.__file__,
                              "nodes": sorted(node.node_id for node in module.spec.NODES),
                              "choices": choices, "unresolved": unresolved}))
"""
NODES = [
    "KinemaCameo",
    "KinemaCameoCapture",
    "KinemaExtend",
    "KinemaGenerate",
    "KinemaLoRA",
    "KinemaModelLoader",
    "KinemaRemix",
    "KinemaSaveClip",
    "KinemaStoryboard",
]


def load_like_comfyui(upgraded, folder: Path) -> dict:
    done = subprocess.run(
        [str(upgraded.python), "-c", COMFY_PROGRAM, str(folder)],
        env=upgraded.env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"ComfyUI could not load {folder}:\n{done.stderr[-3000:]}"
    loaded = _result(done.stdout)
    assert loaded["unresolved"] == [], f"{folder} imports what the new kinema no longer has"
    assert loaded["nodes"] == NODES and "tiny" in loaded["choices"]["KinemaModelLoader.backend"]
    assert Path(loaded["kinema"]).is_relative_to(upgraded.site)
    return loaded


def test_comfyui_link_from_the_old_version_loads_the_new_nodes(upgraded):
    link = upgraded.comfy_link
    assert link.is_symlink() and (link / "__init__.py").is_file(), f"{link} no longer resolves"
    assert link.resolve() == (upgraded.site / "kinema_comfyui").resolve()
    loaded = load_like_comfyui(upgraded, link)
    assert Path(loaded["logic"]).resolve().is_relative_to(upgraded.site.resolve())


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="Known break (issue 14): a node folder that the old `kinema install comfyui --copy` made (Windows always"
    " copies) holds the old nodes, which import kinema.loading, kinema.device, kinema.cameos, kinema.cameo_capture,"
    " kinema.speech and kinema.media.write_mp4 from the flat layout; they fail once ComfyUI builds the nodes'"
    " schema. Re-running `kinema install comfyui` after upgrading refreshes the copy (tested below).",
)
def test_comfyui_copy_from_the_old_version_loads(upgraded):
    load_like_comfyui(upgraded, upgraded.comfy_copy)


def test_rerunning_the_install_after_upgrading_refreshes_what_it_put_there(upgraded, tmp_path):
    """What the install instructions say to do after upgrading: the new install takes over the old one's folders."""
    comfy = tmp_path / "ComfyUI"
    shutil.copytree(upgraded.comfy_copy_dir, comfy, symlinks=True)
    said = _run(
        [upgraded.kinema, "install", "comfyui", "--comfy-dir", comfy, "--python", upgraded.python, "--copy"],
        env=upgraded.env,
    )
    assert "copied" in said
    load_like_comfyui(upgraded, comfy / "custom_nodes" / NODE_FOLDER_NAME)
    linked = upgraded.comfy_link.parent.parent
    said = _run(
        [upgraded.kinema, "install", "comfyui", "--comfy-dir", linked, "--python", upgraded.python], env=upgraded.env
    )
    assert "already linked" in said

    obs = tmp_path / "obs"
    shutil.copytree(upgraded.obs, obs)
    _run([upgraded.kinema, "install", "obs", "--dir", obs], env=upgraded.env)
    assert json.loads((obs / "kinema_obs.json").read_text())["kinema_python"] == str(upgraded.python)


# --------------------------------------------------------------------------- OBS and Blender, through the new server

# Runs in a Python without kinema or site-packages, as OBS's and Blender's are. The old OBS script (with a stand-in
# for OBS's obspython module) loads its client, starts `kinema serve` with the Python the old install recorded,
# and makes a clip with its own job code; the old extension's runner then makes one on the same server.
HOSTS_PROGRAM = """
import importlib, importlib.util, json, os, sys, time, types

obs_folder, addon_folder, clips = sys.argv[1:4]
obspython = types.ModuleType("obspython")
obspython.__getattr__ = lambda name: (lambda *args, **kwargs: None)
sys.modules["obspython"] = obspython
spec = importlib.util.spec_from_file_location("kinema_obs_old", os.path.join(obs_folder, "kinema_obs.py"))
script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = script
spec.loader.exec_module(script)
assert script.CLIENT_ERROR is None, script.CLIENT_ERROR
recorded = script._installed_defaults()
config = {"server_url": "http://127.0.0.1:0", "start_local": True, "kinema_python": recorded["kinema_python"],
          "prompt": "a red ball on a floor", "seconds": 0.4, "size": "32x32", "steps": 2, "backend": "tiny",
          "tier": "draft", "clips_dir": clips}
client = script._client(config)
config["server_url"] = client.base_url
script._check_server(config)
script.state.jobs[1] = {"prompt": config["prompt"], "state": "starting"}  # as the script's Generate button does
script._run_job(1, config)
job = script.state.jobs[1]
obs = {"pid": client.process.pid, "note": script.state.server_note, "backends": script.state.backends,
       "inbox": [list(item) for item in script.state.inbox], "state": job["state"], "error": job.get("error"),
       "health": client.health()}

addon = types.ModuleType("kinema_addon_old")  # the package without its __init__, which needs bpy
addon.__path__ = [addon_folder]
sys.modules[addon.__name__] = addon
runner = importlib.import_module("kinema_addon_old.runner")
with open(os.path.join(addon_folder, "kinema_defaults.json"), encoding="utf-8") as handle:
    defaults = json.load(handle)
settings = runner.ServerSettings(url=client.base_url, start_local=True, python=defaults["python"])
work = runner.Runner()
fields = {"seconds": 0.4, "size": (32, 32), "fps": 24.0, "seed": 3, "steps": 2, "tier": "draft", "audio": True,
          "model": "tiny", "negative_prompt": None, "style": None}
work.start(1, runner.JobSpec(prompt="a blue cube", fields=fields, output_dir=clips, stem="a-blue-cube-3"), settings)
updates, deadline = [], time.monotonic() + 300
while not any(u.job == 1 and u.changes.get("status") in ("completed", "failed", "cancelled") for u in updates):
    assert time.monotonic() < deadline, updates
    updates += work.drain()
    time.sleep(0.05)
blender = {"python": defaults["python"], "started": work.connection.started is not None,
           "server": [u.changes for u in updates if u.job == 0],
           "final": [u.changes for u in updates if u.job == 1][-1]}
print("RESULT " + json.dumps({"obs": obs, "blender": blender}, default=str))
"""


def test_obs_script_and_blender_extension_from_the_old_version_work_with_the_new_server(upgraded, tmp_path):
    from kinema.hosts.blender import CLIENT_FILE, DEFAULTS_FILE
    from kinema.media.files import probe

    addon = tmp_path / "extension"  # where Blender's install-file unpacks it
    with zipfile.ZipFile(upgraded.extension) as archive:
        archive.extractall(addon)
    copies = [*upgraded.obs.glob("*.py"), *addon.glob("*.py")]
    for path in copies:
        compile(path.read_bytes(), str(path), "exec")
    assert (upgraded.obs / "client.py").read_bytes() == (addon / CLIENT_FILE).read_bytes()  # one client, both hosts
    assert json.loads((addon / DEFAULTS_FILE).read_text())["python"] == str(upgraded.python)

    clips = tmp_path / "clips"
    host_python = getattr(sys, "_base_executable", None) or sys.executable
    command = [host_python, "-I", "-S", "-c", HOSTS_PROGRAM, upgraded.obs, addon, clips]
    done = subprocess.run(
        [str(part) for part in command], env=upgraded.env, capture_output=True, text=True, timeout=TIMEOUT
    )
    server_log = "\n".join(path.read_text(errors="replace")[-3000:] for path in upgraded.root.glob("kinema-serve-*"))
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\nserver log:\n{server_log}"
    result = _result(done.stdout)
    pid = result["obs"]["pid"]
    try:
        obs, blender = result["obs"], result["blender"]
        assert obs["health"]["status"] == "ok" and obs["note"].endswith("is up") and "tiny" in obs["backends"]
        assert obs["state"] == "ready" and [kind for kind, *_ in obs["inbox"]] == ["ready"], obs
        assert blender["python"] == str(upgraded.python) and not blender["started"]  # it found the running server
        assert blender["server"][-1]["state"] == "connected" and blender["final"]["status"] == "completed", blender
        for path in (Path(obs["inbox"][0][1]), Path(blender["final"]["path"])):
            info = probe(path)
            # The old hosts ask for tiny, which is now the demo world: 64x64 whatever the size asked.
            assert (info.width, info.height, info.has_audio) == (64, 64, True), path
        # The OBS script asked for a server that stops with it (--stop-with-stdin): it must be gone with the script.
        wait_until_gone(pid, 60, "the kinema serve that the old OBS script started")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
