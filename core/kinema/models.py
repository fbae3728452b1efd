"""Model folders: resolve a hub id or path to local weights, and download them on request."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from kinema.errors import InvalidRequestError, MissingWeightsError
from kinema.home import models_dir

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Weights as safetensors only: pickled checkpoints can run code when loaded.
PARTIAL_SUFFIX = ".partial"
PULL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*", "*.tiktoken"]


def is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and ".." not in name


def local_dir_for(hub_id: str) -> Path:
    if not is_hub_id(hub_id):
        raise InvalidRequestError(f"{hub_id!r} is not a model id like 'Lightricks/LTX-2'")
    return models_dir() / hub_id.replace("/", "--")


def resolve(model: str) -> Path:
    """A local folder as given, else the pulled copy of a hub id; never downloads."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise MissingWeightsError(f"{path} has no model_index.json: point --model at a diffusers model folder")
        return path
    if is_hub_id(model):
        local = local_dir_for(model)
        if (local / "model_index.json").is_file():
            return local
        if _partial(local).is_dir():
            raise MissingWeightsError(
                f"model {model} did not finish downloading: run `kinema models pull {model}` again to finish it"
            )
        raise MissingWeightsError(f"model {model} is not downloaded: run `kinema models pull {model}` first")
    raise MissingWeightsError(f"model {model!r} is neither a folder nor a model id like 'Lightricks/LTX-2'")


def is_present(model: str) -> bool:
    try:
        resolve(model)
    except (MissingWeightsError, InvalidRequestError):
        return False
    return True


def _partial(target: Path) -> Path:
    return target.with_name(target.name + PARTIAL_SUFFIX)


def pull(hub_id: str, *, revision: str | None = None) -> Path:
    """Download a model's safetensors weights and configs into kinema's model folder (progress bars from huggingface_hub).

    The model appears under its name only once complete: it downloads into a ``.partial`` folder
    beside it, which a pull that was interrupted resumes. Updating a pulled model starts from its
    files, so only what changed is fetched.
    """
    from huggingface_hub import snapshot_download

    target = local_dir_for(hub_id)
    staging = _partial(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not staging.exists():
        os.replace(target, staging)
    snapshot_download(hub_id, revision=revision, local_dir=staging, allow_patterns=PULL_PATTERNS)
    if not (staging / "model_index.json").is_file():
        raise MissingWeightsError(f"{hub_id} has no model_index.json: it is not a diffusers pipeline kinema can run")
    if target.exists():  # an older copy beside a resumed pull: the fresh download replaces it
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def pulled() -> list[str]:
    return sorted(
        p.name.replace("--", "/", 1)
        for p in models_dir().iterdir()
        if not p.name.endswith(PARTIAL_SUFFIX) and (p / "model_index.json").is_file()
    )
