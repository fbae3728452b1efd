"""Job size limits: each limit just inside and just outside, through the CLI and the server, before any work.

"Just inside" never generates: the server queues without workers (a job row proves acceptance), LTX-2 has
no weights here (a 409 "not ready" proves the limits let it through), and the CLI plans a storyboard of
one shot (``--plan``), which is checked exactly like ``generate``.
"""

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from kinema.backends import limits
from kinema.cli import cli
from kinema.server.app import create_app

# (backend, a request just inside, the change that takes it just outside, which limit, words the refusal
# must contain). Inside values sit on the frame grid, where generate and a storyboard shot make the same
# frames. The other values stay small, so that memory cannot be what refuses (see test_memory_lowers_...).
TABLE = [
    # tiny: 481 frames, 20 s, 1024x1024 pixels (steps: any a request may ask, 500)
    ("tiny-ltx2", dict(size="64x64", fps=24, seconds=20.0), dict(seconds=20.5), "frames", ["489 frames", "481 frames"]),
    (
        "tiny-ltx2",
        dict(size="64x64", fps=12, seconds=20.0),
        dict(seconds=20.5),
        "seconds",
        ["20.67 s", "limit of 20 s"],
    ),
    ("tiny-ltx2", dict(size="1024x1024", seconds=0.375), dict(size="1024x1056"), "size", ["1,081,344", "1,048,576"]),
    # ltx2: 497 frames, 20 s, 3840x2176 pixels, 100 steps
    ("ltx2", dict(size="64x64", fps=50, seconds=9.94), dict(seconds=10.1), "frames", ["505 frames", "497 frames"]),
    ("ltx2", dict(size="64x64", fps=24, seconds=20.0), dict(seconds=20.5), "seconds", ["20.33 s", "limit of 20 s"]),
    ("ltx2", dict(size="3840x2176", seconds=0.375), dict(size="3840x2208"), "size", ["8,478,720", "8,355,840"]),
    ("ltx2", dict(size="64x64", seconds=0.375, steps=100), dict(steps=101), "steps", ["steps 101", "100 steps"]),
]
IDS = [f"{row[0]}-{row[2]}" for row in TABLE]


def outside(inside, change):
    return {**inside, **change}


def api_body(backend, fields):
    """The request as the server takes it (OpenAI's ``seconds`` is a string)."""
    return {"prompt": "a fox", "model": backend, "audio": False, **fields, "seconds": str(fields["seconds"])}


@pytest.fixture
def server(kinema_env):
    with TestClient(create_app(api_key=None, start_workers=False), base_url="http://127.0.0.1") as client:
        yield client


@pytest.mark.parametrize("backend, inside, change, limit, words", TABLE, ids=IDS)
def test_server_limit_table(server, backend, inside, change, limit, words):
    accepted = server.post("/v1/videos", json=api_body(backend, inside))
    if backend == "tiny-ltx2":
        assert accepted.status_code == 200 and accepted.json()["status"] == "queued", accepted.text
    else:  # past every limit, stopped only because LTX-2 is not downloaded here
        assert accepted.status_code == 409 and accepted.json()["error"]["code"] == "model_not_ready", accepted.text
    before = server.get("/v1/videos").json()["data"]
    refused = server.post("/v1/videos", json=api_body(backend, outside(inside, change)))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "limit_exceeded" and error["param"] == {"frames": "seconds"}.get(limit, limit)
    assert all(w in error["message"] for w in [*words, backend]), error["message"]
    assert server.get("/v1/videos").json()["data"] == before  # no job row


def cli_args(backend, fields):
    args = ["--backend", backend, "--size", fields["size"], "--seconds", str(fields["seconds"])]
    for name in ("fps", "steps"):
        if name in fields:
            args += [f"--{name}", str(fields[name])]
    return args


@pytest.mark.parametrize("backend, inside, change, limit, words", TABLE, ids=IDS)
def test_cli_limit_table(tmp_path, backend, inside, change, limit, words):
    one_shot = tmp_path / "shot.txt"
    one_shot.write_text(f"Shot 1 ({inside['seconds']}s): a fox\n")  # the shot says how long
    args = cli_args(backend, inside)
    at = args.index("--seconds")
    board = args[:at] + args[at + 2 :]
    planned = CliRunner().invoke(cli, ["storyboard", str(one_shot), "--plan", *board])
    assert planned.exit_code == 0, planned.output
    out = tmp_path / "clip.mp4"
    refused = CliRunner().invoke(
        cli, ["generate", "a fox", "-o", str(out), "--no-audio", *cli_args(backend, outside(inside, change))]
    )
    assert refused.exit_code == 1 and refused.output.startswith("Error: ") and refused.output.count("\n") == 1, (
        refused.output
    )
    assert all(w in refused.output for w in [*words, backend]), refused.output
    assert not out.exists()


def test_cli_generate_just_inside_makes_the_clip(tmp_path):
    """One generation at a limit, small everywhere else: 481 frames of 32x32 (tiny-ltx2's frame limit)."""
    out = tmp_path / "long.mp4"
    made = CliRunner().invoke(
        cli,
        [
            "generate",
            "a fox",
            "-o",
            str(out),
            "--size",
            "32x32",
            "--seconds",
            "20",
            "--steps",
            "2",
            "--no-audio",
            "--backend",
            "tiny-ltx2",
        ],
    )
    assert made.exit_code == 0, made.output
    assert "481 frames" in made.output and out.exists()


