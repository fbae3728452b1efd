"""The Kinema LoRA, Extend and Remix nodes, and Generate's last frame and speech, without ComfyUI.

The node pack is imported the way ComfyUI imports it and its logic runs for real on the tiny random LTX-2
(``tiny-ltx2``); tests/test_comfyui_integration.py runs a graph of each node in a real ComfyUI.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
from test_comfyui import NODE_FOLDER, SMALL, import_like_comfyui

from kinema.errors import InvalidRequestError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nodes():
    """Imported the way ComfyUI imports a custom node folder."""
    return import_like_comfyui(NODE_FOLDER)


class Host:
    """Stands where ComfyUI's progress bar and interrupt flag are."""

    def __init__(self, previews=False, interrupt_at=None):
        self.previews, self.interrupt_at, self.events = previews, interrupt_at, []

    def progress(self, step, total, preview):
        self.events.append((step, total, preview))

    def interrupted(self):
        return self.interrupt_at is not None and len(self.events) >= self.interrupt_at

    def raise_interrupt(self):
        raise Interrupt()

    def before_generate(self, backend):
        pass

    def after_generate(self, backend):
        pass


class Interrupt(BaseException):
    """Like ComfyUI's InterruptProcessingException."""


@pytest.fixture(scope="module")
def made(nodes):
    """A 9-frame 32x32 clip with sound from Kinema Generate, as ComfyUI's frames, AUDIO and the clip."""
    return nodes.logic.generate(nodes.logic.load_model("tiny-ltx2"), "a door opens", **SMALL)


def test_the_new_nodes_are_in_the_pack(nodes):
    ids = {node.node_id for node in nodes.spec.NODES}
    assert {"KinemaLoRA", "KinemaExtend", "KinemaRemix"} <= ids
    generate = {field.id: field for field in nodes.spec.GENERATE.inputs}
    assert generate["last_image"].type == "IMAGE" and generate["last_image"].optional
    assert generate["speech"].type == "AUDIO" and generate["speech"].optional


# --------------------------------------------------------------------------- Extend


def test_extend_continues_frames_with_their_sound_and_reports_progress(nodes, made):
    frames, audio, clip = made
    host = Host(previews=True)
    longer, sound, result = nodes.logic.extend(
        nodes.logic.load_model("tiny-ltx2"),
        nodes.logic.source_clip(None, frames, audio, 24.0),
        "the door closes",
        0.25,
        seed=2,
        tier="draft",
        host=host,
    )
    assert longer.shape == (9 + 6, 32, 32, 3) and longer.dtype == torch.float32
    assert np.array_equal((longer[:9].numpy() * 255).round().astype(np.uint8), clip.frames)  # the clip comes first
    assert sound["sample_rate"] == clip.sample_rate
    assert abs(sound["waveform"].shape[-1] / sound["sample_rate"] - 15 / 24) <= 1 / 24
    assert result.metadata["kind"] == "extend" and result.metadata["tier"] == "draft"
    assert host.events and all(p is not None for _, _, p in host.events)  # previews as Generate sends them


def test_extend_takes_a_video_and_needs_a_prompt_for_a_clip_without_one(nodes, made):
    frames, audio, _clip = made
    handle = nodes.logic.load_model("tiny-ltx2")
    video = nodes.logic.source_clip((frames, Fraction(12), None), audio=None)
    assert video.fps == 12 and video.audio is None
    longer, sound, result = nodes.logic.extend(handle, video, "it rains", 0.5, seed=3)
    assert longer.shape[0] == 9 + 6 and result.audio is None  # no sound before: none after
    assert float(sound["waveform"].abs().max()) == 0.0
    with pytest.raises(InvalidRequestError, match="say what happens next"):
        nodes.logic.extend(handle, video, "", 0.5)
    with pytest.raises(InvalidRequestError, match="as video .* or as images .*, not both"):
        nodes.logic.source_clip((frames, 24, None), frames)
    with pytest.raises(InvalidRequestError, match="connect the clip as video"):
        nodes.logic.source_clip(None, None)


