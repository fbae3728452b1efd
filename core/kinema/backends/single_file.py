"""Single-file checkpoints, as ComfyUI users keep them (models/checkpoints, models/diffusion_models), for ltx2 and wan.

A single ``.safetensors`` file holds a model's weights in its authors' key layout
and no configs. kinema ships the configs of the variants it knows
(``single_file_configs/``, plus its own tiny models) and recognises a file by
its tensor names and shapes, read from the safetensors header alone: nothing is
fetched, no code comes from the file. diffusers' single-file converters turn the
weights into its layout (kinema maps the two LTX-2 parts diffusers has no
converter for: the text connectors and the vocoder). What the file does not hold
(text encoder, tokenizer; Wan's VAE) comes from the variant's base model folder.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.errors import InvalidRequestError, MissingWeightsError

CONFIGS = Path(__file__).with_name("single_file_configs")
SUFFIXES = (".safetensors", ".sft")
PICKLED = (".ckpt", ".pt", ".pth", ".bin")  # never loaded: unpickling can run code
PREFIX = "model.diffusion_model."
LTX2_MARK = "av_ca_a2v_gate_adaln_single.emb.timestep_embedder.linear_1.weight"
WAN_MARK = "head.modulation"
FAMILY_NAMES = {"ltx2": "LTX-2", "wan": "Wan"}
A_FAMILY = {"ltx2": "an LTX-2", "wan": "a Wan"}
_MAX_HEADER = 256 * 1024 * 1024  # a safetensors header is JSON; anything larger is not one


@dataclass(frozen=True)
class Variant:
    """A checkpoint kinema knows: where its configs are, and the folder that supplies what a single file lacks."""

    name: str
    family: str  # the backend that runs it: "ltx2" or "wan"
    configs: Path  # a diffusers-layout folder of config files (model_index.json, <component>/config.json)
    base: str  # a model id or folder holding the components the file lacks (text encoder, tokenizer, ...)
    transformer_in: tuple[int, ...]  # the shape of the transformer's input projection: tells variants apart
    blocks: int
    excludes: tuple[str, ...] = ()  # name parts that mark a later model of the same sizes (LTX-2.3's prompt modulation)


@dataclass(frozen=True)
class SingleFile:
    path: Path
    variant: Variant
    components: tuple[str, ...]  # what the file holds, by diffusers component name

    def describe(self) -> str:
        return f"{self.variant.name} single file ({', '.join(self.components)})"


def is_single_file(model: str | Path) -> bool:
    """Whether ``model`` names a file (a checkpoint) rather than a folder or a hub id."""
    path = Path(model).expanduser()
    return path.suffix.lower() in (*SUFFIXES, *PICKLED, ".gguf") or path.is_file()


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the safetensors header (no tensor is read)."""
    return {name: tuple(entry["shape"]) for name, entry in _header(path).items()}


