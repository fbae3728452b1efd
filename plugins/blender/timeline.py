"""Put a finished clip into the Video Sequencer, with the data API (no operators: they need a UI)."""

from __future__ import annotations

import bpy

MAX_CHANNEL = 128
NAME_BYTES = 56  # strip names hold 63 bytes; leave room for Blender's ".001"


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def strip_name(prompt: str) -> str:
    text = " ".join(prompt.split()) or "kinema clip"
    while len(text.encode("utf-8")) > NAME_BYTES:
        text = text[:-1]
    return text.rstrip()


def free_channel(strips, start: int, end: int, *, above: int = 0, ignore=()) -> int:
    """The lowest channel above ``above`` with nothing between frames ``start`` and ``end``."""
    busy = {s.channel for s in strips if s not in ignore and s.frame_final_start < end and s.frame_final_end > start}
    channel = above + 1
    while channel in busy:
        channel += 1
    if channel > MAX_CHANNEL:
        raise RuntimeError(f"no free channel at frame {start}; move the playhead or free a channel")
    return channel


def insert_clip(
    scene, path: str, *, frame: int, name: str, properties: dict, sound: bool = True, above: int = 0
) -> tuple[object, object | None, str | None]:
    """Add the movie (and its sound) at ``frame`` on the first free channels (above channel ``above``).

    Returns (movie strip, sound strip or None, warning or None). The movie goes
    on the lowest channel free for its whole length, the sound on the next free
    one above it; both carry ``properties`` as custom properties.
    """
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = top_level_strips(editor)
    # The length is known only once the file is opened: add, measure, then settle on a channel.
    movie = strips.new_movie(name, path, free_channel(strips, frame, frame + 1, above=above), frame)
    end = frame + movie.frame_final_duration
    channel = free_channel(strips, frame, end, above=above, ignore=(movie,))
    if channel != movie.channel:
        movie.channel = channel
    warning = None
    clip_fps, fps = movie.fps, scene_fps(scene)
    if clip_fps and abs(clip_fps - fps) > 1e-3:
        warning = (
            f"The clip is {clip_fps:g} fps but the scene is {fps:g} fps, so its picture plays at"
            f" {fps / clip_fps:.0%} speed; set the scene to {clip_fps:g} fps or retime the strip"
            " (Strip > Retiming)"
        )
    audio = None
    if sound:
        try:
            audio = strips.new_sound(name, path, free_channel(strips, frame, end, above=movie.channel), frame)
        except RuntimeError:  # the file has no sound stream
            audio = None
    if audio is not None:
        if not warning and audio.frame_final_duration > movie.frame_final_duration:
            # AAC pads the last packet; a sound strip a frame longer than its picture looks like a mistake.
            audio.frame_final_duration = movie.frame_final_duration
        audio.name = movie.name  # Blender makes it unique (".001")
    for strip in filter(None, (movie, audio)):
        for key, value in properties.items():
            strip[key] = _id_value(value)
    for strip in strips:
        strip.select = False
    movie.select = True
    if audio is not None:
        audio.select = True
    editor.active_strip = movie
    return movie, audio, warning


def top_level_strips(editor):
    """``strips`` since Blender 4.4 (the only name in 5.0); ``sequences`` in 4.2 and 4.3."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _id_value(value):
    """Custom properties hold 32-bit ints: larger ones (e.g. foreign seeds) are kept as text."""
    if isinstance(value, bool) or value is None:
        return value if value is not None else ""
    if isinstance(value, int) and not -(2**31) <= value < 2**31:
        return str(value)
    return value


def target_scene(context=None):
    """The scene the Sequencer edits: Blender 5's workspace sequencer scene, else the active scene."""
    context = context or bpy.context
    return getattr(context, "sequencer_scene", None) or context.scene
