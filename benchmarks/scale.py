"""Speed at real scale: kinema's diffusion transformers at full size, random weights, timed step by step.

Speed does not depend on a checkpoint's values, so the real diffusers
transformers are built from their published configs (diffusers' conversion
scripts: LTX-2 and LTX-2.3 as ``convert_ltx2_to_diffusers.py``, Wan 2.2 TI2V-5B
and T2V-A14B as ``convert_wan_to_diffusers.py``) on the ``meta`` device,
materialised in bf16 on the device with random weights, and fed random text
embeddings of the right shape in place of the text encoders. Each denoising
step runs every transformer pass the pipeline runs (LTX-2: classifier-free
guidance as one batch of 2, a spatio-temporal guidance pass and a modality
pass; Wan: conditional and unconditional passes), then a flow-matching Euler
update, and is timed on its own.

It reports, per model:

* FLOPs per step, counted by ``torch.utils.flop_counter.FlopCounterMode`` from
  one step run on the meta device (matrix products and attention; elementwise
  work is not counted), and achieved TFLOP/s;
* the transformer called directly vs through kinema's step-cache hooks with
  nothing skipped (what the engine adds around the transformer);
* per tier (``kinema.tiers``): steps, the share of blocks the tier's cache runs
  over its whole schedule, seconds of transformer time per clip and per
  generated second, and the ratio to the limit (the clip's FLOPs at the chip's
  dense bf16 rate);
* peak memory and time per step per memory policy (``kinema.backends.memory``);
* the attention choices of ``KINEMA_ATTENTION`` (on CUDA every SDPA backend), and regional ``torch.compile``
  of the repeated blocks with ``--compile`` (``--record`` keeps its times for the engine's ``KINEMA_COMPILE``).
  The CUDA paths have not run on a GPU yet.

Only the transformer is measured: the text encoder, VAE decode and vocoder are
not. ``--budget-s`` stops cleanly between steps and prints what was measured.

    python benchmarks/scale.py                      # CPU: reduced form (2 layers, 1/8 width, 256x256, 1 s)
    python benchmarks/scale.py --out DIR            # GPU: full size, 768x512, 5 s; tables in DIR/scale.md

It imports torch, diffusers' two transformer classes and three of kinema's
modules (tiers, step_cache, memory) without kinema's package, which would
import the whole engine (PyAV, c2pa...): on a machine with torch, one
``pip install`` of diffusers (and platformdirs) is all it needs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CORE = Path(__file__).resolve().parents[1] / "core"


def _kinema_leaves() -> tuple[Any, Any, Any]:
    """kinema.tiers, kinema.backends.step_cache and kinema.backends.memory, without kinema's package __init__s.

    ``import kinema`` and ``import kinema.backends`` bring in the engine, the request, media (PyAV) and provenance
    (c2pa); these three modules need none of it. Where kinema is already imported (tests), it is used as it is.
    """
    for name, folder in (("kinema", CORE / "kinema"), ("kinema.backends", CORE / "kinema" / "backends")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    from kinema import tiers
    from kinema.backends import memory, step_cache

    return tiers, step_cache, memory


tiers, step_cache, memory = _kinema_leaves()

# --------------------------------------------------------------------------- models

# Configs as diffusers' conversion scripts write them (scripts/convert_ltx2_to_diffusers.py, versions "2.0" and
# "2.3"; scripts/convert_wan_to_diffusers.py, "Wan2.2-TI2V-5B" and "Wan2.2-T2V-A14B").
_LTX2_COMMON: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "vae_scale_factors": (8, 32, 32),
    "pos_embed_max_pos": 20,
    "base_height": 2048,
    "base_width": 2048,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_patch_size": 1,
    "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4,
    "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000,
    "audio_hop_length": 160,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 3840,
    "attention_bias": True,
    "attention_out_bias": True,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_offset": 1,
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split",
}
LTX2_0 = {
    **_LTX2_COMMON,
    "gated_attn": False,
    "cross_attn_mod": False,
    "audio_gated_attn": False,
    "audio_cross_attn_mod": False,
    "use_prompt_embeddings": True,
    "perturbed_attn": False,
}
# LTX-2.3: gated attention, prompt modulation of cross-attention, perturbed self-attention for STG, and text
# that arrives already projected per modality (4096 for video, 2048 for audio) instead of a caption projection.
LTX2_3 = {
    **_LTX2_COMMON,
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
}
_WAN_COMMON: dict[str, Any] = {
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "freq_dim": 256,
    "patch_size": (1, 2, 2),
    "qk_norm": "rms_norm_across_heads",
    "text_dim": 4096,
}
WAN_5B = {
    **_WAN_COMMON,
    "ffn_dim": 14336,
    "in_channels": 48,
    "out_channels": 48,
    "num_attention_heads": 24,
    "num_layers": 30,
}
WAN_A14B = {
    **_WAN_COMMON,
    "ffn_dim": 13824,
    "in_channels": 16,
    "out_channels": 16,
    "num_attention_heads": 40,
    "num_layers": 40,
}


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    family: str  # kinema's family: which tier settings apply
    config: dict[str, Any]
    fps: int
    frames: int  # of the real workload: 5 s
    default_steps: int  # the kinema backend's defaults
    default_guidance: float
    vae_spatial: int = 32
    vae_temporal: int = 8
    text_tokens: int = 1024
    note: str = ""


SPECS = {
    "ltx2": Spec("ltx2", "LTX-2", "ltx2", LTX2_0, 24, 121, 40, 4.0),
    "ltx2.3": Spec("ltx2.3", "LTX-2.3", "ltx2", LTX2_3, 24, 121, 40, 4.0),
    "wan-5b": Spec(
        "wan-5b", "Wan 2.2 TI2V-5B", "wan", WAN_5B, 24, 121, 50, 5.0, vae_spatial=16, vae_temporal=4, text_tokens=512
    ),
    "wan-a14b": Spec(
        "wan-a14b",
        "Wan 2.2 T2V-A14B",
        "wan",
        WAN_A14B,
        16,
        81,
        50,
        5.0,
        vae_spatial=8,
        vae_temporal=4,
        text_tokens=512,
        note="one of its two experts resident (they take turns by noise level; same shape, same speed)",
    ),
}


def reduced_config(spec: Spec, layers: int | None, narrow: int) -> dict[str, Any]:
    """``spec``'s config with ``layers`` blocks and 1/``narrow`` of the attention heads (and Wan's FFN width)."""
    config = dict(spec.config)
    if layers:
        config["num_layers"] = layers
    if narrow > 1:
        config["num_attention_heads"] = max(1, config["num_attention_heads"] // narrow)
        if spec.family == "ltx2":
            config["audio_num_attention_heads"] = max(1, config["audio_num_attention_heads"] // narrow)
            # The cross-attention inputs are the projected text: as wide as each stream.
            config["cross_attention_dim"] = config["num_attention_heads"] * config["attention_head_dim"]
            config["audio_cross_attention_dim"] = (
                config["audio_num_attention_heads"] * config["audio_attention_head_dim"]
            )
        else:
            config["ffn_dim"] = max(1, config["ffn_dim"] // narrow)
    return config


def transformer_class(spec: Spec) -> Any:
    from diffusers import LTX2VideoTransformer3DModel, WanTransformer3DModel

    return LTX2VideoTransformer3DModel if spec.family == "ltx2" else WanTransformer3DModel


def build_meta(spec: Spec, config: dict[str, Any], dtype: torch.dtype) -> Any:
    """The model on the meta device in ``dtype``, with the modules diffusers keeps in float32 (Wan's time
    embedder, norms and modulation tables) in float32, as ``from_pretrained(torch_dtype=...)`` leaves them."""
    with torch.device("meta"):
        model = transformer_class(spec).from_config(config)
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    torch.nn.Module.to(model, dtype)  # ModelMixin.to would warn about those float32 modules
    for name, module in model.named_modules():
        if keep and any(part in keep for part in name.split(".")):
            torch.nn.Module.float(module)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def materialise(spec: Spec, config: dict[str, Any], device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """Build on meta, allocate on ``device`` in ``dtype``, fill with random weights.

    Matrices get torch's default for linear layers, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (what a diffusers model
    built from its config holds, as in kinema's other benchmarks), norm weights 1 and other vectors 0. Buffers computed at construction (Wan's RoPE tables) come from the same class built with no
    blocks, directly on the device.
    """
    model = build_meta(spec, config, dtype).to_empty(device=device)
    generator = torch.Generator(device).manual_seed(seed)
    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2:
            bound = math.prod(parameter.shape[1:]) ** -0.5
            parameter.uniform_(-bound, bound, generator=generator)
        elif name.endswith("weight") and "norm" in name:
            parameter.fill_(1.0)
        else:
            parameter.zero_()
    buffers = dict(model.named_buffers())
    if buffers:
        with torch.device(device):
            skeleton = transformer_class(spec).from_config({**config, "num_layers": 0})
        fresh = dict(skeleton.named_buffers())
        missing = sorted(set(buffers) - set(fresh))
        if missing:
            raise RuntimeError(f"cannot rebuild buffers {missing} of {spec.name}")
        for name in buffers:
            owner, _, leaf = name.rpartition(".")
            module = model.get_submodule(owner) if owner else model
            persistent = leaf not in module._non_persistent_buffers_set
            module.register_buffer(leaf, fresh[name].to(device), persistent=persistent)
        del skeleton
    return model


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    width: int
    height: int
    frames: int
    fps: int
    text_tokens: int

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def latent_grid(spec: Spec, config: dict[str, Any], work: Workload) -> tuple[int, int, int]:
    frames = (work.frames - 1) // spec.vae_temporal + 1
    return frames, work.height // spec.vae_spatial, work.width // spec.vae_spatial


def tokens(spec: Spec, config: dict[str, Any], work: Workload) -> tuple[int, int]:
    """(video tokens, audio tokens) of one sample."""
    frames, height, width = latent_grid(spec, config, work)
    if spec.family == "ltx2":
        # LTX2Pipeline: 16 kHz mel frames at hop 160, 4x compressed by the audio VAE = 25 latents a second.
        per_second = config["audio_sampling_rate"] / config["audio_hop_length"] / config["audio_scale_factor"]
        return frames * height * width, round(work.seconds * per_second)
    _pt, ph, pw = config["patch_size"]
    return frames * (height // ph) * (width // pw), 0


class Denoiser:
    """One denoising step as the pipeline runs it: every transformer pass, guidance, a flow-matching Euler update."""

    def __init__(self, spec: Spec, config: dict[str, Any], work: Workload, device: str, dtype: torch.dtype, seed=0):
        self.spec, self.config, self.work, self.device, self.dtype = spec, config, work, device, dtype
        self.guidance = spec.default_guidance
        generator = torch.Generator("cpu").manual_seed(seed)

        def randn(*shape: int) -> torch.Tensor:
            if device == "meta":
                return torch.empty(*shape, device="meta", dtype=dtype)
            return torch.randn(*shape, generator=generator).to(device, dtype)

        self.frames, self.height, self.width = latent_grid(spec, config, work)
        self.video_tokens, self.audio_tokens = tokens(spec, config, work)
        text = work.text_tokens
        if spec.family == "ltx2":
            if config.get("use_prompt_embeddings", True):
                video_text = audio_text = config["caption_channels"]  # Gemma features, projected inside
            else:  # LTX-2.3: the connectors hand each stream its own width
                video_text, audio_text = config["cross_attention_dim"], config["audio_cross_attention_dim"]
            self.text = {
                "positive": (randn(1, text, video_text), randn(1, text, audio_text)),
                "negative": (randn(1, text, video_text), randn(1, text, audio_text)),
            }
            self.mask = torch.ones(1, text, device=device)
            self.state = [randn(1, self.video_tokens, config["in_channels"]), randn(1, self.audio_tokens, 128)]
            stg = 28 if config["num_layers"] > 28 else config["num_layers"] // 2
            self.stg_blocks = [stg]
        else:
            self.text = {
                "positive": (randn(1, text, config["text_dim"]),),
                "negative": (randn(1, text, config["text_dim"]),),
            }
            self.state = [randn(1, config["in_channels"], self.frames, self.height, self.width)]

    @property
    def passes(self) -> list[tuple[str, int]]:
        """(cache context, batch) of each transformer call in one step."""
        if self.spec.family == "ltx2":
            return [("cond_uncond", 2), ("uncond_stg", 1), ("uncond_modality", 1)]
        return [("cond", 1), ("uncond", 1)]

    def _ltx2(self, model: Any, t: torch.Tensor, batch: int, negative: bool = False, **extra: Any) -> tuple:
        video, audio = self.state
        positive = self.text["positive"]
        if batch == 2:
            text_v = torch.cat([self.text["negative"][0], positive[0]])
            text_a = torch.cat([self.text["negative"][1], positive[1]])
        else:
            text_v, text_a = positive
        timestep = t.expand(batch)
        return model(
            hidden_states=video.expand(batch, -1, -1),
            audio_hidden_states=audio.expand(batch, -1, -1),
            encoder_hidden_states=text_v,
            audio_encoder_hidden_states=text_a,
            timestep=timestep,
            sigma=timestep,
            encoder_attention_mask=self.mask.expand(batch, -1),
            audio_encoder_attention_mask=self.mask.expand(batch, -1),
            num_frames=self.frames,
            height=self.height,
            width=self.width,
            fps=float(self.work.fps),
            audio_num_frames=self.audio_tokens,
            use_cross_timestep=True,
            return_dict=False,
            **extra,
        )

    def _wan(self, model: Any, t: torch.Tensor, which: str) -> torch.Tensor:
        (latents,) = self.state
        # TI2V-5B's pipeline gives every token its own timestep (expand_timesteps).
        timestep = t.reshape(1, 1).expand(1, self.video_tokens) if self.spec.name == "wan-5b" else t.reshape(1)
        return model(
            hidden_states=latents, timestep=timestep, encoder_hidden_states=self.text[which][0], return_dict=False
        )[0]

    @torch.no_grad()
    def step(self, model: Any, sigma: float, sigma_next: float) -> None:
        t = torch.tensor([sigma * 1000.0], device=self.device, dtype=torch.float32)
        g = self.guidance
        if self.spec.family == "ltx2":
            with _context(model, "cond_uncond"):
                video, audio = self._ltx2(model, t, 2)
            (video_u, video_c), (audio_u, audio_c) = video.float().chunk(2), audio.float().chunk(2)
            with _context(model, "uncond_stg"):
                video_s, audio_s = self._ltx2(model, t, 1, spatio_temporal_guidance_blocks=self.stg_blocks)
            with _context(model, "uncond_modality"):
                video_m, audio_m = self._ltx2(model, t, 1, isolate_modalities=True)
            # LTX2Pipeline's defaults: CFG, STG scale 1, modality scale 3 (audio CFG 7).
            velocity = [
                video_c + (g - 1) * (video_c - video_u) + (video_c - video_s.float()) + 2 * (video_c - video_m.float()),
                audio_c + 6 * (audio_c - audio_u) + (audio_c - audio_s.float()) + 2 * (audio_c - audio_m.float()),
            ]
        else:
            with _context(model, "cond"):
                cond = self._wan(model, t, "positive").float()
            with _context(model, "uncond"):
                uncond = self._wan(model, t, "negative").float()
            velocity = [uncond + g * (cond - uncond)]
        self.state = [
            (x.float() + (sigma_next - sigma) * v).to(self.dtype) for x, v in zip(self.state, velocity, strict=True)
        ]


def _context(model: Any, name: str) -> Any:
    return model.cache_context(name) if hasattr(model, "cache_context") else contextlib.nullcontext()


def sigmas(steps: int, shift: float = 3.0) -> list[float]:
    """Flow-matching sigmas from 1 to 0, time-shifted as the video pipelines do for large token counts."""
    plain = [1.0 - i / steps for i in range(steps + 1)]
    return [shift * s / (1.0 + (shift - 1.0) * s) for s in plain]


# --------------------------------------------------------------------------- counting


def count_flops(spec: Spec, config: dict[str, Any], work: Workload) -> dict[str, Any]:
    """FLOPs of one denoising step and of one block, counted on the meta device (nothing is allocated)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_meta(spec, config, torch.bfloat16)
    denoiser = Denoiser(spec, config, work, "meta", torch.bfloat16)
    with FlopCounterMode(display=False) as counter:
        denoiser.step(model, 1.0, 0.9)
    counts = counter.get_flop_counts()
    blocks_name = "transformer_blocks" if spec.family == "ltx2" else "blocks"
    first_block = f"{type(model).__name__}.{blocks_name}.0"
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "step": counter.get_total_flops(),
        "block_per_step": sum(counts.get(first_block, {}).values()),
        "parameters": parameters,
        "passes": denoiser.passes,
        "tokens": tokens(spec, config, work),
    }


