"""The Blender extension against the real bpy 5.0.1 and a real ``kinema serve`` on loopback.

A user's Blender has its own Python, so bpy lives in its own venv (Python 3.11,
numpy<2; `bash tests/setup.sh` makes it): KINEMA_BLENDER_PYTHON names its
interpreter, default ``.venv-blender/bin/python`` in the repository. These tests
run in kinema's venv; each scenario runs in a fresh bpy process
(tests/blender/scenario.py) with the extension that ``kinema install blender``
built, validated and installed into a private Blender user folder. Headless
Blender fires no timers, so the scenarios call the add-on's tick by hand.
Without the Blender venv these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from processes import alive, wait_until_gone

REPO = Path(__file__).resolve().parent.parent
ADDON = REPO / "plugins" / "blender"
SCENARIO = Path(__file__).resolve().parent / "blender" / "scenario.py"
SCENARIO_TIMEOUT = 600  # tiny clips take seconds; this only bounds a hung run on a crowded machine


def blender_python() -> str:
    path = os.environ.get("KINEMA_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")
    if not os.path.isfile(path):
        message = (
            f"the Blender tests need bpy 5.0.1 in its own venv at {path} (run `bash tests/setup.sh`, or set"
            " KINEMA_BLENDER_PYTHON)"
        )
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _load(name: str):
    """A bpy-free module of the add-on, imported by path (the package itself needs bpy)."""
    spec = importlib.util.spec_from_file_location(f"kinema_addon_{name}", ADDON / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- without Blender


def test_clip_names_never_overwrite(tmp_path):
    clipfiles = _load("clipfiles")
    assert clipfiles.stem_from_prompt("A red fox, running!  Über snow", 7) == "a-red-fox-running-uber-snow-7"
    assert clipfiles.stem_from_prompt("???") == "clip"
    paths = []
    for content in (b"first", b"second", b"third"):
        staged = tmp_path / ".staged"
        staged.write_bytes(content)
        paths.append(clipfiles.claim(str(staged), str(tmp_path), "fox-7"))
        assert not staged.exists()
    assert [Path(p).name for p in paths] == ["fox-7.mp4", "fox-7-2.mp4", "fox-7-3.mp4"]
    assert [Path(p).read_bytes() for p in paths] == [b"first", b"second", b"third"]


def test_the_addon_ships_kinemas_one_client():
    """plugins/blender/kinema_client.py is core/kinema/client.py byte for byte (so Blender's own `extension build`
    packs it), and no other module of the add-on has a client of its own."""
    import kinema.client

    copy = ADDON / "kinema_client.py"
    assert copy.read_bytes() == Path(kinema.client.__file__).read_bytes(), (
        "the add-on's client differs from kinema's: cp core/kinema/client.py plugins/blender/kinema_client.py"
    )
    for path in set(ADDON.glob("*.py")) - {copy}:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        assert "Client" not in classes, path


def test_install_without_blender_builds_a_checked_zip_and_prints_the_command(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kinema.cli import cli
    from kinema.hosts import blender as hosts_blender

    monkeypatch.setattr(hosts_blender, "find_blender", lambda: None)
    result = CliRunner().invoke(cli, ["install", "blender", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    archive = tmp_path / "kinema-0.1.0.zip"
    assert "blender --command extension install-file --repo user_default --enable" in result.output
    assert str(archive) in result.output
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
        defaults = json.loads(opened.read("kinema_defaults.json"))
    assert {"__init__.py", "blender_manifest.toml", "kinema_client.py", "runner.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "python" not in defaults  # found on the computer it is installed on, or recorded in that Blender
    assert_no_local_paths(archive)
    from kinema.styles import list_styles

    assert defaults["styles"] == sorted(list_styles())  # the panel's style suggestions
    from kinema.tiers import TIERS

    assert list(defaults["tiers"]) == list(TIERS)  # the panel's tier menu, with each tier's description
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def assert_no_local_paths(archive: Path) -> None:
    """Nothing in the zip names this machine: the interpreter, the repository, the home folder."""
    local = {sys.executable, os.path.realpath(sys.executable), str(REPO), os.path.expanduser("~")} - {"/", "~"}
    with zipfile.ZipFile(archive) as opened:
        for name in opened.namelist():
            text = opened.read(name).decode("utf-8", "replace")
            assert not [path for path in local if path in text], (name, local)


def _load_runner():
    """runner.py with the client beside it, in a package as the add-on is (without its bpy-only __init__)."""
    import types

    package = types.ModuleType("kinema_addon_pkg")
    package.__path__ = [str(ADDON)]
    sys.modules["kinema_addon_pkg"] = package
    return importlib.import_module("kinema_addon_pkg.runner")


def test_the_python_of_the_kinema_command_is_found(tmp_path):
    runner = _load_runner()
    bin_dir = tmp_path / "venv with space" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text("")
    script = bin_dir / "kinema"
    script.write_text(f"#!{python}\nimport sys\n")
    script.chmod(0o755)
    assert runner.find_kinema_python({"PATH": str(bin_dir)}) == str(python)
    pip_sh_form = (
        "#!/bin/sh\n'''exec' \"" + str(python) + '" "$0" "$@"\n\' \'\'\'\n'
    )  # pip's form for paths with spaces
    script.write_text(pip_sh_form)
    assert runner.find_kinema_python({"PATH": str(bin_dir)}) == str(python)
    assert runner.find_kinema_python({"PATH": str(bin_dir), "KINEMA_PYTHON": "/opt/k/python"}) == "/opt/k/python"
    assert runner.find_kinema_python({"PATH": str(tmp_path)}) == ""


def test_a_server_start_failure_says_why():
    runner = _load_runner()
    busy = (
        "kinema serve exited with code 1:\nsome warning\nError: another kinema server (pid 12) is using /h/jobs;"
        " stop it, or give this one its own KINEMA_HOME\n"
    )
    assert runner.start_failure_reason(busy) == (
        "another kinema server (pid 12) is using /h/jobs; stop it, or give this one its own KINEMA_HOME"
        " (kinema serve exited with code 1)"
    )
    crashed = (
        "kinema serve exited with code 1:\nTraceback (most recent call last):\n  File x\n"
        "ModuleNotFoundError: No module named 'kinema'\n"
    )
    assert runner.start_failure_reason(crashed) == (
        "ModuleNotFoundError: No module named 'kinema' (kinema serve exited with code 1)"
    )
    assert runner.start_failure_reason("cannot run /x/python: no such file") == "cannot run /x/python: no such file"


# --------------------------------------------------------------------------- with bpy


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory, shared_models) -> Path:
    """A data directory for the test server, linked to the session's tiny models (built here if needed)."""
    target = shared_models / "kinema--tiny-ltx2"
    if not (target / "model_index.json").is_file():
        from kinema.backends.tiny_parts import build_tiny

        build_tiny("ltx2", target)
    home = tmp_path_factory.mktemp("blender-kinema-home")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    return home


