"""The demo world's model: the real LTX-2 architecture at a size two CPU cores can train and run.

Every part is the class a real LTX-2 checkpoint loads into (``LTX2Pipeline``'s
transformer, video VAE, audio VAE, vocoder, connectors, Gemma 3 text encoder and
tokenizer), so whatever works on the demo model works through the code real
users run. Only the sizes differ, chosen from measurements on a 2-core CPU:

* picture: 64x64 at 12 fps, 25 frames (2.1 s). The video VAE compresses x8 in
  space and x4 in time (a causal first frame, as in LTX-2) into 16 channels:
  7 latent frames of 8x8, so the transformer sees 448 video tokens.
* sound: 16 kHz. Log-mel with 32 bins at 100 frames/s, compressed x4 in time
  and mel by the audio VAE into 2 channels (16 packed channels, 25 tokens/s);
  the vocoder upsamples x160 back to 16 kHz.
* text: a tokenizer whose vocabulary makes every world word one token, and a
  tiny Gemma 3 left at its seeded random initialisation (frozen): the
  connectors and the transformer learn to read it, as LTX-2's do with Gemma.

The decoder upsamplers are plain, not residual: with residual upsamplers a VAE
this small collapsed to the mean frame (``shared/notes/models.md``).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

from kinema.backends import tiny_parts as tiny

WIDTH = HEIGHT = 64
FPS = 12
NUM_FRAMES = 25
SAMPLE_RATE = 16000
MEL_BINS = 32
HOP = 160
VIDEO_LATENT_CHANNELS = 16
AUDIO_LATENT_CHANNELS = 2
AUDIO_PACKED = AUDIO_LATENT_CHANNELS * MEL_BINS // 4
TEXT_HIDDEN = 32  # the tiny Gemma's width; must equal the connectors' heads x head dim
SEED = 0

# Transformer width: video 4 heads x 16, audio 2 heads x 16, 6 blocks.
VIDEO_HEADS, AUDIO_HEADS, HEAD_DIM, LAYERS = 4, 2, 16, 6


def video_vae() -> AutoencoderKLLTX2Video:
    torch.manual_seed(SEED)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=VIDEO_LATENT_CHANNELS,
        block_out_channels=(64, 128),
        down_block_types=("LTX2VideoDownBlock3D",) * 2,
        decoder_block_out_channels=(32, 64),
        layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 2, 2),
        spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True),
        decoder_inject_noise=(False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False),
        upsample_factor=(2, 2),
        timestep_conditioning=False,
        patch_size=2,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        decoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    return vae


def audio_vae() -> AutoencoderKLLTX2Audio:
    torch.manual_seed(SEED)
    return AutoencoderKLLTX2Audio(
        base_channels=AUDIO_PACKED,  # latents_mean/std are sized by base_channels: the packed width
        output_channels=2,
        ch_mult=(1, 2, 4),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=AUDIO_LATENT_CHANNELS,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=SAMPLE_RATE,
        mel_hop_length=HOP,
        is_causal=True,
        mel_bins=MEL_BINS,
    )


def vocoder() -> LTX2Vocoder:
    torch.manual_seed(SEED)
    return LTX2Vocoder(
        in_channels=2 * MEL_BINS,
        hidden_channels=96,
        out_channels=2,
        upsample_kernel_sizes=[10, 8, 4, 4, 4],
        upsample_factors=[5, 4, 2, 2, 2],  # x160 = the mel hop
        resnet_kernel_sizes=[3, 7],
        resnet_dilations=[[1, 3, 5], [1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=SAMPLE_RATE,
    )


def transformer() -> LTX2VideoTransformer3DModel:
    torch.manual_seed(SEED)
    return LTX2VideoTransformer3DModel(
        in_channels=VIDEO_LATENT_CHANNELS,
        out_channels=VIDEO_LATENT_CHANNELS,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=VIDEO_HEADS,
        attention_head_dim=HEAD_DIM,
        cross_attention_dim=VIDEO_HEADS * HEAD_DIM,
        audio_in_channels=AUDIO_PACKED,
        audio_out_channels=AUDIO_PACKED,
        audio_num_attention_heads=AUDIO_HEADS,
        audio_attention_head_dim=HEAD_DIM,
        audio_cross_attention_dim=AUDIO_HEADS * HEAD_DIM,
        num_layers=LAYERS,
        qk_norm="rms_norm_across_heads",
        caption_channels=TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
    )


def connectors() -> LTX2TextConnectors:
    torch.manual_seed(SEED)
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN,
        text_proj_in_factor=tiny._LTX2_TEXT_LAYERS + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )


def text_encoder_and_tokenizer(words: tuple[str, ...]):
    tokenizer = tiny.tiny_gemma_tokenizer(words)
    # transformers types a single token's id as int | list[int]; a str gives an int.
    specials: dict[str, int] = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny._GEMMA_SPECIALS}  # type: ignore[misc]
    torch.manual_seed(SEED)
    return tiny._tiny_gemma3(len(tokenizer), specials), tokenizer


def scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024, max_image_seq_len=4096
    )


def components(words: tuple[str, ...]) -> dict:
    """Untrained components for ``LTX2Pipeline``, keyed like its constructor; ``words`` are the world's vocabulary."""
    with torch.random.fork_rng(devices=[]):
        text_encoder, tokenizer = text_encoder_and_tokenizer(words)
        return {
            "scheduler": scheduler(),
            "vae": video_vae(),
            "audio_vae": audio_vae(),
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "connectors": connectors(),
            "transformer": transformer(),
            "vocoder": vocoder(),
            "processor": None,
            "prompt_enhancer": None,
            "duration_head": None,
        }
