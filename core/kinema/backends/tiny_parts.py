"""Tiny, randomly initialised but *real* diffusers pipelines, built fully offline.

These mirror the shapes/layouts of the real checkpoints (LTX-2.0, Wan 2.2 TI2V-5B,
Stable Audio Open) at toy sizes, in the spirit of diffusers' own
``get_dummy_components()`` test helpers, but with no Hugging Face Hub access at
all: the tokenizers are built from in-code vocabularies and the text encoders are
initialised from tiny configs.

Every random component is created right after ``torch.manual_seed(0)`` so the
weights are identical from call to call and machine to machine (CPU).

Notable choices (on purpose, they differ from diffusers' test dummies):

* LTX-2 uses the real LTX-2.0 compression layout: video VAE ×32 spatial / ×8
  temporal (so H, W must be multiples of 32 and num_frames = 8k+1, as with the
  real model), and the real vocoder upsampling ``[6, 5, 2, 2, 2]`` (×240:
  16 kHz / hop 160 = 100 mel frames/s → 24 kHz), so the audio is as long as the
  video (minus the 3 mel frames = 30 ms the causal audio VAE trims, plus
  rounding to whole audio latents: 25 frames @ 24 fps → 1.01 s for 1.042 s).
  At 32×32 the video latent is 1×1, so the tiny VAE decoder zero-pads where the
  real one reflect-pads.
* Wan follows the Wan 2.2 TI2V-5B layout (48-channel VAE with patch 2, ×16
  spatial / ×4 temporal, ``expand_timesteps=True``): one component set serves
  both ``WanPipeline`` (text→video) and ``WanImageToVideoPipeline`` (image→video,
  no CLIP image encoder).  H, W must be multiples of 32 (latent 2×2 patch).
* Stable Audio uses the real Oobleck hop (2048) at 44.1 kHz, stereo; the DiT's
  ``sample_size=128`` allows ``audio_end_in_s`` up to ~5.94 s.

The functions seed torch's global RNG but restore it afterwards, so callers'
random state is untouched.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import pathlib
import shutil
import tempfile

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    AutoencoderKLWan,
    AutoencoderOobleck,
    EDMDPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
    StableAudioDiTModel,
    StableAudioPipeline,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
    WanVACEPipeline,
    WanVACETransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from diffusers.pipelines.stable_audio import StableAudioProjectionModel
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    GemmaTokenizer,
    SiglipVisionConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)
from transformers.models.gemma3.configuration_gemma3 import Gemma3TextConfig

__all__ = [
    "KINDS",
    "build_tiny",
    "pipeline_class",
    "tiny_components",
    "tiny_gemma_tokenizer",
    "tiny_ltx2_components",
    "tiny_stable_audio_components",
    "tiny_t5_tokenizer",
    "tiny_wan_components",
    "tiny_wan_i2v_components",
    "small_ltx2_components",
    "small_wan_components",
    "tiny_wan_vace_components",
]

SEED = 0


def _keeps_rng(fn):
    """Run ``fn`` without disturbing the caller's global torch RNG state."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------
# Offline tokenizers
# --------------------------------------------------------------------------------------