def _header(path: Path) -> dict[str, dict]:
    """The safetensors header: each tensor's dtype, shape and offsets."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= _MAX_HEADER:
                raise ValueError("no safetensors header")
            header = json.loads(handle.read(size))
    except (OSError, ValueError) as error:
        raise InvalidRequestError(f"{path} is not a readable .safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise InvalidRequestError(f"{path} is not a .safetensors file")
    return {name: entry for name, entry in header.items() if name != "__metadata__"}


def _family(shapes: dict[str, tuple[int, ...]]) -> str | None:
    for name in shapes:
        if name.endswith(LTX2_MARK):
            return "ltx2"
        if name in (WAN_MARK, PREFIX + WAN_MARK):
            return "wan"
    return None


def _blocks(shapes: dict[str, tuple[int, ...]], collection: str) -> int:
    marker = f"{collection}."
    found = set()
    for name in shapes:
        bare = name.removeprefix(PREFIX)
        if bare.startswith(marker):
            index = bare[len(marker) :].split(".", 1)[0]
            if index.isdigit():
                found.add(int(index))
    return len(found)


def _input_shape(shapes: dict[str, tuple[int, ...]], family: str) -> tuple[int, ...] | None:
    name = "patchify_proj.weight" if family == "ltx2" else "patch_embedding.weight"
    return shapes.get(PREFIX + name, shapes.get(name))


def _shipped_variants() -> list[Variant]:
    variants = []
    for entry in sorted(CONFIGS.glob("*/variant.json")):
        data = json.loads(entry.read_text())
        variants.append(
            Variant(
                name=data["name"],
                family=data["family"],
                configs=entry.parent,
                base=data["base"],
                transformer_in=tuple(data["transformer_in"]),
                blocks=int(data["blocks"]),
                excludes=tuple(data.get("excludes", ())),
            )
        )
    return variants


def _tiny_variant(family: str) -> Variant | None:
    """kinema's own tiny model of ``family``, when built here: its folder has the configs and every other component.

    Never built for this: a file can only be a copy of a tiny model this kinema has already made.
    """
    from kinema.home import models_dir

    folder = models_dir() / f"kinema--tiny-{family}"
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    if not (folder / "model_index.json").is_file() or not weights.is_file():
        return None
    config = json.loads((folder / "transformer" / "config.json").read_text())
    diffusers_name = "proj_in.weight" if family == "ltx2" else "patch_embedding.weight"
    return Variant(
        name=f"kinema's tiny {FAMILY_NAMES[family]}",
        family=family,
        configs=folder,
        base=str(folder),
        transformer_in=tensor_shapes(weights)[diffusers_name],
        blocks=int(config["num_layers"]),
    )


def _components(shapes: dict[str, tuple[int, ...]], family: str) -> tuple[str, ...]:
    held = ["transformer"]
    if family == "ltx2":
        prefixes = {
            "connectors": "text_embedding_projection.",
            "vae": "vae.",
            "audio_vae": "audio_vae.",
            "vocoder": "vocoder.",
        }
        held += [name for name, prefix in prefixes.items() if any(key.startswith(prefix) for key in shapes)]
    return tuple(held)


@functools.lru_cache(maxsize=64)
def _inspect(path: Path, stamp: tuple[float, int]) -> SingleFile:
    header = _header(path)
    shapes = {name: tuple(entry["shape"]) for name, entry in header.items()}
    family = _family(shapes)
    quantised = sorted({entry["dtype"] for entry in header.values() if str(entry.get("dtype", "")).startswith("F8")})
    if family is not None and quantised:
        # fp8 files carry scales in layouts of their own; loaded as plain weights they would run, wrongly.
        raise InvalidRequestError(
            f"{path.name} holds {'/'.join(quantised)} (fp8) weights, which kinema does not load from single files"
            " yet: use the bf16 or fp16 file of the same model"
        )
    if family is None:
        raise InvalidRequestError(
            f"{path.name} is not an LTX-2 or Wan checkpoint kinema knows (no LTX-2 or Wan transformer in it);"
            " kinema runs single files of " + ", ".join(v.name for v in _shipped_variants())
        )
    found = _input_shape(shapes, family)
    blocks = _blocks(shapes, "transformer_blocks" if family == "ltx2" else "blocks")
    for variant in (*[v for v in _shipped_variants() if v.family == family], _tiny_variant(family)):
        if variant is None or any(part in name for part in variant.excludes for name in shapes):
            continue
        if found == variant.transformer_in and blocks == variant.blocks:
            return SingleFile(path, variant, _components(shapes, family))
    raise InvalidRequestError(
        f"{path.name} is {A_FAMILY[family]} checkpoint kinema has no configs for ({blocks} blocks, input"
        f" projection {list(found or ())}; LTX-2.3 and 2.5 files are not supported yet); it knows "
        + ", ".join(v.name for v in _shipped_variants() if v.family == family)
        + ": use a diffusers model folder for this one"
    )


def inspect(model: str | Path) -> SingleFile:
    """What the single file ``model`` is (raises InvalidRequestError, saying why, for one kinema cannot run)."""
    path = Path(model).expanduser()
    if path.suffix.lower() in PICKLED:
        raise InvalidRequestError(
            f"{path.name} is a pickled checkpoint, which can run code when loaded: kinema loads .safetensors only"
        )
    if path.suffix.lower() == ".gguf":
        raise InvalidRequestError(f"{path.name} is a GGUF file: kinema loads .safetensors single files")
    if not path.is_file():
        raise MissingWeightsError(f"{path} does not exist: point the model at a .safetensors file that does")
    stat = path.stat()
    return _inspect(path.resolve(), (stat.st_mtime, stat.st_size))


def base_folder(single: SingleFile) -> Path:
    """The folder that supplies what the file lacks; raises MissingWeightsError naming what to get."""
    from kinema import models

    base = single.variant.base
    try:
        return models.resolve(base)
    except (MissingWeightsError, InvalidRequestError):
        lacking = _lacking(single)
        raise MissingWeightsError(
            f"{single.path.name} ({single.describe()}): its {', '.join(lacking)} come from {base}, which is"
            f" not here: run `kinema models pull {base}` (kinema reads only those parts of it)"
        ) from None


def _lacking(single: SingleFile) -> list[str]:
    index = json.loads((single.variant.configs / "model_index.json").read_text())
    return [
        name
        for name, entry in index.items()
        if not name.startswith("_")
        and isinstance(entry, list)
        and entry[0]
        and name not in single.components
        and name != "scheduler"
    ]


def status(model: str, family: str) -> tuple[bool, str]:
    """(ready, one line) for a single-file model on a ``family`` backend: never a `models pull` of the file itself."""
    try:
        single = check_family(model, family)
        base_folder(single)
    except (InvalidRequestError, MissingWeightsError) as error:
        return False, str(error)
    return True, f"{Path(model).name}: {single.describe()}, ready"


def model_path(model: str, family: str) -> Path:
    """The file, once it is known to run on a ``family`` backend with everything it needs here (else raises)."""
    single = check_family(model, family)
    base_folder(single)
    return single.path


def check_family(model: str, family: str) -> SingleFile:
    """``inspect(model)``, refusing a file of another family than the backend's."""
    single = inspect(model)
    if single.variant.family != family:
        raise InvalidRequestError(
            f"{single.path.name} is {A_FAMILY[single.variant.family]} checkpoint:"
            f" pick the {single.variant.family} backend for it"
        )
    return single