def block_flops(spec: Spec, config: dict[str, Any], work: Workload) -> int:
    """FLOPs of block 0 for one conditional pass of batch 1 (what a hand count of one block gives)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_meta(spec, config, torch.bfloat16)
    denoiser = Denoiser(spec, config, work, "meta", torch.bfloat16)
    t = torch.ones(1, device="meta")
    with FlopCounterMode(display=False) as counter:
        if spec.family == "ltx2":
            denoiser._ltx2(model, t, 1)
        else:
            denoiser._wan(model, t, "positive")
    blocks_name = "transformer_blocks" if spec.family == "ltx2" else "blocks"
    return sum(counter.get_flop_counts()[f"{type(model).__name__}.{blocks_name}.0"].values())


# --------------------------------------------------------------------------- measuring


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Budget:
    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = seconds
        self.stopped = ""

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def check(self, what: str) -> bool:
        """True while there is time left; the first time there is none, remembers what was cut."""
        if self.left() > 0:
            return True
        if not self.stopped:
            self.stopped = what
        return False


def rss_peak_reset() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_peak() -> int | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def peak_reset(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        memory.release_host_memory()
        rss_peak_reset()


def peak(device: str) -> int | None:
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return rss_peak()


def release(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    else:
        memory.release_host_memory()


def timed_steps(
    model: Any, denoiser: Denoiser, schedule: list[float], device: str, budget: Budget, what: str
) -> list[float]:
    """Run the steps of ``schedule``, each timed on its own; stops early when the budget is spent."""
    times = []
    for sigma, sigma_next in zip(schedule[:-1], schedule[1:], strict=True):
        if not budget.check(what):
            break
        sync(device)
        start = time.perf_counter()
        denoiser.step(model, sigma, sigma_next)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


class OnlyTransformer:
    """The part of a pipeline ``kinema.backends.memory.apply`` uses, holding one transformer."""

    def __init__(self, transformer: Any):
        self.components = {"transformer": transformer}

    def to(self, device: str) -> OnlyTransformer:
        self.components["transformer"].to(device)
        return self

    def enable_group_offload(self, **kwargs: Any) -> None:
        self.components["transformer"].enable_group_offload(**kwargs)

    def enable_model_cpu_offload(self, device: str) -> None:
        raise NotImplementedError("model offload of a lone transformer is 'full' while it runs")


def matmul_rate(device: str, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a large bf16 matrix product on ``device`` (a practical ceiling)."""
    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    repeats = 10 if device.startswith("cuda") else 3
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


