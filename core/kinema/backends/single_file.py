"""Single-file checkpoints, as ComfyUI users keep them (models/checkpoints, models/diffusion_models), for ltx2 and wan.

A single ``.safetensors`` file holds a model's weights in its authors' key layout
and no configs. kinema ships the configs of the variants it knows
(``single_file_configs/``, plus its own tiny models) and recognises a file by
its tensor names and shapes, read from the safetensors header alone: nothing is
fetched, no code comes from the file. diffusers' single-file converters turn the
weights into its layout (kinema maps the two LTX-2 parts diffusers has no
converter for: the text connectors and the vocoder). What the file does not hold
(text encoder, tokenizer; Wan's VAE) comes from files named beside it (ComfyUI's
models/text_encoders and models/vae, read by ``single_file_parts``), else from the
variant's base model folder. A model that names such files is a small JSON recipe
(``with_parts``) kept in kinema's home: the backends see one path, as for a
single file. fp8 files are upcast as they load (``single_file_fp8``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.backends import single_file_fp8 as fp8
from kinema.backends import single_file_parts
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
RECIPE_KEY = "kinema_single_file"  # marks a recipe: a checkpoint and the files that supply what it lacks
RECIPE_VERSION = 1


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
    text_encoder: Path | None = None  # a text encoder file beside it (ComfyUI's models/text_encoders)
    vae: Path | None = None  # a VAE file beside it (ComfyUI's models/vae)
    tokenizer_in_text_encoder: bool = False  # the text encoder file carries its tokenizer (spiece_model)

    def supplied(self) -> tuple[str, ...]:
        """Every component the file and the files beside it supply."""
        extra = []
        if self.text_encoder is not None:
            extra += ["text_encoder", "tokenizer"] if self.tokenizer_in_text_encoder else ["text_encoder"]
        if self.vae is not None:
            extra.append("vae")
        return (*self.components, *(name for name in extra if name not in self.components))

    def describe(self) -> str:
        beside = [path.name for path in (self.text_encoder, self.vae) if path is not None]
        with_files = f" with {' and '.join(beside)}" if beside else ""
        return f"{self.variant.name} single file{with_files} ({', '.join(self.supplied())})"


def is_single_file(model: str | Path) -> bool:
    """Whether ``model`` names a file (a checkpoint) rather than a folder or a hub id."""
    path = Path(model).expanduser()
    return path.suffix.lower() in (*SUFFIXES, *PICKLED, ".gguf") or path.is_file()


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the safetensors header (no tensor is read)."""
    return {name: tuple(entry["shape"]) for name, entry in _header(path).items()}


def _header(path: Path) -> dict[str, dict]:
    """The safetensors header: each tensor's dtype, shape and offsets."""
    return {name: entry for name, entry in _raw_header(path).items() if name != "__metadata__"}


def _metadata(path: Path) -> dict[str, str]:
    """The header's free-form ``__metadata__`` (where a quantisation record may be)."""
    metadata = _raw_header(path).get("__metadata__")
    return metadata if isinstance(metadata, dict) else {}


def _raw_header(path: Path) -> dict[str, Any]:
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
    return header


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
    if family is not None:
        fp8.check(path.name, header, _metadata(path))  # fp8 is upcast as it loads; other formats are refused here
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
    if path.suffix.lower() == ".json":
        return _with_parts(path)
    stat = path.stat()
    return _inspect(path.resolve(), (stat.st_mtime, stat.st_size))


# --------------------------------------------------------------------------- files beside the checkpoint


def with_parts(checkpoint: str | Path, text_encoder: str | Path | None = None, vae: str | Path | None = None) -> str:
    """The model to run ``checkpoint`` with a text encoder file and/or a VAE file beside it.

    With neither, the checkpoint itself. Otherwise a small recipe (JSON naming the three files) written once to
    kinema's home, whose path the backends take as their model, as they take a single file's.
    """
    if text_encoder is None and vae is None:
        return str(checkpoint)
    from kinema.home import kinema_home

    recipe = {
        RECIPE_KEY: RECIPE_VERSION,
        "checkpoint": str(Path(checkpoint).expanduser().resolve()),
        "text_encoder": str(Path(text_encoder).expanduser().resolve()) if text_encoder else None,
        "vae": str(Path(vae).expanduser().resolve()) if vae else None,
    }
    text = json.dumps(recipe, indent=1, sort_keys=True)
    names = [Path(str(p)).stem for p in (recipe["checkpoint"], text_encoder, vae) if p]
    folder = kinema_home() / "single_files"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{'+'.join(names)}.{hashlib.sha256(text.encode()).hexdigest()[:10]}.json"
    if not path.is_file() or path.read_text() != text:
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(text)
        os.replace(partial, path)  # the same content under the same name: racing writers agree
    return str(path)


