"""The licences of the model families kinema knows, shown before a download and wherever a model is listed.

Each entry is what the family's model cards say (checked against ``shared/notes/models.md``); a checkpoint may
carry its own terms, so the model card stays the authority and every line points at it. A *restricted* licence
limits commercial use (a revenue threshold, non-commercial only, a required credit): ``kinema models pull``
shows it and downloads only with ``--accept-license``, before any network call. A pulled model's folder keeps
what was shown and accepted in ``kinema_licence.json``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kinema.errors import LicenceNotAcceptedError

RECORD_FILE = "kinema_licence.json"


@dataclass(frozen=True)
class Licence:
    family: str  # the model family, as a user would name it
    name: str  # the licence's own name, SPDX where there is one
    restricted: bool  # limits commercial use: shown, and accepted with --accept-license before a download
    terms: str  # what it allows and forbids, in one line
    patterns: tuple[str, ...] = ()  # regular expressions a hub id of this family matches (case-insensitive)

    def line(self, model: str = "") -> str:
        """One line: the licence, whether it restricts use, its terms and where to read them."""
        card = model and "/" in model and not model.startswith("kinema/") and not Path(model).is_dir()
        where = f"; read {card_url(model)}" if card else ""  # kinema's embedded models have no card
        kind = "restricted" if self.restricted else "permissive"
        return f"{self.name} ({self.family}, {kind}): {self.terms}{where}"


# The table. Order matters only where patterns could overlap: the first match wins.
KNOWN: tuple[Licence, ...] = (
    Licence(
        "LTX-2.x",
        "LTX-2 Community License",
        True,
        "free, commercial use included, for organisations under $10M annual revenue; above that, and for"
        " commercial distillation, a paid licence from Lightricks; its Gemma 3 text encoder is under Google's"
        " Gemma Terms of Use",
        (r"(^|/)ltx-?2",),
    ),
    Licence(
        "MiniMax H3",
        "MiniMax H3 model licence",
        True,
        "free for organisations under $20M annual revenue, with credit to MiniMax required on what is published;"
        " above that, a commercial licence from MiniMax",
        (r"minimax[^/]*/[^/]*h3", r"(^|/)minimax-?h3"),
    ),
    Licence(
        "Stable Audio",
        "Stability AI Community License",
        True,
        "commercial use only for organisations under $1M annual revenue; above that, an enterprise licence"
        " from Stability AI",
        (r"^stabilityai/stable-audio",),
    ),
    Licence(
        "Wan", "Apache-2.0", False, "any use, commercial included, keeping the licence and notices", (r"^wan-ai/",)
    ),
    # Text to speech (voice lines, kinema.media.tts: Dia); the other candidates' terms too.
    Licence("Dia (text to speech)", "Apache-2.0", False, "any use, commercial included", (r"^nari-labs/dia",)),
    Licence("CSM (text to speech)", "Apache-2.0", False, "any use, commercial included", (r"^sesame/csm",)),
    # Dia's audio codec, which voice lines load beside it (kinema.media.tts).
    Licence("DAC audio codec", "MIT", False, "any use", (r"^descript/dac",)),
    Licence("F5-TTS (text to speech)", "CC-BY-NC-4.0", True, "non-commercial use only, with credit", (r"f5-?tts",)),
    Licence(
        "XTTS-v2 (text to speech)",
        "Coqui Public Model License",
        True,
        "non-commercial use only",
        (r"^coqui/xtts",),
    ),
    Licence("MMAudio", "CC-BY-NC-4.0", True, "non-commercial use only, with credit", (r"mmaudio",)),
    # Cameo face models (kinema.cameo.face).
    Licence("YuNet face detector", "MIT", False, "any use", (r"^opencv/face_detection_yunet$",)),
    Licence("SFace face embedder", "Apache-2.0", False, "any use", (r"^opencv/face_recognition_sface$",)),
    Licence("kinema demo", "Apache-2.0", False, "kinema's own embedded models, under kinema's licence", (r"^kinema/",)),
)


def card_url(model: str) -> str:
    return f"https://huggingface.co/{model}"


def pull_command(model: str) -> str:
    """The command that downloads ``model``, accepting its licence where that is needed."""
    licence = licence_for(model)
    return f"kinema models pull {model}" + (" --accept-license" if licence is not None and licence.restricted else "")


def licence_for(model: str) -> Licence | None:
    """The known licence of hub id (or folder name) ``model``, or None when kinema does not know its family."""
    name = Path(model).name.replace("--", "/", 1) if Path(model).is_dir() else model
    for licence in KNOWN:
        if any(re.search(pattern, name, re.IGNORECASE) for pattern in licence.patterns):
            return licence
    return None


def describe(model: str) -> str:
    """One line about ``model``'s licence, for a download, a list or ``kinema doctor``."""
    licence = licence_for(model)
    if licence is None:
        return f"licence not known to kinema: read {card_url(model)} before using it"
    return licence.line(model)