# Dense bf16 tensor-core rates from the vendors' spec sheets (no sparsity), FLOP/s.
DENSE_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12}


def device_limit(device: str, measured: float) -> tuple[float, str]:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
        for key in sorted(DENSE_BF16, key=len, reverse=True):
            if key in name:
                return DENSE_BF16[key], f"{name} dense bf16 spec {DENSE_BF16[key] / 1e12:.0f} TFLOP/s"
        return measured, f"{name}, measured bf16 matmul {measured / 1e12:.0f} TFLOP/s (spec unknown)"
    return measured, f"measured bf16 matmul on this {device.upper()}: {measured / 1e9:.0f} GFLOP/s"


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Results:
    header: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: list[dict[str, Any]] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)
    compile: list[dict[str, Any]] = field(default_factory=list)
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure_steps(spec: Spec, config: dict, work: Workload, args: Any, results: Results, budget: Budget) -> None:
    """FLOPs, then the transformer called directly vs through kinema's step-cache hooks, step by step."""
    device, dtype = args.device, torch.bfloat16
    flops = count_flops(spec, config, work)
    row: dict[str, Any] = {
        "title": spec.title,
        "layers": config["num_layers"],
        "parameters": flops["parameters"],
        "tokens": flops["tokens"],
        "passes": flops["passes"],
        "flops_step": flops["step"],
        "flops_block_step": flops["block_per_step"],
        "note": spec.note,
        "direct_s": [],
        "hooked_s": [],
    }
    results.models[spec.name] = row
    if not budget.check(f"{spec.name}: materialising"):
        return
    start = time.perf_counter()
    model = materialise(spec, config, device, dtype)
    sync(device)
    row["materialise_s"] = time.perf_counter() - start
    denoiser = Denoiser(spec, config, work, device, dtype)
    timed_steps(model, denoiser, sigmas(20)[:2], device, budget, f"{spec.name}: warm-up")  # allocator, kernels
    # Direct and hooked steps interleaved, so drift in the machine's load hits both alike. The hooks are the draft
    # tier's first-block cache at threshold 0: all of its work (residuals, the change measure) and nothing skipped.
    never_skip = step_cache.CacheConfig("first-block", threshold=0.0)
    schedule = sigmas(args.steps_timed)
    for sigma, sigma_next in zip(schedule[:-1], schedule[1:], strict=True):
        row["direct_s"] += timed_steps(model, denoiser, [sigma, sigma_next], device, budget, f"{spec.name}: direct")
        with step_cache.step_cache(model, never_skip, steps=1) as stats:
            row["hooked_s"] += timed_steps(model, denoiser, [sigma, sigma_next], device, budget, f"{spec.name}: hooked")
        assert stats.blocks_run == stats.blocks_total  # threshold 0 never skips
    if spec.name == args.models[0]:
        measure_attention(model, spec, config, work, args, results, budget)
    del model, denoiser
    release(device)


