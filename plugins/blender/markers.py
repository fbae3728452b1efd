"""Timeline markers as a storyboard: each marker's name is a shot's prompt, the gap to the next its length.

No bpy here: the panel passes plain (frame, name) pairs, so this is tested
outside Blender too. A name starting with "+" continues the previous shot (it
starts from that shot's last frame); the last shot runs to the scene's end.
The storyboard's frame rate is the scene's, so shots line up with the markers
to the frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable


class MarkerError(ValueError):
    """The markers do not make a storyboard; the message says which marker to fix."""


def storyboard_from_markers(
    markers: Iterable[tuple[int, str]], fps: float, frame_end: int, setting: str = "", frame_start: int | None = None
) -> dict:
    """A storyboard (the server's JSON form) from ``(frame, name)`` markers between frame_start and frame_end."""
    chosen = sorted(
        (int(frame), str(name))
        for frame, name in markers
        if (frame_start is None or frame >= frame_start) and frame <= frame_end
    )
    if not chosen:
        raise MarkerError(
            "No timeline markers in the scene's frame range: add one per shot (M in the Timeline)"
            " and name it with the shot's prompt (F2)"
        )
    frames = [frame for frame, _ in chosen]
    for before, after in itertools.pairwise(frames):
        if before == after:
            raise MarkerError(f"Two markers share frame {before}: move one, each shot needs its own start")
    shots = []
    for index, (frame, name) in enumerate(chosen):
        end = frames[index + 1] if index + 1 < len(chosen) else frame_end + 1
        prompt = " ".join(name.split())
        cut = "hard"
        if prompt.startswith("+"):
            cut, prompt = "continue", prompt[1:].strip()
        if not prompt:
            raise MarkerError(f"The marker at frame {frame} has no prompt: name it with what happens in that shot (F2)")
        if index == 0 and cut == "continue":
            raise MarkerError(f"The first marker (frame {frame}) cannot continue ('+'): there is no shot before it")
        shots.append({"prompt": prompt, "seconds": (end - frame) / fps, "cut": cut})
    board: dict = {"fps": fps, "shots": shots}
    if setting.strip():
        board["world"] = {"setting": " ".join(setting.split())}
    return board