def _with_parts(path: Path) -> SingleFile:
    try:
        recipe = json.loads(path.read_text())
    except (OSError, ValueError):
        recipe = None
    if not isinstance(recipe, dict) or recipe.get(RECIPE_KEY) != RECIPE_VERSION:
        raise InvalidRequestError(
            f"{path.name} is not a kinema single-file recipe (a JSON file with {RECIPE_KEY}: {RECIPE_VERSION})"
        )
    single = inspect(recipe["checkpoint"])
    variant = single.variant
    text_encoder = vae = None
    in_text_encoder = False
    if recipe.get("text_encoder"):
        text_encoder = _existing(recipe["text_encoder"], "text encoder")
        shapes = tensor_shapes(text_encoder)
        single_file_parts.check_text_encoder(text_encoder, shapes, variant.family, variant.name)
        fp8.check(text_encoder.name, _header(text_encoder), _metadata(text_encoder))
        in_text_encoder = single_file_parts.TOKENIZER_TENSOR in shapes
    if recipe.get("vae"):
        vae = _existing(recipe["vae"], "VAE")
        latents = json.loads((variant.configs / "vae" / "config.json").read_text()).get("z_dim", 0)
        single_file_parts.check_vae(vae, tensor_shapes(vae), variant.family, variant.name, latents)
        fp8.check(vae.name, _header(vae), _metadata(vae))
    return SingleFile(single.path, variant, single.components, text_encoder, vae, in_text_encoder)


def _existing(name: str, what: str) -> Path:
    path = Path(name)
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidRequestError(f"{path.name}: the {what} must be a .safetensors file (kinema loads no pickles)")
    if not path.is_file():
        raise MissingWeightsError(f"the {what} {path} does not exist: pick one that does")
    return path


def base_folder(single: SingleFile) -> Path | None:
    """The folder that supplies what the file and the files beside it lack (None when they lack nothing);
    raises MissingWeightsError naming what to get."""
    from kinema import models

    lacking = _lacking(single)
    if not lacking:
        return None
    base = single.variant.base
    try:
        return models.resolve(base)
    except (MissingWeightsError, InvalidRequestError):
        beside = _beside_hint(single, lacking)
        raise MissingWeightsError(
            f"{single.path.name} ({single.describe()}): its {', '.join(lacking)} come from {base}, which is"
            f" not here: {beside}run `kinema models pull {base}` (kinema reads only those parts of it)"
        ) from None


def _beside_hint(single: SingleFile, lacking: list[str]) -> str:
    """How to supply the lacking parts from single files instead, where kinema can."""
    family = single.variant.family
    files = []
    if "text_encoder" in lacking or "tokenizer" in lacking:
        files.append(
            f"a {single_file_parts.TEXT_ENCODERS[family]} text encoder file ({single_file_parts.TEXT_ENCODER_EXAMPLES[family]})"
        )
    if "vae" in lacking and family == "wan":
        files.append("a Wan 2.2 VAE file (wan2.2_vae.safetensors)")
    if not files or set(lacking) - {"text_encoder", "tokenizer", "vae"}:
        return ""
    return f"name {' and '.join(files)} beside it, or "


def _lacking(single: SingleFile) -> list[str]:
    index = json.loads((single.variant.configs / "model_index.json").read_text())
    return [
        name
        for name, entry in index.items()
        if not name.startswith("_")
        and isinstance(entry, list)
        and entry[0]
        and name not in single.supplied()
        and name != "scheduler"
    ]


def status(model: str, family: str) -> tuple[bool, str]:
    """(ready, one line) for a single-file model on a ``family`` backend: never a `models pull` of the file itself."""
    try:
        single = check_family(model, family)
        base_folder(single)
    except (InvalidRequestError, MissingWeightsError) as error:
        return False, str(error)
    return True, f"{single.path.name}: {single.describe()}, ready"


def model_path(model: str, family: str) -> Path:
    """The file to load (the checkpoint, or the recipe naming it and the files beside it), once it is known to run
    on a ``family`` backend with everything it needs here (else raises)."""
    single = check_family(model, family)
    base_folder(single)
    if single.text_encoder is not None or single.vae is not None:
        return Path(model).expanduser().resolve()
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


