"""What a single checkpoint lacks, from the files ComfyUI users keep beside it.

ComfyUI keeps text encoders in models/text_encoders (Comfy-Org's
``umt5_xxl_fp16.safetensors`` or ``umt5_xxl_fp8_e4m3fn_scaled.safetensors`` for
Wan; ``gemma_3_12B_it.safetensors`` for LTX-2) and VAEs in models/vae
(``wan2.2_vae.safetensors`` for Wan 2.2 TI2V). A text encoder file is in
ComfyUI's own key layout, which is transformers' (``encoder.block.…`` for UMT5,
``model.layers.…`` for Gemma 3's language model), and carries its tokenizer as
a ``spiece_model`` tensor (the SentencePiece model's bytes). transformers loads
the weights itself (its own prefix handling and checks); the tokenizer is
rebuilt from the SentencePiece pieces with transformers' tokenizer classes. A
Wan VAE file is in Wan's original layout, which diffusers' single-file
converter reads; Wan 2.2's nested down/up blocks, which that converter predates,
are renamed first. fp8 files are upcast (``single_file_fp8``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from kinema.backends import single_file_fp8 as fp8
from kinema.errors import InvalidRequestError

TOKENIZER_TENSOR = "spiece_model"  # the SentencePiece model's bytes, as ComfyUI stores them in a text encoder file
TEXT_ENCODERS = {"wan": "UMT5-XXL", "ltx2": "Gemma 3 12B"}  # what each family's text encoder is, for messages
TEXT_ENCODER_EXAMPLES = {"wan": "umt5_xxl_fp16.safetensors", "ltx2": "gemma_3_12B_it.safetensors"}
UMT5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
GEMMA3_MARK = "model.layers.0.self_attn.q_norm.weight"  # Gemma 3 has per-head query norms; Gemma 2 has none
WAN_VAE_MARK = "decoder.middle.0.residual.0.gamma"
WAN22_VAE_MARK = "decoder.upsamples.0.upsamples.0.residual.2.weight"  # ComfyUI tells the two Wan VAEs apart so too


def text_encoder_family(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The family whose text encoder a file holds ("wan": UMT5, "ltx2": Gemma 3), from its tensor names."""
    if UMT5_MARK in shapes:
        return "wan"
    if GEMMA3_MARK in shapes:
        return "ltx2"
    return None


