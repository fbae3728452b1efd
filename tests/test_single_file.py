"""Single-file LTX-2 and Wan checkpoints (as ComfyUI keeps them) on the ltx2 and wan backends.

The files are kinema's tiny models written in the authors' key layout (tests/single_files.py); the configs
are kinema's, never fetched.
"""

import json

import pytest
import torch
from safetensors.torch import save_file
from single_files import (
    ltx2_audio_vae_key,
    ltx2_connector_key,
    ltx2_transformer_key,
    ltx2_vae_key,
    ltx2_vocoder_key,
    wan_transformer_key,
    write_ltx2,
    write_wan,
)

import kinema
from kinema.backends import single_file
from kinema.backends.ltx2 import LTX2Backend
from kinema.backends.tiny import tiny_model_path
from kinema.backends.wan import WanBackend
from kinema.errors import InvalidRequestError, MissingWeightsError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def names(folder, component):
    from safetensors import safe_open

    with safe_open(str(folder / component / "diffusion_pytorch_model.safetensors"), "pt") as handle:
        tensors = handle.keys()
        return {name: handle.get_slice(name).get_shape() for name in tensors}


def test_the_written_layout_is_what_the_converters_read():
    """Each reversal, run through the forward converter (diffusers' or kinema's), gives the diffusers names back."""
    from diffusers.loaders import single_file_utils as sfu

    ltx2, wan = tiny_model_path("ltx2"), tiny_model_path("wan")
    for folder, component, reverse, forward in (
        (ltx2, "transformer", ltx2_transformer_key, sfu.convert_ltx2_transformer_to_diffusers),
        (ltx2, "vae", ltx2_vae_key, sfu.convert_ltx2_vae_to_diffusers),
        (ltx2, "audio_vae", ltx2_audio_vae_key, sfu.convert_ltx2_audio_vae_to_diffusers),
        (wan, "transformer", wan_transformer_key, sfu.convert_wan_transformer_to_diffusers),
    ):
        expected = names(folder, component)
        assert set(forward({reverse(name): 0 for name in expected})) == set(expected), component
    for component, reverse, prefixes, segments in (
        ("connectors", ltx2_connector_key, single_file.CONNECTOR_PREFIXES, single_file.CONNECTOR_SEGMENTS),
        ("vocoder", ltx2_vocoder_key, single_file.VOCODER_PREFIXES, single_file.VOCODER_SEGMENTS),
    ):
        expected = names(ltx2, component)
        assert set(single_file._renamed({reverse(n): 0 for n in expected}, prefixes, segments)) == set(expected)


def same_weights(loaded, folder_pipe):
    for name, module in folder_pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        theirs, ours = module.state_dict(), loaded.components[name].state_dict()
        assert set(theirs) == set(ours), name
        for key, tensor in theirs.items():
            assert torch.equal(tensor, ours[key]), (name, key)


def test_an_ltx2_single_file_loads_as_the_folder_it_came_from_and_makes_a_clip(tmp_path):
    from diffusers import LTX2Pipeline

    folder = tiny_model_path("ltx2")
    path = write_ltx2(folder, tmp_path / "checkpoints" / "ltx-2-tiny.safetensors")
    found = single_file.inspect(path)
    assert found.variant.family == "ltx2" and found.variant.name == "kinema's tiny LTX-2"
    assert found.components == ("transformer", "connectors", "vae", "audio_vae", "vocoder")

    backend = LTX2Backend(str(path), device="cpu")
    assert backend.status().ready and "single file" in backend.status().detail
    loaded = single_file.load_pipeline(LTX2Pipeline, path, torch.float32)
    same_weights(loaded, LTX2Pipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True))

    # The backend's own path: plan, load through kinema's loader, sample, decode picture and sound.
    request = kinema.GenerationRequest(
        prompt="a ball drops", width=32, height=32, seconds=0.375, fps=24, steps=2, seed=3, backend="ltx2"
    )
    from kinema.backends.tiny import TinyBackend

    tiny_settings = type("TinyLTX2File", (LTX2Backend,), {"pipeline_kwargs": TinyBackend.pipeline_kwargs})
    clip = kinema.generate(request, backend=tiny_settings(str(path), device="cpu"))
    assert clip.frames.shape == (9, 32, 32, 3) and clip.audio is not None


def test_a_wan_single_file_loads_as_the_folder_it_came_from(tmp_path):
    from diffusers import WanPipeline

    folder = tiny_model_path("wan")
    for prefixed in (False, True):  # ComfyUI's repackaged files have no prefix; others keep model.diffusion_model.
        path = write_wan(folder, tmp_path / f"diffusion_models/wan-tiny-{prefixed}.safetensors", prefixed)
        found = single_file.inspect(path)
        assert (found.variant.family, found.components) == ("wan", ("transformer",))
        loaded = single_file.load_pipeline(WanPipeline, path, torch.float32)
        same_weights(loaded, WanPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True))
    request = kinema.GenerationRequest(
        prompt="a ball drops", width=32, height=32, seconds=0.375, fps=24, steps=2, seed=3, audio=False, backend="wan"
    )
    clip = kinema.generate(request, backend=WanBackend(str(path), device="cpu"))
    assert clip.frames.shape[1:] == (32, 32, 3) and clip.audio is None


def header_only(path, tensors: dict) -> None:
    """A safetensors file with these names and shapes (zeros, as small as the shapes allow)."""
    save_file({name: torch.zeros(shape, dtype=torch.float16) for name, shape in tensors.items()}, str(path))


