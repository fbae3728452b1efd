"""The opt-in speed paths of kinema.backends.memory: regional compile where it pays back, and attention choice.

Their CUDA forms (flash and cuDNN attention, inductor on a GPU) have not run here; what runs on a CPU is their
mechanics: the compile decision from times measured on a tiny real Wan transformer (no thresholds: the decision
must follow the measured numbers, whatever they are), blocks compiled with torch.compile and giving the eager
output, attention falling back per call when the preferred kernel cannot take it, and the engine recording both.
"""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

import kinema
from kinema import GenerationRequest
from kinema.backends import loading, memory
from kinema.backends.tiny_parts import _TINY_WAN_BLOCKS
from kinema.errors import InvalidRequestError
from kinema.tiers import settings, tier_names

# aot_eager traces each block with dynamo and AOTAutograd, as inductor does, without generating C++ on a busy CPU.
CHECK_BACKEND = "aot_eager"
FAST = dict(prompt="a red fox running through snow", width=32, height=32, seconds=0.375, seed=5, steps=2)


@pytest.fixture
def fresh_pipelines():
    loading.release_all()
    yield
    loading.release_all()


def tiny_wan() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel(in_channels=48, out_channels=48, **_TINY_WAN_BLOCKS).eval().requires_grad_(False)


def inputs() -> dict:
    generator = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(1, 48, 2, 8, 8, generator=generator),
        timestep=torch.tensor([500.0]),
        encoder_hidden_states=torch.randn(1, 7, 32, generator=generator),
        return_dict=False,
    )


def timed(model, arguments, count: int) -> tuple[list[float], torch.Tensor]:
    times, out = [], None
    for _ in range(count):
        start = time.perf_counter()
        with torch.no_grad():
            out = model(**arguments)[0]
        times.append(time.perf_counter() - start)
    return times, out


def test_compile_decision_follows_the_measured_times():
    model, arguments = tiny_wan(), inputs()
    timed(model, arguments, 1)  # warm-up, as the first eager step of a clip
    eager_s, eager = timed(model, arguments, 3)
    assert memory.compile_blocks(model, backend=CHECK_BACKEND)
    assert all(block._compiled_call_impl is not None for block in model.blocks)  # the repeated blocks, not the model
    assert model._compiled_call_impl is None
    first_s, _ = timed(model, arguments, 1)
    compiled_s, compiled = timed(model, arguments, 3)
    torch.testing.assert_close(compiled, eager)

    measured = memory.CompileTimes.from_steps(first_s[0], compiled_s, eager_s)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(memory.COMPILE_ENV, "1")
        for tier in tier_names():
            steps = settings(tier, "wan", default_steps=50, default_guidance=5.0).steps
            decided, why = memory.compile_decision(tier, steps, measured)
            worth = measured.compile_s + steps * measured.compiled_step_s < steps * measured.eager_step_s
            assert decided == (tier in memory.COMPILE_TIERS and worth), (tier, why, measured)
        even = measured.break_even_steps
        if even is not None:  # the decision flips where the measured compile time is earned back
            assert not measured.pays_back(max(1, int(even)))
            assert measured.pays_back(int(even) + 2)
        else:
            assert not measured.pays_back(10**6)


def test_compile_is_off_unless_asked_and_never_for_the_final_tier(monkeypatch):
    times = memory.CompileTimes(compile_s=1.0, eager_step_s=2.0, compiled_step_s=1.0)
    monkeypatch.delenv(memory.COMPILE_ENV, raising=False)
    assert memory.compile_decision("draft", 20, times) == (False, "off (KINEMA_COMPILE=1 turns it on)")
    monkeypatch.setenv(memory.COMPILE_ENV, "1")
    assert memory.compile_decision("final", 60, times)[0] is False
    assert "not measured" in memory.compile_decision("standard", 40, None)[1]
    assert memory.compile_backend() == ""
    monkeypatch.setenv(memory.COMPILE_ENV, CHECK_BACKEND)
    assert memory.compile_backend() == CHECK_BACKEND


def test_compile_times_are_kept_per_model_and_device():
    model = tiny_wan()
    key = memory.compile_key(model, "cpu")
    assert key.startswith("WanTransformer3DModel/") and key.endswith("/cpu")
    assert memory.recorded_compile_times(key) is None
    times = memory.CompileTimes(compile_s=3.0, eager_step_s=2.0, compiled_step_s=1.5)
    memory.record_compile_times(key, times)
    memory.record_compile_times("Other/1/cpu", memory.CompileTimes(1.0, 1.0, 1.0))
    assert memory.recorded_compile_times(key) == times
    assert times.break_even_steps == 6.0