def test_extend_stops_on_the_hosts_interrupt(nodes, made):
    frames, audio, _clip = made
    host = Host(interrupt_at=1)
    with pytest.raises(Interrupt):
        nodes.logic.extend(
            nodes.logic.load_model("tiny-ltx2"), nodes.logic.source_clip(None, frames, audio), "more", 0.25, host=host
        )
    assert len(host.events) == 1


# --------------------------------------------------------------------------- Remix


def test_remix_keeps_length_size_and_optionally_the_sound(nodes, made):
    frames, audio, clip = made
    handle = nodes.logic.load_model("tiny-ltx2")
    source = nodes.logic.source_clip(None, frames, audio, 24.0)
    host = Host()
    new, sound, result = nodes.logic.remix(handle, source, "a door in the snow", 0.5, seed=4, host=host)
    assert new.shape == frames.shape and result.metadata["kind"] == "remix" and result.metadata["strength"] == 0.5
    assert host.events and sound["waveform"].shape[-1] == audio["waveform"].shape[-1]
    _new, kept, result = nodes.logic.remix(handle, source, "a door in the snow", 0.5, seed=4, keep_audio=True)
    assert torch.equal(kept["waveform"], audio["waveform"]) and result.metadata["audio_from"] == "parent"
    with pytest.raises(InvalidRequestError, match="cannot remix"):
        nodes.logic.remix(nodes.logic.load_model("tiny-wan-vace"), source, "snow", 0.5)


# --------------------------------------------------------------------------- LoRA


def test_lora_node_lists_comfyuis_loras_and_changes_the_clip(nodes, kinema_env, made):
    pytest.importorskip("peft")
    from test_styles import make_lora

    folder = kinema_env / "loras" / "style"
    folder.mkdir(parents=True)
    make_lora(folder / "grain.safetensors")
    (folder / "notes.ckpt").write_bytes(b"")  # pickled weights are never listed
    assert nodes.logic.lora_choices() == {"style/grain.safetensors": str(folder / "grain.safetensors")}
    assert nodes.spec.LORA.inputs[1].choices() == [nodes.spec.NO_LORA, "style/grain.safetensors"]

    plain = nodes.logic.load_model("tiny-ltx2")
    with_lora = nodes.logic.add_lora(plain, "style/grain.safetensors", 0.8)
    assert with_lora.loras == ((str(folder / "grain.safetensors"), 0.8),) and "grain x0.8" in repr(with_lora)
    assert nodes.logic.add_lora(plain, "style/grain.safetensors", 0.0) is plain
    frames, _audio, _clip = made
    styled, _, _ = nodes.logic.generate(with_lora, "a door opens", **SMALL)
    assert not torch.equal(styled, frames)
    again, _, _ = nodes.logic.generate(plain, "a door opens", **SMALL)
    assert torch.equal(again, frames)  # removed after the clip

    with pytest.raises(InvalidRequestError, match="not in .*models/loras and press R"):
        nodes.logic.add_lora(plain, nodes.spec.NO_LORA)
    with pytest.raises(InvalidRequestError, match="name the LoRA in a style"):
        nodes.logic.storyboard(with_lora, "Shot 1 (0.25s): a door")


# --------------------------------------------------------------------------- Generate: last frame, speech


def test_generate_ends_on_a_last_frame_where_the_backend_can(nodes):
    red = torch.zeros(1, 48, 48, 3)
    red[..., 0] = 1.0
    frames, _audio, clip = nodes.logic.generate(
        nodes.logic.load_model("tiny-ltx2"), "a door opens", image=red, last_image=1.0 - red, **SMALL
    )
    assert frames.shape == (9, 32, 32, 3) and clip.metadata["first_frame_image"] is True
    with pytest.raises(InvalidRequestError, match="'tiny-wan' cannot end a clip on a given last frame; use ltx2"):
        nodes.logic.generate(nodes.logic.load_model("tiny-wan"), "a door opens", last_image=red, **SMALL)