# A small English word list, enough that typical prompts become real word tokens
# rather than characters. Anything else still tokenizes: the Gemma tokenizer falls
# back to characters and then to UTF-8 bytes, the T5 one to characters then <unk>.
_WORDS = [
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "in",
    "on",
    "at",
    "to",
    "with",
    "from",
    "by",
    "for",
    "is",
    "are",
    "was",
    "be",
    "it",
    "its",
    "this",
    "that",
    "as",
    "into",
    "over",
    "under",
    "near",
    "through",
    "while",
    "up",
    "down",
    "out",
    "off",
    "after",
    "before",
    "during",
    "cat",
    "dog",
    "bird",
    "fish",
    "horse",
    "cow",
    "man",
    "woman",
    "person",
    "people",
    "child",
    "boy",
    "girl",
    "robot",
    "car",
    "boat",
    "ship",
    "train",
    "plane",
    "city",
    "street",
    "road",
    "house",
    "room",
    "forest",
    "tree",
    "trees",
    "flower",
    "flowers",
    "garden",
    "river",
    "lake",
    "sea",
    "ocean",
    "beach",
    "wave",
    "waves",
    "water",
    "rain",
    "snow",
    "sky",
    "cloud",
    "clouds",
    "sun",
    "moon",
    "star",
    "stars",
    "night",
    "day",
    "dawn",
    "dusk",
    "sunset",
    "sunrise",
    "morning",
    "evening",
    "light",
    "dark",
    "fire",
    "smoke",
    "mountain",
    "mountains",
    "hill",
    "field",
    "grass",
    "sand",
    "rock",
    "stone",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "white",
    "black",
    "gray",
    "brown",
    "gold",
    "silver",
    "big",
    "small",
    "tall",
    "short",
    "old",
    "young",
    "new",
    "little",
    "slow",
    "fast",
    "slowly",
    "quickly",
    "happy",
    "sad",
    "bright",
    "soft",
    "loud",
    "quiet",
    "warm",
    "cold",
    "beautiful",
    "calm",
    "walk",
    "walks",
    "walking",
    "run",
    "runs",
    "running",
    "surf",
    "surfing",
    "swim",
    "swimming",
    "fly",
    "flying",
    "dance",
    "dancing",
    "jump",
    "jumping",
    "play",
    "playing",
    "sit",
    "sitting",
    "stand",
    "standing",
    "look",
    "looking",
    "talk",
    "talking",
    "sing",
    "singing",
    "eat",
    "eating",
    "drive",
    "driving",
    "ride",
    "riding",
    "smile",
    "camera",
    "shot",
    "close",
    "view",
    "scene",
    "video",
    "film",
    "cinematic",
    "slow",
    "motion",
    "realistic",
    "photo",
    "style",
    "detailed",
    "high",
    "quality",
    "music",
    "sound",
    "voice",
    "noise",
    "hammer",
    "hitting",
    "wooden",
    "surface",
    "drum",
    "guitar",
    "piano",
]

_PUNCT = list(".,!?;:'\"()-_/&%+=*#@[]<>") + ["\u2019", "\u2014"]
_CHARS = (
    [chr(c) for c in range(ord("a"), ord("z") + 1)]
    + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    + [str(d) for d in range(10)]
    + _PUNCT
    + [chr(c) for c in range(0xC0, 0x100) if c not in (0xD7, 0xF7)]  # Latin-1 letters
)

_GEMMA_SPECIALS = [
    "<pad>",  # 0
    "<eos>",  # 1
    "<bos>",  # 2
    "<unk>",  # 3
    "<mask>",  # 4
    "<start_of_turn>",  # 5
    "<end_of_turn>",  # 6
    "<start_of_image>",  # 7
    "<end_of_image>",  # 8
    "<image_soft_token>",  # 9
]


def _train_bpe_merges(words: list[str]) -> list[tuple[str, str]]:
    """Deterministic toy BPE training: merge the most frequent adjacent pair (ties
    broken lexicographically) until every training word is a single token."""
    seqs = [list(w) for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for seq in seqs:
            for pair in itertools.pairwise(seq):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        merged = best[0] + best[1]
        for k, seq in enumerate(seqs):
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[k] = out


def _gemma_vocab_and_merges(words: tuple[str, ...] = ()) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A Gemma-style BPE vocabulary: specials, 256 byte-fallback tokens, characters,
    and BPE merges that make every word of ``_WORDS`` and ``words`` (with and without
    the leading "\u2581") a single token."""
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    for tok in _GEMMA_SPECIALS:
        add(tok)
    for b in range(256):
        add(f"<0x{b:02X}>")
    add("\u2581")
    for ch in _CHARS:
        add(ch)
    merges = _train_bpe_merges(sorted({p for w in (*_WORDS, *words) for p in ("\u2581" + w, w)}))
    for left, right in merges:
        add(left + right)
    return vocab, merges


def tiny_gemma_tokenizer(words: tuple[str, ...] = ()) -> GemmaTokenizer:
    """Offline Gemma(3) tokenizer: BPE with byte fallback, ``<bos>`` prepended; ``words`` become single tokens too."""
    vocab, merges = _gemma_vocab_and_merges(tuple(words))
    # transformers annotates merges as strings; its BPE takes (left, right) pairs too, as here.
    tok = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)  # type: ignore[arg-type]
    tok.padding_side = "left"
    return tok


def _t5_vocab() -> list[tuple[str, float]]:
    """A T5/UMT5-style Unigram vocabulary: <pad>=0, </s>=1, <unk>=2, then pieces."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    add("\u2581", -2.0)
    for word in _WORDS:
        # Whole words are cheap (high score) so they win over character splits.
        add("\u2581" + word, -3.0)
        add(word, -4.0)
    for ch in _CHARS:
        add(ch, -8.0)
        add("\u2581" + ch, -8.5)
    return pieces


def tiny_t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """Offline T5/UMT5 tokenizer (Unigram, ``</s>`` appended, no sentinel ids)."""
    return T5Tokenizer(vocab=_t5_vocab(), extra_ids=0, model_max_length=model_max_length)


# --------------------------------------------------------------------------------------
# LTX-2
# --------------------------------------------------------------------------------------

# Gemma3 text hidden size must equal the connectors' inner dim (heads x head_dim).
_LTX2_TEXT_HIDDEN = 32
_LTX2_TEXT_LAYERS = 2


def _tiny_gemma3(vocab_size: int, specials: dict[str, int]) -> Gemma3ForConditionalGeneration:
    text_config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=_LTX2_TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=_LTX2_TEXT_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        query_pre_attn_scalar=8,
        max_position_embeddings=2048,
        sliding_window=512,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=specials["<pad>"],
        eos_token_id=specials["<eos>"],
        bos_token_id=specials["<bos>"],
    )
    vision_config = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
        vision_use_head=False,
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=4,
        boi_token_index=specials["<start_of_image>"],
        eoi_token_index=specials["<end_of_image>"],
        image_token_index=specials["<image_soft_token>"],
    )
    return Gemma3ForConditionalGeneration(config).eval()