def tier_settings(spec: Spec) -> list[Any]:
    return [
        tiers.settings(tier, spec.family, default_steps=spec.default_steps, default_guidance=spec.default_guidance)
        for tier in tiers.tier_names()
    ]


def measure_cached_tiers(spec: Spec, config: dict, work: Workload, args: Any, results: Results, budget: Budget):
    """Each tier with a step cache runs its whole schedule, so the cache decides as it would in a clip."""
    cached = [s for s in tier_settings(spec) if s.cache]
    if not cached or not budget.check(f"{spec.name}: cached tiers"):
        return
    model = materialise(spec, config, args.device, torch.bfloat16)
    for resolved in cached:
        denoiser = Denoiser(spec, config, work, args.device, torch.bfloat16, seed=1)
        cache = step_cache.CacheConfig.from_dict(resolved.cache)
        with step_cache.step_cache(model, cache, steps=resolved.steps) as stats:
            times = timed_steps(
                model, denoiser, sigmas(resolved.steps), args.device, budget, f"{spec.name}: {resolved.tier}"
            )
        results.cached[f"{spec.name}/{resolved.tier}"] = dict(step_s=times, blocks=stats.fraction)
    del model
    release(args.device)


def measure_policies(spec: Spec, config: dict, work: Workload, args: Any, results: Results, budget: Budget) -> None:
    device = args.device
    names = [p.name for p in memory.policies_for(device) if p.name not in ("vae-tiling", "model-offload")]
    names = [n for n in names if not args.policies or n in args.policies]
    for name in names:
        if not budget.check(f"{spec.name}: policy {name}"):
            return
        policy = memory.get_policy(name, device)
        model = materialise(spec, config, device, torch.bfloat16)
        holder = OnlyTransformer(model)
        start = time.perf_counter()
        memory.apply(holder, policy, device)
        sync(device)
        placed_s = time.perf_counter() - start
        denoiser = Denoiser(spec, config, work, device, torch.bfloat16)
        schedule = sigmas(args.policy_steps + 1)
        timed_steps(model, denoiser, schedule[:2], device, budget, f"{spec.name}: policy {name}")
        peak_reset(device)
        times = timed_steps(model, denoiser, schedule[1:], device, budget, f"{spec.name}: policy {name}")
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        results.policies.append(
            dict(model=spec.name, policy=name, peak=peak(device), weights=weights, step_s=times, placed_s=placed_s)
        )
        del model, holder, denoiser
        release(device)


