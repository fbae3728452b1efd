import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory) -> Path:
    """One models folder for the whole run, so the tiny models are built once, not per test."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def kinema_env(tmp_path_factory, monkeypatch, shared_models):
    """Every test gets its own data dir and no third-party plugins (llm's env_setup)."""
    home = tmp_path_factory.mktemp("kinema-home")
    os.symlink(shared_models, home / "models")
    monkeypatch.setenv("KINEMA_HOME", str(home))
    monkeypatch.setenv("KINEMA_LOAD_PLUGINS", "")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    monkeypatch.delenv("KINEMA_API_KEY", raising=False)
    return home
