"""kinema's nodes inside a real ComfyUI, on the CPU, over its HTTP API.

Runs only when KINEMA_COMFYUI_DIR points to a ComfyUI checkout; KINEMA_COMFYUI_PYTHON
is the Python to run it with (torch, torchvision, torchaudio and ComfyUI's
requirements.txt), by default this one. CI has no ComfyUI, so there these tests skip.

The nodes go in the way that Python calls for: where it imports kinema, as
`kinema install comfyui` links them (plugins/comfyui); where it does not, as
ComfyUI's Manager installs a git URL: the repository's files in
custom_nodes/kinema, with the root requirements.txt installed into that Python.

ComfyUI runs with a temporary --base-directory, so the checkout is not touched.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import kinema
from kinema.media.files import probe

COMFY_DIR = os.environ.get("KINEMA_COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFY_DIR, reason="set KINEMA_COMFYUI_DIR to a ComfyUI checkout to run these")

REPO = Path(__file__).resolve().parent.parent
NODE_FOLDER = REPO / "plugins" / "comfyui"
EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
EXAMPLE = REPO / "example_workflows" / "kinema_text_to_video.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
STARTUP_SECONDS = 300
RUN_SECONDS = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Comfy:
    def __init__(self, url: str, log: Path, base: Path):
        self.url, self.log, self.base = url, log, base

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"POST {path}: {error.code} {error.read().decode()}") from None

    @staticmethod
    def errors(entry: dict) -> list:
        return [
            f"{body.get('node_type')}: {body.get('exception_message')}"
            for name, body in entry["status"]["messages"]
            if name == "execution_error"
        ]

    def run(self, workflow: dict) -> dict:
        prompt_id = self.post("/prompt", {"prompt": workflow, "client_id": "kinema-tests"})["prompt_id"]
        return self.wait(prompt_id)

    def wait(self, prompt_id: str) -> dict:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry["status"].get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.25)
        raise AssertionError(f"prompt {prompt_id} did not finish in {RUN_SECONDS} s; log: {self.log_text()[-3000:]}")

    def object_info(self) -> dict:
        if not hasattr(self, "_info"):
            self._info = self.get("/object_info")
        return self._info

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def comfy_python() -> str:
    return os.environ.get("KINEMA_COMFYUI_PYTHON", sys.executable)


def python_has_kinema(python: str) -> bool:
    return subprocess.run([python, "-c", "import kinema"], capture_output=True).returncode == 0


def clone_into(folder: Path) -> Path:
    """What a git clone of this working tree holds: its tracked and not-ignored files (uncommitted edits included)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, folder / name
        if source.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder


@contextlib.contextmanager
def running_comfy(base: Path, home: Path, python: str):
    """ComfyUI serving on a free port, with ``base`` as its --base-directory and ``home`` as kinema's."""
    port = _free_port()
    log = base / "comfyui.log"
    env = {**os.environ, "KINEMA_HOME": str(home), "KINEMA_LOAD_PLUGINS": "", "PYTHONUNBUFFERED": "1"}
    env.pop("KINEMA_DEVICE", None)  # the nodes must follow ComfyUI's --cpu on their own
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                python,
                "main.py",
                "--cpu",
                "--listen",
                "127.0.0.1",
                "--port",
                str(port),
                "--base-directory",
                str(base),
                "--disable-auto-launch",
                "--database-url",
                "sqlite:///:memory:",
            ],
            cwd=COMFY_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Comfy(f"http://127.0.0.1:{port}", log, base)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"ComfyUI exited with {process.returncode}: {server.log_text()[-3000:]}")
            try:
                server.get("/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"ComfyUI did not start in {STARTUP_SECONDS} s: {server.log_text()[-3000:]}"
                    ) from None
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, shared_models):
    base = tmp_path_factory.mktemp("comfy-base")
    (base / "custom_nodes").mkdir()
    python = comfy_python()
    if python_has_kinema(python):
        (base / "custom_nodes" / "comfyui-kinema").symlink_to(NODE_FOLDER, target_is_directory=True)
    else:
        clone_into(base / "custom_nodes" / "kinema")
    home = tmp_path_factory.mktemp("kinema-home-comfy")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    with running_comfy(base, home, python) as server:
        yield server