# --------------------------------------------------------------------------- loading


def _tensors(path: Path, keep: Callable[[str], bool]) -> dict[str, Any]:
    """The file's tensors whose names pass ``keep``, and only those (the file is memory-mapped)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = handle.keys()  # safe_open is not a mapping: it has keys() but no iteration
        return {name: handle.get_tensor(name) for name in names if keep(name)}


def _renamed(state: dict[str, Any], prefixes: dict[str, str], segments: dict[str, str]) -> dict[str, Any]:
    """``state`` with leading ``prefixes`` swapped, then whole dotted name segments renamed."""
    out = {}
    for name, tensor in state.items():
        for old, new in prefixes.items():
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        out[".".join(segments.get(part, part) for part in name.split("."))] = tensor
    return out


# The LTX-2 parts diffusers 0.42 has no single-file converter for (its scripts/convert_ltx2_to_diffusers.py names).
CONNECTOR_PREFIXES = {
    "text_embedding_projection.aggregate_embed.": "text_proj_in.",
    "text_embedding_projection.video_aggregate_embed.": "video_text_proj_in.",
    "text_embedding_projection.audio_aggregate_embed.": "audio_text_proj_in.",
    PREFIX + "video_embeddings_connector.": "video_connector.",
    PREFIX + "audio_embeddings_connector.": "audio_connector.",
}
CONNECTOR_SEGMENTS = {"transformer_1d_blocks": "transformer_blocks", "q_norm": "norm_q", "k_norm": "norm_k"}
VOCODER_PREFIXES = {"vocoder.": ""}
VOCODER_SEGMENTS = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out"}


def _module(cls: Any, configs: Path, subfolder: str, state: dict[str, Any], dtype: Any) -> Any:
    config = cls.load_config(str(configs), subfolder=subfolder, local_files_only=True)
    module = cls.from_config(config)
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InvalidRequestError(
            f"the {subfolder} weights do not fit {cls.__name__}: {len(missing)} missing (e.g."
            f" {sorted(missing)[:2]}), {len(unexpected)} unexpected (e.g. {sorted(unexpected)[:2]})"
        )
    return module.to(dtype).eval()


def _converted(cls: Any, path: Path, configs: Path, subfolder: str, keep: Callable[[str], bool], dtype: Any) -> Any:
    """One component through diffusers' own single-file converter, with kinema's config (nothing fetched)."""
    state = _tensors(path, keep)
    if hasattr(cls, "from_single_file"):
        return cls.from_single_file(
            state, config=str(configs), subfolder=subfolder, local_files_only=True, torch_dtype=dtype
        ).eval()
    # diffusers has the converter but not the loader mixin on this class (its LTX-2 audio VAE): convert, then load.
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
    return _module(cls, configs, subfolder, convert(checkpoint=state), dtype)


def _ltx2_parts(single: SingleFile, dtype: Any) -> dict[str, Any]:
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2.connectors import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    path, configs = single.path, single.variant.configs
    connectors = ("video_embeddings_connector.", "audio_embeddings_connector.")

    def transformer_key(name: str) -> bool:
        bare = name.removeprefix(PREFIX)
        return name.startswith(PREFIX) and not bare.startswith(connectors)

    parts = {
        "transformer": _converted(LTX2VideoTransformer3DModel, path, configs, "transformer", transformer_key, dtype)
    }
    if "vae" in single.components:
        parts["vae"] = _converted(AutoencoderKLLTX2Video, path, configs, "vae", lambda n: n.startswith("vae."), dtype)
    if "audio_vae" in single.components:
        parts["audio_vae"] = _converted(
            AutoencoderKLLTX2Audio, path, configs, "audio_vae", lambda n: n.startswith("audio_vae."), dtype
        )
    if "connectors" in single.components:
        state = _tensors(path, lambda n: n.startswith(tuple(CONNECTOR_PREFIXES)))
        parts["connectors"] = _module(
            LTX2TextConnectors, configs, "connectors", _renamed(state, CONNECTOR_PREFIXES, CONNECTOR_SEGMENTS), dtype
        )
    if "vocoder" in single.components:
        state = _tensors(path, lambda n: n.startswith("vocoder."))
        parts["vocoder"] = _module(
            LTX2Vocoder, configs, "vocoder", _renamed(state, VOCODER_PREFIXES, VOCODER_SEGMENTS), dtype
        )
    return parts


def _wan_parts(single: SingleFile, dtype: Any) -> dict[str, Any]:
    from diffusers import WanTransformer3DModel

    return {
        "transformer": _converted(
            WanTransformer3DModel,
            single.path,
            single.variant.configs,
            "transformer",
            lambda name: not name.startswith(("vae.", "text_encoders.", "conditioner.")),
            dtype,
        )
    }


def load_pipeline(pipeline_cls: Any, model: str | Path, dtype: Any) -> Any:
    """``pipeline_cls`` with the single file's weights; the rest from the variant's configs and base folder."""
    import diffusers

    single = inspect(model)
    family = "ltx2" if "LTX2" in pipeline_cls.__name__ else "wan"
    if single.variant.family != family:
        check_family(str(model), family)
    base = base_folder(single)
    parts = _ltx2_parts(single, dtype) if family == "ltx2" else _wan_parts(single, dtype)
    scheduler_config = json.loads((single.variant.configs / "scheduler" / "scheduler_config.json").read_text())
    scheduler_cls = getattr(diffusers, scheduler_config["_class_name"])
    parts["scheduler"] = scheduler_cls.from_config(scheduler_config)
    # The base folder supplies only what the file lacks: passed components are never read from it.
    return pipeline_cls.from_pretrained(base, **parts, dtype=dtype, use_safetensors=True, local_files_only=True)


@functools.lru_cache(maxsize=256)
def _family_of(path: Path, stamp: tuple[float, int]) -> str | None:
    try:
        return _family(tensor_shapes(path))
    except InvalidRequestError:
        return None


def family_of(path: str | Path) -> str | None:
    """ "ltx2" or "wan" for a .safetensors file holding such a transformer, else None (header only, cached)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return _family_of(path, (stat.st_mtime, stat.st_size))
