"""The demo world's backend: requests are snapped to what the model was trained on, and the user is told."""

from __future__ import annotations

from kinema import GenerationRequest, get_backend


def test_sizes_rates_and_unknown_words_are_snapped_and_named():
    backend = get_backend("world")
    plan = backend.plan(
        GenerationRequest(
            "a large green sphere bounces in a pink room, like a fox", width=128, height=96, fps=24, seconds=2, seed=1
        )
    )
    assert (plan.width, plan.height, float(plan.fps)) == (64, 64, 12.0)
    assert (plan.num_frames - 1) % 4 == 0
    assert any("64x64" in note for note in plan.notes) and any("12 fps" in note for note in plan.notes)
    assert any("does not know: like, fox" in note for note in plan.notes)


def test_the_defaults_are_the_trained_clip():
    plan = get_backend("world").plan(GenerationRequest("a small red ball drops onto a wooden floor", seed=1))
    assert (plan.width, plan.height, plan.num_frames, float(plan.fps)) == (64, 64, 25, 12.0)
    assert not plan.notes


def test_not_ready_names_the_way_to_a_model(monkeypatch, tmp_path):
    monkeypatch.setenv("KINEMA_WORLD_MODEL", str(tmp_path / "missing"))
    status = get_backend("world").status()
    assert not status.ready and "KINEMA_WORLD_MODEL" in status.detail


def test_the_cli_calls_the_world_trained_and_tiny_random():
    from kinema.engine import get_backend

    assert "trained on a ball bouncing in a room" in get_backend("world").demo_note
    assert "random weights" not in get_backend("world").demo_note
    assert "random weights" in get_backend("tiny-ltx2").demo_note
