"""A tiny, randomly initialised LTX-2.5-shaped checkpoint folder with a latent upsampler, built offline.

The tiny LTX-2 (``tiny_parts.tiny_ltx2_components``) with what makes a folder LTX-2.5 rather than 2.0: the
bandwidth-extending vocoder (16 kHz stage, BWE to 48 kHz), a transformer with gated attention and cross-attention
modulation, a duration head, a ``latent_upsampler/`` for the two-stage recipe and, when asked, a distilled LoRA for
its second stage (random, like the rest: it changes the refined clip, which is what tests look for). The transformer's
positional
extent is small on purpose (10 s, 64x64 pixels), so that limits read from the checkpoint can be seen at toy sizes.
For tests: real diffusers classes, no hub, safetensors.
"""

from __future__ import annotations

import pathlib

import torch
from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.duration_head import LTX2DurationHead
from diffusers.pipelines.ltx2.latent_upsampler import LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE

from kinema.backends.tiny_parts import SEED, tiny_ltx2_components

SECONDS = 10  # the transformer's positional extent in time
SIDE = 64  # ... and in space, each side
DISTILLED_LORA = "tiny-ltx-2.5-distilled-lora-4.safetensors"  # named as Lightricks names theirs


def tiny_ltx25_components() -> dict:
    components = tiny_ltx2_components()
    state = torch.random.get_rng_state()
    try:
        config = {k: v for k, v in components["transformer"].config.items() if not k.startswith("_")}
        config.update(
            gated_attn=True,
            cross_attn_mod=True,
            audio_gated_attn=True,
            audio_cross_attn_mod=True,
            pos_embed_max_pos=SECONDS,
            audio_pos_embed_max_pos=SECONDS,
            base_width=SIDE,
            base_height=SIDE,
        )
        torch.manual_seed(SEED)
        components["transformer"] = LTX2VideoTransformer3DModel(**config).eval()
        mel_bins = components["audio_vae"].config.mel_bins
        torch.manual_seed(SEED)
        components["vocoder"] = LTX2VocoderWithBWE(
            in_channels=2 * mel_bins,
            hidden_channels=64,
            upsample_kernel_sizes=[11, 4, 4, 4, 4, 4],
            upsample_factors=[5, 2, 2, 2, 2, 2],  # x160: 100 mel frames/s -> 16 kHz
            resnet_kernel_sizes=[3],
            resnet_dilations=[[1, 3, 5]],
            bwe_in_channels=2 * mel_bins,
            bwe_hidden_channels=32,
            bwe_upsample_factors=[6, 5, 2, 2, 2],  # x240 on a hop of 80: 200 mel frames/s -> 48 kHz
            bwe_resnet_kernel_sizes=[3],
            bwe_resnet_dilations=[[1, 3, 5]],
            num_mel_channels=mel_bins,
            input_sampling_rate=16000,
            output_sampling_rate=48000,
        ).eval()
        connector = components["connectors"].config
        video_dim = connector.video_connector_num_attention_heads * connector.video_connector_attention_head_dim
        audio_dim = connector.audio_connector_num_attention_heads * connector.audio_connector_attention_head_dim
        torch.manual_seed(SEED)
        components["duration_head"] = LTX2DurationHead(
            video_cross_attention_dim=video_dim,
            audio_cross_attention_dim=audio_dim,
            pooler_hidden_dim=16,
            mlp_hidden_dim=16,
        ).eval()
    finally:
        torch.random.set_rng_state(state)
    return components


def tiny_latent_upsampler(latent_channels: int) -> LTX2LatentUpsamplerModel:
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(SEED)
        return LTX2LatentUpsamplerModel(
            in_channels=latent_channels,
            mid_channels=32,  # GroupNorm(32) inside
            num_blocks_per_stage=1,
            spatial_upsample=True,
            temporal_upsample=False,
            use_rational_resampler=False,
        ).eval()
    finally:
        torch.random.set_rng_state(state)


def save_tiny_distilled_lora(transformer: torch.nn.Module, path: pathlib.Path, rank: int = 4) -> pathlib.Path:
    """A random LoRA on ``transformer``'s video and audio self-attention, in diffusers' safetensors layout."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(SEED)
    tensors = {}
    for name, module in transformer.named_modules():
        if name.endswith(("attn1.to_q", "attn1.to_v")):
            for part, shape in (("lora_A", (rank, module.in_features)), ("lora_B", (module.out_features, rank))):
                tensors[f"transformer.{name}.{part}.weight"] = torch.randn(*shape, generator=generator) * 0.5
    save_file(tensors, str(path))
    return path


def build_tiny_ltx25(directory: pathlib.Path, *, upsampler: bool = True, distilled_lora: bool = False) -> pathlib.Path:
    """Save the tiny LTX-2.5 pipeline (safetensors) to ``directory``, with ``latent_upsampler/`` unless told not to,
    and with a distilled LoRA for the second stage (``DISTILLED_LORA``) when asked."""
    directory = pathlib.Path(directory)
    components = tiny_ltx25_components()
    LTX2Pipeline(**components).save_pretrained(directory, safe_serialization=True)
    if upsampler:
        channels = components["transformer"].config.in_channels
        tiny_latent_upsampler(channels).save_pretrained(directory / "latent_upsampler", safe_serialization=True)
    if distilled_lora:
        save_tiny_distilled_lora(components["transformer"], directory / DISTILLED_LORA)
    return directory
