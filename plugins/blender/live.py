"""Step previews of running jobs for the panel, and clips of an unsaved file moved beside it when it is saved.

Main thread only (a timer tick and Blender's save handler call these).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile

import bpy

from . import background_render, clipfiles, preferences

_previews = None  # a bpy.utils.previews collection, made on first use


def show_preview(job, jpeg: bytes) -> None:
    """Load the server's newest step preview of ``job`` as an icon the panel draws (``job.preview_icon``)."""
    global _previews
    import bpy.utils.previews

    if _previews is None:
        _previews = bpy.utils.previews.new()
    path = os.path.join(tempfile.gettempdir(), f"kinema-preview-{os.getpid()}-{job.id}-{job.previews % 2}.jpg")
    with open(path, "wb") as file:
        file.write(jpeg)
    job.previews += 1
    # A key loads once, so each step gets its own; two files alternate, so the one shown is never rewritten.
    job.preview_icon = _previews.load(f"{job.id}:{job.previews}", path, "IMAGE").icon_id
    job.preview_path = path


def forget_previews() -> None:
    global _previews
    if _previews is not None:
        import bpy.utils.previews

        bpy.utils.previews.remove(_previews)
        _previews = None


def unsaved_folder(context=None) -> str:
    """Where clips of an unsaved .blend go (``preferences.output_dir`` before the first save)."""
    context = context or bpy.context
    temp = context.preferences.filepaths.temporary_directory or tempfile.gettempdir()
    return os.path.normpath(os.path.join(bpy.path.abspath(temp), "kinema-unsaved"))


def clips_folder_for(blend_path: str, context=None) -> str | None:
    """The clips folder once the .blend is at ``blend_path``; None if the clips folder is not beside it (//)."""
    folder = preferences.get(context).output_dir or "//kinema/"
    if not folder.startswith("//"):
        return None
    return os.path.normpath(os.path.join(os.path.dirname(blend_path), folder[2:]))


def move_clip(path: str, folder: str) -> str:
    """Move the clip at ``path`` into ``folder`` under its own name (never overwriting); returns the new path."""
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    staging = os.path.join(folder, f".{stem}.{secrets.token_hex(4)}.moving")
    shutil.copyfile(path, staging)  # a copy, then a claim: the temporary folder may be another drive
    try:
        target = clipfiles.claim(staging, folder, stem)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    os.unlink(path)
    return target


@bpy.app.handlers.persistent
def on_save_pre(blend_path, *_args) -> None:
    """First save of a file with Kinema clips in the temporary folder: move them beside it, before it is written,
    so the strips' paths are saved relative to it."""
    if bpy.data.filepath or not blend_path or background_render.saving_copy:
        return  # a copy saved for a background render is not the user's first save
    try:
        relocate_unsaved_clips(str(blend_path))
    except OSError as error:
        print(f"kinema: could not move the clips beside {blend_path}: {error}")


def relocate_unsaved_clips(blend_path: str) -> dict:
    """Move every clip a strip uses from the unsaved folder to the clips folder beside ``blend_path``."""
    source, target = unsaved_folder(), clips_folder_for(blend_path)
    if target is None:
        return {}
    moved: dict[str, str] = {}
    for scene in bpy.data.scenes:
        editor = scene.sequence_editor
        if editor is None:
            continue
        for strip in editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all:
            owner = strip if strip.type == "MOVIE" else strip.sound if strip.type == "SOUND" else None
            if owner is None or "kinema_job" not in strip:
                continue
            path = os.path.normpath(bpy.path.abspath(owner.filepath))
            if os.path.dirname(path) != source or not (path in moved or os.path.isfile(path)):
                continue
            if path not in moved:
                moved[path] = move_clip(path, target)
            owner.filepath = moved[path]  # saved relative to the .blend when Blender remaps paths on save
    for job in _jobs_in_unsaved(source):
        job.path = moved.get(os.path.normpath(job.path), job.path)
    return moved


def _jobs_in_unsaved(source: str):
    from . import session

    return [job for job in session.jobs if job.path and os.path.dirname(os.path.normpath(job.path)) == source]


def adopt(job) -> None:
    """A clip that finished in the unsaved folder after the file was first saved: move it beside the file."""
    if job.blend_path or not bpy.data.filepath or not job.path:
        return
    target = clips_folder_for(bpy.data.filepath)
    if target is not None and os.path.dirname(os.path.normpath(job.path)) == unsaved_folder():
        job.path = move_clip(job.path, target)
    job.blend_path = bpy.data.filepath
