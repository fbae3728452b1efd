"""The LTX-2 and Wan single files a ComfyUI user already has, for the Kinema Model Loader's lists.

ComfyUI keeps them in models/checkpoints (LTX-2's all-in-one files) and
models/diffusion_models (Wan's transformers), their text encoders in
models/text_encoders (and the older models/clip) and VAEs in models/vae, plus
the folders extra_model_paths.yaml adds. Only files whose header names an
LTX-2 or Wan transformer, a UMT5 or Gemma 3 text encoder, or a Wan VAE are
listed (``kinema.backends.single_file``, which reads the header alone);
kinema's ltx2 and wan backends load them with the configs kinema ships.
"""

from __future__ import annotations

from pathlib import Path

from kinema.backends.single_file import SUFFIXES, family_of, is_single_file, part_family_of
from kinema.errors import InvalidRequestError

SINGLE_FILE_FOLDERS = ("checkpoints", "diffusion_models")  # ComfyUI's model folders that hold them
PART_FOLDERS = {"text_encoder": "text_encoders", "vae": "vae"}  # ComfyUI's folder for each part beside them
MODELS_OWN = "(the model's own)"  # the loader's text_encoder / vae default: nothing picked beside the model


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())


def single_file_choices() -> dict[str, str]:
    """Single files by the name the loader shows (``checkpoints/ltx-2-19b-dev.safetensors``) -> their path."""
    from .logic import comfyui_folders  # logic imports this module: import at call time

    choices: dict[str, str] = {}
    for kind in SINGLE_FILE_FOLDERS:
        for folder in comfyui_folders(kind):
            for path in _files(folder):
                if family_of(path) is not None:
                    choices.setdefault(f"{kind}/{path.relative_to(folder).as_posix()}", str(path))
    return choices


def part_choices(part: str, folders: list[Path] | None = None) -> dict[str, str]:
    """Text encoder or VAE files (``part``) by the name the loader shows (as ComfyUI's own loaders show them,
    relative to their folder) -> their path; ``folders`` defaults to ComfyUI's folders for the part."""
    if folders is None:
        from .logic import comfyui_folders

        folders = comfyui_folders(PART_FOLDERS[part])
    choices: dict[str, str] = {}
    for folder in folders:
        for path in _files(folder):
            if part_family_of(path, part) is not None:
                choices.setdefault(path.relative_to(folder).as_posix(), str(path))
    return choices


def with_parts(model: str, text_encoder: str = MODELS_OWN, vae: str = MODELS_OWN) -> tuple[str, str]:
    """(the model to run, its label): ``model`` with the text encoder and VAE files picked beside it, if any.

    The picks are names from ``part_choices``; they apply to a single-file checkpoint only (a model folder has its
    own text encoder and VAE).
    """
    from kinema.backends import single_file

    picked = {
        part: name for part, name in (("text_encoder", text_encoder), ("vae", vae)) if name and name != MODELS_OWN
    }
    if not picked:
        return model, model
    if not model or not is_single_file(model):
        raise InvalidRequestError(
            f"{' and '.join(picked)} pick files for a single-file checkpoint (ComfyUI's models/checkpoints or"
            f" models/diffusion_models); {model or 'the backend default'} is a model folder with its own: set"
            f" {' and '.join(picked)} to {MODELS_OWN!r}"
        )
    paths = {}
    for part, name in picked.items():
        choices = part_choices(part)
        if name not in choices:
            raise InvalidRequestError(
                f"{part} {name!r} is not in ComfyUI's models/{PART_FOLDERS[part]} (or is not a text encoder or VAE"
                " kinema knows): press R in ComfyUI to refresh the list"
            )
        paths[part] = choices[name]
    label = " + ".join(Path(p).name for p in (model, *paths.values()))
    return single_file.with_parts(model, **paths), label


def missing_hint(model: str, detail: str = "") -> str:
    """What to add to a loader's 'not ready' line: where model folders go, or, for a single file that lacks a
    text encoder or VAE kinema can take from a file, where ComfyUI keeps those and which inputs pick them."""
    if model and is_single_file(model):
        if "beside it" not in detail:  # the file's own message says what is wrong; no model folder would fix it
            return ""
        return (
            "; in ComfyUI, put them in models/text_encoders and models/vae and pick them in this node's"
            " text_encoder and vae"
        )
    return "; put diffusers model folders in ComfyUI's models/kinema"