def _server_env(home: Path) -> dict:
    env = dict(os.environ, KINEMA_HOME=str(home), KINEMA_DEVICE="cpu", KINEMA_LOAD_PLUGINS="")
    env.pop("KINEMA_API_KEY", None)
    return env


@contextlib.contextmanager
def kinema_serve(env):
    """`kinema serve` on a free loopback port with ``env``; yields its URL, and stops it with Ctrl-C after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kinema.cli", "serve", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "serving the OpenAI Videos API on " in line:
            url = line.split(" on ", 1)[1].split("/v1", 1)[0]
            break
    if url is None:
        process.kill()
        pytest.fail("kinema serve did not start:\n" + "".join(lines))
    try:
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def server(tiny_home):
    """`kinema serve` on a free loopback port; yields its URL."""
    with kinema_serve(_server_env(tiny_home)) as url:
        yield url


@pytest.fixture(scope="module")
def blender(tmp_path_factory):
    """The extension, built, validated and installed by `kinema install blender` into a private Blender user folder."""
    python = blender_python()
    root = tmp_path_factory.mktemp("blender")
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(root / "user"))
    done = subprocess.run(
        [sys.executable, "-m", "kinema.cli", "install", "blender", "--blender", python, "--output", str(root / "dist")],
        capture_output=True,
        text=True,
        env=env,
        timeout=SCENARIO_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"python": python, "env": env, "root": root, "output": done.stdout}


def scenario(blender, name: str, env: dict | None = None, **arguments) -> dict:
    done = subprocess.run(
        [blender["python"], str(SCENARIO), name, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env={**blender["env"], **(env or {})},
        timeout=SCENARIO_TIMEOUT,
    )
    results = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, f"scenario {name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    outcome = json.loads(results[-1])
    outcome["log"] = done.stdout + done.stderr
    return outcome


def test_install_validates_with_blender_and_installs(blender):
    import kinema
    import kinema.client

    assert "Validated by bpy (Blender as a Python module) 5.0.1" in blender["output"]
    assert "Installed and enabled in repository 'user_default'" in blender["output"]
    archive = blender["root"] / "dist" / f"kinema-{kinema.__version__}.zip"
    installed = blender["root"] / "user" / "extensions" / "user_default" / "kinema"
    assert (installed / "kinema_client.py").read_bytes() == Path(kinema.client.__file__).read_bytes()
    with zipfile.ZipFile(archive) as opened:
        manifest = opened.read("blender_manifest.toml").decode()
    assert f'version = "{kinema.__version__}"' in manifest

    # Blender's own validator, run again on its own, also rejects a broken manifest.
    from kinema.hosts import blender as hosts_blender

    found = hosts_blender.identify(blender["python"])
    assert found.kind == "python" and found.version[:2] == (5, 0)
    broken = blender["root"] / "broken.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "blender_manifest.toml":
                data = data.replace(
                    b'tagline = "Generate video clips with sound into the Video Sequencer"',
                    b'tagline = "Ends with a full stop."',
                )
            target.writestr(item, data)
    with pytest.raises(hosts_blender.HostInstallError, match="tagline"):
        hosts_blender.validate(found, broken)


def test_generate_adds_movie_and_sound_strips_at_the_playhead(blender, server, tmp_path):
    from kinema.media.files import probe

    outcome = scenario(blender, "generate", url=server, workdir=str(tmp_path))
    jobs = outcome["jobs"]
    assert outcome["operator"] == [["FINISHED"], ["FINISHED"]]
    assert [job["status"] for job in jobs] == ["done", "done"], jobs
    assert all({"queued", "running"} & set(states) for states in outcome["states"].values()), outcome["states"]

    # Clips beside the .blend, never overwritten: the same prompt and seed twice gives two files.
    folder = tmp_path / "kinema"
    names = sorted(p.name for p in folder.iterdir())
    stem = "a-red-fox-running-through-snow-wind-howling-7"
    assert names == [f"{stem}-2.mp4", f"{stem}.mp4"], names
    for path in folder.iterdir():
        info = probe(path)
        assert (info.width, info.height, info.fps, info.frame_count) == (32, 32, 30, 17)
        assert info.has_audio

    assert outcome["recorded_python"] == sys.executable  # `kinema install blender` told that Blender, not the zip
    strips = {strip["name"]: strip for strip in outcome["strips"]}
    assert strips["blocker"]["channel"] == 1  # busy under the playhead: the clips must go above it
    movies = sorted((s for s in outcome["strips"] if s["type"] == "MOVIE"), key=lambda s: s["channel"])
    sounds = sorted((s for s in outcome["strips"] if s["type"] == "SOUND"), key=lambda s: s["channel"])
    assert [s["channel"] for s in movies] == [2, 4] and [s["channel"] for s in sounds] == [3, 5]
    for job in jobs:  # the two jobs may reach the server, and finish, in either order
        (movie,) = [s for s in movies if s["props"]["kinema_job"] == job["server_id"]]
        (sound,) = [s for s in sounds if s["props"]["kinema_job"] == job["server_id"]]
        assert sound["channel"] == movie["channel"] + 1
        assert movie["name"].startswith("a red fox running through snow, wind howling")
        assert movie["start"] == sound["start"] == 11  # the playhead when Generate was pressed
        num_frames = job["video"]["kinema"]["num_frames"]
        assert movie["duration"] == sound["duration"] == num_frames == 17  # 30 fps clip in a 30 fps scene
        assert movie["path"] == sound["path"] == job["path"]
        assert Path(movie["path"]).parent == folder
        for strip in (movie, sound):
            props = strip["props"]
            assert props["kinema_prompt"] == "a red fox running through snow, wind howling"
            assert props["kinema_seed"] == 7
            assert props["kinema_backend"] == "tiny-ltx2"
            assert props["kinema_job"] == job["server_id"]
            assert props["kinema_first_frame"] is False
            assert props["kinema_tier"] == "standard"  # the panel's default


def test_generate_from_camera_sends_the_rendered_frame(blender, server):
    from kinema.client import Client

    outcome = scenario(blender, "camera", url=server, tier="draft")
    (job,) = outcome["jobs"]
    assert job["status"] == "done", job
    on_server = Client(server).get(job["server_id"])["kinema"]
    assert on_server["has_image"] is True and on_server["tier"] == "draft"  # the panel's Tier reached the job
    movie = next(s for s in outcome["strips"] if s["type"] == "MOVIE")
    assert movie["props"]["kinema_first_frame"] is True and movie["props"]["kinema_tier"] == "draft"
    assert movie["duration"] == job["video"]["kinema"]["num_frames"]  # 24 fps scene, 24 fps clip
    assert outcome["engine_restored"] and outcome["resolution"] == [1920, 1080]
    from kinema.tiers import DEFAULT_TIER, TIERS

    # The Tier menu is the server's once it has answered (Client.tiers()), and keeps the choice.
    assert outcome["server_tiers"] == [list(TIERS), DEFAULT_TIER]
    assert outcome["tier_menu"] == list(TIERS) and outcome["tier"] == "draft"

    assert scenario(blender, "no_camera", url=server)["poll"] is False


def test_cancel_stops_a_running_job(blender, server):
    from kinema.client import Client

    outcome = scenario(blender, "cancel", url=server, steps=400)
    job = outcome["job"]
    assert outcome["status_when_cancelled"] == "running"
    assert job["status"] == "cancelled", job
    assert outcome["strips"] == []
    on_server = Client(server).get(job["server_id"])
    assert on_server["kinema"]["status"] == "cancelled"
    assert on_server["kinema"]["step"] < 400


def test_a_stopped_server_gives_a_clear_message(blender):
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    outcome = scenario(blender, "fails", url=url)
    job = outcome["job"]
    assert outcome["operator"] == ["FINISHED"]  # the button returns at once; the failure arrives later
    assert job["status"] == "failed"
    assert job["message"] == (
        f"No kinema server at {url}: run `kinema serve`, or turn on 'Start a local server' in the add-on preferences"
    )
    assert outcome["server"]["state"] == "error"
    assert "Traceback" not in outcome["log"]


def test_a_job_the_server_cannot_run_fails_with_its_reason(blender, server):
    """LTX-2 without downloaded weights: the server's own message reaches the panel, not a traceback."""
    outcome = scenario(blender, "fails", url=server, backend="ltx2")
    job = outcome["job"]
    assert job["status"] == "failed", job
    assert "kinema models pull Lightricks/LTX-2" in job["message"], job["message"]
    assert outcome["strips"] == [] and "Traceback" not in outcome["log"]


