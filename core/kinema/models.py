"""Model folders: resolve a hub id or path to local weights, and download them on request."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinema import licences
from kinema.errors import DownloadError, InvalidRequestError, MissingWeightsError
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


def pulled_transformers(hub_id: str) -> bool:
    """A transformers model (config.json, not a diffusers model_index.json) pulled into kinema's model folder."""
    return (local_dir_for(hub_id) / "config.json").is_file()


def transformers_folder(env: str, default: str, what: str, error: type[Exception] = MissingWeightsError) -> Path | None:
    """The folder of a helper model loaded through transformers (a voice, a speech recogniser): the folder or
    pulled hub id in ``env``, else the pulled ``default``, else None. A bad ``env`` raises ``error``, naming
    ``what`` the folder should hold."""
    chosen = os.environ.get(env, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
        if path.is_dir():
            return path
        if is_hub_id(chosen) and pulled_transformers(chosen):
            return local_dir_for(chosen)
        raise error(
            f"{env}={chosen!r} is neither a folder nor a pulled model; `kinema models pull {chosen}`"
            f" or point it at a {what} folder"
        )
    return local_dir_for(default) if pulled_transformers(default) else None


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
                f"model {model} did not finish downloading: run `{licences.pull_command(model)}` again to finish it"
            )
        raise MissingWeightsError(f"model {model} is not downloaded: run `{licences.pull_command(model)}` first")
    raise MissingWeightsError(f"model {model!r} is neither a folder nor a model id like 'Lightricks/LTX-2'")


SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft")


def missing_detail(model: str) -> str:
    """Why ``model`` cannot be used now, and what to do: a pull only for a hub id, never for a path."""
    path = Path(model).expanduser()
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES or path.is_file():
        return (
            f"{model} is a single-file checkpoint: kinema loads diffusers model folders (with model_index.json);"
            " point it at such a folder, or at a pulled model id like 'Lightricks/LTX-2'"
        )
    if is_hub_id(model) and not path.exists():  # a path that does not exist yet reads as resolve() says
        if _partial(local_dir_for(model)).is_dir():
            return f"{model} did not finish downloading: run `{licences.pull_command(model)}` again to finish it"
        return f"{model} not downloaded: run `{licences.pull_command(model)}`"
    try:
        resolve(model)
    except (MissingWeightsError, InvalidRequestError) as error:
        return str(error)
    return f"{model} is ready"


def is_present(model: str) -> bool:
    try:
        resolve(model)
    except (MissingWeightsError, InvalidRequestError):
        return False
    return True


def _partial(target: Path) -> Path:
    return target.with_name(target.name + PARTIAL_SUFFIX)


# What a pull reports as it goes: (done, total or None, unit), the unit "B" for bytes or "files".
PullProgress = Callable[[float, float | None, str], None]


def pull(
    hub_id: str,
    *,
    revision: str | None = None,
    accept_license: bool = False,
    progress: PullProgress | None = None,
) -> Path:
    """Download a model's safetensors weights and configs into kinema's model folder (progress bars from huggingface_hub,
    or, given ``progress``, none: the counts go to that function instead).

    A model whose licence restricts use (``kinema.licences``) is refused unless ``accept_license``, before any
    network call; the folder records the licence it was pulled under. The model appears under its name only
    once complete: it downloads into a ``.partial`` folder beside it, which a pull that was interrupted resumes.
    Updating a pulled model starts from its files, so only what changed is fetched. Raises ``DownloadError``
    (one line) when the Hub cannot be reached or refuses.
    """
    target = local_dir_for(hub_id)
    licences.require_accepted(hub_id, accept_license)
    from huggingface_hub import snapshot_download

    staging = _partial(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not staging.exists():
        os.replace(target, staging)
    try:
        bars: dict[str, Any] = {} if progress is None else {"tqdm_class": silent_bars(progress)}
        snapshot_download(hub_id, revision=revision, local_dir=staging, allow_patterns=PULL_PATTERNS, **bars)
    except Exception as error:  # noqa: BLE001 - every way a download fails becomes one line
        with contextlib.suppress(OSError):
            staging.rmdir()  # nothing came: no half-downloaded model to resume
        raise DownloadError(download_problem(hub_id, revision, error)) from error
    if not (staging / "model_index.json").is_file():
        raise MissingWeightsError(f"{hub_id} has no model_index.json: it is not a diffusers pipeline kinema can run")
    licences.record(staging, hub_id, accept_license)
    if target.exists():  # an older copy beside a resumed pull: the fresh download replaces it
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def silent_bars(report: PullProgress) -> type:
    """A tqdm class for ``snapshot_download`` that draws nothing and hands its counts to ``report``.

    huggingface_hub passes it the bars of the bytes received (2.x: several bars count the same bytes, so the
    largest is reported) and of the files fetched (the only one older versions pass); bytes win when there are any.
    """
    import threading

    from tqdm.auto import tqdm

    lock = threading.Lock()
    live: list[Any] = []

    class Bars(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface_hub's own bar class takes it; tqdm's refuses it
            kwargs.update(file=_Nowhere(), disable=False, mininterval=0.5)
            super().__init__(*args, **kwargs)
            with lock:
                live.append(self)

        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            self._report()
            return shown

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            super().refresh(*args, **kwargs)
            self._report()  # huggingface_hub grows a bar's total as each file starts, then refreshes it

        def _report(self) -> None:
            with lock:
                if not live:
                    return
                in_bytes = [bar for bar in live if bar.unit == "B"]
                chosen = max(in_bytes or live, key=lambda bar: (bar.total or 0, bar.n))
                done, total, unit = chosen.n, chosen.total, "B" if in_bytes else "files"
            report(float(done), float(total) if total else None, unit)

    return Bars


class _Nowhere:
    """A file that swallows what tqdm draws (the server has no terminal to draw on)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def download_problem(hub_id: str, revision: str | None, error: BaseException) -> str:
    """One line saying why downloading ``hub_id`` failed and what to do, for any error huggingface_hub raises."""
    from huggingface_hub import constants, errors

    again = f"run `{licences.pull_command(hub_id)}` again to resume"
    if isinstance(error, errors.GatedRepoError):
        return f"{hub_id} is gated: accept its terms on https://huggingface.co/{hub_id} and log in (`hf auth login`)"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"no model {hub_id} on the Hugging Face Hub (a private one needs `hf auth login`)"
    if isinstance(error, errors.RevisionNotFoundError):
        return f"{hub_id} has no revision {revision!r}"
    if constants.HF_HUB_OFFLINE or isinstance(error, errors.OfflineModeIsEnabled):
        return f"cannot download {hub_id}: the Hugging Face Hub is switched off here (HF_HUB_OFFLINE); unset it and {again}"
    if isinstance(error, errors.LocalEntryNotFoundError):
        return f"cannot reach the Hugging Face Hub to download {hub_id}: check the connection, then {again}"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"downloading {hub_id} failed ({type(error).__name__}: {first}); {again}"


def pulled() -> list[str]:
    return sorted(
        p.name.replace("--", "/", 1)
        for p in models_dir().iterdir()
        if not p.name.endswith(PARTIAL_SUFFIX) and (p / "model_index.json").is_file()
    )