# The toy Wan transformer both Wan 2.2 (48 latent channels) and Wan VACE (16) are built around.
# The toy Wan VAE's blocks, for the Wan 2.2 (48-channel, x16) and Wan 2.1 VACE (16-channel, x8) layouts alike.
_TINY_WAN_VAE_BLOCKS = dict(
    base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
)

_TINY_WAN_BLOCKS = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    text_dim=32,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)


def _toy_t5_config(tokenizer: T5Tokenizer) -> dict:
    """The toy T5 size both T5 encoders use: Wan's UMT5 and Stable Audio's T5."""
    return dict(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def _tiny_umt5(tokenizer: T5Tokenizer) -> UMT5EncoderModel:
    """Wan's text encoder (UMT5) at toy size; Wan and Wan VACE share it."""
    torch.manual_seed(SEED)
    return UMT5EncoderModel(
        # UMT5Config's typed signature leaves out the base config's keyword arguments, which it passes on.
        UMT5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False, **_toy_t5_config(tokenizer))  # type: ignore[call-arg]
    ).eval()


@_keeps_rng
def tiny_ltx2_components() -> dict:
    """Components for ``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` (LTX-2.0 layout)."""
    tokenizer = tiny_gemma_tokenizer()
    # transformers types a single token's id as int | list[int]; a str gives an int.
    specials: dict[str, int] = {t: tokenizer.convert_tokens_to_ids(t) for t in _GEMMA_SPECIALS}  # type: ignore[misc]

    torch.manual_seed(SEED)
    text_encoder = _tiny_gemma3(len(tokenizer), specials)

    # Audio latent layout: 2 channels x (8 mel bins / 4) = 4 packed channels.
    audio_latent_channels = 2
    mel_bins = 8
    audio_packed = audio_latent_channels * (mel_bins // 4)
    video_latent_channels = 8

    torch.manual_seed(SEED)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=video_latent_channels,
        out_channels=video_latent_channels,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=audio_packed,
        audio_out_channels=audio_packed,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=_LTX2_TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
    ).eval()

    torch.manual_seed(SEED)
    connectors = LTX2TextConnectors(
        caption_channels=_LTX2_TEXT_HIDDEN,
        text_proj_in_factor=_LTX2_TEXT_LAYERS + 1,
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
    ).eval()

    # Real LTX-2.0 compression: patch 4, then spatial / temporal / 2x spatiotemporal
    # downsamples -> x32 spatial, x8 temporal.
    torch.manual_seed(SEED)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=video_latent_channels,
        block_out_channels=(4, 8, 16, 16),
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        decoder_block_out_channels=(8, 16, 32),  # must double per level (residual upsampler)
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True),
        upsample_factor=(2, 2, 2),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
        # The real VAE reflect-pads; at 32x32 the latent is 1x1, which cannot be
        # reflect-padded, so the tiny decoder zero-pads instead.
        decoder_spatial_padding_mode="zeros",
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
    ).eval()
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False

    torch.manual_seed(SEED)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=audio_packed,  # latents_mean/std are sized by base_channels
        output_channels=2,
        ch_mult=(1, 2, 4),  # two x2 upsamples: latent mel 2 -> 8 bins, time x4
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=audio_latent_channels,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=mel_bins,
    ).eval()

    # Real LTX-2.0 vocoder upsampling (x240): 100 mel frames/s -> 24 kHz.
    torch.manual_seed(SEED)
    vocoder = LTX2Vocoder(
        in_channels=2 * mel_bins,
        hidden_channels=64,
        out_channels=2,
        upsample_kernel_sizes=[16, 15, 8, 4, 4],
        upsample_factors=[6, 5, 2, 2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=24000,
    ).eval()

    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True,
        base_shift=0.95,
        max_shift=2.05,
        base_image_seq_len=1024,
        max_image_seq_len=4096,
        shift_terminal=0.1,
    )

    return {
        "scheduler": scheduler,
        "vae": vae,
        "audio_vae": audio_vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "connectors": connectors,
        "transformer": transformer,
        "vocoder": vocoder,
        "processor": None,
        "prompt_enhancer": None,
        "duration_head": None,
    }