def test_empty_prompt_is_refused(blender, server):
    outcome = scenario(blender, "empty_prompt", url=server)
    assert "Type a prompt first" in outcome["raised"] and outcome["jobs"] == 0


def test_a_clip_at_another_frame_rate_comes_with_a_warning(blender, tmp_path):
    """Jobs ask for the scene's rate; a clip at another one (24 fps in a 30 fps scene) is flagged, not hidden."""
    from fractions import Fraction

    import numpy as np

    from kinema.clip import Clip

    rng = np.random.default_rng(0)
    path = tmp_path / "clip24.mp4"
    Clip(
        rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8),
        Fraction(24),
        (rng.random((2, 48000), dtype=np.float32) - 0.5) * 0.2,
        48000,
    ).save(path)
    outcome = scenario(blender, "fps_mismatch", clip=str(path))
    assert outcome["movie"] == [1, 5, 24]  # 24 picture frames...
    assert outcome["sound"] == [2, 5, 30]  # ...but one second of sound: 30 scene frames
    assert outcome["warning"].startswith("The clip is 24 fps but the scene is 30 fps")
    assert "retime" in outcome["warning"]
    assert outcome["seed"] == str(2**32 - 1)  # too big for a Blender integer: kept as text, not lost


def test_starts_a_local_server_and_stops_it_when_disabled(blender, tmp_path_factory, shared_models):
    home = tmp_path_factory.mktemp("blender-started-home")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    outcome = scenario(blender, "start_local", env=_server_env(home), url="http://127.0.0.1:0", python=sys.executable)
    job = outcome["job"]
    assert job["status"] == "done", job
    assert outcome["url"].startswith("http://127.0.0.1:") and not outcome["url"].endswith(":0")
    assert [s["type"] for s in outcome["strips"]] == ["MOVIE", "SOUND"]
    assert outcome["pid"] is not None and outcome["exit_code_after_disable"] is not None


