"""Licences shown (issue 22): the table of known families, `kinema models pull` showing a licence and refusing a
restricted one without --accept-license before any network call, and `models list` / `doctor` showing each
installed model's licence. Offline pulls fail in one line (issue 16).

No test reaches the network: the Hub is switched off (HF_HUB_OFFLINE=1), sockets refuse to connect, and where a
download must succeed huggingface_hub's snapshot_download is a stand-in that writes the folder as it would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kinema import licences, models
from kinema.cli import cli
from kinema.errors import LicenceNotAcceptedError


@pytest.fixture
def own_models(monkeypatch, tmp_path):
    """A models folder of this test's own (the run shares one for the tiny models, where LTX-2 must stay absent)."""
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path))
    return tmp_path / "models"


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection or look up a host is recorded and refused."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


@pytest.fixture
def hub(monkeypatch):
    """huggingface_hub.snapshot_download as a stand-in that records its calls and writes a pipeline folder."""
    import huggingface_hub

    calls: list[str] = []

    def snapshot_download(repo_id, *, revision=None, local_dir, allow_patterns=None):
        calls.append(repo_id)
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "model_index.json").write_text("{}")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


@pytest.mark.parametrize(
    "model, family, restricted, words",
    [
        ("Lightricks/LTX-2", "LTX-2.x", True, ["LTX-2 Community License", "$10M", "distillation"]),
        ("Lightricks/LTX-2.3", "LTX-2.x", True, ["$10M"]),
        ("diffusers/LTX-2.3-Distilled-Diffusers", "LTX-2.x", True, ["$10M"]),
        ("MiniMaxAI/MiniMax-H3", "MiniMax H3", True, ["$20M", "credit"]),
        ("stabilityai/stable-audio-open-1.0", "Stable Audio", True, ["Stability AI Community License", "$1M"]),
        ("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "Wan", False, ["Apache-2.0"]),
        ("nari-labs/Dia-1.6B", "Dia (text to speech)", False, ["Apache-2.0"]),
        ("SWivid/F5-TTS", "F5-TTS (text to speech)", True, ["CC-BY-NC-4.0", "non-commercial"]),
        ("opencv/face_recognition_sface", "SFace face embedder", False, ["Apache-2.0"]),
    ],
)
def test_known_families_have_their_licence(model, family, restricted, words):
    licence = licences.licence_for(model)
    assert licence is not None and licence.family == family and licence.restricted is restricted
    line = licences.describe(model)
    assert all(w in line for w in words) and f"https://huggingface.co/{model}" in line, line
    assert ("restricted" in line) is restricted


def test_an_unknown_model_is_not_refused_but_points_at_its_card():
    assert licences.licence_for("someone/tiny-pipeline") is None
    assert licences.require_accepted("someone/tiny-pipeline", False) is None
    assert "read https://huggingface.co/someone/tiny-pipeline" in licences.describe("someone/tiny-pipeline")


def test_a_restricted_pull_is_refused_before_any_network_call(own_models, no_network, hub):
    result = CliRunner().invoke(cli, ["models", "pull", "Lightricks/LTX-2"])
    assert result.exit_code == 1
    assert "LTX-2 Community License (LTX-2.x, restricted)" in result.output and "$10M" in result.output
    assert "--accept-license" in result.output.splitlines()[-1]
    assert hub == [] and no_network == []  # neither a download nor a connection was attempted
    assert not models.is_present("Lightricks/LTX-2") and not (own_models / "Lightricks--LTX-2.partial").exists()
    with pytest.raises(LicenceNotAcceptedError):  # the library refuses too, not only the CLI
        models.pull("stabilityai/stable-audio-open-1.0")
    assert hub == [] and no_network == []


def test_an_accepted_licence_is_kept_and_shown_in_models_list_and_doctor(own_models, hub):
    result = CliRunner().invoke(cli, ["models", "pull", "Lightricks/LTX-2", "--accept-license"])
    assert result.exit_code == 0, result.output
    assert hub == ["Lightricks/LTX-2"]
    CliRunner().invoke(cli, ["models", "pull", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"])  # permissive: no flag needed
    assert hub == ["Lightricks/LTX-2", "Wan-AI/Wan2.2-TI2V-5B-Diffusers"]
    record = models.local_dir_for("Lightricks/LTX-2") / licences.RECORD_FILE
    assert '"accepted": true' in record.read_text()

    listed = CliRunner().invoke(cli, ["models", "list"]).output
    assert "Lightricks/LTX-2\n  licence: LTX-2 Community License" in listed and "(accepted)" in listed
    assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers\n  licence: Apache-2.0 (Wan, permissive)" in listed
    shown = CliRunner().invoke(cli, ["doctor"]).output
    assert "licence Lightricks/LTX-2: LTX-2 Community License" in shown
    assert "licence Wan-AI/Wan2.2-TI2V-5B-Diffusers: Apache-2.0" in shown


@pytest.mark.parametrize("accept", [True, False])
def test_an_offline_pull_says_why_in_one_line(tmp_path, accept):
    """The real command, the Hub switched off: the licence, then one line of error (it was 115 with 3 tracebacks)."""
    env = {**os.environ, "KINEMA_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "kinema.cli", "models", "pull", "Lightricks/LTX-2"]
    done = subprocess.run(
        [*command, *(["--accept-license"] if accept else [])], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("licence: LTX-2 Community License"), done.stderr
    if accept:
        assert lines[1].startswith("Error: cannot download Lightricks/LTX-2: the Hugging Face Hub is switched off")
    else:
        assert lines[1].startswith("Error: Lightricks/LTX-2 is under the LTX-2 Community License")
    assert not (tmp_path / "models" / "Lightricks--LTX-2.partial").exists()
