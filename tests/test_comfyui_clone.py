"""This repository as a ComfyUI node pack: a git clone in custom_nodes/ plus its root requirements.txt is enough.

What ComfyUI's Manager does with a git URL: clone into ``custom_nodes/<repo>``,
``pip install -r requirements.txt`` there, then import ``__init__.py``. The
registry (``comfy node pack``) reads the root pyproject.toml. The tests without
ComfyUI run everywhere; the last one needs a real ComfyUI (KINEMA_COMFYUI_DIR)
whose Python (KINEMA_COMFYUI_PYTHON) has no kinema, and skips otherwise.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parent.parent


def pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def requirement_names(lines) -> list[str]:
    return [line.split(";")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_root_requirements_are_kinemas_dependencies_without_torch():
    project = pyproject(REPO / "pyproject.toml")["project"]
    requirements = requirement_names((REPO / "requirements.txt").read_text().splitlines())
    # The Kinema LoRA node is part of the pack: the lora extra comes along.
    lora = project["optional-dependencies"]["lora"]
    assert requirements == [d for d in project["dependencies"] if not d.startswith("torch")] + lora
    assert not any(r.split(">")[0].split("=")[0].split("<")[0].strip().startswith("torch") for r in requirements)


@pytest.mark.parametrize("path", ["pyproject.toml", "plugins/comfyui/pyproject.toml"])
def test_registry_metadata_is_complete_and_names_no_comfyui(path):
    meta = pyproject(REPO / path)
    project, comfy = meta["project"], meta["tool"]["comfy"]
    assert project["name"] == "kinema" and "comfyui" not in project["name"].lower()
    assert project["description"] and project["version"] and project["license"]
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["includes"] == ["example_workflows"]
    assert (REPO / "example_workflows").is_dir() and not (REPO / "example_workflows").is_symlink()


def test_the_node_folder_reaches_the_examples_at_the_root():
    # The Templates browser looks in custom_nodes/<pack>/example_workflows: the root for a clone, the node folder for
    # `kinema install comfyui`. One set of files; the node folder's is a link (copies and wheels hold the files).
    linked = REPO / "plugins" / "comfyui" / "example_workflows"
    assert linked.is_symlink() and linked.resolve() == (REPO / "example_workflows").resolve()


def load_clone(name: str) -> dict:
    """Import the root __init__.py as ComfyUI does, in a Python where no installed kinema can be found."""
    script = textwrap.dedent(
        f"""
        import importlib, importlib.util, json, sys
        # Forget the editable install of this checkout: the clone must bring kinema itself.
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
        sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
        sys.path_importer_cache.clear()
        sys.path[:] = [p for p in sys.path if p and p not in ({str(REPO)!r}, {str(REPO / "core")!r})]
        importlib.invalidate_caches()
        assert importlib.util.find_spec("kinema") is None and importlib.util.find_spec("kinema_comfyui") is None
        name = {name!r}
        spec = importlib.util.spec_from_file_location(name, {str(REPO / "__init__.py")!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        import kinema, kinema_comfyui
        handle = kinema_comfyui.logic.load_model("tiny")
        print(json.dumps({{
            "entrypoint": callable(module.comfy_entrypoint),
            "kinema": kinema.__file__,
            "nodes": kinema_comfyui.__file__,
            "node_ids": [node.node_id for node in kinema_comfyui.spec.NODES],
            "backend": handle.backend.name,
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=os.path.dirname(REPO), timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "name",
    [
        str(REPO).replace(".", "_x_"),  # ComfyUI 0.3.6x and later: the folder's path
        "kinema",  # older ComfyUIs: the folder's name, here the package's own name
    ],
)
def test_a_clone_gives_the_nodes_without_an_installed_kinema(name):
    loaded = load_clone(name)
    assert loaded["entrypoint"] and loaded["backend"] == "tiny"
    assert loaded["kinema"] == str(REPO / "core" / "kinema" / "__init__.py")
    assert loaded["nodes"] == str(REPO / "plugins" / "comfyui" / "__init__.py")
    assert "KinemaGenerate" in loaded["node_ids"]


def test_the_root_init_is_no_part_of_kinemas_package_or_tests():
    built = pyproject(REPO / "pyproject.toml")["tool"]["setuptools"]
    assert "" not in built["package-dir"].values() and all(not p.startswith(".") for p in built["packages"])
    assert pyproject(REPO / "pyproject.toml")["tool"]["mypy"]["files"] == ["core/kinema"]


# --------------------------------------------------------------------------- in a real ComfyUI


def test_a_git_clone_with_its_requirements_gives_working_nodes_in_comfyui(tmp_path, shared_models):
    from test_comfyui_integration import COMFY_DIR, clone_into, comfy_python, python_has_kinema, running_comfy

    if not COMFY_DIR:
        pytest.skip("set KINEMA_COMFYUI_DIR to a ComfyUI checkout to run this")
    python = comfy_python()
    if python_has_kinema(python):
        pytest.skip("KINEMA_COMFYUI_PYTHON imports kinema: a clone install needs a ComfyUI Python without it")
    torch_before = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # The Manager runs `pip install -r requirements.txt` in the clone: it must keep ComfyUI's torch.
    dry = subprocess.run(
        [python, "-m", "pip", "install", "--dry-run", "-r", str(REPO / "requirements.txt")],
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    would = next((line for line in dry.stdout.splitlines() if line.startswith("Would install")), "")
    assert " torch-" not in would, would
    missing = [word for word in would.split()[2:]]
    assert not missing, f"install the clone's requirements first: {python} -m pip install -r requirements.txt"

    base = tmp_path / "comfy-base"
    clone_into(base / "custom_nodes" / "kinema")
    home = tmp_path / "kinema-home"
    home.mkdir()
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    with running_comfy(base, home, python) as comfy:
        assert not [line for line in comfy.log_text().splitlines() if "IMPORT FAILED" in line and "kinema" in line]
        info = comfy.get("/object_info")
        assert {"KinemaModelLoader", "KinemaGenerate", "KinemaSaveClip"} <= set(info)
        templates = comfy.get("/workflow_templates")
        assert templates.get("kinema"), templates
    after = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert after == torch_before


def test_comfy_node_pack_builds_the_pack(tmp_path):
    """The registry's packer (comfy-cli, KINEMA_COMFY_CLI or `comfy` on PATH) zips what a clone holds."""
    import shutil
    import zipfile

    from test_comfyui_integration import clone_into

    comfy_cli = os.environ.get("KINEMA_COMFY_CLI") or shutil.which("comfy")
    if not comfy_cli:
        pytest.skip("set KINEMA_COMFY_CLI to comfy-cli's `comfy` (pip install comfy-cli) to run this")
    pack = clone_into(tmp_path / "kinema")
    git = ["git", "-c", "user.name=kinema", "-c", "user.email=kinema@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run([*git, *command], cwd=pack, check=True)
    done = subprocess.run(
        [comfy_cli, "--skip-prompt", "--no-enable-telemetry", "node", "pack"],
        cwd=pack,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "Created zip file" in done.stdout, done.stdout + done.stderr
    names = set(zipfile.ZipFile(pack / "node.zip").namelist())
    assert {"__init__.py", "requirements.txt", "pyproject.toml", "plugins/comfyui/__init__.py"} <= names
    assert {f"example_workflows/{p.name}" for p in (REPO / "example_workflows").glob("*.json")} <= names
