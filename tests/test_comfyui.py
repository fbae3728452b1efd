"""kinema's ComfyUI nodes without ComfyUI: the folder imports as ComfyUI imports it, and the node logic runs for real.

The ComfyUI layer itself (V3 schema, progress bar, memory manager) runs in
tests/test_comfyui_integration.py against a real ComfyUI.
"""

import ast
import importlib.util
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kinema
from kinema.errors import InvalidRequestError, MissingWeightsError, UnknownBackendError
from kinema.media.files import probe

NODE_FOLDER = Path(__file__).resolve().parent.parent / "plugins" / "comfyui"
SMALL = dict(seconds=0.375, width=32, height=32, fps=24, steps=2, seed=1)


def import_like_comfyui(folder: Path):
    """What ComfyUI's nodes.load_custom_node does: the folder's __init__.py under a path-derived module name."""
    name = str(folder).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nodes():
    return import_like_comfyui(NODE_FOLDER)


class RecordingHost:
    """Stands where ComfyUI's progress bar and interrupt flag are; ``interrupt_at`` plays the user's Cancel."""

    def __init__(self, previews=False, interrupt_at=None):
        self.previews = previews
        self.interrupt_at = interrupt_at
        self.events = []
        self.calls = []

    def progress(self, step, total, preview):
        self.events.append((step, total, preview))

    def interrupted(self):
        return self.interrupt_at is not None and len(self.events) >= self.interrupt_at

    def raise_interrupt(self):
        raise HostInterrupt()

    def before_generate(self, backend):
        self.calls.append(("before", backend.name))

    def after_generate(self, backend):
        self.calls.append(("after", backend.name))


class HostInterrupt(BaseException):
    """Like comfy.model_management.InterruptProcessingException: a BaseException."""


# --------------------------------------------------------------------------- loading and schema


def test_folder_imports_the_way_comfyui_imports_it_without_comfyui(nodes):
    assert "comfy" not in sys.modules and "comfy_api" not in sys.modules
    assert inspect.iscoroutinefunction(nodes.comfy_entrypoint)
    assert not hasattr(nodes, "NODE_CLASS_MAPPINGS")  # V1 mappings would make ComfyUI ignore comfy_entrypoint
    assert {n.node_id for n in nodes.spec.NODES} == {
        "KinemaModelLoader",
        "KinemaGenerate",
        "KinemaStoryboard",
        "KinemaSaveClip",
        "KinemaCameoCapture",
        "KinemaCameo",
        "KinemaLoRA",
        "KinemaExtend",
        "KinemaRemix",
    }


def test_every_node_schema_is_valid(nodes):
    spec = nodes.spec
    ids = [node.node_id for node in spec.NODES]
    assert len(ids) == len(set(ids)) and all(i.startswith("Kinema") for i in ids)
    for node in spec.NODES:
        for names in ([i.id for i in node.inputs], [o.id for o in node.outputs]):
            assert len(names) == len(set(names)), node.node_id  # what io.Schema.validate checks
        assert node.display_name and node.description
        for field in node.inputs:
            assert field.type in spec.WIDGET_TYPES | spec.SOCKET_TYPES, (node.node_id, field.id)
            assert field.tooltip, (node.node_id, field.id)
            if field.type in ("INT", "FLOAT"):
                assert field.min <= field.default <= field.max, (node.node_id, field.id)
            if field.type == "COMBO":
                assert field.default in field.choices(), (node.node_id, field.id)
            if field.type in spec.SOCKET_TYPES:
                assert field.default is None
        for output in node.outputs:
            assert output.type in spec.SOCKET_TYPES and output.tooltip
    loader = {f.id: f for f in spec.MODEL_LOADER.inputs}
    assert {"tiny", "tiny-wan", "ltx2", "wan"} <= set(loader["backend"].choices())
    generate = {f.id: f for f in spec.GENERATE.inputs}
    assert generate["seed"].control_after_generate  # a new seed per run keeps ComfyUI's cache from replaying a clip
    assert [o.type for o in spec.GENERATE.outputs] == ["IMAGE", "AUDIO", "VIDEO", "KINEMA_CLIP"]
    from kinema.tiers import TIERS

    # Optional, so API prompts saved before tiers still validate; every tier's trade-off is in the tooltip.
    assert generate["tier"].choices() == list(TIERS) and generate["tier"].default == "standard"
    board_tier = {f.id: f for f in spec.STORYBOARD.inputs}["tier"]
    assert board_tier.choices() == [spec.STORYBOARD_TIER, *TIERS] and board_tier.default == spec.STORYBOARD_TIER
    for field in (generate["tier"], board_tier):
        assert field.optional and all(entry["description"] in field.tooltip for entry in TIERS.values())


