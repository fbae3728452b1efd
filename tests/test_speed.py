"""Speed and memory: quality tiers, step caching on joint audio+video transformers, memory policies, OOM fallback.

Nothing here is timed (benchmarks/cache.py and benchmarks/memory.py measure);
these check that every tier and policy runs and that the cache hooks carry
the right tensors.
"""

import numpy as np
import pytest
import torch
from floats import assert_float32_close, assert_uint8_within_one

import kinema
from kinema import GenerationRequest
from kinema.backends import loading, memory, step_cache
from kinema.errors import InvalidRequestError, OutOfMemoryError
from kinema.tiers import TIERS, settings

FAST = dict(prompt="a red fox running through snow", width=32, height=32, seconds=0.375, seed=5)


@pytest.fixture
def fresh_pipelines():
    """Tests that change a loaded pipeline's memory policy must not leave it changed for the next test."""
    loading.release_all()
    yield
    loading.release_all()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --------------------------------------------------------------------------- tiers


def test_tier_table_is_complete():
    for name, tier in TIERS.items():
        assert {"description", "steps_factor", "min_steps", "cache", "distilled"} <= set(tier), name
        for cache in tier["cache"].values():
            step_cache.CacheConfig.from_dict(cache)  # every cache entry is a valid config


def test_tiers_set_steps_and_cache_and_explicit_values_win():
    draft = settings("draft", "ltx2", default_steps=40, default_guidance=4.0)
    assert draft.steps == 20 and draft.cache["method"] == "first-block"
    assert settings("standard", "ltx2", default_steps=40, default_guidance=4.0).cache is None
    assert settings("final", "wan", default_steps=50, default_guidance=5.0).steps == 75
    assert settings("draft", "wan", default_steps=40, default_guidance=5.0, steps=33).steps == 33
    assert settings("draft", "", default_steps=40, default_guidance=5.0).cache is None  # unknown family: steps only
    distilled = settings(
        "draft", "ltx2", default_steps=40, default_guidance=4.0, model_id=TIERS["draft"]["distilled"]["ltx2"]["model"]
    )
    assert (distilled.steps, distilled.guidance, distilled.cache) == (8, 1.0, None)


def test_unknown_tier_is_refused_with_the_choices():
    with pytest.raises(InvalidRequestError, match="draft, standard, final"):
        GenerationRequest("a fox", tier="ultra")


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
@pytest.mark.parametrize("tier", list(TIERS))
def test_every_tier_runs_and_is_recorded(backend, tier):
    clip = kinema.generate(GenerationRequest(backend=backend, tier=tier, **FAST))
    assert clip.metadata["tier"] == tier
    default = kinema.get_backend(backend).defaults.steps
    assert clip.metadata["steps"] == settings(tier, "", default_steps=default, default_guidance=1.0).steps
    if tier == "draft":
        cache = clip.metadata["cache"]
        assert cache["method"] == "first-block" and 0.5 <= cache["blocks_computed"] <= 1.0
    else:
        assert clip.metadata["cache"] is None
    assert clip.metadata["memory_policy"] == "full"


