"""The first frame of "Generate from Camera" and "Image to Video", rendered outside the UI thread.

Blender's own render blocks its UI for the whole render (1-2 s at 768x512, 5 s at 1080p with Workbench). Here the
main thread only saves a copy of the .blend (what Blender does for an autosave) and starts a Blender of its own on
it, render_worker.py; the timer tick (session.py) polls it and sends the frame to the server when it is there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import bpy

from . import camera

saving_copy = False  # live.on_save_pre leaves the user's clips alone while a copy is saved for a render


class RenderTask:
    """One render in another process; ``poll()`` is None while it runs, then the PNG's bytes (or raises
    ``camera.CameraError`` with the reason)."""

    def __init__(self, folder: str, process: subprocess.Popen) -> None:
        self.folder, self.process = folder, process
        self.output = os.path.join(folder, "frame.png")

    def poll(self) -> bytes | None:
        if self.process.poll() is None:
            return None
        try:
            if os.path.isfile(self.output):
                with open(self.output, "rb") as file:
                    return file.read()
            reason = ""
            if os.path.isfile(self.output + ".error"):
                with open(self.output + ".error", encoding="utf-8") as file:
                    reason = file.read().strip()
            raise camera.CameraError(reason or f"The frame's render stopped (exit code {self.process.returncode})")
        finally:
            self.cleanup()

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def blender_command(worker: str, job_file: str) -> list[str]:
    """How to run ``worker`` in a Blender of its own: this Blender's executable in background mode, or, where
    Blender is the bpy module in a Python (no executable), that Python."""
    binary = bpy.app.binary_path
    if binary and os.path.isfile(binary) and "python" not in os.path.basename(binary).lower():
        return [binary, "-b", "--factory-startup", "--python", worker, "--", job_file]
    return [sys.executable, worker, job_file]


def start(
    scene,
    *,
    what: str,
    width: int,
    height: int,
    target: tuple[int, int],
    fit: str,
    strip: str = "",
    engine: str = "BLENDER_WORKBENCH",
    cycles_samples: int = 16,
) -> RenderTask:
    """Render ``scene``'s camera view (``what="camera"``) or ``strip``'s frame under the playhead (``"strip"``) at
    ``width`` x ``height``'s aspect, fitted to ``target`` by ``fit`` (frame_fit), in another process."""
    if what == "camera" and scene.camera is None:
        raise camera.CameraError(f"Scene '{scene.name}' has no active camera: add one, or use Generate")
    folder = tempfile.mkdtemp(prefix="kinema-render-")
    blend = os.path.join(folder, "scene.blend")
    # A copy of the file as it is now, unsaved edits included; the user's file and its path stay as they are.
    # relative_remap: the copy's relative paths (//kinema/clip.mp4) still reach the files from the temporary folder.
    global saving_copy
    saving_copy = True
    try:
        bpy.ops.wm.save_as_mainfile(
            filepath=blend, copy=True, check_existing=False, compress=False, relative_remap=True
        )
    finally:
        saving_copy = False
    job = {
        "blend": blend,
        "scene": scene.name,
        "frame": scene.frame_current,
        "what": what,
        "strip": strip,
        "width": int(width),
        "height": int(height),
        "target": [int(target[0]), int(target[1])],
        "fit": fit,
        "engine": engine,
        "cycles_samples": int(cycles_samples),
        "output": os.path.join(folder, "frame.png"),
    }
    job_file = os.path.join(folder, "job.json")
    with open(job_file, "w", encoding="utf-8") as file:
        json.dump(job, file)
    worker = os.path.join(os.path.dirname(__file__), "render_worker.py")
    log = open(os.path.join(folder, "render.log"), "wb")  # noqa: SIM115 - the child keeps its own copy
    try:
        process = subprocess.Popen(blender_command(worker, job_file), stdout=log, stderr=subprocess.STDOUT)
    except OSError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise camera.CameraError(f"Could not start a Blender to render the frame: {error}") from None
    finally:
        log.close()
    return RenderTask(folder, process)
