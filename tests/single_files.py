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


# --------------------------------------------------------------------------- files beside a checkpoint (ComfyUI)


def sentencepiece_model(tokenizer) -> bytes:
    """A SentencePiece model holding ``tokenizer``'s pieces in id order (BPE scores are minus the rank, as
    SentencePiece's own BPE models have them), as ComfyUI stores one in a text encoder file."""
    import json

    from transformers.convert_slow_tokenizer import import_protobuf

    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    proto = import_protobuf().ModelProto()
    if model["type"] == "Unigram":
        proto.trainer_spec.model_type = 1
        pieces = [(piece, float(score)) for piece, score in model["vocab"]]
    else:
        proto.trainer_spec.model_type = 2
        pieces = [(piece, -float(index)) for piece, index in sorted(model["vocab"].items(), key=lambda kv: kv[1])]
    # What SentencePiece itself checks as it loads: which pieces are control, unknown and byte pieces, and their ids.
    special = set(tokenizer.all_special_tokens)
    for piece, score in pieces:
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        if piece == tokenizer.unk_token:
            entry.type = 2
        elif piece in special:
            entry.type = 3
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
            entry.type = 6
            proto.trainer_spec.byte_fallback = True
    trainer = proto.trainer_spec
    for field, token in (
        ("unk_id", "unk_token"),
        ("bos_id", "bos_token"),
        ("eos_id", "eos_token"),
        ("pad_id", "pad_token"),
    ):
        value = getattr(tokenizer, token, None)
        setattr(trainer, field, tokenizer.convert_tokens_to_ids(value) if value else -1)
    return proto.SerializeToString()


