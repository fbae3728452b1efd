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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Toy-sized models gain nothing from threads, and on a busy CI machine OpenMP's spinning threads
    made each tiny job ~15x slower (0.5 s -> 9 s at load 14 on 2 cores).
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def app_client(kinema_env):
    """The job server in-process (httpx via TestClient), workers running, no API key."""
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
        yield client
