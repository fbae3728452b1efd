"""The LTX-2 and Wan single files a ComfyUI user already has, for the Kinema Model Loader's list.

ComfyUI keeps them in models/checkpoints (LTX-2's all-in-one files) and
models/diffusion_models (Wan's transformers), plus the folders
extra_model_paths.yaml adds. Only files whose header names an LTX-2 or Wan
transformer are listed (``kinema.backends.single_file.family_of``, which reads
the header alone); kinema's ltx2 and wan backends load them with the configs
kinema ships.
"""

from __future__ import annotations

from kinema.backends.single_file import SUFFIXES, family_of, is_single_file

SINGLE_FILE_FOLDERS = ("checkpoints", "diffusion_models")  # ComfyUI's model folders that hold them


def single_file_choices() -> dict[str, str]:
    """Single files by the name the loader shows (``checkpoints/ltx-2-19b-dev.safetensors``) -> their path."""
    from .logic import comfyui_folders  # logic imports this module: import at call time

    choices: dict[str, str] = {}
    for kind in SINGLE_FILE_FOLDERS:
        for folder in comfyui_folders(kind):
            if not folder.is_dir():
                continue
            for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
                if family_of(path) is not None:
                    choices.setdefault(f"{kind}/{path.relative_to(folder).as_posix()}", str(path))
    return choices


def missing_hint(model: str) -> str:
    """What to add to a loader's 'not ready' line: where model folders go, unless the model is a single file
    (whose own message already says what it lacks, and which no model folder would fix)."""
    if model and is_single_file(model):
        return ""
    return "; put diffusers model folders in ComfyUI's models/kinema"
