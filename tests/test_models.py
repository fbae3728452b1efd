"""kinema.models: a pulled model appears only when complete; an interrupted pull resumes.

The Hub is not reachable in tests, so huggingface_hub's snapshot_download is replaced by a stand-in that
writes into ``local_dir`` the way it does (and can be told to fail half way).
"""

from __future__ import annotations

import pytest

from kinema import models
from kinema.errors import MissingWeightsError

HUB_ID = "someone/tiny-pipeline"


class Hub:
    """A stand-in for huggingface_hub.snapshot_download that records what each download found already there."""

    def __init__(self):
        self.calls: list[dict] = []
        self.fail = False  # stop half way, as a dropped connection would

    def snapshot_download(self, repo_id, *, revision=None, local_dir, allow_patterns=None):
        found = sorted(p.name for p in local_dir.iterdir()) if local_dir.is_dir() else []
        self.calls.append({"repo_id": repo_id, "found": found, "patterns": allow_patterns})
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "model_index.json").write_text("{}")
        if self.fail:
            raise OSError("connection reset")
        (local_dir / "weights.safetensors").write_bytes(b"\0" * 8)
        return str(local_dir)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setenv("KINEMA_HOME", str(tmp_path))  # its own models folder, not the run's shared tiny models

    stand_in = Hub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", stand_in.snapshot_download)
    return stand_in


def test_an_interrupted_pull_leaves_no_model_and_the_next_pull_finishes_it(hub):
    hub.fail = True
    with pytest.raises(OSError):
        models.pull(HUB_ID)
    assert not models.is_present(HUB_ID) and models.pulled() == []
    with pytest.raises(MissingWeightsError, match="did not finish downloading: run `kinema models pull"):
        models.resolve(HUB_ID)

    hub.fail = False
    folder = models.pull(HUB_ID)
    assert hub.calls[-1]["found"] == ["model_index.json"]  # resumed where it stopped
    assert models.resolve(HUB_ID) == folder and models.pulled() == [HUB_ID]
    assert sorted(p.name for p in folder.iterdir()) == [
        "kinema_licence.json",
        "model_index.json",
        "weights.safetensors",
    ]
    assert not folder.with_name(folder.name + ".partial").exists()
    assert "*.safetensors" in hub.calls[-1]["patterns"] and not any(
        "bin" in p or "pt" in p for p in hub.calls[-1]["patterns"]
    )


def test_updating_a_pulled_model_starts_from_its_files(hub):
    models.pull(HUB_ID)
    folder = models.pull(HUB_ID)
    assert hub.calls[-1]["found"] == ["kinema_licence.json", "model_index.json", "weights.safetensors"]
    assert models.is_present(HUB_ID) and folder.is_dir()
