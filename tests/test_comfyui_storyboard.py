"""The Kinema Storyboard node's logic without ComfyUI: real tiny backend, the host's progress and interrupt."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

NODE_FOLDER = Path(__file__).resolve().parent.parent / "plugins" / "comfyui"
BOARD = "Size: 32x32\nSteps: 2\nShot 1 (0.25s): a door\nShot 2 (0.25s, continue): it opens\n"


@pytest.fixture(scope="module")
def nodes():
    """Imported the way ComfyUI imports a custom node folder."""
    name = str(NODE_FOLDER).replace(".", "_x_")
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, NODE_FOLDER / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


class Host:
    previews = False

    def __init__(self, interrupt_at=None):
        self.interrupt_at, self.events = interrupt_at, []

    def progress(self, step, total, preview):
        self.events.append((step, total))

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


def test_storyboard_node_gives_one_film_as_comfyui_types(nodes):
    handle = nodes.logic.load_model("tiny-ltx2")
    host = Host()
    first = np.zeros((1, 48, 48, 3), np.float32)
    first[..., 0] = 1.0  # a red first frame for shot 1, as a ComfyUI IMAGE batch
    frames, audio, film = nodes.logic.storyboard(handle, BOARD, seed=3, image=torch.from_numpy(first), host=host)
    assert tuple(frames.shape) == (12, 32, 32, 3) and frames.dtype == torch.float32
    assert audio["waveform"].shape[-1] == round(12 * audio["sample_rate"] / 24)
    assert [s["seed"] for s in film.metadata["shots"]] == [3, 4]
    assert film.metadata["tier"] == "standard"  # the node's default keeps the storyboard's own
    assert [step for step, _ in host.events] == sorted(step for step, _ in host.events)
    assert host.events[-1][0] == host.events[-1][1] == 4  # two shots of two steps, one bar


def test_storyboard_node_tier_overrides_the_storyboards_own(nodes):
    handle = nodes.logic.load_model("tiny-ltx2")
    board = BOARD.replace("Steps: 2\n", "Steps: 2\nTier: final\n")
    assert nodes.logic.storyboard(handle, board, seed=5)[2].metadata["tier"] == "final"
    assert nodes.logic.storyboard(handle, board, seed=5, tier="draft")[2].metadata["tier"] == "draft"
    with pytest.raises(nodes.logic.InvalidRequestError, match="tier must be one of"):
        nodes.logic.storyboard(handle, board, tier="ultra")


def test_storyboard_node_stops_on_the_hosts_interrupt_and_explains_bad_text(nodes):
    handle = nodes.logic.load_model("tiny-ltx2")
    with pytest.raises(Interrupt):
        nodes.logic.storyboard(handle, BOARD.replace("a door", "a gate"), host=Host(interrupt_at=1))
    with pytest.raises(nodes.logic.InvalidRequestError, match="line 1: .*must be more than 0"):
        nodes.logic.storyboard(handle, "Shot 1 (-2s): a door")
    assert nodes.spec.STORYBOARD.node_id == "KinemaStoryboard"
    from kinema.storyboard import parse_storyboard

    assert len(parse_storyboard(nodes.spec.STORYBOARD_EXAMPLE).shots) == 3