def ui_to_api(workflow: dict, info: dict) -> dict:
    """A UI-format workflow (what example_workflows/ holds) as the API-format prompt the frontend queues.

    Widget values are in the order of the node's widget inputs in /object_info, required then optional, with one
    extra value after each widget that has a control_after_generate (the frontend's randomize / fixed).
    """
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node.get("mode", 0) != 0:
            continue  # muted or bypassed
        values = list(node.get("widgets_values") or [])
        inputs: dict = {}
        declared = info[node["type"]]["input"]
        for section in ("required", "optional"):
            for name, field in declared.get(section, {}).items():
                kind, options = field[0], (field[1] if len(field) > 1 else {})
                if not (isinstance(kind, list) or kind in WIDGET_TYPES) or not values:
                    continue
                inputs[name] = values.pop(0)
                if options.get("control_after_generate"):
                    values.pop(0)
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def small_workflow(comfy, **changes) -> dict:
    workflow = ui_to_api(json.loads(EXAMPLE.read_text()), comfy.object_info())
    workflow["1"]["inputs"]["backend"] = "tiny-ltx2"  # any size (the example's demo world makes 64x64 only)
    workflow["2"]["inputs"].update({"seconds": 0.375, "width": 32, "height": 32, "steps": 2, **changes})
    return workflow


def test_every_example_workflow_has_its_nodes_and_renders(comfy):
    info = comfy.object_info()
    for path in EXAMPLES:
        workflow = json.loads(path.read_text())
        assert workflow["nodes"] and workflow["links"], path.name
        assert {node["type"] for node in workflow["nodes"]} <= set(info), path.name
        prompt = ui_to_api(workflow, info)
        for entry in prompt.values():  # made small, so that it renders in seconds on a CPU
            for key, value in {"seconds": 0.375, "width": 32, "height": 32, "steps": 2}.items():
                if key in entry["inputs"]:
                    entry["inputs"][key] = value
        done = comfy.run(prompt)
        assert done["status"]["status_str"] == "success", (path.name, comfy.errors(done))


def test_comfyui_loads_the_nodes_with_their_declared_schema(comfy):
    from test_comfyui import import_like_comfyui

    spec = import_like_comfyui(NODE_FOLDER).spec
    assert not [line for line in comfy.log_text().splitlines() if "IMPORT FAILED" in line and "kinema" in line]
    info = comfy.get("/object_info")
    for node in spec.NODES:
        entry = info[node.node_id]  # ComfyUI validated the V3 schema (Schema.validate) when it loaded the node
        assert entry["display_name"] == node.display_name and entry["category"] == spec.CATEGORY
        assert entry["output_node"] == node.output_node
        assert entry["output"] == [o.type for o in node.outputs]
        for field in node.inputs:
            kind, options = entry["input"]["optional" if field.optional else "required"][field.id]
            if field.type == "COMBO":
                assert kind == "COMBO" and options["options"] == field.choices() and options["default"] == field.default
            else:
                assert kind == field.type
                assert options.get("default") == field.default
            for key in ("min", "max", "step"):
                if getattr(field, key) is not None:
                    assert options[key] == getattr(field, key), (node.node_id, field.id, key)
    seed = info["KinemaGenerate"]["input"]["required"]["seed"][1]
    assert seed["control_after_generate"] is True


def test_example_workflow_makes_mp4s_with_video_and_audio(comfy):
    entry = comfy.run(small_workflow(comfy, seed=11, tier="draft"))
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    outputs = entry["outputs"]
    for node_id in ("3", "4"):  # Kinema Save Clip, and ComfyUI's own Save Video fed by Generate's VIDEO
        saved = outputs[node_id]["images"][0]
        assert saved["type"] == "output"
        path = comfy.base / "output" / saved["subfolder"] / saved["filename"]
        info = probe(path)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")
        assert (info.width, info.height, info.frame_count) == (32, 32, 9)
        assert abs(info.audio_duration - info.video_duration) <= 1024 / info.sample_rate
    ours = outputs["3"]["images"][0]
    clip = kinema.Clip.load(comfy.base / "output" / ours["subfolder"] / ours["filename"])
    assert clip.metadata["backend"] == "tiny-ltx2" and clip.metadata["seed"] == 11 and clip.metadata["tier"] == "draft"
    assert clip.metadata["prompt"].startswith("A red fox")