@pytest.mark.parametrize("stop_on_quit", [True, False], ids=["stop-on-quit", "keep-running"])
def test_a_started_server_ends_with_a_crashed_blender_unless_kept(
    blender, tmp_path_factory, shared_models, stop_on_quit
):
    """ "Stop the server when Blender quits" holds even when Blender dies without running the add-on's clean-up."""
    home = tmp_path_factory.mktemp("blender-crash-home")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    outcome = scenario(
        blender,
        "connect_then_crash",
        env=_server_env(home),
        url="http://127.0.0.1:0",
        python=sys.executable,
        stop_on_quit=stop_on_quit,
    )
    assert outcome["server"]["state"] == "connected", outcome["server"]
    pid = outcome["pid"]
    try:
        if stop_on_quit:
            wait_until_gone(pid, 60, "the server the crashed Blender started")
        else:
            time.sleep(2)  # ample time for a server that was going to stop to notice
            assert alive(pid), "the preference said to keep the server running"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)


def test_generate_from_markers_makes_one_film_at_the_first_marker(blender, server):
    from kinema.client import Client

    outcome = scenario(blender, "markers", url=server, tier="final")
    (job,) = outcome["jobs"]
    assert outcome["operator"] == ["FINISHED"] and job["status"] == "done", job
    video = Client(server).get(job["server_id"])
    assert video["kinema"]["kind"] == "storyboard" and video["kinema"]["num_frames"] == 6 + 9 + 21
    assert video["kinema"]["tier"] == "final"
    movie = next(s for s in outcome["strips"] if s["type"] == "MOVIE")
    assert movie["start"] == 5 and movie["duration"] == 36  # markers at 5, 11, 20; the scene ends at 40
    from kinema.media.files import probe

    film = json.loads(probe(movie["path"]).metadata["kinema"])
    assert film["tier"] == "final"  # every shot was made at the panel's tier
    shots = film["shots"]
    assert [s["frames"] for s in shots] == [6, 9, 21] and [s["cut"] for s in shots] == ["hard", "continue", "hard"]
    assert shots[1]["prompt"] == "it turns toward the sea" and "a misty harbour at dawn" in shots[0]["full_prompt"]


def test_the_panel_puts_a_cameo_in_the_clip(blender, server, tiny_home):
    """The server's owner's cameo, picked in the panel: listed by the picker, used in the clip (tests/test_cameos.py)."""
    import numpy as np

    from kinema import Clip
    from kinema.cameo.capture import CaptureResult
    from kinema.cameo.store import CameoStore, local_user

    portrait = np.zeros((512, 512, 3), np.uint8)
    portrait[128:384, 160:352] = 200
    captured = CaptureResult(references=[portrait], faces=[portrait[:112, :112].copy()])
    CameoStore(tiny_home / "cameos").create("astro", local_user(), captured, replace=True)
    # The picker offers the cameo's id, which names it for everyone (names are only unique per user).
    outcome = scenario(blender, "cameo", url=server, cameo="char_astro")
    (job,) = outcome["jobs"]
    assert job["status"] == "done", job
    assert "char_astro" in outcome["listed"] and "astro" not in outcome["listed"]
    assert Clip.load(job["path"]).metadata["cameos"] == ["astro"]


def test_the_panel_gives_the_cameo_a_line_in_its_voice(blender, tmp_path):
    """The panel's Says field: the line is spoken in the cameo's voice by the server's voice model (a tiny random
    Dia, tests/tiny_dia.py) and drives the clip (tests/test_voice_lines.py checks the sound sample for sample)."""
    import numpy as np
    from tiny_dia import build_tiny_dia

    from kinema import Clip
    from kinema.cameo.capture import CaptureResult
    from kinema.cameo.store import CameoStore, local_user

    portrait = np.zeros((512, 512, 3), np.uint8)
    portrait[128:384, 160:352] = 200
    voice = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 150 / 24000)).astype(np.float32)
    captured = CaptureResult(references=[portrait], faces=[portrait[:112, :112].copy()], voice=voice)
    home = tmp_path / "home"  # a server of its own: the module's server holds tiny_home's job queue
    CameoStore(home / "cameos").create("speaker", local_user(), captured)
    env = dict(_server_env(home), KINEMA_VOICE_MODEL=str(build_tiny_dia(tmp_path / "tiny-dia")))
    with kinema_serve(env) as url:
        outcome = scenario(blender, "cameo", url=url, cameo="speaker", dialogue="Welcome aboard.", seconds=0.3)
    (job,) = outcome["jobs"]
    assert job["status"] == "done", job
    line = Clip.load(job["path"]).metadata["voice_line"]
    assert line["synthetic"] is True and line["voice_of"] == "speaker" and line["text"] == "Welcome aboard."