def test_v3_nodes_take_exactly_the_inputs_their_schema_declares(nodes):
    """Read v3.py (it imports ComfyUI, so it is parsed, not imported): each execute() matches its spec."""
    tree = ast.parse((NODE_FOLDER / "v3.py").read_text())
    specs = {node.node_id: node for node in nodes.spec.NODES}
    seen = set()
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in specs):
        execute = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "execute")
        arguments = [a.arg for a in execute.args.args][1:]  # after cls
        defaults = dict(
            zip(arguments[len(arguments) - len(execute.args.defaults) :], execute.args.defaults, strict=True)
        )
        node = specs[cls.name]
        assert arguments == [f.id for f in node.inputs], cls.name
        for field in node.inputs:
            assert (field.id in defaults) == field.optional, (cls.name, field.id)
        seen.add(cls.name)
    assert seen == set(specs)
    returned = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
    assert "KinemaNodeError" in returned and "ComfyExtension" in returned


# ComfyUI's own nodes the examples use (tests/test_comfyui_integration.py checks them against a real ComfyUI).
NATIVE_NODES = {"SaveVideo", "PreviewImage", "LoadImage", "LoadAudio", "LoadVideo", "CreateVideo", "GetVideoComponents"}


def test_registry_metadata_and_example_workflows(nodes):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((NODE_FOLDER / "pyproject.toml").read_text())
    assert meta["project"]["name"] and meta["tool"]["comfy"]["PublisherId"] and meta["tool"]["comfy"]["DisplayName"]
    specs = {node.node_id: node for node in nodes.spec.NODES}
    examples = sorted((NODE_FOLDER / "example_workflows").glob("*.json"))
    assert examples
    for path in examples:
        ui = json.loads(path.read_text())
        # Only the UI format: the Templates browser opens an API-format file as an empty canvas.
        assert isinstance(ui.get("nodes"), list) and isinstance(ui.get("links"), list), path.name
        assert ui["nodes"] and ui["links"], path.name
        types = {n["type"] for n in ui["nodes"]}
        assert types <= set(specs) | NATIVE_NODES, (path.name, types - set(specs) - NATIVE_NODES)
        assert {"KinemaModelLoader", "KinemaSaveClip"} & types, path.name
        by_id = {n["id"]: n for n in ui["nodes"]}
        for link_id, source, slot, target, _target_slot, kind in ui["links"]:
            assert source in by_id and target in by_id, (path.name, link_id)
            if by_id[source]["type"] in specs:
                assert specs[by_id[source]["type"]].outputs[slot].type == kind, (path.name, link_id)
        for node in ui["nodes"]:
            if node["type"] in specs:
                widgets = ui_widgets(specs[node["type"]])
                assert len(node["widgets_values"]) == len(widgets), (path.name, node["type"])
                for field, value in zip(widgets, node["widgets_values"], strict=True):
                    assert value_fits(field, value), (path.name, node["type"], field and field.id, value)


def ui_widgets(node) -> list:
    """A UI-format workflow's widgets_values order: required widgets, then optional ones; None for a seed's control."""
    widgets = []
    for optional in (False, True):
        for field in node.inputs:
            if field.optional == optional and field.type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                widgets += [field, None] if field.control_after_generate else [field]
    return widgets


def value_fits(field, value) -> bool:
    if field is None:
        return value in ("fixed", "increment", "decrement", "randomize")
    if field.type == "COMBO":
        return value in field.choices()
    kinds = {"INT": int, "FLOAT": (int, float), "STRING": str, "BOOLEAN": bool}[field.type]
    return isinstance(value, kinds) and (field.type == "BOOLEAN" or not isinstance(value, bool))


# --------------------------------------------------------------------------- Model Loader


