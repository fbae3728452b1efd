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


def place(strip, crop: tuple[int, int, int, int], scale: tuple[float, float]) -> None:
    """Crop ``crop`` (left, right, bottom, top pixels) off a strip shown at its own size, keep what is left centred,
    and scale it by ``scale``: frame_fit.placement's answer, so the clip shows at exactly the size asked for."""
    left, right, bottom, top = crop
    strip.crop.min_x, strip.crop.max_x, strip.crop.min_y, strip.crop.max_y = left, right, bottom, top
    strip.transform.scale_x, strip.transform.scale_y = scale
    # A crop leaves the picture where it was; an uneven one would move what is left off the frame's centre.
    strip.transform.offset_x = (right - left) / 2 * scale[0]
    strip.transform.offset_y = (top - bottom) / 2 * scale[1]


def same_placement(strip, parent) -> None:
    """``strip`` cropped, scaled and moved as ``parent`` is (a clip made from it, at its size)."""
    for name in ("min_x", "max_x", "min_y", "max_y"):
        setattr(strip.crop, name, getattr(parent.crop, name))
    for name in ("scale_x", "scale_y", "offset_x", "offset_y"):
        setattr(strip.transform, name, getattr(parent.transform, name))


def picture_size(strip) -> tuple[int, int]:
    """The movie's own width and height, as Blender read them."""
    element = strip.elements[0]
    return element.orig_width, element.orig_height


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