@pytest.fixture(scope="module")
def cameo_media(tmp_path_factory):
    """A recording of a person talking, made here: scikit-image's astronaut filmed by a moving crop (tests/test_cameos.py)."""
    pytest.importorskip("cv2")
    pytest.importorskip("skimage.data")
    from test_cameos import make_media

    return make_media(tmp_path_factory.mktemp("blender-cameo-media"))


def test_make_a_cameos_words_for_each_outcome():
    """What the panel says for a verified cameo (no recogniser here can verify one end to end), an unverified one,
    and each refusal; and which refusals use the phrase up."""
    _load_runner()
    capture = importlib.import_module("kinema_addon_pkg.cameo_capture")
    level, text = capture.outcome_text({"name": "alice", "verified": True})
    assert level == "INFO" and text.startswith("Cameo 'alice' is verified: you said the phrase on camera")
    level, text = capture.outcome_text(
        {"name": "alice", "verified": False, "verification": "captured without a challenge"}
    )
    assert (
        level == "WARNING"
        and text == "Cameo 'alice' is unverified, so only you may use it: captured without a challenge"
    )
    assert capture.refusal_text("cameo_lips_mismatch", "score 0.2").startswith("The mouth in the recording does not")
    assert capture.refusal_text("something_new", "as the server says") == "as the server says"
    assert capture.uses_up_the_phrase("challenge_used") and capture.uses_up_the_phrase("cameo_no_face")
    assert not capture.uses_up_the_phrase("invalid_value")  # e.g. a bad name: refused before the phrase is looked at
    state = capture.CaptureState(state="ready", challenge="chl_x", deadline=100.0)
    assert state.time_left_text(now=100.0 - 272.4) == "4:32 left to record and make the cameo"
    assert state.phrase_live(now=99.0) and not state.phrase_live(now=100.0)
    assert state.time_left_text(now=100.5) == "Expired: get a new phrase"


def test_make_a_cameo_shows_the_phrase_and_sends_the_recording_with_its_challenge(blender, server, cameo_media):
    """Without a speech recogniser on the server the cameo is made unverified, and the panel says why; the phrase
    cannot be used twice, and one whose minutes ran out is refused in Blender before anything is sent."""
    outcome = scenario(
        blender,
        "cameo_capture",
        url=server,
        cameo="selfie",
        video=str(cameo_media["person"]),
        audio=str(cameo_media["voice"]),
    )
    assert outcome["make_before_phrase"] is False and outcome["asked"] == ["FINISHED"]
    shown = outcome["shown"]
    assert shown["state"] == "ready" and shown["challenge"].startswith("chl_") and len(shown["digits"]) == 5
    assert " ".join(shown["lines"]) == f'"{shown["phrase"]}"' and shown["phrase"].startswith("my kinema code is ")
    assert shown["time_left"].endswith(" left to record and make the cameo") and 240 < shown["seconds_left"] <= 300
    assert "Choose the recording" in outcome["no_recording"]
    result = outcome["result"]
    assert outcome["made"] == ["FINISHED"] and result["state"] == "unverified", result
    assert result["cameo"]["owner"] and result["cameo"]["verified"] is False and result["challenge_left"] == ""
    assert result["message"].startswith("Cameo 'selfie' is unverified, so only you may use it: ")
    assert "no speech-recognition model" in result["message"] and "char_selfie" in result["listed"]
    assert "Kinema: Cameo 'selfie' is unverified" in outcome["log"]  # Blender's report (printed when headless)
    reused = outcome["reused"]
    assert reused["state"] == "refused" and reused["code"] == "challenge_used"
    assert reused["message"].startswith("That phrase was already used for a capture: ")
    expired = outcome["expired"]
    assert expired["time_left"] == "Expired: get a new phrase" and expired["poll"] is False
    assert expired["refused"] and "poll" in expired["refused"]  # Make Cameo is greyed out


def test_make_a_cameo_says_why_the_server_refused_the_recording(blender, cameo_media, tmp_path_factory):
    """With a speech recogniser installed (a tiny random Whisper, which hears nonsense), the recording does not say
    the phrase's code: the panel and Blender's report give the server's reason, and a new phrase is needed."""
    pytest.importorskip("transformers")
    from tiny_whisper import build_tiny_whisper

    whisper = build_tiny_whisper(tmp_path_factory.mktemp("blender-tiny-whisper"))
    home = tmp_path_factory.mktemp("blender-verifying-home")  # its own server, beside the module's
    env = dict(_server_env(home), KINEMA_SPEECH_RECOGNIZER=str(whisper))
    with kinema_serve(env) as url:
        outcome = scenario(blender, "cameo_capture", url=url, cameo="heard", video=str(cameo_media["person"]))
    result = outcome["result"]
    assert result["state"] == "refused" and result["code"] == "cameo_wrong_code", result
    assert result["message"].startswith("The recording does not say the phrase's code: the recording does not say")
    assert result["challenge_left"] == ""  # used up: the panel asks for a new phrase
    assert "Kinema: The recording does not say the phrase's code" in outcome["log"]


