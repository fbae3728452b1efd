"""Single files with the parts ComfyUI keeps beside them (models/text_encoders, models/vae), and fp8 files.

Every file is written by the test from kinema's tiny models in ComfyUI's key layout (tests/single_files.py:
transformers' names as ComfyUI's Gemma 3 and T5 hold them, the tokenizer as a SentencePiece model, Wan's original
VAE names, Comfy-Org's two fp8 layouts), then loaded back through kinema and compared with the folder it came from.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file
from single_files import from_fp8, to_fp8, write_ltx2, write_text_encoder, write_wan, write_wan_vae

import kinema
from kinema.backends import loading, single_file
from kinema.backends.ltx2 import LTX2Backend
from kinema.backends.tiny import TinyBackend, tiny_model_path
from kinema.backends.wan import WanBackend

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ("a big red ball drops onto a wooden floor", "the blue ball bounces, loudly!")


def same_modules(ours, theirs, names):
    for name in names:
        mine, reference = ours.components[name].state_dict(), theirs.components[name].state_dict()
        assert set(mine) == set(reference), name
        for key, tensor in reference.items():
            assert torch.equal(mine[key], tensor), (name, key)


def same_tokens(ours, theirs):
    for prompt in PROMPTS:
        assert ours.tokenizer(prompt).input_ids == theirs.tokenizer(prompt).input_ids


def test_a_wan_file_with_comfyuis_text_encoder_and_vae_needs_no_base_folder(tmp_path):
    from diffusers import WanPipeline

    folder = tiny_model_path("wan")
    checkpoint = write_wan(folder, tmp_path / "diffusion_models" / "wan-tiny.safetensors")
    encoder = write_text_encoder(folder, tmp_path / "text_encoders" / "umt5-tiny.safetensors")
    vae = write_wan_vae(folder, tmp_path / "vae" / "wan2.2-vae-tiny.safetensors")
    model = single_file.with_parts(checkpoint, text_encoder=encoder, vae=vae)
    assert single_file.with_parts(checkpoint, text_encoder=encoder, vae=vae) == model  # one recipe per choice

    found = single_file.inspect(model)
    assert found.supplied() == ("transformer", "text_encoder", "tokenizer", "vae")
    assert single_file.base_folder(found) is None  # nothing left for a base folder to supply
    ready, detail = single_file.status(model, "wan")
    assert ready and detail.startswith("wan-tiny.safetensors: kinema's tiny Wan single file with umt5-tiny")

    loaded = single_file.load_pipeline(WanPipeline, model, torch.float32)
    reference = WanPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    same_modules(loaded, reference, ("transformer", "text_encoder", "vae"))
    same_tokens(loaded, reference)  # the tokenizer rebuilt from the file's SentencePiece model

    request = kinema.GenerationRequest(
        prompt=PROMPTS[0], width=32, height=32, seconds=0.375, fps=24, steps=2, seed=3, audio=False, backend="wan"
    )
    clip = kinema.generate(request, backend=WanBackend(model, device="cpu"))
    assert clip.frames.shape[1:] == (32, 32, 3)
    assert any(model in entry for entry in loading.loaded())  # the backend loaded the recipe, not the bare file


def test_an_ltx2_file_with_comfyuis_gemma_text_encoder_needs_no_base_folder(tmp_path):
    from diffusers import LTX2Pipeline

    folder = tiny_model_path("ltx2")
    checkpoint = write_ltx2(folder, tmp_path / "checkpoints" / "ltx-2-tiny.safetensors")
    encoder = write_text_encoder(folder, tmp_path / "text_encoders" / "gemma-3-tiny.safetensors")
    model = single_file.with_parts(checkpoint, text_encoder=encoder)
    found = single_file.inspect(model)
    assert set(found.supplied()) >= {"text_encoder", "tokenizer"} and single_file.base_folder(found) is None

    loaded = single_file.load_pipeline(LTX2Pipeline, model, torch.float32)
    reference = LTX2Pipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    same_tokens(loaded, reference)
    # LTX-2 reads Gemma 3's hidden states: the language model alone gives the same ones.
    tokens = reference.tokenizer(PROMPTS[0], return_tensors="pt")
    ours = loaded.text_encoder(**tokens, output_hidden_states=True).hidden_states
    theirs = reference.text_encoder(**tokens, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))

    request = kinema.GenerationRequest(
        prompt=PROMPTS[0], width=32, height=32, seconds=0.375, fps=24, steps=2, seed=3, backend="ltx2"
    )
    tiny_settings = type("TinyLTX2File", (LTX2Backend,), {"pipeline_kwargs": TinyBackend.pipeline_kwargs})
    clip = kinema.generate(request, backend=tiny_settings(model, device="cpu"))
    assert clip.frames.shape == (9, 32, 32, 3) and clip.audio is not None
    assert any(model in entry for entry in loading.loaded())


def test_a_text_encoder_file_without_a_tokenizer_takes_it_from_the_base_folder(tmp_path):
    folder = tiny_model_path("wan")
    checkpoint = write_wan(folder, tmp_path / "wan-tiny.safetensors")
    encoder = write_text_encoder(folder, tmp_path / "umt5-no-tokenizer.safetensors", tokenizer=False)
    found = single_file.inspect(single_file.with_parts(checkpoint, text_encoder=encoder))
    assert "tokenizer" not in found.supplied() and single_file.base_folder(found) == folder


@pytest.mark.parametrize("layout", ["scaled_fp8", "comfy_quant"])
def test_fp8_files_load_upcast_by_their_scales(tmp_path, layout):
    """Comfy-Org's two fp8 layouts load as the weights they stand for: each fp8 value times its scale."""
    from diffusers import WanPipeline

    folder = tiny_model_path("wan")
    plain = load_file(str(write_wan(folder, tmp_path / "wan-tiny.safetensors")))
    quantised = to_fp8(plain, layout)
    save_file(quantised, str(tmp_path / "wan-tiny-fp8.safetensors"))
    save_file(from_fp8(quantised), str(tmp_path / "wan-tiny-upcast.safetensors"))
    encoder = write_text_encoder(folder, tmp_path / "umt5-tiny-fp8.safetensors", fp8=layout)
    save_file(from_fp8(load_file(str(encoder))), str(tmp_path / "umt5-tiny-upcast.safetensors"))
    vae = write_wan_vae(folder, tmp_path / "wan2.2-vae-fp8.safetensors", fp8=layout)
    save_file(from_fp8(load_file(str(vae))), str(tmp_path / "wan2.2-vae-upcast.safetensors"))

    def recipe(kind):
        return single_file.with_parts(
            tmp_path / f"wan-tiny-{kind}.safetensors",
            text_encoder=tmp_path / f"umt5-tiny-{kind}.safetensors",
            vae=tmp_path / f"wan2.2-vae-{kind}.safetensors",
        )

    loaded = single_file.load_pipeline(WanPipeline, recipe("fp8"), torch.float32)
    expected = single_file.load_pipeline(WanPipeline, recipe("upcast"), torch.float32)
    same_modules(loaded, expected, ("transformer", "text_encoder", "vae"))
    reference = WanPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    ours, theirs = loaded.transformer.state_dict(), reference.transformer.state_dict()
    assert any(not torch.equal(ours[k], theirs[k]) for k in theirs)  # fp8 lost precision, as it does
    assert all(torch.allclose(ours[k], theirs[k], rtol=0.07, atol=1e-3) for k in theirs)  # and only that

    in_bf16 = single_file.load_pipeline(WanPipeline, recipe("fp8"), torch.bfloat16)
    assert {p.dtype for p in in_bf16.transformer.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in in_bf16.text_encoder.parameters()} == {torch.bfloat16}


