"""Tiny single-file checkpoints in the authors' key layout, written from kinema's tiny model folders.

The reverse of diffusers' single-file converters (and of kinema's for the LTX-2 text connectors and vocoder):
what Lightricks' LTX-2 files (transformer, connectors, both VAEs and vocoder in one file) and ComfyUI's Wan
diffusion_models files (the transformer alone) hold, at toy size. Tests check each reversal by running the
forward converter over it.
"""

from __future__ import annotations

import re
from pathlib import Path

from safetensors.torch import load_file, save_file

PREFIX = "model.diffusion_model."


def _swap(name: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        name = name.replace(old, new)
    return name


LTX2_TRANSFORMER = [
    ("proj_in", "patchify_proj"),
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("norm_q", "q_norm"),
    ("norm_k", "k_norm"),
]


def ltx2_transformer_key(name: str) -> str:
    if name.startswith("time_embed."):
        name = "adaln_single." + name[len("time_embed.") :]
    elif name.startswith("audio_time_embed."):
        name = "audio_adaln_single." + name[len("audio_time_embed.") :]
    return PREFIX + _swap(name, LTX2_TRANSFORMER)


def ltx2_vae_key(name: str) -> str:
    """diffusers' LTX-2 video VAE names -> the original's numbered blocks (downsamplers and upsamplers are blocks)."""
    name = name.replace("latents_mean", "per_channel_statistics.mean-of-means").replace(
        "latents_std", "per_channel_statistics.std-of-means"
    )
    side, _, rest = name.partition(".")
    # One substitution each: a renamed block must not be renamed again.
    if side == "encoder":
        rest = re.sub(
            r"^(?:down_blocks\.(\d+)\.(downsamplers\.0\.)?|mid_block\.)",
            lambda m: f"down_blocks.{2 * int(m[1]) + bool(m[2]) if m[1] else 8}.",
            rest,
        )
    elif side == "decoder":
        rest = re.sub(
            r"^(?:up_blocks\.(\d+)\.(upsamplers\.0\.)?|mid_block\.)",
            lambda m: f"up_blocks.{2 * int(m[1]) + (1 if m[2] else 2) if m[1] else 0}.",
            rest,
        )
    name = f"{side}.{rest}" if rest else side
    return "vae." + name.replace(".resnets.", ".res_blocks.")


def ltx2_audio_vae_key(name: str) -> str:
    return "audio_vae." + name.replace("latents_mean", "per_channel_statistics.mean-of-means").replace(
        "latents_std", "per_channel_statistics.std-of-means"
    )


def ltx2_connector_key(name: str) -> str:
    for new, old in (
        ("text_proj_in.", "text_embedding_projection.aggregate_embed."),
        ("video_connector.", PREFIX + "video_embeddings_connector."),
        ("audio_connector.", PREFIX + "audio_embeddings_connector."),
    ):
        if name.startswith(new):
            name = old + name[len(new) :]
            break
    segments = {"transformer_blocks": "transformer_1d_blocks", "norm_q": "q_norm", "norm_k": "k_norm"}
    return ".".join(segments.get(part, part) for part in name.split("."))


def ltx2_vocoder_key(name: str) -> str:
    segments = {"upsamplers": "ups", "resnets": "resblocks", "conv_in": "conv_pre", "conv_out": "conv_post"}
    return "vocoder." + ".".join(segments.get(part, part) for part in name.split("."))


def wan_transformer_key(name: str) -> str:
    name = re.sub(r"\.norm2\.", ".norm__swap.", name)
    name = re.sub(r"\.norm3\.", ".norm2.", name)
    name = name.replace(".norm__swap.", ".norm3.")
    pairs = [
        ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
        ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
        ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
        ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
        ("condition_embedder.time_proj", "time_projection.1"),
        ("attn2", "cross_attn"),
        ("attn1", "self_attn"),
        (".to_out.0.", ".o."),
        (".to_q.", ".q."),
        (".to_k.", ".k."),
        (".to_v.", ".v."),
        ("ffn.net.0.proj", "ffn.0"),
        ("ffn.net.2", "ffn.2"),
        ("proj_out", "head.head"),
    ]
    name = _swap(name, pairs)
    if name == "scale_shift_table":
        return "head.modulation"
    return re.sub(r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation", name)


def _component(folder: Path, name: str) -> dict:
    return load_file(str(folder / name / "diffusion_pytorch_model.safetensors"))


def write_ltx2(folder: Path, target: Path) -> Path:
    """Lightricks' all-in-one LTX-2 layout: transformer, connectors, video and audio VAEs, vocoder."""
    tensors = {}
    for component, rename in (
        ("transformer", ltx2_transformer_key),
        ("vae", ltx2_vae_key),
        ("audio_vae", ltx2_audio_vae_key),
        ("connectors", ltx2_connector_key),
        ("vocoder", ltx2_vocoder_key),
    ):
        for name, tensor in _component(folder, component).items():
            tensors[rename(name)] = tensor.contiguous()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"format": "pt"})
    return target


def write_wan(folder: Path, target: Path, prefixed: bool = False) -> Path:
    """A Wan transformer as ComfyUI's diffusion_models hold it (optionally with the model.diffusion_model. prefix)."""
    tensors = {
        (PREFIX if prefixed else "") + wan_transformer_key(name): tensor.contiguous()
        for name, tensor in _component(folder, "transformer").items()
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata={"format": "pt"})
    return target