@pytest.mark.parametrize("built_by", ["kinema", "blender"])
def test_the_extension_installs_in_a_fresh_profile_elsewhere_and_finds_kinema(blender, tmp_path, built_by):
    """Install from Disk into a new Blender profile on another path, for kinema's zip and for Blender's own
    `extension build` of plugins/blender: it enables, finds kinema's Python on PATH, and asks for it without."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    arguments: dict = {"url": f"http://127.0.0.1:{port}", "empty_path": str(tmp_path / "nothing")}
    if built_by == "kinema":
        arguments["zip"] = str(next((blender["root"] / "dist").glob("kinema-*.zip")))
    else:
        arguments.update(build=str(ADDON), out=str(tmp_path / "built"))
    kinema_bin = os.path.dirname(sys.executable)
    env = {
        "BLENDER_USER_RESOURCES": str(tmp_path / "another profile"),
        "PATH": kinema_bin + os.pathsep + os.environ.get("PATH", ""),
        "KINEMA_PYTHON": "",
    }
    outcome = scenario(blender, "portable", env=env, **arguments)
    assert outcome["operator"] == ["FINISHED"] and outcome["enabled"], outcome["log"][-3000:]
    assert {"kinema_client.py", "runner.py", "blender_manifest.toml"} <= set(outcome["installed"])
    assert_no_local_paths(Path(outcome["archive"]))
    assert outcome["python_path"] == "" and outcome["start_server"]  # nothing recorded: found at first use
    assert os.path.samefile(outcome["found"], sys.executable), outcome["found"]
    job, server = outcome["job"], outcome["server"]
    assert job["status"] == "failed" and server["ask_python"], (job, server)
    assert "choose 'Python with kinema'" in job["message"] and "Traceback" not in outcome["log"]


def test_a_server_that_cannot_start_says_why_in_the_panel(blender, server, tiny_home):
    """A second server on the data directory the test server holds: the reason, not 'see the console'."""
    outcome = scenario(
        blender, "start_fails", env=_server_env(tiny_home), url="http://127.0.0.1:0", python=sys.executable
    )
    state = outcome["server"]
    assert state["state"] == "error" and not state["ask_python"], state
    assert state["message"].startswith("Could not start the kinema server: another kinema server (pid ")
    assert "give this one its own KINEMA_HOME" in state["message"] and "console" not in state["message"]


def test_new_clips_from_a_selected_strip_record_their_parent(blender, server, tmp_path):
    from kinema.client import Client

    outcome = scenario(blender, "strips", url=server, workdir=str(tmp_path))
    assert set(map(tuple, outcome["operator"].values())) == {("FINISHED",)}, outcome["operator"]
    jobs = outcome["jobs"]
    assert [job["status"] for job in jobs] == ["done"] * 6, jobs
    source = jobs[0]
    movies = {s["props"]["kinema_job"]: s for s in outcome["strips"] if s["type"] == "MOVIE"}
    origin = movies[source["server_id"]]
    by_action: dict = {}
    for job in jobs[1:]:
        strip = movies[job["server_id"]]
        assert strip["props"]["kinema_parent"] == source["server_id"]
        assert strip["props"]["kinema_parent_strip"] == origin["name"]
        assert strip["props"]["kinema_action"] == job["action"]
        by_action.setdefault(job["action"], []).append((job, strip))
    assert sorted(by_action) == ["extend", "frame", "regenerate", "remix"]
    seeds = {job["seed"] for job, _ in by_action["regenerate"]}
    assert len(seeds) == 2 and 7 not in seeds  # two variations, each with a new seed
    for _job, strip in by_action["regenerate"] + by_action["extend"] + by_action["remix"]:
        assert strip["start"] == origin["start"] and strip["channel"] > origin["channel"]  # stacked above
    (extend_job, extended), (remix_job, remixed), (frame_job, framed) = (
        by_action["extend"][0],
        by_action["remix"][0],
        by_action["frame"][0],
    )
    assert extended["duration"] > origin["duration"]
    assert remixed["props"]["kinema_prompt"] == "a blue fox in the rain"
    assert framed["start"] == outcome["playhead"] and framed["props"]["kinema_first_frame"] is True
    client = Client(server)
    assert client.get(frame_job["server_id"])["kinema"]["has_image"] is True
    assert client.get(extend_job["server_id"])["kinema"]["kind"] == "extend"
    assert client.get(remix_job["server_id"])["kinema"]["kind"] == "remix"


def test_step_previews_and_clips_of_an_unsaved_file_move_beside_it_when_saved(blender, server, tmp_path):
    temp, work = tmp_path / "temp", tmp_path / "project"
    temp.mkdir()
    work.mkdir()
    outcome = scenario(blender, "unsaved", url=server, workdir=str(work), temp=str(temp), steps=6)
    job = outcome["job"]
    assert job["status"] == "done", job
    assert outcome["previews"] and all(magic == "ffd8ff" for _, magic in outcome["previews"])  # JPEGs
    assert max(count for count, _ in outcome["previews"]) >= 2  # a new one for each step while it ran
    assert outcome["before"].startswith(str(temp / "kinema-unsaved"))
    name = Path(outcome["before"]).name
    assert outcome["after"] == outcome["sound_after"] == f"//kinema/{name}"  # relative to the saved .blend
    assert outcome["exists"] and (work / "kinema" / name).is_file()
    assert outcome["left_in_temp"] == []


def test_the_preferences_list_models_with_licences_and_download_only_when_online_and_accepted(
    blender, tmp_path_factory, shared_models
):
    """Against a server that cannot reach the Hub (HF_HUB_OFFLINE): the list shows LTX-2's licence and that it is not
    downloaded; Download is refused while Blender's online access is off and until the licence is accepted; then the
    server's pull is followed to its end, and why it failed reaches the preferences."""
    home = tmp_path_factory.mktemp("blender-models-home")
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    env = dict(_server_env(home), HF_HUB_OFFLINE="1")
    with kinema_serve(env) as url:
        outcome = scenario(blender, "models", url=url, model="Lightricks/LTX-2")
    rows = {row["id"]: row for row in outcome["catalogue"]}
    ltx = rows["Lightricks/LTX-2"]
    assert ltx["installed"] is False and ltx["licence"]["must_accept"] is True
    assert outcome["licence_lines"][0].startswith("RESTRICTS USE: LTX-2 Community License")
    assert (
        "stabilityai/stable-audio-open-1.0" in rows and "stabilityai/stable-audio-open-1.0" not in outcome["suggested"]
    )
    assert "online access" in outcome["refused"]["offline"]
    assert "tick 'I accept its licence'" in outcome["refused"]["not_accepted"]
    assert outcome["started"] == ["FINISHED"]
    pull = outcome["pull"]
    assert pull["status"] == "failed" and "HF_HUB_OFFLINE" in pull["error"]["message"], pull
    assert pull["licence"]["accepted"] is None  # nothing was pulled, so nothing recorded
    assert outcome["pull_text"].startswith("Kinema: Lightricks/LTX-2 was not downloaded: cannot download")