def test_an_fp8_ltx2_file_loads_upcast(tmp_path):
    from diffusers import LTX2Pipeline

    folder = tiny_model_path("ltx2")
    plain = load_file(str(write_ltx2(folder, tmp_path / "ltx-2-tiny.safetensors")))
    quantised = to_fp8(plain, "scaled_fp8")
    save_file(quantised, str(tmp_path / "ltx-2-tiny-fp8.safetensors"))
    save_file(from_fp8(quantised), str(tmp_path / "ltx-2-tiny-upcast.safetensors"))
    loaded = single_file.load_pipeline(LTX2Pipeline, tmp_path / "ltx-2-tiny-fp8.safetensors", torch.float32)
    expected = single_file.load_pipeline(LTX2Pipeline, tmp_path / "ltx-2-tiny-upcast.safetensors", torch.float32)
    same_modules(loaded, expected, ("transformer", "connectors", "vae", "audio_vae", "vocoder"))


def header_only(path, tensors: dict) -> None:
    save_file({name: torch.zeros(shape, dtype=torch.float16) for name, shape in tensors.items()}, str(path))


def test_quantised_formats_kinema_cannot_upcast_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "wan2.2_ti2v_5B_nvfp4.safetensors"
    header_only(
        path,
        {
            "head.modulation": (1,),
            "patch_embedding.weight": (3072, 48, 1, 2, 2),
            "blocks.0.self_attn.q.weight_scale_2": (1,),
        },
    )
    status = WanBackend(str(path)).status()
    assert not status.ready and "nvfp4" in status.detail and "bf16, fp16 or fp8 file" in status.detail