def measure_attention(
    model: Any, spec: Spec, config: dict, work: Workload, args: Any, results: Results, budget: Budget
):
    """kinema's attention choices (KINEMA_ATTENTION): auto and plain SDPA anywhere; on CUDA each diffusers
    backend torch has built in, or flash-attn where installed (untested on a GPU so far)."""
    denoiser = Denoiser(spec, config, work, args.device, torch.bfloat16)
    # "auto" is kinema's KINEMA_ATTENTION=auto (torch tries flash, cuDNN, efficient, math per call); the rest are
    # diffusers' attention backends, as KINEMA_ATTENTION=<name> sets them.
    gpu = ("_native_flash", "_native_cudnn", "_native_efficient", "flash", "_flash_3")
    for backend in ("auto", "native", *(gpu if args.device.startswith("cuda") else ())):
        if not budget.check(f"{spec.name}: attention {backend}"):
            return
        try:
            with memory.attention([model], args.device, backend):
                timed_steps(model, denoiser, sigmas(2)[:2], args.device, budget, "attention warm-up")
                times = timed_steps(
                    model, denoiser, sigmas(args.steps_timed), args.device, budget, f"attention {backend}"
                )
            results.attention.append(dict(model=spec.name, backend=backend, step_s=times))
        except Exception as error:  # noqa: BLE001 - a backend this build lacks, or one that refuses masks: report it
            first = (str(error).splitlines() or [type(error).__name__])[0][:100]
            results.attention.append(dict(model=spec.name, backend=backend, error=first))
    model.reset_attention_backend()


