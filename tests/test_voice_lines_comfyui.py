"""ComfyUI's Kinema Cameo node with a dialogue line: the line is said in the cameo's voice by a tiny random Dia
built offline (tests/tiny_dia.py); the voice lines themselves are tested in tests/test_voice_lines.py."""

import importlib
import os

import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

from test_voice_lines import LINE, SMALL, astro, captured, media, voice_model  # noqa: E402,F401  (fixtures)

from kinema.cameo.store import CameoNotAllowedError  # noqa: E402


@pytest.mark.usefixtures("astro")
def test_comfyuis_cameo_node_takes_a_dialogue_line(monkeypatch):
    """Kinema Cameo's dialogue input, as ComfyUI runs the node's logic (tests/test_comfyui.py imports it the same
    way): the voice's consent is checked when the cameo is picked, and Generate speaks the line."""
    from test_comfyui import NODE_FOLDER, import_like_comfyui

    nodes = import_like_comfyui(NODE_FOLDER)
    cameo_logic = importlib.import_module(f"{nodes.__name__}.cameo_logic")
    spec = importlib.import_module(f"{nodes.__name__}.spec")
    dialogue = next(i for i in spec.CAMEO.inputs if i.id == "dialogue")
    assert dialogue.type == "STRING" and dialogue.multiline and dialogue.optional

    monkeypatch.setenv("KINEMA_USER", "bob")
    with pytest.raises(CameoNotAllowedError, match="kinema cameo allow astro --voice"):
        cameo_logic.use_cameo("astro", False, LINE)
    picked, _ = cameo_logic.use_cameo("astro", False, "")  # the face alone is bob's to use
    assert picked.dialogue is None

    monkeypatch.setenv("KINEMA_USER", "alice")
    picked, _ = cameo_logic.use_cameo("astro", False, LINE)
    assert cameo_logic.request_fields(picked)["dialogue"] == LINE
    model = nodes.logic.load_model("tiny-ltx2")
    _, sound, clip = nodes.logic.generate(model, "astro greets the crew", cameo=picked, **SMALL)
    assert clip.metadata["voice_line"]["voice_of"] == "astro" and clip.metadata["voice_line"]["synthetic"]


@pytest.mark.skipif(not os.environ.get("KINEMA_COMFYUI_DIR"), reason="set KINEMA_COMFYUI_DIR to run inside ComfyUI")
def test_a_cameos_line_inside_comfyui(request, shared_models, tmp_path, monkeypatch):
    """Kinema Cameo (dialogue) -> Kinema Generate -> Kinema Save Clip in a real ComfyUI, its voice model installed."""
    from test_comfyui_integration import NODE_FOLDER, clone_into, comfy_python, python_has_kinema, running_comfy

    import kinema
    from kinema.cameo.store import SERVER_OWNER, CameoStore

    capture, tiny_dia = request.getfixturevalue("captured"), request.getfixturevalue("voice_model")

    base, home = tmp_path / "comfy-base", tmp_path / "kinema-home"
    (base / "custom_nodes").mkdir(parents=True)
    python = comfy_python()
    if python_has_kinema(python):
        (base / "custom_nodes" / "comfyui-kinema").symlink_to(NODE_FOLDER, target_is_directory=True)
    else:
        clone_into(base / "custom_nodes" / "kinema")
    home.mkdir()
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    CameoStore(home / "cameos").create("astro", SERVER_OWNER, capture)  # ComfyUI acts as the data's owner
    monkeypatch.delenv("KINEMA_USER", raising=False)
    monkeypatch.setenv("KINEMA_VOICE_MODEL", str(tiny_dia))
    workflow = {
        "1": {"class_type": "KinemaCameo", "inputs": {"name": "astro", "speak": False, "dialogue": LINE}},
        "2": {
            "class_type": "KinemaModelLoader",
            "inputs": {"backend": "tiny-ltx2", "model": "(backend default)", "precision": "auto", "memory": "auto"},
        },
        "3": {
            "class_type": "KinemaGenerate",
            "inputs": {
                "model": ["2", 0],
                "prompt": "astro greets the crew",
                "negative_prompt": "",
                "seconds": 0.375,
                "width": 32,
                "height": 32,
                "fps": 24.0,
                "steps": 2,
                "guidance": -1.0,
                "seed": 1,
                "style": "none",
                "audio": True,
                "cameo": ["1", 0],
            },
        },
        "4": {"class_type": "KinemaSaveClip", "inputs": {"clip": ["3", 3], "filename_prefix": "kinema/line"}},
    }
    with running_comfy(base, home, python) as comfy:
        entry = comfy.run(workflow)
    assert entry["status"]["status_str"] == "success", comfy.errors(entry)
    saved = entry["outputs"]["4"]["images"][0]
    clip = kinema.Clip.load(base / "output" / saved["subfolder"] / saved["filename"])
    line = clip.metadata["voice_line"]
    assert line["synthetic"] is True and line["voice_of"] == "astro" and line["text"] == LINE