def test_frame_fit_pads_or_crops_to_the_grid_without_stretching():
    import numpy as np

    frame_fit = _load("frame_fit")
    assert frame_fit.clip_size(96, 54) == (96, 64) and frame_fit.clip_size(1920, 1080) == (1920, 1088)
    assert frame_fit.clip_size(10, 10) == (32, 32)
    assert frame_fit.render_size(96, 54, (96, 64), "pad") == (96, 54)  # inside: bars above and below
    assert frame_fit.render_size(96, 54, (96, 64), "crop") == (114, 64)  # covering: the sides are cut
    picture = np.full((54, 96, 3), 200, np.uint8)
    padded = frame_fit.fit(picture, (96, 64), "pad")
    assert padded.shape == (64, 96, 3) and padded[:5].max() == 0 and padded[-5:].max() == 0
    assert (padded[5:59] == 200).all()
    wide = np.zeros((64, 114, 3), np.uint8)
    wide[:, 9:105] = 200  # what a crop keeps: the middle 96 columns
    assert (frame_fit.fit(wide, (96, 64), "crop") == 200).all()


def test_the_first_frame_renders_in_another_blender_padded_or_cropped(blender):
    outcome = scenario(blender, "fit")
    assert outcome["target"] == [96, 64]
    pad, crop = outcome["rows"]["pad"], outcome["rows"]["crop"]
    assert pad["size"] == crop["size"] == [96, 64]
    assert max(pad["row_means"][:5] + pad["row_means"][-5:]) == 0  # 5 black rows above and below the 96x54 view
    assert min(pad["row_means"][5:59]) > 0.5 and min(crop["row_means"]) > 0.5  # the white world; crop has no bars
    assert outcome["resolution"] == [1920, 1080]  # this Blender's scene was never changed for the render


def test_a_clip_off_the_grid_goes_back_to_exactly_the_render_size():
    """100x54 is on no 32-pixel grid: the clip is asked for at 96x64; what frame_fit.placement crops and scales."""
    frame_fit = _load("frame_fit")
    target, clip = (100, 54), frame_fit.clip_size(100, 54)
    assert clip == (96, 64)
    # From a frame, Pad: the 96x52 picture sits between 6-row bars; cropped off, it is scaled back to 100x54.
    crop, scale = frame_fit.placement(target, clip, "pad", from_frame=True)
    assert crop == (0, 0, 6, 6) and (96 * scale[0], 52 * scale[1]) == pytest.approx(target)
    # From a frame, Crop: the clip is the middle 96 of a 119x64 picture; scaled back, the cut edges stay empty.
    crop, scale = frame_fit.placement(target, clip, "crop", from_frame=True)
    assert crop == (0, 0, 0, 0) and 119 * scale[0] == pytest.approx(100) and 64 * scale[1] == pytest.approx(54)
    # From a prompt alone: inside the frame (Pad) or covering it, cropped to it (Crop); one scale for both sides.
    assert frame_fit.placement(target, clip, "pad", from_frame=False) == ((0, 0, 0, 0), (54 / 64, 54 / 64))
    crop, scale = frame_fit.placement(target, clip, "crop", from_frame=False)
    assert crop == (0, 0, 6, 6) and scale == (100 / 96, 100 / 96) and round(52 * scale[1]) == 54
    # On the grid already: nothing to do.
    assert frame_fit.placement((96, 64), (96, 64), "pad", from_frame=True) == ((0, 0, 0, 0), (1.0, 1.0))
    with pytest.raises(ValueError, match="pad, crop"):
        frame_fit.placement(target, clip, "stretch", from_frame=False)