def test_speech_audio_drives_the_clip_and_is_its_sound(nodes):
    rate = 16000
    t = np.arange(int(0.375 * rate)) / rate
    line = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    speech = {"waveform": torch.from_numpy(np.stack([line, line]))[None], "sample_rate": rate}
    _frames, audio, clip = nodes.logic.generate(
        nodes.logic.load_model("tiny-ltx2"), "a woman says hello", speech=speech, **SMALL
    )
    assert clip.metadata["speech"] == "audio"
    assert float(audio["waveform"].abs().max()) > 0.1
    with pytest.raises(InvalidRequestError, match="cannot follow a speech line"):
        nodes.logic.generate(nodes.logic.load_model("tiny-wan"), "hello", speech=speech, **SMALL)
    with pytest.raises(InvalidRequestError, match="audio waveform must be"):
        nodes.logic.generate(
            nodes.logic.load_model("tiny-ltx2"), "hello", speech={"waveform": torch.zeros(3), "sample_rate": 1}
        )


# --------------------------------------------------------------------------- Storyboard previews


def test_storyboard_sends_a_preview_every_step_as_generate_does(nodes):
    host = Host(previews=True)
    board = "Size: 32x32\nSteps: 2\nShot 1 (0.25s): a door\nShot 2 (0.25s, continue): it opens\n"
    nodes.logic.storyboard(nodes.logic.load_model("tiny-ltx2"), board, seed=7, host=host)
    assert [step for step, _, _ in host.events] == [1, 2, 3, 4]
    assert all(p is not None and p.dtype == np.uint8 and p.ndim == 3 for _, _, p in host.events)


# --------------------------------------------------------------------------- widget defaults


def test_generate_widgets_show_the_default_backends_real_values(nodes):
    import kinema
    from kinema.request import DEFAULT_BACKEND

    defaults = kinema.get_backend(DEFAULT_BACKEND).defaults
    widgets = {field.id: field for field in nodes.spec.GENERATE.inputs}
    assert (widgets["width"].default, widgets["height"].default) == (defaults.width, defaults.height)
    assert widgets["fps"].default == defaults.fps and widgets["steps"].default == defaults.steps
    assert widgets["guidance"].default == defaults.guidance
    assert abs(widgets["seconds"].default - defaults.seconds) <= 0.0625
    assert not any("(0:" in field.tooltip or "(-1:" in field.tooltip for field in nodes.spec.GENERATE.inputs)
    # The steps widget is the standard tier's; draft halves it, final takes 1.5x; 0 (old workflows) is the model's.
    assert [nodes.logic.tier_steps(8, tier) for tier in ("draft", "standard", "final")] == [4, 8, 12]
    assert nodes.logic.tier_steps(0, "draft") is None
    host = Host()
    _frames, _audio, clip = nodes.logic.generate(
        nodes.logic.load_model("tiny-ltx2"), "waves", tier="draft", host=host, **{**SMALL, "steps": 8}
    )
    assert clip.metadata["steps"] == 4 and len(host.events) == 4


def test_the_example_workflow_shows_real_values_as_the_node_does(nodes):
    """The example opens with the numbers a new Generate node shows, not the old '0 = model default'."""
    import json
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "example_workflows" / "kinema_text_to_video.json"
    generate = next(n for n in json.loads(example.read_text())["nodes"] if n["type"] == "KinemaGenerate")
    widgets = [f for f in nodes.spec.GENERATE.inputs if f.type in nodes.spec.WIDGET_TYPES]
    values = list(generate["widgets_values"])
    shown = {}
    for field in widgets:  # in order; the seed's randomize/fixed control follows the seed
        shown[field.id] = values.pop(0)
        if field.control_after_generate:
            values.pop(0)
    for name in ("seconds", "width", "height", "fps", "steps", "guidance"):
        default = next(f.default for f in widgets if f.id == name)
        assert shown[name] == default, (name, shown[name], default)