def test_interrupt_stops_generation_and_the_next_run_works(comfy):
    prompt_id = comfy.post(
        "/prompt", {"prompt": small_workflow(comfy, steps=500, seed=12), "client_id": "kinema-tests"}
    )["prompt_id"]
    deadline = time.monotonic() + RUN_SECONDS
    while not comfy.get("/queue")["queue_running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(2)
    comfy.post("/interrupt", {})
    entry = comfy.wait(prompt_id)
    events = [name for name, _ in entry["status"]["messages"]]
    assert "execution_interrupted" in events and "execution_error" not in events, events
    again = comfy.run(small_workflow(comfy, seed=13))
    assert again["status"]["status_str"] == "success", comfy.errors(again)


def test_freeing_memory_in_comfyui_releases_kinemas_pipelines(comfy):
    assert comfy.run(small_workflow(comfy, seed=14))["status"]["status_str"] == "success"
    before = comfy.log_text().count("kinema: releasing loaded pipelines")
    comfy.post("/free", {"unload_models": True})
    deadline = time.monotonic() + 60
    while comfy.log_text().count("kinema: releasing loaded pipelines") == before:
        assert time.monotonic() < deadline, "ComfyUI's Unload Models did not reach kinema"
        time.sleep(0.25)
    assert comfy.run(small_workflow(comfy, seed=15))["status"]["status_str"] == "success"  # loads again on demand


def test_errors_read_like_errors(comfy):
    entry = comfy.run(small_workflow(comfy, prompt="   ", seed=16))
    error = next(body for name, body in entry["status"]["messages"] if name == "execution_error")
    assert error["exception_message"].strip() == "kinema: prompt is empty: describe the clip you want"
    assert error["exception_type"] == "kinema.KinemaNodeError"  # a short name, not the node folder's path
    assert not any("diffusers" in line for line in error["traceback"])


def test_extend_and_remix_nodes_run_in_a_graph(comfy):
    """Generate -> Kinema Extend (its VIDEO) -> Kinema Remix (the longer clip's frames and sound) -> Save Clip."""
    small = {"seconds": 0.375, "width": 32, "height": 32, "steps": 2, "fps": 24.0, "guidance": 3.0}
    loader = {"backend": "tiny-ltx2", "model": "(backend default)", "precision": "auto", "memory": "auto"}
    prompt = {
        "1": {"class_type": "KinemaModelLoader", "inputs": loader},
        "2": {
            "class_type": "KinemaGenerate",
            "inputs": {
                "model": ["1", 0],
                "prompt": "a door",
                "negative_prompt": "",
                "seed": 21,
                "style": "none",
                "audio": True,
                **small,
            },
        },
        "3": {
            "class_type": "KinemaExtend",
            "inputs": {
                "model": ["1", 0],
                "prompt": "it opens",
                "seconds": 0.25,
                "seed": 22,
                "fps": 24.0,
                "tier": "draft",
                "video": ["2", 2],
            },
        },
        "4": {
            "class_type": "KinemaRemix",
            "inputs": {
                "model": ["1", 0],
                "prompt": "in snow",
                "strength": 0.5,
                "seed": 23,
                "keep_audio": True,
                "fps": 24.0,
                "tier": "draft",
                "images": ["3", 0],
                "audio": ["3", 1],
            },
        },
        "5": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["4", 3], "filename_prefix": "kinema/remixed"}},
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    saved = entry["outputs"]["5"]["images"][0]
    clip = kinema.Clip.load(comfy.base / "output" / saved["subfolder"] / saved["filename"])
    assert clip.metadata["kind"] == "remix" and clip.frame_count == 9 + 6 and clip.audio is not None