def test_loader_configures_a_backend_without_loading_weights(nodes):
    handle = nodes.logic.load_model("tiny-ltx2", precision="fp32", memory="offload")
    assert (
        handle.backend.name == "tiny-ltx2" and handle.backend.precision == "fp32" and handle.backend.memory == "offload"
    )
    assert kinema.get_backend("tiny-ltx2").memory == "auto"  # the registered backend is shared: never changed
    assert "tiny-ltx2" in repr(handle)


def test_loader_lists_model_folders_and_explains_missing_weights(nodes, kinema_env):
    pulled = kinema_env / "models" / "someone--my-ltx2"
    pulled.mkdir()
    (pulled / "model_index.json").write_text("{}")
    try:
        assert nodes.logic.model_choices()["someone/my-ltx2"] == "someone/my-ltx2"
        assert "kinema/tiny-ltx2" not in nodes.logic.model_choices()
        with pytest.raises(MissingWeightsError, match="Lightricks/LTX-2 not downloaded: run `kinema models pull"):
            nodes.logic.load_model("ltx2")
        with pytest.raises(InvalidRequestError, match="built-in demo model"):
            nodes.logic.load_model("tiny-ltx2", model="someone/my-ltx2")
        with pytest.raises(MissingWeightsError, match="refresh"):
            nodes.logic.load_model("ltx2", model="gone/away")
    finally:
        (pulled / "model_index.json").unlink()
        pulled.rmdir()
    with pytest.raises(UnknownBackendError, match="unknown backend 'sora'; choose one of: .*tiny"):
        nodes.logic.load_model("sora")
    with pytest.raises(InvalidRequestError, match="memory must be one of auto, gpu, offload"):
        nodes.logic.load_model("tiny-ltx2", memory="lots")


@pytest.mark.parametrize("backend", ["ltx2", "wan"])
def test_a_single_file_checkpoint_is_never_told_to_pull(nodes, tmp_path, backend):
    single = tmp_path / "checkpoints" / "ltx-2-19b-dev.safetensors"
    single.parent.mkdir()
    single.write_bytes(b"\0" * 16)
    for model in (str(single), str(tmp_path / "diffusion_models" / "wan2.2_ti2v_5B_fp16.safetensors")):
        with pytest.raises(MissingWeightsError) as raised:
            nodes.logic.load_model(backend, model_id=model)
        said = next(part for part in str(raised.value).split("; ") if part.startswith(model))
        # What is wrong with the file itself (kinema loads LTX-2 and Wan single files), never a pull of it.
        assert ("not a readable .safetensors file" in said or "does not exist" in said) and "pull" not in said, said


def test_the_loader_lists_text_encoders_and_vaes_kinema_can_use(nodes, tmp_path):
    from single_files import header_only_file, write_text_encoder, write_wan_vae

    from kinema.backends.tiny import tiny_model_path

    encoders, vaes = tmp_path / "text_encoders", tmp_path / "vae"
    write_text_encoder(tiny_model_path("wan"), encoders / "umt5-tiny.safetensors")
    write_text_encoder(tiny_model_path("ltx2"), encoders / "gemma" / "gemma-3-tiny.safetensors")
    write_wan_vae(tiny_model_path("wan"), vaes / "wan2.2-vae-tiny.safetensors")
    header_only_file(encoders / "clip_l.safetensors", {"text_model.encoder.layers.0.mlp.fc1.weight": (2, 2)})
    header_only_file(vaes / "ae.safetensors", {"decoder.conv_in.weight": (2, 2)})
    (encoders / "umt5.bin").write_bytes(b"not read")
    # The submodule by name: a package imported again (as each test's fixture does) finds its submodules cached
    # in sys.modules and is not given them as attributes.
    single_files = importlib.import_module(f"{nodes.__name__}.single_files")
    listed = single_files.part_choices("text_encoder", [encoders])
    assert listed == {
        "gemma/gemma-3-tiny.safetensors": str(encoders / "gemma" / "gemma-3-tiny.safetensors"),
        "umt5-tiny.safetensors": str(encoders / "umt5-tiny.safetensors"),
    }
    assert list(single_files.part_choices("vae", [vaes])) == ["wan2.2-vae-tiny.safetensors"]
    # The loader's lists: outside ComfyUI there are no ComfyUI folders, so each holds its default alone.
    widgets = {field.id: field for field in nodes.spec.MODEL_LOADER.inputs}
    assert widgets["text_encoder"].choices() == widgets["vae"].choices() == [single_files.MODELS_OWN]