def measure_compile(spec: Spec, config: dict, work: Workload, args: Any, results: Results, budget: Budget) -> None:
    """Opt-in: regional torch.compile of the repeated blocks (diffusers' compile_repeated_blocks)."""
    if not budget.check(f"{spec.name}: compile"):
        return
    model = materialise(spec, config, args.device, torch.bfloat16)
    denoiser = Denoiser(spec, config, work, args.device, torch.bfloat16)
    eager = median(results.models[spec.name].get("direct_s", []))
    options = {"backend": args.compile_backend} if args.compile_backend else {}
    if not memory.compile_blocks(model, **options):  # as the engine compiles: fullgraph, the repeated blocks only
        raise RuntimeError(f"{type(model).__name__} declares no repeated blocks")
    first = timed_steps(model, denoiser, sigmas(1), args.device, budget, f"{spec.name}: compile")
    times = timed_steps(model, denoiser, sigmas(args.steps_timed), args.device, budget, f"{spec.name}: compiled")
    entry: dict[str, Any] = dict(model=spec.name, first_s=first, step_s=times, eager_s=eager)
    direct = results.models[spec.name].get("direct_s", [])
    if first and times and direct:
        # The same numbers kinema's engine decides with (kinema.backends.memory.compile_decision).
        measured = memory.CompileTimes.from_steps(first[0], times, direct)
        entry["break_even_steps"] = measured.break_even_steps
        entry["pays_back"] = {r.tier: measured.pays_back(r.steps) for r in tier_settings(spec)}
        if args.record:
            key = memory.compile_key(model, args.device)
            memory.record_compile_times(key, measured)
            entry["recorded"] = key
    results.compile.append(entry)
    del model
    release(args.device)


# --------------------------------------------------------------------------- tables


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _fmt_flops(value: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e6:.3g} M"


def _fmt_count(value: float) -> str:
    return f"{value / 1e9:.2f} B" if value >= 1e9 else f"{value / 1e6:.1f} M"


def _fmt_bytes(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**30:.2f} GiB"


