"""The in-process job server keeps one model loaded: a job for another frees the old one (real tiny backends)."""

import gc
import weakref

import pytest
from polling import wait_final

from kinema.backends import loading

SMALL = {"size": "32x32", "seconds": "0.4", "steps": 2, "audio": False}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pipelines_of(home):
    """This test's loaded pipelines (the load cache is the process's: other tests' have other KINEMA_HOMEs)."""
    return [
        pipe for pipe, _device, _placement in loading.loaded_pipelines() if str(home) in str(pipe._kinema_source[1])
    ]


def make(client, model):
    video = client.post("/v1/videos", json={"prompt": "a kite", "model": model, **SMALL})
    assert video.status_code == 200, video.text
    done = wait_final(client, video.json()["id"])
    assert done["status"] == "completed", done["error"]


def test_switching_models_frees_the_old_ones_pipeline(app_client, kinema_env):
    make(app_client, "tiny-ltx2")
    ltx2 = pipelines_of(kinema_env)
    assert [type(pipe).__name__ for pipe in ltx2] == ["LTX2Pipeline"]
    held = weakref.ref(ltx2[0])
    del ltx2

    make(app_client, "tiny-wan")
    gc.collect()
    assert held() is None, "the tiny-ltx2 pipeline is still held after a job on tiny-wan"
    assert {type(pipe).__name__ for pipe in pipelines_of(kinema_env)} == {"WanPipeline"}  # audio=False: no sound pass

    make(app_client, "tiny-ltx2")  # loaded again
    assert [type(pipe).__name__ for pipe in pipelines_of(kinema_env)] == ["LTX2Pipeline"]


def test_a_switch_frees_only_its_own_devices_pipelines(kinema_env):
    """Another device's worker keeps its model when this one switches (a remote backend's worker, another GPU)."""
    import torch
    from diffusers import LTX2Pipeline

    from kinema.backends.tiny import tiny_model_path

    pipe, _policy = loading.load_pipeline(LTX2Pipeline, tiny_model_path("ltx2"), "cpu", torch.float32, "gpu")
    held = weakref.ref(pipe)
    del pipe
    loading.release_all("cuda:1")
    assert held() is not None and held() in pipelines_of(kinema_env)
    loading.release_all("cpu")
    gc.collect()
    assert held() is None