def test_extend_remix_and_storyboard_are_checked_before_they_start(tmp_path, kinema_env):
    """The generations inside an extend, a remix and a storyboard meet the same limits, in the CLI and the server."""
    runner = CliRunner()
    clip = tmp_path / "fox.mp4"
    assert (
        runner.invoke(
            cli,
            ["generate", "a fox", "-o", str(clip), "--size", "32x32", "--seconds", "0.375", "--steps", "2"]
            + ["--backend", "tiny-ltx2"],
        ).exit_code
        == 0
    )
    board = tmp_path / "film.txt"
    board.write_text("Backend: tiny-ltx2\nShot 1 (2s): a fox\nShot 2 (21s): the fox sleeps\n")
    for args, words in [
        (["extend", str(clip), "--seconds", "20.5"], "frames: one generation of 505 frames"),
        (["remix", str(clip), "paper", "--backend", "ltx2", "--steps", "101"], "steps 101 is over ltx2's limit"),
        (["storyboard", str(board)], "line 3: shot 2: frames: one generation of 505 frames"),
    ]:
        refused = runner.invoke(cli, args)
        assert refused.exit_code == 1 and words in refused.output and refused.output.count("\n") == 1, refused.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.txt", "fox.mp4"]

    from polling import wait_final

    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
        parent = client.post(
            "/v1/videos",
            json={"prompt": "a fox", "size": "32x32", "seconds": "0.375", "steps": 2, "model": "tiny-ltx2"},
        )
        assert wait_final(client, parent.json()["id"])["status"] == "completed"
        before = client.get("/v1/videos").json()["data"]
        for path, body, words in [
            (f"/v1/videos/{parent.json()['id']}/extend", {"seconds": "20.5"}, "505 frames"),
            (
                f"/v1/videos/{parent.json()['id']}/remix",
                {"prompt": "paper", "model": "ltx2", "steps": 101},
                "steps 101",
            ),
            ("/v1/storyboards", {"storyboard": board.read_text()}, "line 3: shot 2: frames"),
        ]:
            refused = client.post(path, json=body)
            assert refused.status_code == 400 and words in refused.json()["error"]["message"], refused.text
        assert client.get("/v1/videos").json()["data"] == before


def test_memory_lowers_the_frame_limit():
    """The frames one generation may make shrink to what the machine's memory holds at the asked size."""
    from kinema.engine import get_backend
    from kinema.request import GenerationRequest

    tiny = get_backend("tiny-ltx2")
    plan = tiny.plan(GenerationRequest("x", width=1024, height=1024, seconds=0.375))  # 9 frames
    small = [limits.MemoryBound("RAM", 2**28, limits.RAM_BYTES_PER_PIXEL)]  # 128 MiB for frames: 4 of 1024x1024
    assert small[0].frames_at(1024 * 1024) == 4
    with pytest.raises(limits.LimitError, match="9 frames of 1024x1024 need ~243 MiB of RAM.*at most 4 frames"):
        limits.check_plan(plan, tiny, bounds=small)
    limits.check_plan(plan, tiny, bounds=[limits.MemoryBound("RAM", 2**30, limits.RAM_BYTES_PER_PIXEL)])
    assert "RAM holds 2 frames at 64x64" in limits.describe(tiny, [limits.MemoryBound("RAM", 2**19, 27)])


def test_doctor_prints_each_backends_limits():
    shown = CliRunner().invoke(cli, ["doctor"]).output
    assert "limits tiny-ltx2: 481 frames, 20 s, 1,048,576 pixels a frame, 500 steps" in shown
    assert "limits ltx2: 497 frames, 20 s, 8,355,840 pixels a frame, 100 steps (LTX-2" in shown


def test_a_films_shots_are_checked_not_its_unused_base_length(kinema_env, monkeypatch, tmp_path):
    """A backend that makes at most 6 frames takes a film of 0.25 s shots (3 frames made each): the film's own
    request (1 s by default, 8 frames) is never generated, so it is not what is checked; a shot too long still is."""
    import ray_backends
    from polling import wait_final

    from kinema.media.files import probe
    from kinema.plugins import pm

    monkeypatch.setenv("KINEMA_TEST_WORKER_FRAMES", "6")
    pm.register(ray_backends, name="test-small-limits")
    try:
        with TestClient(create_app(api_key=None), base_url="http://127.0.0.1") as client:
            one = client.post("/v1/videos", json={"prompt": "a door", "model": "slow", "seconds": "1"})
            assert one.status_code == 400 and "limit of 6 frames" in one.json()["error"]["message"], one.text
            board = "Shot 1 (0.25s): a door\nShot 2 (0.25s, continue): it opens\n"
            film = client.post("/v1/storyboards", json={"storyboard": board, "model": "slow", "steps": 2})
            assert film.status_code == 200, film.text
            done = wait_final(client, film.json()["id"])
            assert done["status"] == "completed", done["error"]
            made = tmp_path / "film.mp4"
            made.write_bytes(client.get(f"/v1/videos/{done['id']}/content").content)
            assert probe(made).frame_count == 4  # 2 frames a shot at the backend's 8 fps
            long = client.post("/v1/storyboards", json={"storyboard": board + "Shot 3 (1s): a hall\n", "model": "slow"})
            assert long.status_code == 400, long.text
            assert "line 3: shot 3: frames" in long.json()["error"]["message"], long.text
    finally:
        pm.unregister(name="test-small-limits")