def test_the_loader_shows_a_models_licence_and_refuses_a_restricted_one_until_accepted(comfy, tmp_path):
    """Issue 22: a restricted licence (LTX-2.x's) stops the graph at Kinema Model Loader with its terms; with
    accept_license on, the loader shows it and the clip is made."""
    from kinema.backends.tiny_ltx25 import build_tiny_ltx25

    folder = build_tiny_ltx25(tmp_path / "LTX-2.5-tiny", upsampler=False)
    info = comfy.object_info()["KinemaModelLoader"]
    assert "Licences: " in info["description"] and "LTX-2 Community License" in info["description"]
    loader = {"backend": "ltx2", "model": "(backend default)", "precision": "auto", "memory": "auto"}
    loader["model_id"] = str(folder)
    small = {"seconds": 0.375, "width": 64, "height": 64, "steps": 2, "fps": 24.0, "guidance": 3.0}
    generate = {"model": ["1", 0], "prompt": "a kite", "negative_prompt": "", "seed": 31, "style": "none"}
    prompt = {
        "1": {"class_type": "KinemaModelLoader", "inputs": loader},
        "2": {"class_type": "KinemaGenerate", "inputs": {**generate, "audio": True, **small}},
        "3": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["2", 3], "filename_prefix": "kinema/licensed"}},
    }
    refused = comfy.run(prompt)
    (error,) = comfy.errors(refused)
    assert error.startswith("KinemaModelLoader: kinema: LTX-2.5-tiny is under the LTX-2 Community License"), error
    assert "$10M annual revenue" in error and "turn on accept_license" in error and str(tmp_path) not in error

    loader["accept_license"] = True
    accepted = comfy.run(prompt)
    assert accepted["status"]["status_str"] == "success", comfy.errors(accepted)
    (shown,) = accepted["outputs"]["1"]["text"]
    assert shown.startswith("Licence: LTX-2.5-tiny: LTX-2 Community License") and shown.endswith("(accepted here)")
    assert "3" in accepted["outputs"]


SMALL = {"seconds": 0.375, "width": 32, "height": 32, "steps": 2, "fps": 24.0, "guidance": 3.0}


def generate_node(model: list, prompt: str, seed: int, **inputs) -> dict:
    fields = {"prompt": prompt, "negative_prompt": "", "seed": seed, "style": "none", "audio": True, **SMALL}
    return {"class_type": "KinemaGenerate", "inputs": {"model": model, **fields, **inputs}}


def saved_clip(comfy, entry: dict, node: str) -> kinema.Clip:
    saved = entry["outputs"][node]["images"][0]
    return kinema.Clip.load(comfy.base / "output" / saved["subfolder"] / saved["filename"])


def loader_options(comfy, field: str, node: str = "KinemaModelLoader") -> list:
    return comfy.get("/object_info")[node]["input"]["required"][field][1]["options"]


def test_lora_speech_and_last_frame_run_in_a_graph(comfy):
    """A LoRA from models/loras changes the clip; Generate follows a speech AUDIO and ends on a last IMAGE."""
    from test_styles import make_lora

    loras = comfy.base / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    make_lora(loras / "grain.safetensors")
    assert "grain.safetensors" in loader_options(comfy, "lora_name", "KinemaLoRA")  # listed without a restart
    loader = {"backend": "tiny-ltx2", "model": "(backend default)", "precision": "auto", "memory": "auto"}
    prompt = {
        "1": {"class_type": "KinemaModelLoader", "inputs": loader},
        "2": {
            "class_type": "KinemaLoRA",
            "inputs": {"model": ["1", 0], "lora_name": "grain.safetensors", "strength": 0.8},
        },
        "3": generate_node(["1", 0], "a door opens", 31),
        "4": generate_node(["2", 0], "a door opens", 31),
        # The first clip's sound as the speech line, its frames' first picture as the frame to end on.
        "5": generate_node(["1", 0], "a woman says hello", 32, speech=["3", 1], last_image=["3", 0]),
        "6": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["3", 3], "filename_prefix": "kinema/plain"}},
        "7": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["4", 3], "filename_prefix": "kinema/lora"}},
        "8": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["5", 3], "filename_prefix": "kinema/speech"}},
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    plain, styled, spoken = (saved_clip(comfy, entry, node) for node in ("6", "7", "8"))
    assert plain.frames.shape == styled.frames.shape == spoken.frames.shape == (9, 32, 32, 3)
    assert abs(plain.frames.astype(int) - styled.frames.astype(int)).mean() > 1  # the LoRA took part
    assert spoken.metadata["speech"] == "audio" and spoken.audio is not None