def _fit_clips(folder: Path) -> list[dict]:
    """96x64 movies as a 100x54 frame becomes on the grid, each with the frame's left quarter red (the rest white):
    padded between black bars, or the middle 96 columns of the frame rendered 119 wide; and a plain white clip."""
    from fractions import Fraction

    import numpy as np

    from kinema.media.files import write_mp4

    def framed(width, height):
        picture = np.full((height, width, 3), 255, np.uint8)
        picture[:, : width // 4] = (255, 0, 0)
        return picture

    padded = np.zeros((64, 96, 3), np.uint8)
    padded[6:58] = framed(96, 52)
    cropped = framed(119, 64)[:, 11:107]
    plain = np.full((64, 96, 3), 255, np.uint8)
    cases = []
    for name, picture, mode, from_frame in (
        ("pad-frame", padded, "pad", True),
        ("crop-frame", cropped, "crop", True),
        ("pad-prompt", plain, "pad", False),
        ("crop-prompt", plain, "crop", False),
    ):
        path = write_mp4(folder / f"{name}.mp4", np.stack([picture] * 3), Fraction(12))
        cases.append({"name": name, "path": str(path), "mode": mode, "from_frame": from_frame})
    return cases


def test_clips_show_at_exactly_the_render_size_lined_up_with_their_first_frame(blender, tmp_path):
    """In Blender's own Sequencer output at 100x54: Pad's bars are gone and the red quarter is where the frame had
    it; Crop keeps the red quarter in place and leaves the cut edges black; a prompt's clip is fitted or covers."""
    outcome = scenario(blender, "fit_back", target=[100, 54], cases=_fit_clips(tmp_path))
    frames = outcome["frames"]
    for frame in frames.values():
        assert frame["size"] == [100, 54] and frame["clip"] == [96, 64]
    black, lit = 0.1, 0.8
    pad = frames["pad-frame"]
    assert min(pad["row_red"]) > lit and min(pad["column_red"]) > lit  # no bar anywhere: it fills the frame
    assert max(pad["column_green"][1:23]) < black and min(pad["column_green"][28:]) > lit  # red: columns 0-24
    crop = frames["crop-frame"]
    assert min(crop["row_red"]) > black  # every row lit: it fills the frame's height
    assert max(crop["column_red"][:8]) < black and max(crop["column_red"][92:]) < black  # the cut edges: ~9 px
    assert min(crop["column_red"][11:89]) > lit
    assert max(crop["column_green"][11:23]) < black and min(crop["column_green"][28:89]) > lit  # red: columns 0-24
    fitted = frames["pad-prompt"]
    assert max(fitted["column_red"][:7]) < black and min(fitted["column_red"][10:90]) > lit  # bars at the sides
    assert min(frames["crop-prompt"]["column_red"]) > lit and min(frames["crop-prompt"]["row_red"]) > lit


def test_generate_off_the_grid_asks_for_the_grid_and_shows_the_render_size(blender, server):
    outcome = scenario(blender, "fit_generate", url=server)
    camera, again, prompt = outcome["from_camera"], outcome["regenerated"], outcome["from_prompt"]
    assert outcome["camera"] == outcome["new_seed"] == outcome["prompt"] == ["FINISHED"]
    assert camera["job"]["status"] == "done" and camera["job"]["video"]["size"] == "96x64", camera["job"]
    assert camera["size"] == [96, 64] and camera["crop"] == [0, 0, 6, 6] and camera["offset"] == [0.0, 0.0]
    assert camera["scale"] == pytest.approx([100 / 96, 54 / 52])
    assert again["job"]["video"]["size"] == "96x64" and again["name"] != camera["name"]
    assert [again[key] for key in ("crop", "scale", "offset")] == [camera[key] for key in ("crop", "scale", "offset")]
    # A prompt alone in Crop: 100x54 snapped by the server (the add-on sends the render size), covering the frame.
    width, height = map(int, prompt["job"]["video"]["size"].split("x"))
    scale = max(100 / width, 54 / height)
    assert prompt["size"] == [width, height] and prompt["scale"] == pytest.approx([scale, scale])
    assert width * scale >= 100 and height * scale >= 54


def test_a_model_downloads_from_the_preferences_with_its_progress(blender, tmp_path):
    """Through the real huggingface_hub, from a Hub of one model on loopback (tests/fake_hub.py, HF_ENDPOINT): the
    preferences show the pull half done (the Hub holds the second half of the weights until the scenario has seen
    it), then done, and the model installed where `kinema models pull` puts it, its licence recorded as accepted."""
    from fake_hub import FakeHub

    model = "someone/tiny-pipeline"
    weights = b"\0" * 24_000_000  # past huggingface_hub's 10 MB chunk, so half of it shows as progress
    hub = FakeHub(model, {"model_index.json": b"{}", "weights.safetensors": weights}, "weights.safetensors")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(_server_env(home), HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1")
    try:
        with kinema_serve(env) as url:
            outcome = scenario(blender, "pull", url=url, hub=hub.url, model=model)
    finally:
        hub.stop()
    half, final, row = outcome["half"], outcome["final"], outcome["row"]
    assert outcome["operator"] == ["FINISHED"]
    assert half["status"] == "downloading" and 0 < half["progress"] < 1, half
    assert half["total_bytes"] == len(weights) + 2 and 0 < half["downloaded_bytes"] < half["total_bytes"]
    assert outcome["shown"].startswith(f"Downloading {model} ") and "GB)" in outcome["shown"]
    assert final["status"] == "completed" and final["progress"] == 1.0, final
    assert row["installed"] is True and row["licence"]["accepted"] is True and row["licence"]["known"] is False
    folder = home / "models" / "someone--tiny-pipeline"
    assert (folder / "weights.safetensors").read_bytes() == weights
    assert json.loads((folder / "kinema_licence.json").read_text())["accepted"] is True
