"""Timeline markers to a storyboard (plugins/blender/markers.py runs without bpy), checked by kinema's parser."""

import importlib.util
from pathlib import Path

import pytest

from kinema.storyboard import from_dict, plan_storyboard

_spec = importlib.util.spec_from_file_location(
    "kinema_blender_markers", Path(__file__).parents[1] / "plugins" / "blender" / "markers.py"
)
markers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(markers)


def test_marker_gaps_become_shot_lengths_that_land_on_the_markers():
    board = markers.storyboard_from_markers(
        [(20, "gulls"), (5, "a boat leaves"), (11, "+ it turns"), (90, "late")],
        fps=30000 / 1001,
        frame_end=40,
        setting="a misty  harbour",
        frame_start=1,
    )
    assert [s["cut"] for s in board["shots"]] == ["hard", "continue", "hard"]
    assert board["world"] == {"setting": "a misty harbour"}
    plans = plan_storyboard(from_dict({**board, "backend": "tiny-ltx2"}))  # any frame rate; the demo world makes 12 fps
    assert [p.frames for p in plans] == [6, 9, 21]  # exactly the gaps, at an NTSC rate too
    assert plans[1].shot.prompt == "it turns"


@pytest.mark.parametrize(
    "marks, message",
    [
        ([], "No timeline markers"),
        ([(3, "a"), (3, "b")], "Two markers share frame 3"),
        ([(3, "a"), (8, "  ")], "marker at frame 8 has no prompt"),
        ([(3, "+a")], "cannot continue"),
    ],
)
def test_markers_that_make_no_storyboard_say_which_to_fix(marks, message):
    with pytest.raises(markers.MarkerError, match=message):
        markers.storyboard_from_markers(marks, fps=24, frame_end=40)