def vae_family(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """ "wan" for a Wan VAE file (2.1 or 2.2), else None."""
    return "wan" if WAN_VAE_MARK in shapes else None


def check_text_encoder(path: Path, shapes: dict[str, tuple[int, ...]], family: str, variant_name: str) -> None:
    found = text_encoder_family(shapes)
    if found != family:
        what = f"a {TEXT_ENCODERS[found]} text encoder" if found else "not a text encoder kinema knows"
        raise InvalidRequestError(
            f"{path.name} is {what}; {variant_name} needs its {TEXT_ENCODERS[family]} text encoder"
            f" (e.g. ComfyUI's {TEXT_ENCODER_EXAMPLES[family]})"
        )


def check_vae(path: Path, shapes: dict[str, tuple[int, ...]], family: str, variant_name: str, latents: int) -> None:
    """Refuse a file that is not the VAE ``variant_name`` decodes with (``latents`` channels)."""
    if family != "wan":
        raise InvalidRequestError(
            f"{path.name}: kinema takes a separate VAE file for Wan only; an LTX-2 checkpoint carries its own VAEs"
        )
    if vae_family(shapes) is None:
        raise InvalidRequestError(f"{path.name} is not a Wan VAE (no {WAN_VAE_MARK} in it)")
    channels = shapes.get("decoder.conv1.weight", (0, 0))[1]
    if channels != latents:
        version = "2.2" if WAN22_VAE_MARK in shapes else "2.1"
        raise InvalidRequestError(
            f"{path.name} is a Wan {version} VAE ({channels} latent channels); {variant_name} decodes"
            f" {latents}: pick the VAE made for it (ComfyUI's wan2.2_vae.safetensors for Wan 2.2 TI2V 5B)"
        )


# --------------------------------------------------------------------------- loading


def load_text_encoder(path: Path, family: str, configs: Path, dtype: Any) -> tuple[Any, Any | None]:
    """The text encoder in ``path`` (config from ``configs/text_encoder``) and the tokenizer it carries, if any."""
    from transformers import AutoConfig

    state = fp8.load(path, lambda name: True, dtype)  # the tokenizer's bytes are uint8: left as they are
    spiece = state.pop(TOKENIZER_TENSOR, None)
    encoder_cls: Any
    config = AutoConfig.from_pretrained(str(configs / "text_encoder"), local_files_only=True)
    if family == "ltx2":
        # LTX-2 reads only the language model's hidden states: Gemma 3's vision tower is not loaded.
        from transformers import Gemma3TextModel

        encoder_cls = Gemma3TextModel
        config = getattr(config, "text_config", config)
        state = {name: tensor for name, tensor in state.items() if name.startswith("model.")}
    else:
        from transformers import UMT5EncoderModel

        encoder_cls = UMT5EncoderModel
    try:
        # Mismatched shapes are reported below, by name, rather than raised by transformers.
        model, info = encoder_cls.from_pretrained(
            None, config=config, state_dict=state, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except (RuntimeError, ValueError) as error:
        raise InvalidRequestError(
            f"{path.name} does not fit the {TEXT_ENCODERS[family]} kinema builds ({str(error).splitlines()[0]})"
        ) from None
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(str(entry[0]) for entry in info.get("mismatched_keys", ()))
    if missing or mismatched:
        raise InvalidRequestError(
            f"{path.name} does not fit the {TEXT_ENCODERS[family]} kinema builds: {len(missing)} weights missing"
            f" (e.g. {missing[:2]}), {len(mismatched)} of another shape (e.g. {mismatched[:2]})"
        )
    tokenizer = tokenizer_from_sentencepiece(bytes(spiece.tolist()), family) if spiece is not None else None
    return model.eval(), tokenizer


def load_wan_vae(path: Path, configs: Path, dtype: Any) -> Any:
    """A Wan VAE file through diffusers' single-file loader, with the variant's config (nothing fetched)."""
    from diffusers import AutoencoderKLWan

    state = wan22_blocks(fp8.load(path, lambda name: True, dtype))
    vae = AutoencoderKLWan.from_single_file(
        state, config=str(configs), subfolder="vae", local_files_only=True, torch_dtype=dtype
    )
    unset = [name for name, tensor in vae.state_dict().items() if tensor.is_meta]
    if unset:
        raise InvalidRequestError(f"{path.name} lacks {len(unset)} of the VAE's weights (e.g. {unset[:2]})")
    return vae.eval()


_WAN22_BLOCK = re.compile(r"^(encoder|decoder)\.(?:downsamples|upsamples)\.(\d+)\.(?:downsamples|upsamples)\.(\d+)\.")
_RESIDUAL = {
    "residual.0.": "norm1.",
    "residual.2.": "conv1.",
    "residual.3.": "norm2.",
    "residual.6.": "conv2.",
    "shortcut.": "conv_shortcut.",
}


def wan22_blocks(state: dict[str, Any]) -> dict[str, Any]:
    """Wan 2.2's nested ``downsamples.i.downsamples.j`` (and ``upsamples``) blocks under diffusers' names.

    diffusers' Wan VAE converter handles the rest of the file (middle, head, the 1x1 convolutions) but predates
    these blocks: resnet ``j`` of block ``i``, the last entry being the block's resampler.
    """
    out = {}
    for name, tensor in state.items():
        found = _WAN22_BLOCK.match(name)
        if found:
            side, block, index = found.groups()
            rest = name[found.end() :]
            blocks = "down_blocks" if side == "encoder" else "up_blocks"
            prefix = next((p for p in _RESIDUAL if rest.startswith(p)), None)
            if prefix is not None:
                name = f"{side}.{blocks}.{block}.resnets.{index}.{_RESIDUAL[prefix]}{rest[len(prefix) :]}"
            else:
                name = f"{side}.{blocks}.{block}.{'downsampler' if side == 'encoder' else 'upsampler'}.{rest}"
        out[name] = tensor
    return out


# --------------------------------------------------------------------------- tokenizers


def tokenizer_from_sentencepiece(model: bytes, family: str) -> Any:
    """The family's tokenizer (UMT5's Unigram, Gemma's BPE) from a SentencePiece model's bytes.

    transformers builds both from a vocabulary; Gemma's merges come from transformers' own ``generate_merges``,
    ordered by the pieces' scores as its SentencePiece converter orders them.
    """
    pieces = _sentencepiece_pieces(model)
    if family == "wan":
        from transformers import T5Tokenizer

        return T5Tokenizer(vocab=[(piece, score) for piece, score in pieces], extra_ids=0)
    from transformers import GemmaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    vocab = {piece: index for index, (piece, _score) in enumerate(pieces)}
    scores = {piece: score for piece, score in pieces}
    merges = generate_merges(vocab, scores)
    # transformers annotates merges as strings; its BPE takes (left, right) pairs, which generate_merges gives.
    return GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False)


def _sentencepiece_pieces(model: bytes) -> list[tuple[str, float]]:
    """(piece, score) in id order, read with sentencepiece (ComfyUI has it) or else protobuf."""
    try:
        sentencepiece = importlib.import_module("sentencepiece")  # optional: ComfyUI installs it, kinema does not
        processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        return [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    except ImportError:
        pass
    try:
        from transformers.convert_slow_tokenizer import import_protobuf

        proto = import_protobuf().ModelProto()
    except ImportError:
        raise InvalidRequestError(
            "reading the tokenizer inside a text encoder file needs sentencepiece or protobuf:"
            " pip install sentencepiece"
        ) from None
    proto.ParseFromString(model)
    return [(piece.piece, piece.score) for piece in proto.pieces]