def require_accepted(model: str, accepted: bool) -> Licence | None:
    """Raise ``LicenceNotAcceptedError`` if ``model``'s licence is restricted and was not accepted.

    Only reads the table: it runs before anything touches the network.
    """
    licence = licence_for(model)
    if licence is not None and licence.restricted and not accepted:
        raise LicenceNotAcceptedError(
            f"{model} is under the {licence.name}, which restricts its use; read {card_url(model)}, then pull"
            " again with --accept-license to accept it"
        )
    return licence


def record(folder: Path, model: str, accepted: bool) -> None:
    """Keep in ``folder`` which licence ``model`` was pulled under, and whether it was accepted."""
    licence = licence_for(model)
    shown = {k: v for k, v in asdict(licence).items() if k != "patterns"} if licence is not None else None
    entry = {"model": model, "accepted": accepted, "at": int(time.time()), "licence": shown}
    (Path(folder) / RECORD_FILE).write_text(json.dumps(entry, indent=2))


def _recorded(folder: Path) -> dict | None:
    """What ``record`` kept in ``folder``, or None (never pulled by kinema, or unreadable)."""
    try:
        entry = json.loads((Path(folder) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def _recorded_licence(entry: dict | None) -> Licence | None:
    known = entry.get("licence") if entry else None
    if not isinstance(known, dict):
        return None
    try:
        return Licence(**{k: known[k] for k in ("family", "name", "restricted", "terms")})
    except (KeyError, TypeError):
        return None


def installed(folder: Path, model: str) -> str:
    """One line about the licence of the model pulled into ``folder``: as recorded at its pull, else the table's."""
    entry = _recorded(folder)
    licence = _recorded_licence(entry)
    if entry is None or licence is None:
        return describe(model)
    line = licence.line(model)
    return f"{line} (accepted)" if entry.get("accepted") and licence.restricted else line


def listing(model: str, folder: Path | None = None) -> dict:
    """``model``'s licence as the server lists it (``GET /v1/models``, each row's ``licence``).

    ``known``: kinema's table (or the record of its pull) knows it; ``name``, ``family``, ``restricted`` and
    ``terms`` are then the table's, else None (``restricted`` None: read the card). ``must_accept``: a pull
    must accept it (``accept_license``). ``url``: the model card, the authority (None for kinema's embedded
    models). ``summary``: the one line ``kinema models list`` prints. ``accepted``: for a model pulled into
    ``folder``, whether its licence was accepted then; None when not pulled.
    """
    entry = _recorded(folder) if folder is not None else None
    licence = _recorded_licence(entry) or licence_for(model)
    hub = "/" in model and not model.startswith("kinema/") and not Path(model).is_dir()
    return {
        "known": licence is not None,
        "name": licence.name if licence else None,
        "family": licence.family if licence else None,
        "restricted": licence.restricted if licence else None,
        "terms": licence.terms if licence else None,
        "must_accept": bool(licence and licence.restricted),
        "url": card_url(model) if hub else None,
        "summary": installed(folder, model) if folder is not None else describe(model),
        "accepted": bool(entry.get("accepted")) if entry is not None else None,
    }