# --------------------------------------------------------------------------------------
# Wan 2.2 TI2V-5B layout
# --------------------------------------------------------------------------------------


@_keeps_rng
def tiny_wan_components() -> dict:
    """Components for ``WanPipeline`` in the Wan 2.2 TI2V-5B layout.

    The same dict also constructs ``WanImageToVideoPipeline`` (its ``image_encoder``
    and ``image_processor`` default to ``None``); see :func:`tiny_wan_i2v_components`.
    """
    tokenizer = tiny_t5_tokenizer(model_max_length=512)

    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        **_TINY_WAN_VAE_BLOCKS,
    ).eval()

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)

    text_encoder = _tiny_umt5(tokenizer)

    torch.manual_seed(SEED)
    transformer = WanTransformer3DModel(in_channels=48, out_channels=48, **_TINY_WAN_BLOCKS).eval()

    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": scheduler,
        "transformer": transformer,
        "transformer_2": None,
        "boundary_ratio": None,
        "expand_timesteps": True,
    }


def tiny_wan_i2v_components() -> dict:
    """Components for ``WanImageToVideoPipeline`` (Wan 2.2 TI2V: no CLIP image encoder)."""
    components = tiny_wan_components()
    components["image_processor"] = None
    components["image_encoder"] = None
    return components


@_keeps_rng
def tiny_wan_vace_components() -> dict:
    """Components for ``WanVACEPipeline`` in the Wan 2.1 VACE layout (the real VACE checkpoints are Wan 2.1).

    16-channel VAE, x8 spatial / x4 temporal, patch 2 (H, W multiples of 16);
    VACE context blocks on layer 0 take the 96 channels VACE builds: 16
    inactive + 16 reactive latent channels and the 8x8 spatial mask folded in.
    """
    tokenizer = tiny_t5_tokenizer(model_max_length=512)

    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(z_dim=16, **_TINY_WAN_VAE_BLOCKS).eval()

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)

    text_encoder = _tiny_umt5(tokenizer)

    torch.manual_seed(SEED)
    transformer = WanVACETransformer3DModel(
        in_channels=16, out_channels=16, vace_layers=[0], vace_in_channels=96, **_TINY_WAN_BLOCKS
    ).eval()

    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": scheduler,
        "transformer": transformer,
        "transformer_2": None,
        "boundary_ratio": None,
    }


# --------------------------------------------------------------------------------------
# Stable Audio Open
# --------------------------------------------------------------------------------------


@_keeps_rng
def tiny_stable_audio_components() -> dict:
    """Components for ``StableAudioPipeline`` (44.1 kHz stereo, Oobleck hop 2048)."""
    tokenizer = tiny_t5_tokenizer(model_max_length=128)

    latent_channels = 8
    conditioning_dim = 16

    torch.manual_seed(SEED)
    transformer = StableAudioDiTModel(
        sample_size=128,  # 128 latents x 2048 hop = 262144 samples: up to ~5.94 s at 44.1 kHz
        in_channels=latent_channels,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        num_key_value_attention_heads=2,
        out_channels=latent_channels,
        cross_attention_dim=32,
        time_proj_dim=16,
        global_states_input_dim=2 * conditioning_dim,
        cross_attention_input_dim=conditioning_dim,
    ).eval()

    # The released checkpoint ships CosineDPMSolverMultistepScheduler, which needs
    # `torchsde`; the EDM DPM-Solver++ with the same sigmas needs nothing extra and
    # is what StableAudioPipeline is annotated with.
    scheduler = EDMDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500.0,
        sigma_data=1.0,
        sigma_schedule="exponential",
        prediction_type="v_prediction",
        solver_order=2,
    )

    torch.manual_seed(SEED)
    vae = AutoencoderOobleck(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4, 4, 8, 8],
        channel_multiples=[1, 2, 2, 4, 4],
        decoder_channels=4,
        decoder_input_channels=latent_channels,
        audio_channels=2,
        sampling_rate=44100,
    ).eval()

    torch.manual_seed(SEED)
    text_encoder = T5EncoderModel(T5Config(feed_forward_proj="relu", **_toy_t5_config(tokenizer))).eval()

    torch.manual_seed(SEED)
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=text_encoder.config.d_model,
        conditioning_dim=conditioning_dim,
        min_value=0,
        max_value=512,
    ).eval()

    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "projection_model": projection_model,
        "tokenizer": tokenizer,
        "transformer": transformer,
        "scheduler": scheduler,
    }


