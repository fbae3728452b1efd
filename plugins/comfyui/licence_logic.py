"""Model licences where ComfyUI picks a model: Kinema Model Loader shows them and refuses a restricted one until
it is accepted. No ComfyUI import; kinema's own table (``kinema.licences``) is read in-process.

A licence that restricts use (a revenue threshold, non-commercial only, a required credit) counts as accepted when
the loader's ``accept_license`` is on, or when the model was pulled with ``kinema models pull --accept-license``
(its folder records that). The model card stays the authority: every line points at it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kinema import licences, models
from kinema.errors import InvalidRequestError, LicenceNotAcceptedError, MissingWeightsError

ACCEPT_INPUT = "accept_license"  # the loader's widget that accepts a restricted licence


def backend_models(backend: Any) -> list[str]:
    """The models ``backend`` runs: its model, and a second one where it has one (wan's sound model)."""
    named = [getattr(backend, "model_id", ""), getattr(backend, "audio_model_id", "")]
    return [model for index, model in enumerate(named) if model and model not in named[:index]]


def accepted_at_pull(model: str) -> bool:
    """Whether ``model`` was pulled with its licence accepted (``kinema.licences.record`` kept that in its folder)."""
    try:
        folder = models.resolve(model)
        entry = json.loads((Path(folder) / licences.RECORD_FILE).read_text())
    except (OSError, ValueError, MissingWeightsError, InvalidRequestError):
        return False
    return isinstance(entry, dict) and entry.get("accepted") is True


def licence_lines(backend: Any) -> list[str]:
    """One line per model ``backend`` runs: the model, its licence and terms, and where to read them."""
    return [f"{_shown(model)}: {_describe(model)}" for model in backend_models(backend)]


def check_accepted(backend: Any, accept: bool) -> list[str]:
    """``licence_lines(backend)``, once every restricted licence among them is accepted; else
    ``LicenceNotAcceptedError`` with each such licence's text and how to accept it."""
    refused = []
    for model in backend_models(backend):
        licence = licences.licence_for(model)
        if licence is not None and licence.restricted and not accept and not accepted_at_pull(model):
            refused.append(f"{_shown(model)} is under the {licence.line(_shown(model))}")
    if refused:
        raise LicenceNotAcceptedError(
            f"{'; '.join(refused)}. Read it, then turn on {ACCEPT_INPUT} on Kinema Model Loader to accept it"
            " (or pull the model with `kinema models pull MODEL --accept-license`)"
        )
    lines = licence_lines(backend)
    if accept:
        lines = [
            f"{line} (accepted here)" if _restricted(model) else line
            for model, line in zip(backend_models(backend), lines, strict=True)
        ]
    return lines


def summary(backends: dict[str, Any]) -> str:
    """The licence of each backend's own model, for the loader's description: one short clause each."""
    clauses = []
    for name in sorted({backend.name for backend in backends.values()}):
        backend = next(b for b in backends.values() if b.name == name)
        for model in backend_models(backend):
            licence = licences.licence_for(model)
            if licence is not None and licence.family != "kinema demo":
                kind = "restricted: must be accepted" if licence.restricted else "permissive"
                clauses.append(f"{name} ({model}): {licence.name}, {kind}")
    return "; ".join(clauses)


def _describe(model: str) -> str:
    if licences.licence_for(model) is None and _is_folder(model):
        return "licence not known to kinema: read the model card of the checkpoint this folder holds before using it"
    return licences.describe(_shown(model))


def _is_folder(model: str) -> bool:
    path = Path(model)
    return path.is_absolute() or path.is_dir()


def _restricted(model: str) -> bool:
    licence = licences.licence_for(model)
    return licence is not None and licence.restricted


def _shown(model: str) -> str:
    """A folder by its name (never the disk path, which a shared workflow should not carry), a hub id as it is."""
    return Path(model).name.replace("--", "/", 1) if _is_folder(model) else model