def test_cli_takes_a_tier(tmp_path):
    from click.testing import CliRunner

    from kinema.cli import cli

    out = tmp_path / "draft.mp4"
    result = CliRunner().invoke(
        cli,
        ["generate", "a fox", "-o", str(out), "--tier", "draft", "--size", "32x32", "--seconds", "0.375"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert kinema.Clip.load(out).metadata["tier"] == "draft"
    bad = CliRunner().invoke(cli, ["generate", "a fox", "--tier", "ultra"])
    assert bad.exit_code != 0 and "draft" in bad.output


# --------------------------------------------------------------------------- step cache


def _tiny_pipe(kind):
    from diffusers import LTX2Pipeline, WanPipeline

    from kinema.backends.tiny import tiny_model_path

    cls = {"ltx2": LTX2Pipeline, "wan": WanPipeline}[kind]
    pipe = cls.from_pretrained(tiny_model_path(kind), use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


LTX2_ARGS = dict(
    stg_scale=0.0,
    audio_stg_scale=0.0,
    modality_scale=1.0,
    audio_modality_scale=1.0,
    spatio_temporal_guidance_blocks=None,
)


def _run_ltx2(pipe, steps=4):
    return pipe(
        prompt="a fox",
        width=32,
        height=32,
        num_frames=9,
        num_inference_steps=steps,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **LTX2_ARGS,
    )


def _transformer_call(pipe):
    """The keyword arguments of one real transformer call of the tiny LTX-2 pipeline."""
    seen = {}

    def grab(module, args, kwargs):
        seen.setdefault("kwargs", {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()})

    handle = pipe.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        _run_ltx2(pipe, steps=2)
    finally:
        handle.remove()
    return seen["kwargs"]


def test_ltx2_cached_blocks_receive_audio_not_text():
    pipe = _tiny_pipe("ltx2")
    transformer = pipe.transformer
    call = _transformer_call(pipe)
    seen = []
    hooks = [
        block.register_forward_pre_hook(lambda m, a, k: seen.append(k["audio_hidden_states"].shape), with_kwargs=True)
        for block in transformer.transformer_blocks
    ]
    try:
        # A huge threshold skips every step after the first: the second call runs only the first block.
        with (
            step_cache.step_cache(transformer, step_cache.CacheConfig("first-block", threshold=1e9), steps=2) as stats,
            torch.no_grad(),
            transformer.cache_context("cond_uncond"),
        ):
            full = transformer(**call)
            cached = transformer(**call)
    finally:
        for hook in hooks:
            hook.remove()
    audio_in = call["audio_hidden_states"]
    text = call["audio_encoder_hidden_states"]
    audio_tokens = seen[0]
    assert len(seen) == 2 * len(transformer.transformer_blocks)  # every block is still called, cached or not
    assert all(shape == audio_tokens for shape in seen)
    assert audio_tokens[1] == audio_in.shape[1] and audio_tokens[1] != text.shape[1]
    assert stats.blocks_run == len(transformer.transformer_blocks) + 1  # step 2 ran only the first block
    # Same inputs, so the cached residuals reproduce the full pass (to rounding), on both streams.
    torch.testing.assert_close(cached[0], full[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(cached[1], full[1], rtol=0, atol=1e-5)
    assert not hasattr(transformer, "_kinema_step_cache")  # removed on exit


def test_streams_read_audio_for_ltx2_and_hidden_states_for_wan():
    ltx2, wan = _tiny_pipe("ltx2").transformer, _tiny_pipe("wan").transformer
    assert step_cache.block_streams(ltx2.transformer_blocks[0]) == (("hidden_states", 0), ("audio_hidden_states", 1))
    assert step_cache.block_streams(wan.blocks[0]) == (("hidden_states", None),)
    assert step_cache.supported(ltx2) and step_cache.supported(wan)


def test_first_block_cache_on_wan_matches_diffusers_exactly():
    from diffusers.hooks import FirstBlockCacheConfig

    pipe = _tiny_pipe("wan")

    def run():
        return pipe(
            prompt="a fox",
            width=32,
            height=32,
            num_frames=5,
            num_inference_steps=6,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).frames

    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.3))
    theirs = run()
    pipe.transformer.disable_cache()
    with step_cache.step_cache(
        pipe.transformer, step_cache.CacheConfig("first-block", threshold=0.3), steps=6
    ) as stats:
        ours = run()
    assert np.array_equal(ours, theirs)
    assert stats.fraction < 1.0


def test_mag_cache_calibrates_per_stream_and_skips():
    pipe = _tiny_pipe("ltx2")
    ratios = step_cache.calibrate_mag(lambda: _run_ltx2(pipe, steps=6), pipe.transformer, steps=6)
    assert len(ratios) == 2 and all(len(stream) == 6 for stream in ratios)  # video and audio
    config = step_cache.CacheConfig("mag", threshold=10.0, mag_ratios=ratios, retention_ratio=0.0)
    with step_cache.step_cache(pipe.transformer, config, steps=6) as stats:
        out = _run_ltx2(pipe, steps=6)
    assert stats.fraction < 1.0
    assert np.isfinite(out.frames).all() and torch.isfinite(out.audio).all()


@pytest.mark.parametrize("kind", ["ltx2", "wan"])
def test_taylorseer_hooks_something_on_both_architectures(kind):
    pipe = _tiny_pipe(kind)
    config = step_cache.CacheConfig("taylorseer", cache_interval=2, warmup_steps=2)
    if kind == "ltx2":
        with step_cache.step_cache(pipe.transformer, config, steps=8) as stats:
            out = _run_ltx2(pipe, steps=8)
        assert torch.isfinite(out.audio).all()
    else:
        with step_cache.step_cache(pipe.transformer, config, steps=8) as stats:
            out = pipe(
                prompt="a fox",
                width=32,
                height=32,
                num_frames=5,
                num_inference_steps=8,
                generator=torch.Generator().manual_seed(0),
                output_type="np",
            )
    assert stats.fraction < 1.0 and np.isfinite(out.frames).all()
    assert not any(hasattr(m, "_diffusers_hook") and m._diffusers_hook.hooks for m in pipe.transformer.modules())


def test_mag_cache_needs_ratios():
    with pytest.raises(ValueError, match="calibrate_mag"):
        step_cache.CacheConfig("mag")


# --------------------------------------------------------------------------- memory policies


@pytest.mark.parametrize("backend", ["tiny-ltx2", "tiny-wan"])
def test_every_cpu_policy_runs_with_near_identical_output(backend, monkeypatch, fresh_pipelines):
    reference = None
    for policy in memory.policies_for("cpu"):  # "full" first: the reference
        loading.release_all()
        monkeypatch.setenv(memory.ENV, policy.name)
        clip = kinema.generate(GenerationRequest(backend=backend, steps=2, **FAST))
        assert clip.metadata["memory_policy"] == policy.name
        reference = reference or clip
        if policy.fp8:
            assert psnr(clip.frames, reference.frames) > 25, policy.name  # fp8 weights: close, not equal
        else:
            # Offloaded or re-placed weights reach the kernels from other memory, so float32 sums may run in
            # another order: uint8 frames within one level, sound within 1e-5 (tests/floats.py), not bit for bit.
            assert_uint8_within_one(clip.frames, reference.frames)
            assert_float32_close(clip.audio, reference.audio)


def test_cpu_never_calls_accelerator_only_paths(monkeypatch, fresh_pipelines):
    from diffusers import DiffusionPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("an accelerator-only offload path was called on CPU")

    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload", refuse)
    monkeypatch.setattr(DiffusionPipeline, "enable_sequential_cpu_offload", refuse)
    monkeypatch.setattr(DiffusionPipeline, "enable_group_offload", refuse)
    for name in ("offload", "model-offload", "group-offload", "group-offload-fp8"):
        assert memory.get_policy(name, "cpu").name == "full"
    assert all(p.offload not in ("model", "group") for p in memory.policies_for("cpu"))
    monkeypatch.setenv(memory.ENV, "model-offload")
    assert kinema.generate(GenerationRequest(steps=2, backend="tiny-ltx2", **FAST)).metadata["memory_policy"] == "full"
    with pytest.raises(InvalidRequestError, match="does not run on cuda"):
        memory.get_policy("disk-offload", "cuda")


GiB = 2**30


def _sizes(transformer, others, blocks=48, element_size=2):
    return memory.ModelSizes(
        {"transformer": transformer, "text_encoder": others}, transformer, transformer // blocks, element_size
    )


def test_chooser_steps_down_as_free_memory_shrinks():
    ltx2 = _sizes(38 * GiB, 24 * GiB)  # LTX-2 19B + Gemma 3 12B in bf16
    picks = [memory.choose("cuda", ltx2, free * GiB).name for free in (96, 76, 56, 24, 6, 1)]
    assert picks == ["full", "vae-tiling", "model-offload", "group-offload", "group-offload-fp8", "group-offload-fp8"]
    assert memory.choose("cpu", ltx2, 512 * GiB).name == "full"
    assert memory.choose("cpu", ltx2, 60 * GiB).name == "fp8"
    assert memory.choose("cpu", ltx2, 8 * GiB).name == "disk-offload"
    assert memory.choose("mps", ltx2, 8 * GiB).name == "group-offload"  # fp8 storage does not run on MPS
    assert memory.choose("cuda", ltx2, None).name == "full"  # unknown free memory: no reason to slow down


def test_doctor_shows_the_policy_for_each_installed_model():
    from click.testing import CliRunner

    from kinema.backends.tiny import tiny_model_path
    from kinema.cli import cli

    tiny_model_path("ltx2")
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert "memory policy kinema/tiny-ltx2: full" in result.output


def test_sizes_from_safetensors_headers_match_the_loaded_model():
    from kinema.backends.tiny import tiny_model_path

    pipe = _tiny_pipe("ltx2")
    loaded = memory.sizes_of_pipeline(pipe)
    on_disk = memory.sizes_of_folder(tiny_model_path("ltx2"), element_size=4)
    assert on_disk.transformer == loaded.transformer and on_disk.largest_block == loaded.largest_block
    assert abs(on_disk.total - loaded.total) / loaded.total < 0.01


# --------------------------------------------------------------------------- out of memory


def _oom_once(pipe):
    calls = []

    def raise_once(module, args):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (forced by the test)")

    return pipe.transformer.register_forward_pre_hook(raise_once), calls


def test_out_of_memory_retries_once_with_the_next_lighter_policy(fresh_pipelines):
    backend = kinema.get_backend("tiny-ltx2")
    handle, calls = _oom_once(backend.pipeline())
    try:
        clip = kinema.generate(GenerationRequest(steps=2, backend="tiny-ltx2", **FAST))
    finally:
        handle.remove()
    assert clip.metadata["memory_policy"] == "vae-tiling"
    assert any("out of memory with memory policy full; retried with vae-tiling" in n for n in clip.metadata["notes"])
    # The lighter policy stays for the next job.
    assert (
        kinema.generate(GenerationRequest(steps=2, backend="tiny-ltx2", **FAST)).metadata["memory_policy"]
        == "vae-tiling"
    )


def test_out_of_memory_with_hooks_reloads_the_pipeline(monkeypatch, fresh_pipelines):
    monkeypatch.setenv(memory.ENV, "fp8")
    backend = kinema.get_backend("tiny-ltx2")
    before = backend.pipeline()
    handle, _calls = _oom_once(before)
    try:
        clip = kinema.generate(GenerationRequest(steps=2, backend="tiny-ltx2", **FAST))
    finally:
        handle.remove()
    assert clip.metadata["memory_policy"] == "disk-offload"
    assert backend.pipeline() is not before


def test_out_of_memory_twice_or_with_nothing_lighter_is_one_clear_error(monkeypatch, fresh_pipelines):
    monkeypatch.setenv(memory.ENV, "disk-offload")  # the lightest CPU policy
    backend = kinema.get_backend("tiny-ltx2")
    handle, _calls = _oom_once(backend.pipeline())
    try:
        with pytest.raises(OutOfMemoryError, match="no lighter memory policy.*--tier draft"):
            kinema.generate(GenerationRequest(steps=2, backend="tiny-ltx2", **FAST))
    finally:
        handle.remove()

    calls = []

    def always(run_calls=calls):
        calls.append(1)
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(OutOfMemoryError, match="again"):
        memory.retry_lighter_on_oom(always, lambda: "stepped down", [])
    assert len(calls) == 2


def test_other_errors_are_not_mistaken_for_out_of_memory():
    def broken():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        memory.retry_lighter_on_oom(broken, lambda: pytest.fail("must not step down"), [])