def test_a_real_ltx2_file_is_recognised_and_asks_for_what_it_lacks_not_for_a_pull_of_itself(tmp_path):
    path = tmp_path / "ltx-2-19b-dev.safetensors"
    tensors = {f"{single_file.PREFIX}transformer_blocks.{i}.scale_shift_table": (1,) for i in range(48)}
    tensors[f"{single_file.PREFIX}patchify_proj.weight"] = (4096, 128)
    tensors[f"{single_file.PREFIX}{single_file.LTX2_MARK}"] = (1,)
    tensors["vae.per_channel_statistics.mean-of-means"] = (128,)
    header_only(path, tensors)
    found = single_file.inspect(path)
    assert found.variant.name == "LTX-2 (19B)" and found.components == ("transformer", "vae")
    status = LTX2Backend(str(path)).status()
    assert not status.ready
    assert f"pull {path}" not in status.detail and "models pull Lightricks/LTX-2" in status.detail
    assert "text_encoder, tokenizer" in status.detail
    wrong = WanBackend(str(path)).status()
    assert not wrong.ready and "pick the ltx2 backend" in wrong.detail


@pytest.mark.parametrize(
    ("name", "tensors", "says"),
    [
        ("other.safetensors", {"conv.weight": (2, 2)}, "not an LTX-2 or Wan checkpoint"),
        (
            "wan-14b.safetensors",
            {"head.modulation": (1,), "patch_embedding.weight": (5120, 16, 1, 2, 2), "blocks.0.modulation": (1,)},
            "kinema has no configs for",
        ),
        (
            "ltx-2.3-22b-dev.safetensors",  # LTX-2's sizes, plus prompt modulation
            {
                f"{single_file.PREFIX}{single_file.LTX2_MARK}": (1,),
                f"{single_file.PREFIX}patchify_proj.weight": (4096, 128),
                f"{single_file.PREFIX}prompt_adaln_single.linear.weight": (1,),
                **{f"{single_file.PREFIX}transformer_blocks.{i}.scale_shift_table": (1,) for i in range(48)},
            },
            "kinema has no configs for",
        ),
    ],
)
def test_files_kinema_cannot_run_say_why(tmp_path, name, tensors, says):
    path = tmp_path / name
    header_only(path, tensors)
    backend = LTX2Backend if "ltx" in name else WanBackend
    status = backend(str(path)).status()
    assert not status.ready and says in status.detail and f"pull {path}" not in status.detail


def test_an_fp8_file_is_recognised_and_asks_only_for_what_it_lacks(tmp_path):
    """fp8 weights are upcast as they load (tests/test_single_file_parts.py): the file is not refused for them."""
    path = tmp_path / "ltx-2-19b-dev-fp8.safetensors"
    tensors = {f"{single_file.PREFIX}transformer_blocks.{i}.scale_shift_table": torch.zeros(1) for i in range(48)}
    tensors[f"{single_file.PREFIX}{single_file.LTX2_MARK}"] = torch.zeros(2, 2, dtype=torch.float8_e4m3fn)
    tensors[f"{single_file.PREFIX}patchify_proj.weight"] = torch.zeros(4096, 128, dtype=torch.float8_e4m3fn)
    tensors[f"{single_file.PREFIX}patchify_proj.weight_scale"] = torch.ones(())
    save_file(tensors, str(path))
    status = LTX2Backend(str(path)).status()
    assert not status.ready and "text_encoder, tokenizer" in status.detail
    assert "cannot load" not in status.detail and "does not load" not in status.detail


def test_pickled_and_missing_files_are_refused_without_reading_them(tmp_path):
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(b"not read")
    with pytest.raises(InvalidRequestError, match="pickled checkpoint"):
        single_file.inspect(pickled)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        single_file.inspect(tmp_path / "gone.safetensors")
    assert "does not exist" in LTX2Backend(str(tmp_path / "gone.safetensors")).status().detail


def test_the_shipped_configs_build_the_models_they_describe():
    """Every shipped variant's configs instantiate (on the meta device) with the transformer the variant names."""
    import diffusers
    from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    classes = {"LTX2TextConnectors": LTX2TextConnectors, "LTX2Vocoder": LTX2Vocoder}
    variants = single_file._shipped_variants()
    assert {v.family for v in variants} == {"ltx2", "wan"}
    for variant in variants:
        index = json.loads((variant.configs / "model_index.json").read_text())
        for component in sorted(p.parent.name for p in variant.configs.glob("*/config.json")):
            config = json.loads((variant.configs / component / "config.json").read_text())
            if component == "text_encoder":  # a transformers config: the class model_index.json names builds it
                import transformers

                built = transformers.AutoConfig.for_model(**config)
                assert config["architectures"] == [index[component][1]]
                with torch.device("meta"):
                    encoder = getattr(transformers, index[component][1])(built)
                assert sum(p.numel() for p in encoder.parameters()) > 4e9, variant.name  # UMT5-XXL, Gemma 3 12B
                continue
            assert index[component][1] == config["_class_name"]
            cls = classes.get(config["_class_name"]) or getattr(diffusers, config["_class_name"])
            with torch.device("meta"):
                model = cls.from_config(config)
            if component == "transformer":
                first = model.proj_in if variant.family == "ltx2" else model.patch_embedding
                assert tuple(first.weight.shape) == variant.transformer_in, variant.name
                assert len(model.transformer_blocks if variant.family == "ltx2" else model.blocks) == variant.blocks