def test_text_encoder_and_vae_picks_are_for_single_files_only(nodes):
    with pytest.raises(InvalidRequestError, match="text_encoder pick files for a single-file checkpoint"):
        nodes.logic.load_model("ltx2", text_encoder="gemma-3-12b.safetensors")
    with pytest.raises(InvalidRequestError, match="vae 'gone.safetensors' is not in ComfyUI's models/vae"):
        nodes.logic.load_model("wan", model_id="/x/wan2.2_ti2v_5B_fp16.safetensors", vae="gone.safetensors")


# --------------------------------------------------------------------------- Generate


def test_generate_returns_comfyui_image_and_audio_with_progress_per_step(nodes):
    host = RecordingHost()
    handle = nodes.logic.load_model("tiny-ltx2")
    frames, audio, clip = nodes.logic.generate(handle, "waves at dawn", host=host, **SMALL)

    assert frames.dtype == torch.float32 and tuple(frames.shape) == (9, 32, 32, 3)
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    assert np.array_equal((frames.numpy() * 255).round().astype(np.uint8), clip.frames)
    wave, rate = audio["waveform"], audio["sample_rate"]
    assert wave.dtype == torch.float32 and wave.ndim == 3 and wave.shape[:2] == (1, 2)
    assert float(wave.abs().max()) <= 1.0 and rate == clip.sample_rate
    assert abs(wave.shape[-1] / rate - 9 / 24) <= 1 / 24  # as long as the picture
    assert [(step, total) for step, total, _ in host.events] == [(1, 2), (2, 2)]
    assert all(preview is None for _, _, preview in host.events)  # previews only when the host asks
    assert host.calls == [("before", "tiny-ltx2"), ("after", "tiny-ltx2")]
    assert (
        clip.metadata["seed"] == 1 and clip.metadata["backend"] == "tiny-ltx2" and clip.metadata["tier"] == "standard"
    )


def test_the_tier_input_reaches_the_plan(nodes):
    handle = nodes.logic.load_model("tiny-ltx2")
    host = RecordingHost()
    model_steps = {k: v for k, v in SMALL.items() if k != "steps"}  # explicit steps would win over the tier
    _frames, _audio, clip = nodes.logic.generate(handle, "waves at dawn", host=host, tier="draft", **model_steps)
    draft_steps = kinema.get_backend("tiny-ltx2").plan(kinema.GenerationRequest("x", tier="draft")).steps
    assert draft_steps < kinema.get_backend("tiny-ltx2").defaults.steps
    assert clip.metadata["tier"] == "draft" and clip.metadata["steps"] == draft_steps
    assert host.events[-1][:2] == (draft_steps, draft_steps)
    with pytest.raises(InvalidRequestError, match="tier must be one of draft, standard, final; got 'ultra'"):
        nodes.logic.generate(handle, "waves at dawn", tier="ultra", **SMALL)


def test_generate_sends_preview_frames_when_the_host_shows_them(nodes):
    host = RecordingHost(previews=True)
    nodes.logic.generate(nodes.logic.load_model("tiny-wan"), "rain", audio=False, host=host, **SMALL)
    previews = [preview for _, _, preview in host.events]
    assert len(previews) == 2
    assert all(p is not None and p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in previews)


def test_generate_with_audio_off_gives_silence_of_the_clips_length_and_a_first_frame(nodes):
    image = torch.zeros(2, 48, 48, 4)  # a batch of RGBA: the first image is used, alpha dropped
    image[0, :, 24:, :3] = 1.0
    frames, audio, clip = nodes.logic.generate(
        nodes.logic.load_model("tiny-ltx2"), "a door opens", audio=False, image=image, **SMALL
    )
    assert clip.audio is None and clip.metadata["first_frame_image"] is True
    assert float(audio["waveform"].abs().max()) == 0.0
    assert audio["waveform"].shape[-1] == round(9 / 24 * audio["sample_rate"])
    assert frames.shape == (9, 32, 32, 3)