# --------------------------------------------------------------------------------------
# Small (deeper, wider) variants for benchmarks
# --------------------------------------------------------------------------------------


@_keeps_rng
def small_ltx2_components(num_layers: int = 8, heads: int = 4) -> dict:
    """``tiny_ltx2_components()`` with a deeper, wider transformer, so the transformer dominates a run.

    For speed and memory benchmarks; every other component is the tiny one.
    Heads are 16 wide (the audio stream has half as many).
    """
    components = tiny_ltx2_components()
    torch.manual_seed(SEED)
    components["transformer"] = LTX2VideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=heads,
        attention_head_dim=16,
        cross_attention_dim=heads * 16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=max(1, heads // 2),
        audio_attention_head_dim=16,
        audio_cross_attention_dim=max(1, heads // 2) * 16,
        num_layers=num_layers,
        qk_norm="rms_norm_across_heads",
        caption_channels=_LTX2_TEXT_HIDDEN,
        rope_double_precision=False,
        rope_type="split",
    ).eval()
    return components


@_keeps_rng
def small_wan_components(num_layers: int = 8, heads: int = 4) -> dict:
    """``tiny_wan_components()`` with a deeper, wider transformer (24-wide heads; see :func:`small_ltx2_components`)."""
    components = tiny_wan_components()
    torch.manual_seed(SEED)
    components["transformer"] = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=24,
        in_channels=48,
        out_channels=48,
        text_dim=32,
        freq_dim=256,
        ffn_dim=heads * 48,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    ).eval()
    return components


# --------------------------------------------------------------------------------------
# Building / saving
# --------------------------------------------------------------------------------------

KINDS = ("ltx2", "wan", "stable-audio", "wan-vace")

_BUILDERS = {
    "ltx2": (LTX2Pipeline, tiny_ltx2_components),
    "wan": (WanPipeline, tiny_wan_components),
    "stable-audio": (StableAudioPipeline, tiny_stable_audio_components),
    "wan-vace": (WanVACEPipeline, tiny_wan_vace_components),
}


def tiny_components(kind: str) -> dict:
    """``tiny_ltx2_components()`` / ``tiny_wan_components()`` / ... by kind name."""
    pipeline_class(kind)  # validates
    return _BUILDERS[kind][1]()


def pipeline_class(kind: str):
    """The diffusers pipeline class ``build_tiny(kind, ...)`` saves."""
    try:
        return _BUILDERS[kind][0]
    except KeyError:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}") from None


RECIPE_FILE = "kinema_tiny.json"


def recipe(kind: str) -> str:
    """A fingerprint of how ``kind`` is built here: this file and the libraries that define the architectures.

    A folder built from another recipe (an older kinema, another diffusers) may not load into today's
    classes, so it is rebuilt rather than trusted.
    """
    import hashlib
    from importlib.metadata import version

    digest = hashlib.sha256(pathlib.Path(__file__).read_bytes())
    for part in (kind, version("diffusers"), version("transformers")):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def is_built(kind: str, directory: pathlib.Path) -> bool:
    """True when ``directory`` holds ``kind`` built by today's recipe."""
    try:
        stamp = json.loads((pathlib.Path(directory) / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("recipe") == recipe(kind)
        and (pathlib.Path(directory) / "model_index.json").is_file()
    )


def build_tiny(kind: str, directory: pathlib.Path) -> pathlib.Path:
    """Build the tiny ``kind`` pipeline and ``save_pretrained`` it (safetensors) to ``directory``.

    The folder is written into a temporary sibling first and then renamed into
    place, so ``directory`` either does not exist or is complete. An existing
    ``directory`` is replaced.
    """
    cls = pipeline_class(kind)
    builder = _BUILDERS[kind][1]
    directory = pathlib.Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)

    pipe = cls(**builder())
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the final folder should be readable
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (tmp / RECIPE_FILE).write_text(json.dumps({"kind": kind, "recipe": recipe(kind)}))
        if directory.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.replace(directory, old / "x")
            try:
                os.replace(tmp, directory)
            except BaseException:
                os.replace(old / "x", directory)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
