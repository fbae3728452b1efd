"""Render the active camera's current frame (or a strip's) as the clip's first frame.

These block the Blender they run in for the whole render, so the add-on calls them in a Blender of its own
(render_worker.py, started by background_render.py), never in the user's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import bpy


class CameraError(Exception):
    """Why there is no frame to send; the message is for the user."""


def render_first_frame(
    scene, width: int, height: int, *, engine: str = "BLENDER_WORKBENCH", cycles_samples: int = 16
) -> bytes:
    """PNG bytes of ``scene``'s camera view at ``width`` x ``height``; the scene's settings are left as they were.

    The Sequencer and compositor are switched off for the render, so the picture is
    the camera's view even in a scene that also holds strips.
    """
    if scene.camera is None:
        raise CameraError(f"Scene '{scene.name}' has no active camera: add one, or use Generate")
    saved = _Saved()
    saved.set(scene.render, "engine", engine)
    saved.set(scene.render, "use_sequencer", False)
    if engine == "CYCLES" and hasattr(scene, "cycles"):
        saved.set(scene.cycles, "samples", int(cycles_samples))
    return _render_png(scene, width, height, saved)


def render_strip_frame(scene, strip, width: int, height: int) -> bytes:
    """PNG bytes of ``strip``'s picture at the current frame, as the Sequencer shows it (the strip's own
    transform and fit), with every other strip muted; nothing of the scene is left changed."""
    editor = scene.sequence_editor
    if editor is None or not strip.frame_final_start <= scene.frame_current < strip.frame_final_end:
        raise CameraError(f"The playhead is not over '{strip.name}': move it to the frame to start from")
    saved = _Saved()
    for other in editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all:
        if other != strip and not other.mute:
            saved.set(other, "mute", True)
    if strip.mute:
        saved.set(strip, "mute", False)
    saved.set(scene.render, "use_sequencer", True)
    return _render_png(scene, width, height, saved)


def _render_png(scene, width: int, height: int, saved: _Saved) -> bytes:
    """Render ``scene`` at ``width`` x ``height`` into PNG bytes, then put back what ``saved`` changed."""
    render = scene.render
    saved.set(render, "resolution_x", int(width))
    saved.set(render, "resolution_y", int(height))
    saved.set(render, "resolution_percentage", 100)
    saved.set(render, "use_compositing", False)
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5: the media type decides which formats exist
        saved.set(settings, "media_type", "IMAGE")
    saved.set(settings, "file_format", "PNG")
    saved.set(settings, "color_mode", "RGB")
    saved.set(settings, "color_depth", "8")
    handle, path = tempfile.mkstemp(prefix="kinema-camera-", suffix=".png")
    os.close(handle)
    try:
        result = bpy.ops.render.render(write_still=False, scene=scene.name)
        if "FINISHED" not in result:
            raise CameraError("The frame's render was cancelled")
        bpy.data.images["Render Result"].save_render(path, scene=scene)
        with open(path, "rb") as file:
            return file.read()
    finally:
        saved.restore()
        os.unlink(path)


class _Saved:
    """Set attributes now, put the old values back later (in reverse, as media_type gates file_format)."""

    def __init__(self) -> None:
        self._old: list[tuple[object, str, object]] = []

    def set(self, owner, name: str, value) -> None:
        self._old.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, value in reversed(self._old):
            # e.g. an engine whose add-on was disabled meanwhile
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                setattr(owner, name, value)