def test_a_single_file_checkpoint_in_models_checkpoints_is_listed_and_renders(comfy):
    """An LTX-2 single file (the authors' key layout) in ComfyUI's models/checkpoints, picked from the loader's list."""
    from single_files import write_ltx2

    from kinema.backends.tiny import tiny_model_path

    write_ltx2(tiny_model_path("ltx2"), comfy.base / "models" / "checkpoints" / "ltx-2-tiny.safetensors")
    (comfy.base / "models" / "checkpoints" / "not-a-video-model.safetensors").write_bytes(b"\0" * 16)
    options = loader_options(comfy, "model")
    assert "checkpoints/ltx-2-tiny.safetensors" in options
    assert not any("not-a-video-model" in option for option in options)
    loader = {
        "backend": "ltx2",
        "model": "checkpoints/ltx-2-tiny.safetensors",
        "precision": "auto",
        "memory": "auto",
        "accept_license": True,  # an LTX-2 file is under LTX-2's licence, as a pulled LTX-2 is
    }
    prompt = {
        "1": {"class_type": "KinemaModelLoader", "inputs": loader},
        "2": generate_node(["1", 0], "a ball drops", 41),
        "3": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["2", 3], "filename_prefix": "kinema/single"}},
    }
    entry = comfy.run(prompt)
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    clip = saved_clip(comfy, entry, "3")
    assert clip.metadata["backend"] == "ltx2" and clip.metadata["model"].endswith("ltx-2-tiny.safetensors")
    assert clip.frames.shape == (9, 32, 32, 3) and clip.audio is not None


def test_text_encoders_and_vaes_from_comfyuis_folders_are_listed_and_render(comfy):
    """A Wan single file in models/diffusion_models with its UMT5 text encoder (fp8, Comfy-Org's scaled layout,
    tokenizer inside) from models/text_encoders and its VAE from models/vae, each picked from the loader's lists;
    and an LTX-2 file with its Gemma 3 text encoder."""
    from single_files import write_ltx2, write_text_encoder, write_wan, write_wan_vae

    from kinema.backends.tiny import tiny_model_path

    models = comfy.base / "models"
    write_wan(tiny_model_path("wan"), models / "diffusion_models" / "wan-tiny.safetensors")
    write_text_encoder(tiny_model_path("wan"), models / "text_encoders" / "umt5-tiny-fp8.safetensors", fp8="scaled_fp8")
    write_wan_vae(tiny_model_path("wan"), models / "vae" / "wan2.2-vae-tiny.safetensors")
    write_ltx2(tiny_model_path("ltx2"), models / "checkpoints" / "ltx-2-tiny-te.safetensors")
    write_text_encoder(tiny_model_path("ltx2"), models / "text_encoders" / "gemma-3-tiny.safetensors")
    optional = comfy.get("/object_info")["KinemaModelLoader"]["input"]["optional"]
    encoders, vaes = optional["text_encoder"][1]["options"], optional["vae"][1]["options"]
    assert {"umt5-tiny-fp8.safetensors", "gemma-3-tiny.safetensors"} <= set(encoders)
    assert "wan2.2-vae-tiny.safetensors" in vaes and "gemma-3-tiny.safetensors" not in vaes

    def loader(backend, model, **parts):
        inputs = {"backend": backend, "model": model, "precision": "auto", "memory": "auto", "accept_license": True}
        return {"class_type": "KinemaModelLoader", "inputs": {**inputs, **parts}}

    prompt = {
        "1": loader(
            "wan",
            "diffusion_models/wan-tiny.safetensors",
            text_encoder="umt5-tiny-fp8.safetensors",
            vae="wan2.2-vae-tiny.safetensors",
        ),
        "2": generate_node(["1", 0], "a ball drops", 43, audio=False),
        "3": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["2", 3], "filename_prefix": "kinema/wan-parts"}},
        "4": loader("ltx2", "checkpoints/ltx-2-tiny-te.safetensors", text_encoder="gemma-3-tiny.safetensors"),
        "5": generate_node(["4", 0], "a ball drops", 44),
        "6": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["5", 3], "filename_prefix": "kinema/ltx2-parts"}},
    }
    # wan's loader wants its sound model present; these clips are silent, so the tiny one stands in, unread.
    sound = tiny_model_path("wan").parent / "stabilityai--stable-audio-open-1.0"
    sound.symlink_to(tiny_model_path("stable-audio"), target_is_directory=True)
    try:
        entry = comfy.run(prompt)
    finally:
        sound.unlink()
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    wan, ltx2 = saved_clip(comfy, entry, "3"), saved_clip(comfy, entry, "6")
    assert wan.metadata["backend"] == "wan" and wan.metadata["model"].endswith(".json") and wan.audio is None
    assert ltx2.metadata["backend"] == "ltx2" and ltx2.frames.shape == (9, 32, 32, 3) and ltx2.audio is not None


