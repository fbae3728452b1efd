"""Third-party plugins arrive through the ``kinema`` entry-point group, like the built-ins' hooks."""

import importlib
import textwrap

import numpy as np
import pytest

import kinema
from kinema.errors import UnknownBackendError
from kinema.plugins import pm

PLUGIN = """
import numpy as np
from kinema import Clip, Progress, hookimpl
from kinema.backends.base import Backend, BackendStatus, Defaults


class Solid(Backend):
    name = "solid"
    description = "one colour, one tone"
    defaults = Defaults(width=32, height=32, fps=8, seconds=1.0, steps=1, guidance=0.0)
    size_multiple = 16
    frame_multiple = 1
    min_frames = 1
    model_id = "solid"

    def status(self):
        return BackendStatus(True, "always", "cpu")

    def generate(self, request, plan, *, progress, cancel):
        frames = np.full((plan.num_frames, plan.height, plan.width, 3), 200, np.uint8)
        t = np.arange(int(plan.seconds * 8000)) / 8000
        progress(Progress(1, 1))
        return Clip(frames, plan.fps, np.sin(2 * np.pi * 440 * t)[None].astype(np.float32) * 0.1, 8000)


@hookimpl
def register_backends(register):
    register(Solid(), aliases=("one-colour",))
"""


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution (dist-info with entry_points.txt) on sys.path."""
    (tmp_path / "kinema_solid.py").write_text(PLUGIN)
    dist = tmp_path / "kinema_solid-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kinema-solid\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [kinema]
        solid = kinema_solid
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    if pm.get_plugin("solid") is not None:
        pm.unregister(name="solid")


def test_entry_point_plugin_is_discovered_and_used(installed_plugin, monkeypatch, tmp_path):
    monkeypatch.delenv("KINEMA_LOAD_PLUGINS")
    clip = kinema.generate(kinema.GenerationRequest("anything", backend="one-colour", seconds=1))
    assert clip.metadata["backend"] == "solid"
    assert clip.frames.shape == (8, 32, 32, 3) and np.all(clip.frames == 200)
    assert kinema.Clip.load(clip.save(tmp_path / "s.mp4")).audio is not None
    info = {p["name"]: p for p in kinema.plugins.plugin_info()}
    assert info["solid"]["version"] == "1.0" and info["solid"]["hooks"] == ["register_backends"]


def test_allow_list_can_name_the_plugin(installed_plugin, monkeypatch):
    monkeypatch.setenv("KINEMA_LOAD_PLUGINS", "solid")
    assert kinema.get_backend("solid").name == "solid"


def test_empty_allow_list_loads_no_third_party_plugin(installed_plugin):
    with pytest.raises(UnknownBackendError, match="unknown backend 'solid'"):
        kinema.get_backend("solid")
    assert kinema.get_backend("tiny").name == "tiny"
