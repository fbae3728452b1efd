"""Where kinema keeps its files: one directory, overridable with ``KINEMA_HOME``."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def kinema_home() -> Path:
    """Return (and create) kinema's data directory.

    Read at call time, so tests and several side-by-side installs can point
    ``KINEMA_HOME`` elsewhere without restarting anything.
    """
    env = os.environ.get("KINEMA_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("kinema", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    path = kinema_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
