"""fp8 single files, as Comfy-Org and others ship them: weights upcast to the compute dtype as they load.

An fp8 file stores each large weight as float8 (e4m3fn, sometimes e5m2) and,
for most of them, a scale it was divided by. Two layouts are in use (ComfyUI
reads both, ``comfy.utils.convert_old_quants``): the older ``scaled_fp8``
marker with a ``<layer>.scale_weight`` per layer, and the newer
``<layer>.weight_scale`` with a ``<layer>.comfy_quant`` record (or the file's
``_quantization_metadata``) naming the format. Either way the weight is
``fp8 value * scale``; input scales only serve fp8 matrix multiplies, which
kinema does not run, so they are dropped. A weight with no scale is upcast as
it is. Formats other than fp8 (nvfp4's 4-bit blocks) are refused: read as
plain weights they would load and run, wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema.errors import InvalidRequestError

FP8_DTYPES = ("F8_E4M3", "F8_E5M2")  # safetensors' names for float8_e4m3fn and float8_e5m2
FP8_FORMATS = ("float8_e4m3fn", "float8_e5m2")  # ComfyUI's names for them
MARKER = "scaled_fp8"
WEIGHT_SCALES = (".weight_scale", ".scale_weight")  # newer and older layout
DROPPED = (".input_scale", ".scale_input", ".comfy_quant")  # fp8-matmul settings and the format record
OTHER_FORMATS = (".weight_scale_2",)  # nvfp4's second scale: a block format kinema cannot upcast


def is_scale(name: str) -> bool:
    """Whether ``name`` is an fp8 scale, marker or format record rather than a weight of the model."""
    return name.endswith((*WEIGHT_SCALES, *DROPPED, *OTHER_FORMATS)) or name.rsplit(".", 1)[-1] == MARKER


def check(path_name: str, header: dict[str, dict], metadata: dict[str, str] | None) -> bool:
    """Whether the file holds fp8 weights kinema upcasts (raises InvalidRequestError for a format it cannot)."""
    other = sorted({name.rsplit(".", 1)[0] for name in header if name.endswith(OTHER_FORMATS)})
    declared = _declared_formats(metadata)
    unknown = sorted(declared - set(FP8_FORMATS))
    if other or unknown:
        what = "/".join(unknown) or "nvfp4"
        raise InvalidRequestError(
            f"{path_name} holds {what} weights (e.g. {(other or ['its layers'])[0]}), which kinema cannot load:"
            " use the bf16, fp16 or fp8 file of the same model"
        )
    return any(entry.get("dtype") in FP8_DTYPES for entry in header.values())


def _declared_formats(metadata: dict[str, str] | None) -> set[str]:
    raw = (metadata or {}).get("_quantization_metadata")
    if not raw:
        return set()
    try:
        layers = json.loads(raw).get("layers", {})
        return {str(conf.get("format")) for conf in layers.values()}
    except (ValueError, AttributeError):
        raise InvalidRequestError("the file's _quantization_metadata is not the JSON ComfyUI writes") from None


def load(path: Path, keep: Callable[[str], bool], dtype: Any) -> dict[str, Any]:
    """The file's tensors whose names pass ``keep`` (and only those: the file is memory-mapped), each fp8 weight
    upcast to ``dtype`` by its scale, the scales and markers removed."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = handle.keys()  # safe_open is not a mapping: it has keys() but no iteration
        state = {name: handle.get_tensor(name) for name in names if keep(name)}
    return upcast(state, dtype)


def upcast(state: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """``state`` with every fp8 weight multiplied by its scale in ``dtype``, and the scales and markers removed.

    Other tensors are left as they are (the module's own ``.to(dtype)`` casts them).
    """
    import torch

    for name, tensor in state.items():
        if name.endswith(".comfy_quant"):
            _check_record(name, tensor)
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    out = {}
    for name, tensor in state.items():
        if is_scale(name):
            continue
        if tensor.dtype in fp8:
            scale = next((state[name[: -len(".weight")] + s] for s in WEIGHT_SCALES if _has(state, name, s)), None)
            tensor = _scaled(name, tensor, scale, dtype)
        out[name] = tensor
    return out


def _has(state: dict[str, Any], name: str, suffix: str) -> bool:
    return name.endswith(".weight") and name[: -len(".weight")] + suffix in state


def _scaled(name: str, weight: Any, scale: Any, dtype: Any) -> Any:
    import torch

    value = weight.to(torch.float32)
    if scale is not None:
        scale = scale.to(torch.float32)
        # One scale for the tensor, or one per output row; a block layout would not broadcast and is refused.
        if scale.numel() == 1:
            value = value * scale.reshape(())
        elif scale.numel() == weight.shape[0]:
            value = value * scale.reshape(weight.shape[0], *([1] * (weight.dim() - 1)))
        else:
            raise InvalidRequestError(
                f"{name} has a scale of shape {list(scale.shape)} for a weight of shape {list(weight.shape)}:"
                " kinema upcasts fp8 with one scale per tensor or per row; use the bf16 or fp16 file"
            )
    return value.to(dtype)


def _check_record(name: str, record: Any) -> None:
    try:
        conf = json.loads(bytes(record.tolist()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(f"{name} is not the JSON record ComfyUI writes for a quantised layer") from None
    if conf.get("format") not in FP8_FORMATS:
        raise InvalidRequestError(
            f"{name.removesuffix('.comfy_quant')} is stored as {conf.get('format')}, which kinema cannot load:"
            " use the bf16, fp16 or fp8 file of the same model"
        )
