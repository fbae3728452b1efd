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
        where = f"; read {card_url(model)}" if model and "/" in model and not Path(model).is_dir() else ""
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
    # Text to speech (voice lines): kinema ships none yet; these are the candidates' terms.
    Licence("Dia (text to speech)", "Apache-2.0", False, "any use, commercial included", (r"^nari-labs/dia",)),
    Licence("CSM (text to speech)", "Apache-2.0", False, "any use, commercial included", (r"^sesame/csm",)),
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


def installed(folder: Path, model: str) -> str:
    """One line about the licence of the model pulled into ``folder``: as recorded at its pull, else the table's."""
    try:
        entry = json.loads((Path(folder) / RECORD_FILE).read_text())
        known = entry.get("licence")
    except (OSError, ValueError, AttributeError):
        return describe(model)
    if not isinstance(known, dict):
        return describe(model)
    try:
        line = Licence(**{k: known[k] for k in ("family", "name", "restricted", "terms")}).line(model)
    except (KeyError, TypeError):
        return describe(model)
    return f"{line} (accepted)" if entry.get("accepted") and known.get("restricted") else line