def test_cancel_stops_at_the_next_step_and_the_next_run_works(nodes):
    handle = nodes.logic.load_model("tiny-ltx2")
    host = RecordingHost(interrupt_at=2)
    with pytest.raises(HostInterrupt):
        nodes.logic.generate(handle, "storm at sea", host=host, **{**SMALL, "steps": 6})
    assert [step for step, _, _ in host.events] == [1, 2]
    assert host.calls[-1] == ("after", "tiny-ltx2")
    frames, _audio, _clip = nodes.logic.generate(handle, "storm at sea", host=RecordingHost(), **SMALL)
    assert frames.shape[0] == 9


def test_the_hosts_own_interrupt_passes_through_untouched(nodes):
    """ComfyUI's ProgressBar raises its interrupt (a BaseException) from inside the progress call."""

    class RaisingHost(RecordingHost):
        def progress(self, step, total, preview):
            super().progress(step, total, preview)
            if step == 1:
                raise HostInterrupt()

    handle = nodes.logic.load_model("tiny-ltx2")
    with pytest.raises(HostInterrupt):
        nodes.logic.generate(handle, "a bell", host=RaisingHost(), **{**SMALL, "steps": 4})
    assert nodes.logic.generate(handle, "a bell", **SMALL)[0].shape[0] == 9


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(prompt="  "), "prompt is empty"),
        (dict(width=8), "width must be between 16 and 4096, got 8"),
        (dict(seconds=61.0), "seconds must be in"),
        (dict(style="vaporwave"), "unknown style 'vaporwave'"),
        (dict(image=torch.zeros(1, 32, 32, 2)), "image must be a ComfyUI IMAGE"),
        (dict(image=torch.zeros(1, 8, 8, 3)), "at least 16 px"),
    ],
)
def test_bad_inputs_get_clear_messages(nodes, change, message):
    arguments = {"prompt": "a kite", **SMALL, **change}
    with pytest.raises(InvalidRequestError, match=message):
        nodes.logic.generate(nodes.logic.load_model("tiny-ltx2"), **arguments)


def test_generate_needs_a_loader_handle(nodes):
    with pytest.raises(InvalidRequestError, match="Kinema Model Loader"):
        nodes.logic.generate("tiny-ltx2", "a kite")


# --------------------------------------------------------------------------- Save Clip


def test_save_clip_writes_mp4_with_sound_provenance_and_workflow(nodes, tmp_path):
    _frames, _audio, clip = nodes.logic.generate(nodes.logic.load_model("tiny-ltx2"), "a lighthouse", **SMALL)
    tags = nodes.logic.workflow_tags({"1": {"class_type": "KinemaGenerate"}}, {"workflow": {"nodes": []}})
    path = nodes.logic.save_clip(clip, tmp_path / "clip.mp4", extra_tags=tags)

    info = probe(path)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.frame_count == 9
    loaded = kinema.Clip.load(path)
    assert loaded.metadata["prompt"] == "a lighthouse" and loaded.metadata["seed"] == 1
    import av

    with av.open(str(path)) as container:
        assert json.loads(container.metadata["workflow"]) == {"nodes": []}
        assert json.loads(container.metadata["prompt"])["1"]["class_type"] == "KinemaGenerate"


def test_save_clip_takes_frames_and_sound_edited_downstream(nodes, tmp_path):
    frames, _audio, clip = nodes.logic.generate(nodes.logic.load_model("tiny-ltx2"), "a lighthouse", **SMALL)
    flipped = torch.flip(frames, dims=[2])
    tone = {"waveform": torch.full((1, 1, 48000), 0.25), "sample_rate": 48000}  # 1 s: longer than the clip
    path = nodes.logic.save_clip(clip, tmp_path / "edited.mp4", images=flipped, audio=tone)

    loaded = kinema.Clip.load(path)
    assert loaded.metadata["edited_in_comfyui"] == ["frames", "audio"]
    assert loaded.frame_count == 9 and loaded.sample_rate == 48000 and loaded.audio.shape[0] == 1
    info = probe(path)
    assert abs(info.audio_duration - info.video_duration) <= 1024 / 48000
    with pytest.raises(InvalidRequestError, match="Kinema Generate"):
        nodes.logic.save_clip(frames, tmp_path / "no.mp4")
