"""Licences where ComfyUI picks a model (issue 22): Kinema Model Loader shows each model's licence and refuses a
restricted one until it is accepted, reading kinema's licence table in-process.

The node pack is imported the way ComfyUI imports it; the models are the tiny LTX-2.5-shaped checkpoint folder
(kinema.backends.tiny_ltx25) put where a pull or ComfyUI's models folder puts them. Nothing is downloaded.
"""

import json
import shutil

import pytest
from test_comfyui import NODE_FOLDER, SMALL, import_like_comfyui

from kinema import licences
from kinema.errors import LicenceNotAcceptedError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nodes():
    return import_like_comfyui(NODE_FOLDER)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from kinema.backends.tiny_ltx25 import build_tiny_ltx25

    return build_tiny_ltx25(tmp_path_factory.mktemp("ckpt") / "tiny-ltx-2.5", upsampler=False)


def test_the_loader_says_which_licences_restrict_use_and_has_a_switch_to_accept_them(nodes):
    loader = nodes.spec.MODEL_LOADER
    assert "ltx2 (Lightricks/LTX-2): LTX-2 Community License, restricted: must be accepted" in loader.description
    assert "stabilityai/stable-audio-open-1.0): Stability AI Community License, restricted" in loader.description
    assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers): Apache-2.0, permissive" in loader.description
    accept = {field.id: field for field in loader.inputs}["accept_license"]
    assert (accept.type, accept.default, accept.optional) == ("BOOLEAN", False, True)
    assert "$10M" in accept.tooltip


def test_a_restricted_model_is_refused_with_its_licence_until_accepted(nodes, kinema_env, checkpoint):
    pulled = kinema_env / "models" / "Lightricks--LTX-2.5-tiny"  # as `kinema models pull` names its folder
    shutil.copytree(checkpoint, pulled)
    try:
        assert "Lightricks/LTX-2.5-tiny" in nodes.logic.model_choices()
        with pytest.raises(LicenceNotAcceptedError) as refused:
            nodes.logic.load_model("ltx2", model="Lightricks/LTX-2.5-tiny")
        said = str(refused.value)
        assert "Lightricks/LTX-2.5-tiny is under the LTX-2 Community License (LTX-2.x, restricted)" in said
        assert "$10M annual revenue" in said and "https://huggingface.co/Lightricks/LTX-2.5-tiny" in said
        assert "turn on accept_license on Kinema Model Loader" in said

        handle = nodes.logic.load_model("ltx2", model="Lightricks/LTX-2.5-tiny", accept_license=True)
        assert handle.licences == (
            f"Lightricks/LTX-2.5-tiny: {licences.describe('Lightricks/LTX-2.5-tiny')} (accepted here)",
        )
        # the handle runs: a clip from the accepted model
        frames, _audio, clip = nodes.logic.generate(handle, "a kite", **{**SMALL, "width": 64, "height": 64})
        assert frames.shape[1:3] == (64, 64) and clip.sample_rate == 48000

        # pulled with --accept-license: its folder says so, and the loader needs no switch
        licences.record(pulled, "Lightricks/LTX-2.5-tiny", accepted=True)
        assert (
            nodes.logic.load_model("ltx2", model="Lightricks/LTX-2.5-tiny")
            .licences[0]
            .startswith("Lightricks/LTX-2.5-tiny: LTX-2 Community License")
        )
        licences.record(pulled, "Lightricks/LTX-2.5-tiny", accepted=False)
        with pytest.raises(LicenceNotAcceptedError):
            nodes.logic.load_model("ltx2", model="Lightricks/LTX-2.5-tiny")
    finally:
        shutil.rmtree(pulled)


def test_a_folder_in_comfyuis_models_is_shown_by_name_and_a_permissive_model_needs_nothing(
    nodes, kinema_env, checkpoint, tmp_path
):
    folder = tmp_path / "LTX-2.5-mine"  # a folder path (model_id), not a pull: no record, the switch decides
    shutil.copytree(checkpoint, folder)
    with pytest.raises(LicenceNotAcceptedError) as refused:
        nodes.logic.load_model("ltx2", model_id=str(folder))
    assert str(refused.value).startswith("LTX-2.5-mine is under the LTX-2 Community License")
    assert str(tmp_path) not in str(refused.value)  # a shared workflow's error never carries a disk path
    # a folder kinema's table cannot place is not refused, and is not sent to a hub page it may not have
    unknown = tmp_path / "my-video-model"
    folder.rename(unknown)
    (line,) = nodes.logic.load_model("ltx2", model_id=str(unknown)).licences
    assert line.startswith("my-video-model: licence not known to kinema: read the model card") and "http" not in line

    demo = nodes.logic.load_model("tiny-ltx2")
    assert demo.licences == ("kinema/tiny-ltx2: " + licences.describe("kinema/tiny-ltx2"),)
    wan = nodes.logic.load_model("tiny-wan")  # a backend of two models shows both
    assert [line.split(":")[0] for line in wan.licences] == ["kinema/tiny-wan", "kinema/tiny-stable-audio"]
    assert json.dumps(wan.licences)  # plain text, as ComfyUI's PreviewText shows it
