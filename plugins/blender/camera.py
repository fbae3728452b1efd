"""Render the active camera's current frame as the clip's first frame."""

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
    render = scene.render
    saved = _Saved()
    saved.set(render, "engine", engine)
    saved.set(render, "resolution_x", int(width))
    saved.set(render, "resolution_y", int(height))
    saved.set(render, "resolution_percentage", 100)
    saved.set(render, "use_sequencer", False)
    saved.set(render, "use_compositing", False)
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5: the media type decides which formats exist
        saved.set(settings, "media_type", "IMAGE")
    saved.set(settings, "file_format", "PNG")
    saved.set(settings, "color_mode", "RGB")
    saved.set(settings, "color_depth", "8")
    if engine == "CYCLES" and hasattr(scene, "cycles"):
        saved.set(scene.cycles, "samples", int(cycles_samples))
    handle, path = tempfile.mkstemp(prefix="kinema-camera-", suffix=".png")
    os.close(handle)
    try:
        result = bpy.ops.render.render(write_still=False, scene=scene.name)
        if "FINISHED" not in result:
            raise CameraError("The camera render was cancelled")
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