def test_engine_compiles_when_the_recorded_times_pay_back(monkeypatch, fresh_pipelines):
    monkeypatch.setenv(memory.COMPILE_ENV, CHECK_BACKEND)
    key = memory.compile_key(tiny_wan(), "cpu")  # the tiny-wan backend's transformer: same class and size
    # Recorded times as benchmarks/scale.py --compile --record writes them (here: a compile that pays back).
    memory.record_compile_times(key, memory.CompileTimes(compile_s=0.5, eager_step_s=1.0, compiled_step_s=0.5))
    eager = kinema.generate(GenerationRequest(backend="tiny-wan", tier="final", **FAST))
    assert eager.metadata["compile"] == {"compiled": False, "why": "the final tier runs eager"}
    compiled = kinema.generate(GenerationRequest(backend="tiny-wan", tier="standard", **FAST))
    assert compiled.metadata["compile"]["compiled"] is True, compiled.metadata["compile"]
    assert compiled.metadata["compile"]["why"] == "pays back after 1 of 2 steps"
    pipe = loading.loaded_pipelines()[0][0]
    assert all(block._compiled_call_impl is not None for block in pipe.transformer.blocks)
    assert abs(compiled.frames.astype(int) - eager.frames.astype(int)).max() <= 1
    again = kinema.generate(GenerationRequest(backend="tiny-wan", tier="final", **FAST))  # compiled stays compiled
    assert again.metadata["compile"] == {"compiled": True, "why": "compiled for an earlier clip of this loaded model"}


def test_engine_stays_eager_when_the_recorded_times_do_not_pay_back(monkeypatch, fresh_pipelines):
    monkeypatch.setenv(memory.COMPILE_ENV, CHECK_BACKEND)
    key = memory.compile_key(tiny_wan(), "cpu")
    memory.record_compile_times(key, memory.CompileTimes(compile_s=30.0, eager_step_s=1.0, compiled_step_s=0.5))
    clip = kinema.generate(GenerationRequest(backend="tiny-wan", tier="draft", **FAST))
    assert clip.metadata["compile"] == {"compiled": False, "why": "pays back after 60 steps; this clip has 2"}
    pipe = loading.loaded_pipelines()[0][0]
    assert all(block._compiled_call_impl is None for block in pipe.transformer.blocks)


def test_auto_attention_falls_back_per_call_where_flash_cannot_run():
    generator = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 2, 8, 16, generator=generator), torch.randn(1, 2, 8, 16, generator=generator)
    v = torch.randn(1, 2, 8, 24, generator=generator)  # flash needs one head size for q, k and v
    plain = F.scaled_dot_product_attention(q, k, v)
    flash_only = torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.FLASH_ATTENTION])
    with flash_only, pytest.raises(RuntimeError, match="No available kernel"):
        F.scaled_dot_product_attention(q, k, v)
    with memory.attention([], "cpu", "auto"):
        torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), plain)
    model, arguments = tiny_wan(), inputs()
    with torch.no_grad():
        expected = model(**arguments)[0]
        with memory.attention([model], "cpu", "auto"):
            torch.testing.assert_close(model(**arguments)[0], expected)


def test_a_diffusers_attention_backend_is_set_for_the_run_and_reset(monkeypatch):
    model, arguments = tiny_wan(), inputs()
    processor = model.blocks[0].attn1.processor
    with torch.no_grad():
        expected = model(**arguments)[0]
        monkeypatch.setenv(memory.ATTENTION_ENV, "_native_math")
        with memory.attention([model], "cpu"):
            assert processor._attention_backend == "_native_math"
            torch.testing.assert_close(model(**arguments)[0], expected)
    assert processor._attention_backend is None
    refused = pytest.raises(InvalidRequestError, match="KINEMA_ATTENTION must be auto or one of .*_native_cudnn")
    with refused, memory.attention([model], "cpu", "fastest-please"):
        pass


def test_engine_records_the_attention_choice(monkeypatch, fresh_pipelines):
    monkeypatch.setenv(memory.ATTENTION_ENV, "auto")
    clip = kinema.generate(GenerationRequest(backend="tiny-wan", **FAST))
    assert clip.metadata["attention"] == "auto"
    assert "compile" not in clip.metadata  # off unless KINEMA_COMPILE asks
