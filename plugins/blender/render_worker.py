"""Renders a first frame in a Blender of its own, so the user's Blender never waits for the render.

Run by background_render.py as ``blender -b --factory-startup --python render_worker.py -- JOB.json`` (or, where
Blender is the bpy module, with its Python). JOB names a copy of the user's .blend, the scene, what to render (the
camera's view, or a strip's frame under the playhead), the size and how to fit the clip's aspect; it writes the PNG
to the job's ``output``, or the reason it could not to ``output`` + ".error".
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback


def _sibling(name: str):
    """A module beside this file, loaded by path: this Blender has not enabled the add-on."""
    spec = importlib.util.spec_from_file_location(
        f"kinema_render_{name}", os.path.join(os.path.dirname(__file__), f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(job: dict) -> None:
    import bpy
    import numpy as np

    camera, frame_fit = _sibling("camera"), _sibling("frame_fit")
    bpy.ops.wm.open_mainfile(filepath=job["blend"], load_ui=False)
    scene = bpy.data.scenes[job["scene"]]
    scene.frame_set(job["frame"])
    target = tuple(job["target"])
    width, height = frame_fit.render_size(job["width"], job["height"], target, job["fit"])
    if job["what"] == "camera":
        png = camera.render_first_frame(
            scene, width, height, engine=job["engine"], cycles_samples=job["cycles_samples"]
        )
    else:
        png = camera.render_strip_frame(scene, scene.sequence_editor.strips_all[job["strip"]], width, height)
    if (width, height) != target:
        rendered = job["output"] + ".rendered.png"
        with open(rendered, "wb") as file:
            file.write(png)
        image = bpy.data.images.load(rendered)
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
        fitted = frame_fit.fit(pixels.reshape(height, width, 4), target, job["fit"])
        out = bpy.data.images.new("kinema-first-frame", target[0], target[1])
        out.pixels.foreach_set(fitted.ravel())
        out.filepath_raw, out.file_format = job["output"] + ".fitted.png", "PNG"
        out.save()
        os.unlink(rendered)
        os.replace(job["output"] + ".fitted.png", job["output"])
        return
    with open(job["output"] + ".part", "wb") as file:
        file.write(png)
    os.replace(job["output"] + ".part", job["output"])


if __name__ == "__main__":
    arguments = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    with open(arguments[0], encoding="utf-8") as file:
        job = json.load(file)
    try:
        main(job)
    except Exception as error:  # the reason goes to the add-on, which shows it
        traceback.print_exc()
        message = str(error) if type(error).__name__ == "CameraError" else f"{type(error).__name__}: {error}"
        with open(job["output"] + ".error", "w", encoding="utf-8") as file:
            file.write(message)
        sys.exit(1)