def tables(results: Results) -> str:
    h = results.header
    lines = [
        f"kinema at scale on {h['device_name']}: torch {h['torch']}, diffusers {h['diffusers']}, bf16, {h['form']}",
        f"workload: {h['workload']}; limit: {h['limit_source']}",
        "only the transformer is timed (no text encoder, VAE decode or vocoder); FLOPs counted on the meta device"
        " (matmuls and attention); random weights: time and memory are the real model's, the share of blocks a"
        " cache skips is not (a trained model's first block changes far less from step to step)",
        "",
        "| model | layers | params | tokens (video+audio) | passes a step | FLOPs a step | direct s/step | FLOP/s | kinema hooks s/step | overhead |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results.models.values():
        direct, hooked = median(row.get("direct_s", [])), median(row.get("hooked_s", []))
        video, audio = row["tokens"]
        passes = " + ".join(f"{context} ×{batch}" if batch > 1 else context for context, batch in row["passes"])
        achieved = _fmt_flops(row["flops_step"] / direct) if direct else "–"
        overhead = f"{hooked / direct:.3f}×" if direct and hooked else "–"
        lines.append(
            f"| {row['title']} | {row['layers']} | {_fmt_count(row['parameters'])} | {video}+{audio} | {passes} |"
            f" {_fmt_flops(row['flops_step'])} | {_fmt_s(direct)} | {achieved} | {_fmt_s(hooked)} | {overhead} |"
        )
    lines += [
        "",
        "| model | tier | steps | cache | blocks run | s/step | s a clip | s per generated s | × the limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    limit = h["limit"]
    for name, row in results.models.items():
        direct = row["direct_s"]
        for resolved in tier_settings(SPECS[name]):
            cache = resolved.cache
            shown = f"{cache['method']} {cache['threshold']:g}" if cache else "none"
            cells = [row["title"], resolved.tier, str(resolved.steps), shown]
            measured = results.cached.get(f"{name}/{resolved.tier}") if cache else {"step_s": direct, "blocks": 1.0}
            times = measured["step_s"] if measured else []
            if not times:
                lines.append("| " + " | ".join([*cells, "not measured", "–", "–", "–", "–"]) + " |")
                continue
            complete = not cache or len(times) == resolved.steps
            per_step = statistics.fmean(times) if cache else statistics.median(times)
            clip = sum(times) if cache and complete else per_step * resolved.steps
            approx = "" if complete else "~"
            blocks = f"{measured['blocks']:.1%}" + ("" if complete else f" of {len(times)} steps")
            # FLOPs of the clip at the chip's rate; a cached step does the blocks' share of the work.
            bound = row["flops_step"] * resolved.steps * measured["blocks"] / limit
            cells += [
                blocks,
                _fmt_s(per_step),
                approx + _fmt_s(clip),
                approx + _fmt_s(clip / h["seconds"][name]),
                f"{approx}{clip / bound:.1f}×",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if results.policies:
        lines += [
            "",
            "| model | memory policy | weights | peak memory | s/step | vs full |",
            "|---|---|---|---|---|---|",
        ]
        base = {p["model"]: median(p["step_s"]) for p in results.policies if p["policy"] == "full"}
        base_peak = {p["model"]: p["peak"] for p in results.policies if p["policy"] == "full"}
        for p in results.policies:
            step = median(p["step_s"])
            full, full_peak = base.get(p["model"]), base_peak.get(p["model"])
            versus = []
            if step and full:
                versus.append(f"{step / full:.2f}× time")
            if p["peak"] and full_peak:
                versus.append(f"{p['peak'] / full_peak:.2f}× peak")
            lines.append(
                f"| {results.models[p['model']]['title']} | {p['policy']} | {_fmt_bytes(p['weights'])} |"
                f" {_fmt_bytes(p['peak'])} | {_fmt_s(step)} | {', '.join(versus) or '–'} |"
            )
        lines.append(f"(peak memory: {h['peak_kind']})")
    if results.attention:
        lines += ["", "| model | attention (KINEMA_ATTENTION) | s/step |", "|---|---|---|"]
        for a in results.attention:
            shown = _fmt_s(median(a["step_s"])) if "step_s" in a else f"not usable: {a['error']}"
            lines.append(f"| {results.models[a['model']]['title']} | {a['backend']} | {shown} |")
    if results.compile:
        lines += [
            "",
            "| model | compile: first step s | compiled s/step | eager s/step | pays back after | tiers it pays back in |",
            "|---|---|---|---|---|---|",
        ]
        for c in results.compile:
            even = c.get("break_even_steps")
            paying = ", ".join(tier for tier, pays in c.get("pays_back", {}).items() if pays) or "none"
            lines.append(
                f"| {results.models[c['model']]['title']} | {_fmt_s(c['first_s'][0] if c['first_s'] else None)} |"
                f" {_fmt_s(median(c['step_s']))} | {_fmt_s(c['eager_s'])} |"
                f" {f'{even:.1f} steps' if even is not None else 'never (not faster)'} | {paying} |"
            )
    for error in results.errors:
        lines.append(f"failed: {error}")
    if h.get("stopped"):
        lines += ["", f"stopped at the budget ({h['budget_s']:g} s) before: {h['stopped']}"]
    lines.append(f"wall time {h['wall_s']:.0f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(SPECS), help="default: ltx2 wan-5b ltx2.3 wan-a14b")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    parser.add_argument("--layers", type=int, help="blocks per model (default: all on CUDA, 2 on CPU)")
    parser.add_argument("--narrow", type=int, help="divide attention heads (and Wan's FFN) by this (CUDA 1, CPU 8)")
    parser.add_argument("--size", help="WxH (default: 768x512 on CUDA, 256x256 on CPU)")
    parser.add_argument("--seconds", type=float, help="clip length (default: 5 on CUDA, 1 on CPU)")
    parser.add_argument("--text-tokens", type=int, help="text embedding length (default: the pipeline's; 128 on CPU)")
    parser.add_argument("--steps-timed", type=int, default=3, help="direct and hooked steps timed per model")
    parser.add_argument("--policy-steps", type=int, default=1, help="steps timed per memory policy")
    parser.add_argument("--policies", nargs="*", help="memory policies to measure (default: all that apply here)")
    parser.add_argument("--policy-models", type=int, default=1, help="measure memory policies on the first N models")
    parser.add_argument("--no-policies", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time regional torch.compile (opt-in)")
    parser.add_argument("--compile-backend", help="--compile: torch.compile's backend (default: inductor)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="--compile: keep the measured compile times in KINEMA_HOME, where KINEMA_COMPILE=1 decides with them",
    )
    parser.add_argument("--budget-s", type=float, help="stop cleanly after this long (default: 270 on CUDA, 600 else)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--count-only", action="store_true", help="only count FLOPs at full size on the meta device (any machine)"
    )
    parser.add_argument("--rate", type=float, default=989e12, help="--count-only: FLOP/s of the limit (H100 SXM)")
    parser.add_argument("--out", type=Path, help="write scale.md and scale.json into this folder")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    full = args.device.startswith("cuda") or args.count_only  # full size unless told otherwise
    if args.layers is None and not full:
        args.layers = 2
    if args.narrow is None:
        args.narrow = 1 if full else 8
    args.size = args.size or ("768x512" if full else "256x256")
    args.seconds = args.seconds or (5.0 if full else 1.0)
    args.text_tokens = args.text_tokens or (None if full else 128)
    args.reduced = (
        bool(args.layers or args.text_tokens) or args.narrow > 1 or (args.size, args.seconds) != ("768x512", 5.0)
    )
    args.budget_s = args.budget_s if args.budget_s is not None else (270.0 if full else 600.0)
    args.models = args.models or ["ltx2", "wan-5b", "ltx2.3", "wan-a14b"]
    return args


def heavy_imports() -> list[str]:
    """Modules this benchmark should never import (it must run on a bare machine with torch and diffusers)."""
    return sorted(m for m in ("av", "c2pa", "cv2", "fastapi", "kinema.engine", "kinema.media") if m in sys.modules)


def run(args: argparse.Namespace) -> Results:
    import diffusers

    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s)
    width, height = (int(v) for v in args.size.split("x"))
    results = Results()
    measured = matmul_rate(args.device, torch.bfloat16)
    limit, source = device_limit(args.device, measured)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.processor() or 'CPU'}"
    form = f"reduced form: {args.layers or 'all'} layers, 1/{args.narrow} of the heads" if args.reduced else "full size"
    if args.reduced and not args.layers and args.narrow == 1:
        form = "full-size models, smaller clip"
    results.header = dict(
        device=args.device,
        device_name=f"{name} ({torch.get_num_threads()} threads)" if args.device == "cpu" else name,
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        form=form,
        limit=limit,
        limit_source=source,
        measured_matmul=measured,
        budget_s=args.budget_s,
        peak_kind="torch.cuda.max_memory_allocated"
        if args.device.startswith("cuda")
        else "peak RSS of this process (VmHWM, reset per policy)",
        seconds={},
        gpu_paths_untested=True,
    )
    works = {}
    for spec_name in args.models:
        spec = SPECS[spec_name]
        frames = (round(args.seconds * spec.fps) // spec.vae_temporal) * spec.vae_temporal + 1
        works[spec_name] = Workload(width, height, frames, spec.fps, args.text_tokens or spec.text_tokens)
        results.header["seconds"][spec_name] = works[spec_name].seconds
    results.header["workload"] = ", ".join(
        f"{SPECS[n].title} {w.width}x{w.height} {w.frames} frames at {w.fps} fps" for n, w in works.items()
    )
    configs = {n: reduced_config(SPECS[n], args.layers, args.narrow) for n in args.models}

    def guarded(what: str, measure: Any, *arguments: Any) -> None:
        """One phase; a failure (out of memory, a path no GPU has run yet) is reported and the rest goes on."""
        try:
            measure(*arguments)
        except Exception as error:  # noqa: BLE001 - the tables of what did run must still come out
            first = (str(error).splitlines() or [""])[0][:160]
            results.errors.append(f"{what}: {type(error).__name__}: {first}")
        release(args.device)

    # Cheapest and most telling first, so a budget cut loses the least: every model's step time, then memory
    # policies, then the cached tiers' whole schedules, then (opt-in) compile.
    for n in args.models:
        guarded(f"{n} steps", measure_steps, SPECS[n], configs[n], works[n], args, results, budget)
    if not args.no_policies:
        for n in args.models[: args.policy_models]:
            guarded(f"{n} memory policies", measure_policies, SPECS[n], configs[n], works[n], args, results, budget)
    for n in args.models:
        guarded(f"{n} cached tiers", measure_cached_tiers, SPECS[n], configs[n], works[n], args, results, budget)
    if args.compile:
        n = args.models[0]
        guarded(f"{n} compile", measure_compile, SPECS[n], configs[n], works[n], args, results, budget)
    results.header["stopped"] = budget.stopped
    results.header["wall_s"] = time.perf_counter() - budget.start
    results.header["heavy_imports"] = heavy_imports()
    return results


def count_only(args: argparse.Namespace) -> str:
    """Full-size FLOPs per step and per clip, and the time each tier would take at ``args.rate`` (nothing runs)."""
    width, height = (int(v) for v in args.size.split("x"))
    lines = [
        f"full-size FLOPs counted on the meta device; the limit: {args.rate / 1e12:.0f} TFLOP/s dense bf16",
        "",
        "| model | params | workload | tokens (video+audio) | FLOPs a step | tier | steps | FLOPs a clip |"
        " s per generated s at the limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.models:
        spec = SPECS[name]
        frames = (round(args.seconds * spec.fps) // spec.vae_temporal) * spec.vae_temporal + 1
        work = Workload(width, height, frames, spec.fps, args.text_tokens or spec.text_tokens)
        flops = count_flops(spec, spec.config, work)
        for resolved in tier_settings(spec):
            clip = flops["step"] * resolved.steps
            cached = " (before caching)" if resolved.cache else ""
            lines.append(
                f"| {spec.title} | {_fmt_count(flops['parameters'])} | {width}x{height}, {frames} frames at {spec.fps} fps"
                f" | {flops['tokens'][0]}+{flops['tokens'][1]} | {_fmt_flops(flops['step'])} | {resolved.tier} |"
                f" {resolved.steps} | {_fmt_flops(clip)}{cached} | {clip / args.rate / work.seconds:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.count_only:
        text = count_only(args)
        print(text)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "scale_counts.md").write_text(text + "\n")
        return
    results = run(args)
    text = tables(results)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.md").write_text(text + "\n")
        (args.out / "scale.json").write_text(json.dumps(results.__dict__, indent=1, default=str) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