def comfy_text_encoder_key(name: str) -> str | None:
    """transformers' Gemma 3 / UMT5 names -> ComfyUI's (its Gemma3_12B holds the language model under model.;
    its T5 has no copy of the tied encoder.embed_tokens); None for what ComfyUI's file lacks."""
    for old, new in (
        ("model.language_model.", "model."),
        ("model.vision_tower.", ""),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if name.startswith(old):
            return new + name[len(old) :]
    return None if name in ("encoder.embed_tokens.weight", "lm_head.weight") else name


def write_text_encoder(folder: Path, target: Path, tokenizer: bool = True, fp8: str | None = None) -> Path:
    """The text encoder of a tiny model folder as ComfyUI keeps it in models/text_encoders (with its tokenizer
    as ``spiece_model`` unless ``tokenizer`` is False; ``fp8``: see ``to_fp8``)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    architecture = AutoConfig.from_pretrained(folder / "text_encoder").architectures[0]
    encoder = getattr(transformers, architecture).from_pretrained(folder / "text_encoder", dtype=torch.float32)
    tensors = {}
    for name, tensor in encoder.state_dict().items():
        new = comfy_text_encoder_key(name)
        if new is not None:
            tensors[new] = tensor.contiguous()
    if fp8:
        tensors = to_fp8(tensors, fp8, skip=("shared.weight", "model.embed_tokens.weight"))
    if tokenizer:
        model = sentencepiece_model(AutoTokenizer.from_pretrained(folder / "tokenizer"))
        tensors["spiece_model"] = torch.tensor(list(model), dtype=torch.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target))
    return target


def to_fp8(tensors: dict, layout: str, skip: tuple[str, ...] = ()) -> dict:
    """``tensors`` with each matrix stored as float8_e4m3fn and a per-tensor scale, as Comfy-Org ships fp8 files:
    ``scaled_fp8`` (a marker and ``.scale_weight``) or ``comfy_quant`` (``.weight_scale`` and a format record)."""
    import json

    import torch

    out = {}
    for name, tensor in tensors.items():
        if not (name.endswith(".weight") and tensor.dim() == 2 and tensor.is_floating_point()) or name in skip:
            out[name] = tensor
            continue
        layer = name[: -len(".weight")]
        scale = (tensor.abs().max().float() / 448.0).clamp(min=1e-12)
        out[name] = (tensor.float() / scale).to(torch.float8_e4m3fn)
        if layout == "scaled_fp8":
            out[f"{layer}.scale_weight"] = scale.reshape(())
        else:
            out[f"{layer}.weight_scale"] = scale.reshape(())
            record = json.dumps({"format": "float8_e4m3fn"}).encode()
            out[f"{layer}.comfy_quant"] = torch.tensor(list(record), dtype=torch.uint8)
    if layout == "scaled_fp8":
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def from_fp8(tensors: dict) -> dict:
    """What kinema should load from ``to_fp8``'s output: each fp8 matrix times its scale, in float32."""
    import torch

    out = {}
    for name, tensor in tensors.items():
        if tensor.dtype == torch.float8_e4m3fn and name.endswith(".weight"):
            layer = name[: -len(".weight")]
            scale = tensors.get(f"{layer}.scale_weight", tensors.get(f"{layer}.weight_scale"))
            out[name] = tensor.float() * scale.float()
        elif not name.endswith((".scale_weight", ".weight_scale", ".comfy_quant", "scaled_fp8")):
            out[name] = tensor
    return out


_WAN_VAE_RESIDUAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6"}


def wan_vae_key(name: str, resnets: dict[str, int]) -> str:
    """diffusers' Wan 2.2 VAE names -> Wan's original (ComfyUI's models/vae) names; ``resnets`` counts each block's
    resnets (its resampler comes after them)."""
    side, _, rest = name.partition(".")
    if side in ("quant_conv", "post_quant_conv"):
        return {"quant_conv": "conv1", "post_quant_conv": "conv2"}[side] + "." + rest
    parts = rest.split(".")
    if parts[0] == "conv_in":
        return f"{side}.conv1.{parts[1]}"
    if parts[0] in ("norm_out", "conv_out"):
        return f"{side}.head.{0 if parts[0] == 'norm_out' else 2}.{parts[1]}"
    if parts[0] == "mid_block":
        kind, index, *tail = parts[1:]
        if kind == "attentions":
            return f"{side}.middle.1.{'.'.join(tail)}"
        return f"{side}.middle.{2 * int(index)}.{_WAN_VAE_RESIDUAL[tail[0]]}.{'.'.join(tail[1:])}"
    outer = "downsamples" if side == "encoder" else "upsamples"
    block = parts[1]
    if parts[2] == "resnets":
        index, layer, *tail = parts[3:]
        layer = _WAN_VAE_RESIDUAL.get(layer, "shortcut" if layer == "conv_shortcut" else layer)
        return f"{side}.{outer}.{block}.{outer}.{index}.{layer}.{'.'.join(tail)}"
    return f"{side}.{outer}.{block}.{outer}.{resnets[f'{side}.{block}']}.{'.'.join(parts[3:])}"


def write_wan_vae(folder: Path, target: Path, fp8: str | None = None) -> Path:
    """A tiny Wan 2.2 VAE as ComfyUI keeps it in models/vae (Wan's original names)."""
    import re

    tensors = _component(folder, "vae")
    resnets: dict[str, int] = {}
    for name in tensors:
        found = re.match(r"^(encoder|decoder)\.(?:down|up)_blocks\.(\d+)\.resnets\.(\d+)\.", name)
        if found:
            key = f"{found[1]}.{found[2]}"
            resnets[key] = max(resnets.get(key, 0), int(found[3]) + 1)
    out = {wan_vae_key(name, resnets): tensor.contiguous() for name, tensor in tensors.items()}
    if fp8:
        out = to_fp8(out, fp8)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(target))
    return target


def header_only_file(path: Path, tensors: dict) -> Path:
    """A safetensors file with these names and shapes (zeros): what a header-only check reads."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: torch.zeros(shape, dtype=torch.float16) for name, shape in tensors.items()}, str(path))
    return path