def test_every_example_opens_in_the_frontend_and_renders_when_queued_from_it(comfy, tmp_path):
    """ComfyUI's own frontend (the comfyui-frontend-package it serves) in Chromium, driven by Playwright.

    Needs node, Chromium (KINEMA_CHROMIUM, default /usr/bin/chromium: Debian's package) and playwright-core
    (KINEMA_PLAYWRIGHT_CORE: its package folder, from `npm install playwright-core`); skips without them.
    """
    import shutil

    playwright = os.environ.get("KINEMA_PLAYWRIGHT_CORE")
    chromium = os.environ.get("KINEMA_CHROMIUM", "/usr/bin/chromium")
    if not playwright or not shutil.which("node") or not os.path.exists(chromium):
        pytest.skip("set KINEMA_PLAYWRIGHT_CORE to playwright-core's folder (and have node and Chromium) to run this")
    before = set(comfy.get("/history"))
    screenshot = tmp_path / "frontend.png"
    done = subprocess.run(
        ["node", str(REPO / "tests" / "comfyui_frontend.cjs"), comfy.url, str(screenshot), *map(str, EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KINEMA_PLAYWRIGHT_CORE": playwright, "KINEMA_CHROMIUM": chromium},
    )
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {"error": done.stderr[-3000:]}
    assert done.returncode == 0 and "error" not in report, report
    assert len(report["results"]) == len(EXAMPLES) and screenshot.stat().st_size > 0
    for path, result in zip(EXAMPLES, report["results"], strict=True):
        expected = sorted(node["type"] for node in json.loads(path.read_text())["nodes"])
        assert sorted(result["types"]) == expected and not result["unknown"], (path.name, result)
        assert "KinemaGenerate.seconds" in result["shrunk"], result
    deadline = time.monotonic() + RUN_SECONDS
    while True:
        new = {key: entry for key, entry in comfy.get("/history").items() if key not in before}
        finished = [entry for entry in new.values() if entry["status"].get("status_str") in ("success", "error")]
        if len(finished) >= len(EXAMPLES):
            break
        assert time.monotonic() < deadline, f"{len(finished)} of {len(EXAMPLES)} queued examples finished"
        time.sleep(0.5)
    assert all(entry["status"]["status_str"] == "success" for entry in finished), [comfy.errors(e) for e in finished]
    for entry in finished:  # what the frontend queued is the shrunk graph
        generate = next(n for n in entry["prompt"][2].values() if n["class_type"] == "KinemaGenerate")
        assert generate["inputs"]["width"] == 32 and generate["inputs"]["seconds"] == 0.375
