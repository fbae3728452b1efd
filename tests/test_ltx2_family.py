"""LTX-2.x through the ltx2 backend (issue 22) and missing weights refused at once (issue 16).

A tiny, randomly initialised LTX-2.5-shaped checkpoint folder (BWE vocoder at 48 kHz, gated attention, a duration
head, a latent upsampler; kinema.backends.tiny_ltx25) is built offline once for the module; an LTX-2.3-shaped one
is the same folder without the duration head and the upsampler. Random weights: these tests say which path runs
and what it makes, not how it looks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from polling import wait_final

from kinema import engine
from kinema.backends.limits import LimitError
from kinema.backends.ltx2_checkpoint import read
from kinema.cli import cli
from kinema.clip import Clip
from kinema.errors import InvalidRequestError
from kinema.request import GenerationRequest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(width=64, height=64, seconds=0.375, steps=2, seed=3)


@pytest.fixture(scope="module")
def ltx25(tmp_path_factory):
    from kinema.backends.tiny_ltx25 import build_tiny_ltx25

    return build_tiny_ltx25(tmp_path_factory.mktemp("ckpt") / "tiny-ltx-2.5")


@pytest.fixture(scope="module")
def ltx23(ltx25, tmp_path_factory):
    """The 2.5 folder as LTX-2.3 ships: no duration head, and here no latent upsampler either."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-ltx-2.3"
    shutil.copytree(ltx25, folder, ignore=shutil.ignore_patterns("latent_upsampler", "duration_head"))
    index = json.loads((folder / "model_index.json").read_text())
    index["duration_head"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def make(folder, **fields):
    request = GenerationRequest("a kite over a beach", backend="ltx2", model=str(folder), **{**SMALL, **fields})
    events = []
    clip = engine.generate(request, progress=events.append)
    return clip, events


def test_the_checkpoint_says_which_ltx2_it_is_and_feeds_the_limits(ltx25, ltx23):
    from kinema.backends.tiny import tiny_model_path

    two_five, two_three, two_oh = read(ltx25), read(ltx23), read(tiny_model_path("ltx2"))
    assert (two_five.version, two_five.sample_rate, two_five.upsampler.name) == ("LTX-2.5", 48000, "latent_upsampler")
    assert (two_three.version, two_three.sample_rate, two_three.upsampler) == ("LTX-2.3", 48000, None)
    assert (two_oh.version, two_oh.sample_rate, two_oh.upsampler) == ("LTX-2", 24000, None)

    backend = engine.resolve_backend(GenerationRequest("x", backend="ltx2", model=str(ltx25)))
    limits = backend.job_limits()
    # 10 s of positions, 250 frames at 25 fps on the 8k+1 grid; 64x64 a pass, 128x128 through the upsampler
    assert (limits.seconds, limits.frames, limits.pixels) == (10.0, 249, 128 * 128)
    assert "LTX-2.5 checkpoint" in limits.why and "48 kHz" in limits.why
    with pytest.raises(LimitError, match="limit of 10 s"):
        backend.plan(
            GenerationRequest("x", backend="ltx2", model=str(ltx25), fps=12, seconds=10.5, width=64, height=64)
        )
    with pytest.raises(LimitError, match="16,384"):
        backend.plan(GenerationRequest("x", backend="ltx2", model=str(ltx25), width=160, height=128))
    one_pass = engine.resolve_backend(GenerationRequest("x", backend="ltx2", model=str(ltx23))).job_limits()
    assert one_pass.pixels == 64 * 64  # no upsampler: what one pass reaches


def test_ltx23_loads_and_speaks_at_its_vocoders_rate(ltx23):
    clip, _ = make(ltx23, tier="final")  # final, but no upsampler: one stage
    assert clip.frames.shape == (9, 64, 64, 3) and clip.sample_rate == 48000
    assert clip.audio.shape == (2, round(clip.duration * 48000))
    assert clip.metadata["recipe"] == {"path": "one-stage"}
    with pytest.raises(InvalidRequestError, match="no latent upsampler"):
        make(ltx23, two_stage=True)


def test_the_final_tier_runs_the_two_stage_recipe_when_the_folder_has_an_upsampler(ltx25):
    standard, _ = make(ltx25)
    assert standard.metadata["recipe"] == {"path": "one-stage"}

    final, events = make(ltx25, tier="final")
    assert final.metadata["recipe"] == {
        "path": "two-stage",
        "first_stage": "32x32",
        "upsampler": "latent_upsampler",
        "refine_steps": 3,
        "refiner": "full weights",  # no distilled LoRA in this folder
    }
    assert final.frames.shape == standard.frames.shape == (9, 64, 64, 3)
    assert final.sample_rate == 48000 and final.audio.shape == standard.audio.shape
    assert [e.step for e in events] == [1, 2, 3, 4, 5] and {e.total for e in events} == {5}  # 2 steps + 3 refining
    assert not (final.frames == standard.frames).all()  # another path, another clip
    assert any("two-stage: 32x32 in 2 steps" in note for note in final.metadata["notes"])

    off, _ = make(ltx25, tier="final", two_stage=False)
    assert off.metadata["recipe"] == {"path": "one-stage"}
    snapped, _ = make(ltx25, width=96, two_stage=True)  # half of 96 is not on the 32 grid: 128
    assert snapped.frames.shape[1:3] == (64, 128) and snapped.metadata["recipe"]["first_stage"] == "64x32"


@pytest.fixture(scope="module")
def ltx25_distilled(tmp_path_factory):
    """The tiny 2.5 folder with a distilled LoRA beside it, as Lightricks/LTX-2 ships ltx-2-19b-distilled-lora-384."""
    from kinema.backends.tiny_ltx25 import build_tiny_ltx25

    return build_tiny_ltx25(tmp_path_factory.mktemp("ckpt") / "tiny-ltx-2.5-lora", distilled_lora=True)


def batch_sizes(folder, run):
    """``run()``'s transformer calls on ``folder``'s pipeline, as the batch each call carried (2: with guidance)."""
    backend = engine.resolve_backend(GenerationRequest("x", backend="ltx2", model=str(folder)))
    calls = []
    hook = backend.pipeline().transformer.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        result = run()
    finally:
        hook.remove()
    return result, calls


def test_the_second_stage_runs_the_distilled_lora_without_guidance_and_leaves_the_first_alone(
    ltx25, ltx25_distilled, tmp_path
):
    from kinema.backends.ltx2_checkpoint import read
    from kinema.backends.tiny_ltx25 import DISTILLED_LORA

    assert read(ltx25_distilled).refiner_lora.name == DISTILLED_LORA
    one_before, _ = make(ltx25_distilled, tier="final", two_stage=False)
    (two, _), calls = batch_sizes(ltx25_distilled, lambda: make(ltx25_distilled, tier="final"))
    assert two.metadata["recipe"]["refiner"] == f"distilled LoRA {DISTILLED_LORA}"
    assert any(f"with the distilled LoRA {DISTILLED_LORA}, no guidance" in note for note in two.metadata["notes"])
    # each of the 2 first-stage steps with guidance (CFG as a batch of 2, then the STG and modality passes), then
    # the 3 refining steps in one call each: no guidance
    assert calls == [2, 1, 1] * 2 + [1] * 3

    full, _ = make(ltx25, tier="final")  # the same weights, no LoRA: the full weights refine with guidance
    assert full.metadata["recipe"]["refiner"] == "full weights"
    assert not (full.frames == two.frames).all()
    _, full_calls = batch_sizes(ltx25, lambda: make(ltx25, tier="final"))
    assert full_calls == [2, 1, 1] * 5

    # a style's LoRA stays on through both stages, beside the distilled one in the second
    from kinema.backends.tiny_ltx25 import save_tiny_distilled_lora

    styled_lora = save_tiny_distilled_lora(
        engine.resolve_backend(GenerationRequest("x", backend="ltx2", model=str(ltx25))).pipeline().transformer,
        tmp_path / "style.safetensors",
        rank=2,
    )
    styled, _ = make(ltx25_distilled, tier="final", loras=((str(styled_lora), 0.7),))
    assert styled.metadata["recipe"]["refiner"] == f"distilled LoRA {DISTILLED_LORA}"
    assert not (styled.frames == two.frames).all()

    one_after, _ = make(ltx25_distilled, tier="final", two_stage=False)
    assert (one_after.frames == one_before.frames).all()  # every LoRA came out after the clip
    assert (one_after.audio == one_before.audio).all()


def test_a_distilled_checkpoint_refines_with_itself(ltx25, tmp_path):
    folder = tmp_path / "tiny-LTX-2.5-Distilled"
    shutil.copytree(ltx25, folder)
    from kinema.backends.tiny_ltx25 import save_tiny_distilled_lora

    # A LoRA beside distilled weights would add the distillation twice: it is left out.
    save_tiny_distilled_lora(
        engine.resolve_backend(GenerationRequest("x", backend="ltx2", model=str(folder))).pipeline().transformer,
        folder / "x-distilled-lora.safetensors",
    )
    (clip, _), calls = batch_sizes(folder, lambda: make(folder, two_stage=True))
    assert clip.metadata["recipe"]["refiner"] == "distilled checkpoint" and calls[-3:] == [1, 1, 1]
    assert "distilled" in read(folder).describe()
    # its first stage: with guidance when asked for it (2 steps x CFG, STG, modality) ...
    assert calls[:-3] == [2, 1, 1] * 2
    # ... and none at all at guidance 1, the draft tier's for distilled weights: one call a step
    _, calls = batch_sizes(folder, lambda: make(folder, guidance=1.0))
    assert calls == [1, 1]


def test_the_cli_asks_for_two_stages_and_the_saved_clip_records_it(ltx25, tmp_path):
    out = tmp_path / "kite.mp4"
    args = ["generate", "a kite", "--backend", "ltx2", "--model", str(ltx25), "--size", "64x64", "--seconds", "0.375"]
    result = CliRunner().invoke(cli, [*args, "--steps", "2", "--two-stage", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "48000 Hz audio" in result.output
    assert Clip.load(out).metadata["recipe"]["path"] == "two-stage"


def test_missing_weights_are_refused_before_diffusers_loads(tmp_path):
    """`kinema generate --backend ltx2` with no weights: refused once the limits are checked (torch, for the
    device's memory), never loading diffusers or transformers (it was 16-55 s)."""
    probe = textwrap.dedent(
        """
        import json, sys, time
        started = time.monotonic()
        from kinema.cli import cli
        try:
            cli(["generate", "a kite", "--backend", "ltx2", "-o", sys.argv[1]], prog_name="kinema")
        except SystemExit as stop:
            code = stop.code
        print(json.dumps({"code": code, "loaded": sorted({"diffusers", "transformers"} & set(sys.modules)),
                          "seconds": time.monotonic() - started}))
        """
    )
    env = {**os.environ, "KINEMA_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "x.mp4")], env=env, capture_output=True, text=True, timeout=120
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 1 and result["loaded"] == [], result
    assert done.stderr.strip() == (
        "Error: model Lightricks/LTX-2 is not downloaded: run `kinema models pull Lightricks/LTX-2 --accept-license`"
        " first"
    )
    assert not (tmp_path / "x.mp4").exists()


# --------------------------------------------------------------------------- the server's two_stage field

PULLED = "test/tiny-ltx-2.5"  # the tiny 2.5 folder as if pulled: requests name models, never folders
SERVER_SMALL = {"size": "64x64", "seconds": "0.375", "steps": 2, "seed": 3}


@pytest.fixture
def pulled_ltx25(ltx25, ltx23, kinema_env):
    for name, folder in ((PULLED, ltx25), ("test/tiny-ltx-2.3", ltx23)):
        target = kinema_env / "models" / name.replace("/", "--")
        if not target.exists():
            shutil.copytree(folder, target)
    return PULLED


def test_the_server_takes_two_stage_and_says_so_in_its_schema(app_client, pulled_ltx25, tmp_path):
    schema = app_client.get("/openapi.json").json()["components"]["schemas"]
    field = schema["VideoCreateParams"]["properties"]["two_stage"]
    assert {"type": "boolean"} in field["anyOf"] and "latent upsampler" in field["description"]
    assert schema["VideoCreateForm"]["properties"]["two_stage"]["type"] == "boolean"
    assert "two_stage" in schema["KinemaVideoInfo"]["properties"]
    # the schema says where two_stage true is refused: a backend without a second stage, named or the default
    (rule,) = [r for r in schema["VideoCreateParams"]["allOf"] if "if" in r]
    assert rule["if"]["properties"]["two_stage"] == {"const": True}
    no_second = rule["then"]["allOf"][0]["not"]["properties"]["model"]["enum"]
    assert {"tiny", "tiny-ltx2", "tiny-wan", "wan"} <= set(no_second) and "ltx2" not in no_second
    assert rule["then"]["allOf"][2] == {"anyOf": [{"required": ["model"]}, {"required": ["backend"]}]}  # tiny default
    assert rule in schema["VideoCreateForm"]["allOf"]

    created = app_client.post(
        "/v1/videos", json={"prompt": "a kite", "model": pulled_ltx25, "two_stage": True, **SERVER_SMALL}
    )
    assert created.status_code == 200, created.text
    assert created.json()["kinema"]["two_stage"] is True
    assert any("two-stage: 32x32" in note for note in created.json()["kinema"]["notes"])
    done = wait_final(app_client, created.json()["id"])
    assert done["status"] == "completed", done
    out = tmp_path / "kite.mp4"
    out.write_bytes(app_client.get(f"/v1/videos/{done['id']}/content").content)
    assert Clip.load(out).metadata["recipe"]["path"] == "two-stage"

    # a form (the openai SDK's multipart) reads 'false' as false; the final tier's default path is then not taken
    form = {"prompt": "a kite", "model": pulled_ltx25, "two_stage": "false", "tier": "final", **SERVER_SMALL}
    one = app_client.post("/v1/videos", data={k: str(v) for k, v in form.items()})
    assert one.status_code == 200, one.text
    assert one.json()["kinema"]["two_stage"] is False


def test_two_stage_on_ltx2_without_weights_says_they_are_missing(app_client):
    answer = app_client.post("/v1/videos", json={"prompt": "a kite", "model": "ltx2", "two_stage": True})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "model_not_ready", answer.text


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": "tiny-ltx2"}, "backend 'tiny-ltx2' has no second stage"),
        ({"model": "tiny-wan"}, "backend 'tiny-wan' has no second stage"),
        ({"model": "tiny"}, "backend 'tiny' has no second stage"),
        ({"model": "test/tiny-ltx-2.3"}, "has no latent upsampler"),
        ({"model": PULLED, "two_stage": "yes"}, "two_stage"),
    ],
)
def test_two_stage_where_there_is_no_second_stage_is_a_clear_400(app_client, pulled_ltx25, fields, says):
    body = {"prompt": "a kite", "two_stage": True, **SERVER_SMALL, **fields}
    answer = app_client.post("/v1/videos", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "two_stage" and says in error["message"], error
    assert app_client.get("/v1/videos").json()["data"] == []  # refused before any job exists