def test_parts_that_do_not_fit_the_checkpoint_are_refused_before_anything_loads(tmp_path):
    wan = write_wan(tiny_model_path("wan"), tmp_path / "wan-tiny.safetensors")
    gemma = write_text_encoder(tiny_model_path("ltx2"), tmp_path / "gemma-tiny.safetensors")
    status = WanBackend(single_file.with_parts(wan, text_encoder=gemma)).status()
    assert not status.ready and "is a Gemma 3 12B text encoder" in status.detail and "UMT5-XXL" in status.detail

    old_vae = tmp_path / "wan_2.1_vae.safetensors"
    header_only(old_vae, {"decoder.middle.0.residual.0.gamma": (1,), "decoder.conv1.weight": (4, 16, 1, 1, 1)})
    status = WanBackend(single_file.with_parts(wan, vae=old_vae)).status()
    assert not status.ready and "Wan 2.1 VAE (16 latent channels)" in status.detail
    assert "wan2.2_vae.safetensors" in status.detail

    gone = WanBackend(single_file.with_parts(wan, vae=tmp_path / "gone.safetensors")).status()
    assert not gone.ready and "does not exist" in gone.detail


def test_a_real_checkpoint_without_its_text_encoder_says_which_file_supplies_it(tmp_path):
    path = tmp_path / "wan2.2_ti2v_5B_fp16.safetensors"
    header_only(
        path,
        {"head.modulation": (1,), "patch_embedding.weight": (3072, 48, 1, 2, 2)}
        | {f"blocks.{i}.modulation": (1,) for i in range(30)},
    )
    status = WanBackend(str(path)).status()
    assert not status.ready
    assert "umt5_xxl_fp16.safetensors" in status.detail and "wan2.2_vae.safetensors" in status.detail
    assert "kinema models pull Wan-AI/Wan2.2-TI2V-5B-Diffusers" in status.detail


def test_fp8_scales_per_tensor_and_per_row_in_either_fp8_format_and_nothing_else():
    import json

    from kinema.backends import single_file_fp8
    from kinema.errors import InvalidRequestError

    weight = torch.linspace(-2, 2, 12).reshape(3, 4)
    rows = torch.tensor([0.5, 1.0, 2.0])
    for fp8 in (torch.float8_e4m3fn, torch.float8_e5m2):
        stored = (weight / rows[:, None]).to(fp8)
        state = {"a.weight": stored, "a.weight_scale": rows, "a.input_scale": torch.ones(()), "a.bias": rows}
        out = single_file_fp8.upcast(state, torch.bfloat16)
        assert set(out) == {"a.weight", "a.bias"} and out["a.weight"].dtype == torch.bfloat16
        assert torch.equal(out["a.weight"], (stored.float() * rows[:, None]).to(torch.bfloat16))
        assert out["a.bias"] is rows  # not fp8: left for the module's own cast
    with pytest.raises(InvalidRequestError, match="scale of shape \\[2, 2\\]"):
        single_file_fp8.upcast({"a.weight": weight.to(torch.float8_e4m3fn), "a.weight_scale": torch.ones(2, 2)}, None)
    record = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    with pytest.raises(InvalidRequestError, match="stored as nvfp4"):
        single_file_fp8.upcast({"a.weight": weight, "a.comfy_quant": record}, torch.float32)
