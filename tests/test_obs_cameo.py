"""OBS's "Make a cameo" group in a real OBS Studio 29 (tests/test_obs.py's rig): the server's one-time phrase shown
with its time left, the recording sent with the challenge's id, and what the server decided, in the script's
properties and OBS's log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_obs import Probe, logged, require_obs, wait_for

cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage.data")

PROBE = Path(__file__).parent / "obs" / "kinema_probe.py"


@pytest.fixture(scope="module")
def cameo_media(tmp_path_factory):
    from test_cameos import make_media

    return make_media(tmp_path_factory.mktemp("obs-cameo-media"))


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory, shared_models) -> Path:
    """The rig's server's data directory, linked to the session's tiny models (built here if needed)."""
    target = shared_models / "kinema--tiny-ltx2"
    if not (target / "model_index.json").is_file():
        from kinema.backends.tiny_parts import build_tiny

        build_tiny("ltx2", target)
    home = tmp_path_factory.mktemp("obs-cameo-home")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    return home


@pytest.fixture(scope="module")
def rig(tmp_path_factory, tiny_home):
    require_obs()
    import obs_harness

    rig = obs_harness.Rig(tmp_path_factory.mktemp("obs-cameo-rig"), tiny_home)
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def cameo_obs(rig):
    folder = rig.workdir / "probe-cameo"
    folder.mkdir(exist_ok=True)
    instance = rig.start_obs("obs-cameo", extra_scripts=[PROBE], env={"KINEMA_PROBE_DIR": str(folder)})
    ws = rig.connect(instance)
    return instance, ws, Probe(ws, folder)


def info(probe: Probe) -> dict:
    return probe.properties("cameo_info")["cameo_info"]


def settle(instance, probe: Probe, marker: str, count: int) -> str:
    """Wait for the count-th log line with ``marker``; then the group's text as a refresh shows it."""
    wait_for(lambda: len(logged(instance, marker)) >= count, 300, f"{marker!r} in OBS's log")
    return logged(instance, marker)[count - 1]


def test_make_a_cameo_shows_the_phrase_and_sends_the_recording_with_its_challenge(cameo_obs, cameo_media, tiny_home):
    instance, ws, probe = cameo_obs
    shown = probe.properties("cameo_group", "cameo_phrase", "cameo_video", "cameo_permission", "cameo_create")
    assert shown["cameo_group"]["label"] == "Make a cameo" and shown["cameo_create"]["type"] == "button"
    assert shown["cameo_video"]["file"] and "*.mp4" in shown["cameo_video"]["filter"]
    assert [value for _, value in shown["cameo_permission"]["items"]] == ["only_me", "listed", "everyone"]
    probe.press("cameo_create")  # nothing to send yet: the group says what to do first
    assert "Get a phrase first" in info(probe)["value"]

    probe.press("cameo_phrase")
    line = settle(instance, probe, "cameo phrase to say on camera: ", 1)
    assert line.startswith("“my kinema code is ") and "(valid 5 minutes, once)" in line
    text = info(probe)["value"]
    phrase = line.split("“", 1)[1].split("”", 1)[0]
    assert f"Say this on camera: “{phrase}” (code " in text and "left) and once only" in text
    assert f"Cameo: say “{phrase}” on camera (" in probe.status()  # the status source shows the countdown too

    probe.set(cameo_name="obs-selfie", cameo_video=str(cameo_media["person"]))
    probe.press("cameo_create")
    made = settle(instance, probe, "Cameo “obs-selfie” is ", 1)
    assert made.startswith("unverified, so only you may use it: ") and "no speech-recognition model" in made
    shown = info(probe)
    assert shown["info_type"] == "warning" and "Cameo “obs-selfie” is unverified" in shown["value"]
    assert "char_obs-selfie" in [value for _, value in probe.properties("cameo")["cameo"]["items"]]  # pick it at once
    from kinema.cameo.store import CameoStore

    assert CameoStore(tiny_home / "cameos").get("obs-selfie").verification["challenge"]["phrase"] == phrase

    # A phrase that ran out on the server (issued 5 minutes ago): refused with the server's reason.
    probe.press("cameo_phrase")
    settle(instance, probe, "cameo phrase to say on camera: ", 2)
    (issued,) = [
        p for p in (tiny_home / "cameo-challenges").glob("chl_*.json") if json.loads(p.read_text())["used_at"] is None
    ]
    stored = json.loads(issued.read_text())
    stored["expires_at"] = time.time() - 1
    issued.write_text(json.dumps(stored))
    probe.set(cameo_name="obs-late")
    probe.press("cameo_create")
    refused = settle(instance, probe, "cameo refused (challenge_expired): ", 1)
    assert refused.startswith("The phrase expired before the recording arrived: challenge ")
    shown = info(probe)
    assert shown["info_type"] == "error" and "Cameo refused: The phrase expired" in shown["value"]
    assert "Get a phrase" in shown["value"]  # a new phrase is needed
    assert instance.script_errors() == []


def test_make_a_cameo_from_the_last_obs_recording_says_why_it_was_refused(cameo_obs):
    """Record with OBS itself, Use my last OBS recording, Make cameo: the scene shows no face, and the server's
    reason reaches the group and the log."""
    instance, ws, probe = cameo_obs
    probe.press("cameo_phrase")
    before = len(logged(instance, "cameo phrase to say on camera: "))
    settle(instance, probe, "cameo phrase to say on camera: ", max(1, before))
    ws.call("StartRecord")
    wait_for(lambda: ws.call("GetRecordStatus")["outputActive"], 30, "the recording to start")
    time.sleep(4)  # long enough for a capture to look for a face in it
    path = ws.call("StopRecord")["outputPath"]
    wait_for(lambda: not ws.call("GetRecordStatus")["outputActive"], 30, "the recording to stop")
    probe.press("cameo_last_recording")
    assert probe.properties("cameo_video")["cameo_video"]["value"] == path
    probe.set(cameo_name="obs-empty")
    earlier = len(logged(instance, "cameo refused (cameo_"))
    probe.press("cameo_create")
    refused = settle(instance, probe, "cameo refused (cameo_", earlier + 1)
    assert refused.startswith("no_face): No face was found in the recording: "), refused
    shown = info(probe)
    assert shown["info_type"] == "error" and "No face was found in the recording" in shown["value"]
    assert instance.script_errors() == []