def _weights(path: Path, keep: Callable[[str], bool], dtype: Any) -> dict[str, Any]:
    return fp8.load(path, keep, dtype)


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
    state = _weights(path, keep, dtype)
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
        state = _weights(path, lambda n: n.startswith(tuple(CONNECTOR_PREFIXES)), dtype)
        parts["connectors"] = _module(
            LTX2TextConnectors, configs, "connectors", _renamed(state, CONNECTOR_PREFIXES, CONNECTOR_SEGMENTS), dtype
        )
    if "vocoder" in single.components:
        state = _weights(path, lambda n: n.startswith("vocoder."), dtype)
        parts["vocoder"] = _module(
            LTX2Vocoder, configs, "vocoder", _renamed(state, VOCODER_PREFIXES, VOCODER_SEGMENTS), dtype
        )
    return parts


def _wan_parts(single: SingleFile, dtype: Any) -> dict[str, Any]:
    from diffusers import WanTransformer3DModel

    parts = {
        "transformer": _converted(
            WanTransformer3DModel,
            single.path,
            single.variant.configs,
            "transformer",
            lambda name: not name.startswith(("vae.", "text_encoders.", "conditioner.")),
            dtype,
        )
    }
    if single.vae is not None:
        parts["vae"] = single_file_parts.load_wan_vae(single.vae, single.variant.configs, dtype)
    return parts


def _text_parts(single: SingleFile, dtype: Any) -> dict[str, Any]:
    """The text encoder (and the tokenizer it carries) from the file beside the checkpoint, if one is named."""
    if single.text_encoder is None:
        return {}
    encoder, tokenizer = single_file_parts.load_text_encoder(
        single.text_encoder, single.variant.family, single.variant.configs, dtype
    )
    return {"text_encoder": encoder, **({"tokenizer": tokenizer} if tokenizer is not None else {})}


def load_pipeline(pipeline_cls: Any, model: str | Path, dtype: Any) -> Any:
    """``pipeline_cls`` with the single file's weights and the files beside it; the rest from the variant's configs
    and, for what they all lack, its base folder."""
    import diffusers

    single = inspect(model)
    family = "ltx2" if "LTX2" in pipeline_cls.__name__ else "wan"
    if single.variant.family != family:
        check_family(str(model), family)
    base = base_folder(single)
    parts = _ltx2_parts(single, dtype) if family == "ltx2" else _wan_parts(single, dtype)
    parts.update(_text_parts(single, dtype))
    scheduler_config = json.loads((single.variant.configs / "scheduler" / "scheduler_config.json").read_text())
    scheduler_cls = getattr(diffusers, scheduler_config["_class_name"])
    parts["scheduler"] = scheduler_cls.from_config(scheduler_config)
    # The base folder supplies only what the files lack: passed components are never read from it. With nothing
    # lacking, the variant's configs stand in for it (model_index.json's settings, e.g. Wan's expand_timesteps).
    folder = base if base is not None else single.variant.configs
    return pipeline_cls.from_pretrained(folder, **parts, dtype=dtype, use_safetensors=True, local_files_only=True)


@functools.lru_cache(maxsize=256)
def _part_family_of(path: Path, stamp: tuple[float, int], part: str) -> str | None:
    try:
        shapes = tensor_shapes(path)
    except InvalidRequestError:
        return None
    if part == "text_encoder":
        return single_file_parts.text_encoder_family(shapes)
    return single_file_parts.vae_family(shapes)


def part_family_of(path: str | Path, part: str) -> str | None:
    """The family ("ltx2", "wan") whose ``part`` ("text_encoder" or "vae") a .safetensors file holds, else None
    (header only, cached): what a host lists beside single files."""
    stamped = _stamped(path)
    return None if stamped is None else _part_family_of(*stamped, part)


@functools.lru_cache(maxsize=256)
def _family_of(path: Path, stamp: tuple[float, int]) -> str | None:
    try:
        return _family(tensor_shapes(path))
    except InvalidRequestError:
        return None


def family_of(path: str | Path) -> str | None:
    """ "ltx2" or "wan" for a .safetensors file holding such a transformer, else None (header only, cached)."""
    stamped = _stamped(path)
    return None if stamped is None else _family_of(*stamped)


def _stamped(path: str | Path) -> tuple[Path, tuple[float, int]] | None:
    """A .safetensors path with its (mtime, size), the header caches' key (a rewritten file is read again)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return path, (stat.st_mtime, stat.st_size)
