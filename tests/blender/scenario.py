"""Drives the installed Kinema extension inside Blender (the bpy module), headless.

Run by tests/test_blender.py with the Blender venv's Python:

    python tests/blender/scenario.py NAME '{"url": ..., ...}'

Timers never fire without a UI, so this calls the add-on's tick by hand, as
Blender's timer would. Prints one line ``RESULT {json}`` for the test to check.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import bpy  # first: it puts Blender's own modules (addon_utils) on the path

# isort: split
import addon_utils

MODULE = "bl_ext.user_default.kinema"
TIMEOUT = 300.0


def enable():
    addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    if MODULE not in bpy.context.preferences.addons:
        raise SystemExit(f"{MODULE} did not enable")
    return importlib.import_module(MODULE)


def _raise(error):
    raise error


def configure(addon, args, *, fps=30, frame=11):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.server_url = args["url"]
    prefs.start_server = bool(args.get("python"))
    prefs.python_path = args.get("python", "")
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.frame_current = frame
    options = scene.kinema
    options.prompt = args.get("prompt", "a red fox running through snow, wind howling")
    options.use_scene_size = False
    options.width = options.height = 32
    options.seconds = args.get("seconds", 0.5)
    options.steps = args.get("steps", 2)
    options.random_seed = False
    options.seed = 7
    if "tier" in args:
        options.tier = args["tier"]
    options.backend = args.get("backend", "tiny-ltx2")  # random weights: any size, quick; the default is the demo world
    return scene


def run_until(addon, done, timeout=TIMEOUT):
    """Tick like Blender's timer until ``done()``; returns the number of ticks."""
    deadline = time.monotonic() + timeout
    ticks = 0
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out; jobs: {addon.session.jobs}")
        addon.session.tick()
        ticks += 1
        time.sleep(0.05)
    addon.session.tick()
    return ticks


def strips_of(editor):
    """Blender 5 has ``strips`` only; 4.2 and 4.3 have ``sequences`` (for running these under an older Blender)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def strips_info(scene):
    editor = scene.sequence_editor
    rows = []
    for strip in strips_of(editor) if editor else ():
        rows.append(
            {
                "name": strip.name,
                "type": strip.type,
                "channel": strip.channel,
                "start": strip.frame_final_start,
                "duration": strip.frame_final_duration,
                "path": bpy.path.abspath(strip.filepath)
                if strip.type == "MOVIE"
                else bpy.path.abspath(strip.sound.filepath)
                if strip.type == "SOUND"
                else None,
                # a strip is no dict: its custom property names come from keys(), not from iterating it
                "props": {key: strip[key] for key in strip.keys() if key.startswith("kinema_")},  # noqa: SIM118
            }
        )
    return rows


def job_info(job):
    return {
        "id": job.id,
        "status": job.status,
        "message": job.message,
        "path": job.path,
        "server_id": job.server_id,
        "video": job.video,
        "strips": list(job.strips),
        "progress": job.progress,
    }


# --------------------------------------------------------------------------- scenarios


def generate(args):
    """Two jobs from the same prompt and seed, queued together, beside a saved .blend with a busy channel 1."""
    bpy.ops.wm.read_userpref()  # Blender reads them at start; the bpy module only when asked
    addon = enable()
    recorded_python = bpy.context.preferences.addons[MODULE].preferences.python_path  # by `kinema install blender`
    scene = configure(addon, args)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(args["workdir"], "edit.blend"))
    editor = scene.sequence_editor_create()
    try:
        blocker = strips_of(editor).new_effect("blocker", "COLOR", 1, frame_start=1, length=60)
    except TypeError:  # Blender before 4.4
        blocker = strips_of(editor).new_effect("blocker", "COLOR", 1, frame_start=1, frame_end=61)
    before = [s.name for s in strips_of(editor)]
    results = [bpy.ops.kinema.generate("INVOKE_DEFAULT"), bpy.ops.kinema.generate()]
    states_seen = {job.id: {job.status} for job in addon.session.jobs}

    def done():
        for job in addon.session.jobs:
            states_seen[job.id].add(job.status)
        return all(not job.active for job in addon.session.jobs)

    ticks = run_until(addon, done)
    return {
        "operator": [sorted(r) for r in results],
        "ticks": ticks,
        "blocker": blocker.name,
        "before": before,
        "jobs": [job_info(job) for job in addon.session.jobs],
        "strips": strips_info(scene),
        "states": {str(k): sorted(v) for k, v in states_seen.items()},
        "scene_fps": scene.render.fps,
        "blend_dir": os.path.dirname(bpy.data.filepath),
        "recorded_python": recorded_python,
    }


def camera(args):
    """Generate from Camera: render the camera's view with Workbench and send it as the first frame."""
    addon = enable()
    scene = configure(addon, args, fps=24, frame=1)
    bpy.ops.mesh.primitive_cube_add()
    camera_data = bpy.data.cameras.new("Shot Camera")
    camera_object = bpy.data.objects.new("Shot Camera", camera_data)
    scene.collection.objects.link(camera_object)
    camera_object.location = (6.0, -6.0, 4.0)
    camera_object.rotation_euler = (1.1, 0.0, 0.785)
    scene.camera = camera_object
    engine_before = scene.render.engine
    result = bpy.ops.kinema.generate_from_camera()
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    return {
        "operator": sorted(result),
        "jobs": [job_info(job) for job in addon.session.jobs],
        "strips": strips_info(scene),
        "engine_restored": scene.render.engine == engine_before,
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "server_tiers": [list(addon.session.server.tiers), addon.session.server.default_tier],
        "tier_menu": [item[0] for item in addon.settings._tiers(scene.kinema, bpy.context)],
        "tier": scene.kinema.tier,
    }


def no_camera(args):
    enable()
    scene = bpy.context.scene
    for obj in list(bpy.data.objects):
        if obj.type == "CAMERA":
            bpy.data.objects.remove(obj)
    scene.camera = None
    return {"poll": bpy.ops.kinema.generate_from_camera.poll()}


def cancel(args):
    """Cancel a running job: it stops on the server and nothing reaches the Sequencer."""
    addon = enable()
    scene = configure(addon, args)
    bpy.ops.kinema.generate()
    job = addon.session.jobs[-1]
    run_until(addon, lambda: job.status == "running" or not job.active)
    status_when_cancelled = job.status
    result = bpy.ops.kinema.cancel()
    run_until(addon, lambda: not job.active)
    return {
        "operator": sorted(result),
        "status_when_cancelled": status_when_cancelled,
        "job": job_info(job),
        "strips": strips_info(scene),
    }


def fails(args):
    """A job that fails (no server there, or one that cannot run it): a message that says what to do, no raise."""
    addon = enable()
    scene = configure(addon, args)
    result = bpy.ops.kinema.generate()
    job = addon.session.jobs[-1]
    run_until(addon, lambda: not job.active, timeout=60)
    return {
        "operator": sorted(result),
        "job": job_info(job),
        "server": vars(addon.session.server),
        "strips": strips_info(scene),
    }


def start_local(args):
    """The add-on starts `kinema serve` from the configured Python, generates, and stops it when disabled."""
    addon = enable()
    scene = configure(addon, args)
    bpy.ops.kinema.generate()
    job = addon.session.jobs[-1]
    run_until(addon, lambda: not job.active)
    process = addon.session.work.connection.started
    pid = process.pid if process is not None else None
    url = addon.session.server.url
    addon_utils.disable(MODULE, default_set=True)
    return {
        "job": job_info(job),
        "strips": strips_info(scene),
        "pid": pid,
        "url": url,
        "exit_code_after_disable": process.poll() if process is not None else None,
    }


def connect_then_crash(args):
    """Connect (which starts a server), then die as a crashing Blender would: no add-on clean-up runs."""
    addon = enable()
    configure(addon, args)
    bpy.context.preferences.addons[MODULE].preferences.stop_server_on_quit = args["stop_on_quit"]
    bpy.ops.kinema.connect()
    run_until(addon, lambda: addon.session.server.state != "starting")
    process = addon.session.work.connection.started
    print("RESULT " + json.dumps({"server": vars(addon.session.server), "pid": process and process.pid}), flush=True)
    os._exit(0)


def strips(args):
    """From a generated strip: two new-seed variations, an extension, a remix and image to video from the
    frame under the playhead; every new strip names its parent."""
    addon = enable()
    scene = configure(addon, args)
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(args["workdir"], "strips.blend"))
    bpy.ops.kinema.generate()
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    (source,) = [s for s in strips_of(scene.sequence_editor) if s.type == "MOVIE"]

    def select_source():
        for strip in strips_of(scene.sequence_editor):
            strip.select = strip == source
        scene.sequence_editor.active_strip = source

    results = {}
    for action, variations in (("regenerate", 2), ("extend", 1), ("remix", 1), ("frame", 1)):
        select_source()
        scene.kinema.variations = variations
        if action == "remix":
            scene.kinema.prompt = "a blue fox in the rain"
        if action == "frame":
            scene.frame_current = source.frame_final_start + 5
        results[action] = sorted(bpy.ops.kinema.from_strip(action=action))
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    return {
        "operator": results,
        "source": source.name,
        "jobs": [dict(job_info(job), action=job.action, seed=job.seed) for job in addon.session.jobs],
        "strips": strips_info(scene),
        "playhead": scene.frame_current,
    }


def unsaved(args):
    """A clip made in an unsaved file, with step previews in the panel; saving the file moves it beside it."""
    addon = enable()
    scene = configure(addon, args)
    bpy.context.preferences.filepaths.temporary_directory = args["temp"]
    bpy.ops.kinema.generate()
    job = addon.session.jobs[-1]
    previews = []

    def done():
        if job.preview_path and os.path.isfile(job.preview_path):
            with open(job.preview_path, "rb") as file:
                previews.append((job.previews, file.read(3).hex()))
        return not job.active

    run_until(addon, done)
    (movie,) = [s for s in strips_of(scene.sequence_editor) if s.type == "MOVIE"]
    before = movie.filepath
    bpy.ops.wm.save_as_mainfile(filepath=os.path.join(args["workdir"], "saved.blend"))
    (sound,) = [s for s in strips_of(scene.sequence_editor) if s.type == "SOUND"]
    return {
        "job": job_info(job),
        "previews": previews,
        "before": before,
        "after": movie.filepath,
        "sound_after": sound.sound.filepath,
        "exists": os.path.isfile(bpy.path.abspath(movie.filepath)),
        "left_in_temp": os.listdir(os.path.join(args["temp"], "kinema-unsaved")),
    }


def start_fails(args):
    """Starting a server fails (here: another server owns the data directory): the panel says why."""
    addon = enable()
    configure(addon, args)
    bpy.ops.kinema.connect()
    run_until(addon, lambda: addon.session.server.state != "starting", timeout=120)
    return {"server": vars(addon.session.server)}


def markers(args):
    """Generate from Markers: named timeline markers make one film, placed at the first marker."""
    addon = enable()
    scene = configure(addon, args, fps=24, frame=1)
    scene.kinema.prompt = "a misty harbour at dawn"
    scene.frame_start, scene.frame_end = 1, 40
    for frame, name in (
        (5, "a boat leaves the pier"),
        (11, "+ it turns toward the sea"),
        (20, "gulls over the water"),
        (60, "after the end: ignored"),
    ):
        scene.timeline_markers.new(name, frame=frame)
    result = bpy.ops.kinema.generate_from_markers()
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    return {
        "operator": sorted(result),
        "jobs": [job_info(job) for job in addon.session.jobs],
        "strips": strips_info(scene),
    }


def fps_mismatch(args):
    """A clip whose frame rate is not the scene's: added anyway, with a warning that says how to fix it."""
    addon = enable()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    movie, sound, warning = addon.timeline.insert_clip(
        scene, args["clip"], frame=5, name="mismatch", properties={"kinema_seed": 2**32 - 1}
    )
    return {
        "warning": warning,
        "movie": [movie.channel, movie.frame_final_start, movie.frame_final_duration],
        "sound": [sound.channel, sound.frame_final_start, sound.frame_final_duration],
        "seed": movie["kinema_seed"],
    }


def empty_prompt(args):
    addon = enable()
    configure(
        addon,
        args,
    )
    bpy.context.scene.kinema.prompt = "   "
    try:
        bpy.ops.kinema.generate()
        raised = None
    except RuntimeError as error:  # operators that report ERROR raise in background mode
        raised = str(error)
    return {"raised": raised, "jobs": len(addon.session.jobs)}


def cameo(args):
    """A clip with the cameo picked in the panel; the picker lists what the server lets this user use."""
    addon = enable()
    scene = configure(addon, args)
    scene.kinema.cameo = args["cameo"]
    scene.kinema.dialogue = args.get("dialogue", "")
    bpy.ops.kinema.generate()
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    return {"jobs": [job_info(job) for job in addon.session.jobs], "listed": list(addon.session.server.cameos)}


def cameo_capture(args):
    """Make a Cameo: the server's phrase with its time left, the recording sent with the challenge's id, and what
    the server decided, as the panel and Blender's reports say it."""
    addon = enable()
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.server_url, prefs.start_server = args["url"], False
    panel, session = addon.cameo_panel, addon.session
    state, fields = panel.state, bpy.context.window_manager.kinema_cameo

    def settle():
        deadline = time.monotonic() + TIMEOUT
        while state.busy:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out; cameo capture: {state}")
            panel.tick()
            time.sleep(0.05)
        panel.tick()
        session.tick()

    def refused(operator):
        try:
            operator()
        except RuntimeError as error:  # an operator's ERROR report, as Blender raises it to scripts
            return str(error)
        return None

    outcome = {"make_before_phrase": panel.KINEMA_OT_cameo_create.poll(bpy.context)}
    outcome["asked"] = sorted(bpy.ops.kinema.cameo_phrase())
    settle()
    outcome["shown"] = {
        "state": state.state,
        "phrase": state.phrase,
        "digits": state.digits,
        "challenge": state.challenge,
        "lines": panel.phrase_lines(),
        "time_left": state.time_left_text(),
        "seconds_left": state.seconds_left(),
    }
    fields.name = args["cameo"]
    outcome["no_recording"] = refused(bpy.ops.kinema.cameo_create)
    fields.video = args["video"]
    fields.audio = args.get("audio", "")
    if args.get("permission"):
        fields.permission = args["permission"]
    sent = state.challenge
    outcome["made"] = sorted(bpy.ops.kinema.cameo_create())
    settle()
    outcome["result"] = {
        "state": state.state,
        "message": state.message,
        "code": state.code,
        "cameo": state.cameo,
        "challenge_left": state.challenge,
        "listed": list(session.server.cameos),
    }
    # The same phrase again, as if it had been kept: the server refuses it as used.
    state.state, state.challenge, state.deadline = "ready", sent, time.monotonic() + 60
    fields.name = args["cameo"] + "-again"
    bpy.ops.kinema.cameo_create()
    settle()
    outcome["reused"] = {"state": state.state, "message": state.message, "code": state.code}
    # A phrase whose minutes ran out in the panel: Make Cameo is refused before anything is sent.
    bpy.ops.kinema.cameo_phrase()
    settle()
    state.deadline = time.monotonic() - 1
    outcome["expired"] = {
        "time_left": state.time_left_text(),
        "poll": panel.KINEMA_OT_cameo_create.poll(bpy.context),
        "refused": refused(bpy.ops.kinema.cameo_create),
    }
    return outcome


def portable(args):
    """A fresh Blender profile installs a zip with Install from Disk (Blender's own build of plugins/blender when
    ``build`` names that folder), enables it, finds kinema on PATH, and without one asks for it."""
    import subprocess

    archive = args.get("zip")
    if args.get("build"):
        tool = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py")
        out = args["out"]
        os.makedirs(out, exist_ok=True)
        subprocess.run(
            [sys.executable, tool, "build", "--source-dir", args["build"], "--output-dir", out],
            check=True,
            capture_output=True,
        )
        (archive,) = [os.path.join(out, name) for name in os.listdir(out) if name.endswith(".zip")]
    result = bpy.ops.extensions.package_install_files(filepath=archive, repo="user_default", enable_on_install=True)
    enabled = MODULE in bpy.context.preferences.addons
    addon = importlib.import_module(MODULE)
    prefs = bpy.context.preferences.addons[MODULE].preferences
    found = addon.preferences.server_settings().python
    os.environ.pop("KINEMA_PYTHON", None)
    os.environ["PATH"] = args["empty_path"]  # no kinema anywhere: the panel must ask for it
    prefs.server_url = args["url"]
    scene = bpy.context.scene
    scene.kinema.prompt = "a red ball"
    bpy.ops.kinema.generate()
    job = addon.session.jobs[-1]
    run_until(addon, lambda: not job.active, timeout=60)
    return {
        "operator": sorted(result),
        "enabled": enabled,
        "archive": archive,
        "installed": sorted(os.listdir(os.path.dirname(addon.__file__))),
        "python_path": prefs.python_path,
        "start_server": prefs.start_server,
        "found": found,
        "job": job_info(job),
        "server": vars(addon.session.server),
    }


def fit(args):
    """A 96x54 camera view for a 96x64 clip, rendered by another Blender: padded (black bars above and below) or
    cropped (the sides cut), never stretched; the UI's Blender keeps its own settings."""
    addon = enable()
    scene = bpy.context.scene
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (1.0, 1.0, 1.0)  # a white background, so that bars show as black
    camera_data = bpy.data.cameras.new("Fit Camera")
    camera_object = bpy.data.objects.new("Fit Camera", camera_data)
    scene.collection.objects.link(camera_object)
    scene.camera = camera_object
    target = addon.frame_fit.clip_size(96, 54)
    rows = {}
    for mode in ("pad", "crop"):
        task = addon.background_render.start(scene, what="camera", width=96, height=54, target=target, fit=mode)
        deadline = time.monotonic() + TIMEOUT
        while (png := task.poll()) is None:
            assert time.monotonic() < deadline, "the background render never finished"
            time.sleep(0.05)
        path = os.path.join(bpy.app.tempdir or "/tmp", f"kinema-fit-{mode}.png")
        with open(path, "wb") as file:
            file.write(png)
        image = bpy.data.images.load(path)
        width, height = image.size
        pixels = list(image.pixels)
        # the mean of each row's red channel, top row first (Blender keeps rows bottom up)
        means = [sum(pixels[(y * width + x) * 4] for x in range(width)) / width for y in range(height)][::-1]
        rows[mode] = {"size": [width, height], "row_means": means}
        os.unlink(path)
    return {"target": list(target), "rows": rows, "resolution": [scene.render.resolution_x, scene.render.resolution_y]}


def _sequencer_frame(scene):
    """The Sequencer's output at the scene's size: per row and per column, the mean red and green (rows top first)."""
    path = os.path.join(bpy.app.tempdir or "/tmp", "kinema-sequencer.png")
    scene.render.use_sequencer = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True, scene=scene.name)
    image = bpy.data.images.load(path)
    width, height = image.size
    pixels = list(image.pixels)
    bpy.data.images.remove(image)
    os.unlink(path)

    def mean(channel, cells):
        cells = list(cells)
        return round(sum(pixels[i * 4 + channel] for i in cells) / len(cells), 3)

    rows = range(height)[::-1]  # Blender keeps rows bottom up
    return {
        "size": [width, height],
        "row_red": [mean(0, (y * width + x for x in range(width))) for y in rows],
        "column_red": [mean(0, (y * width + x for y in range(height))) for x in range(width)],
        "column_green": [mean(1, (y * width + x for y in range(height))) for x in range(width)],
    }


def fit_back(args):
    """Clips on the 32-pixel grid shown at a render size off it: each movie is placed as the add-on places a
    finished clip (frame_fit.placement, timeline.place), and the Sequencer's output is read back."""
    addon = enable()
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = args["target"]
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"  # white stays 1.0
    editor = scene.sequence_editor_create()
    frames = {}
    for case in args["cases"]:
        movie = addon.timeline.top_level_strips(editor).new_movie(case["name"], case["path"], 1, 1)
        size = addon.timeline.picture_size(movie)
        crop, scale = addon.frame_fit.placement(
            tuple(args["target"]), size, case["mode"], from_frame=case["from_frame"]
        )
        addon.timeline.place(movie, crop, scale)
        scene.frame_current = 1
        frames[case["name"]] = {"clip": list(size), "crop": list(crop), "scale": list(scale), **_sequencer_frame(scene)}
        addon.timeline.top_level_strips(editor).remove(movie)
    return {"frames": frames}


def fit_generate(args):
    """At a render size off the grid (100x54): Generate from Camera asks for the grid size and its clip is shown
    at exactly the render size, lined up with the frame; New Seed keeps its parent's placement; Generate (a prompt
    alone) covers the frame in Crop."""
    addon = enable()
    scene = configure(addon, args, fps=24, frame=1)
    options = scene.kinema
    options.use_scene_size = True
    scene.render.resolution_x, scene.render.resolution_y = 100, 54
    scene.render.resolution_percentage = 100
    options.image_fit = "pad"
    camera_data = bpy.data.cameras.new("Fit Camera")
    camera_object = bpy.data.objects.new("Fit Camera", camera_data)
    scene.collection.objects.link(camera_object)
    scene.camera = camera_object
    result = {"camera": sorted(bpy.ops.kinema.generate_from_camera())}
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    (made,) = addon.session.jobs
    strip = scene.sequence_editor.strips_all[made.strips[0]]

    def placed(strip):
        return {
            "name": strip.name,
            "size": list(addon.timeline.picture_size(strip)),
            "crop": [strip.crop.min_x, strip.crop.max_x, strip.crop.min_y, strip.crop.max_y],
            "scale": [strip.transform.scale_x, strip.transform.scale_y],
            "offset": [strip.transform.offset_x, strip.transform.offset_y],
        }

    result["from_camera"] = {"job": job_info(made), **placed(strip)}
    for other in addon.timeline.top_level_strips(scene.sequence_editor):
        other.select = other == strip
    scene.sequence_editor.active_strip = strip
    result["new_seed"] = sorted(bpy.ops.kinema.from_strip(action="regenerate"))
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    again = addon.session.jobs[-1]
    result["regenerated"] = {"job": job_info(again), **placed(scene.sequence_editor.strips_all[again.strips[0]])}
    options.image_fit = "crop"
    scene.frame_current = 200
    result["prompt"] = sorted(bpy.ops.kinema.generate())
    run_until(addon, lambda: all(not job.active for job in addon.session.jobs))
    last = addon.session.jobs[-1]
    result["from_prompt"] = {"job": job_info(last), **placed(scene.sequence_editor.strips_all[last.strips[0]])}
    return result


def models(args):
    """The preferences' model list: each model's licence and whether it is downloaded; a download needs Blender's
    online access and the licence accepted, then follows the server's pull to its end."""
    addon = enable()
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.server_url, prefs.start_server = args["url"], False
    system = bpy.context.preferences.system
    system.use_online_access = False
    session = addon.session
    session.refresh_models(bpy.context)
    run_until(addon, lambda: session.server.catalogue or "Reading" not in session.server.models_message, timeout=60)
    model = args["model"]

    def pull(**options):
        try:
            return sorted(bpy.ops.kinema.pull_model(model=model, **options))
        except RuntimeError as error:  # an operator that reports an error raises it in a script
            return str(error)

    refused = {"offline": pull(accept_license=True)}
    system.use_online_access = True
    refused["not_accepted"] = pull()
    started = pull(accept_license=True)
    run_until(addon, lambda: not session.server.pulling, timeout=60)
    row = session.catalogue_row(model)
    return {
        "catalogue": session.server.catalogue,
        "suggested": list(session.server.models),
        "refused": refused,
        "started": started,
        "pull": session.server.pulls.get(model),
        "pull_text": session.pull_text(session.server.pulls.get(model) or {}),
        "licence_lines": addon.operators.licence_lines(row, model),
    }


def pull(args):
    """Download a model from the preferences through a server whose Hub is tests/fake_hub.py: the progress bar's
    pull stands half done until this scenario has seen it, then releases the Hub, and the model is installed."""
    import urllib.request

    addon = enable()
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.server_url, prefs.start_server = args["url"], False
    bpy.context.preferences.system.use_online_access = True
    session = addon.session
    model = args["model"]
    prefs.pull_model_id = model  # "Other model": any Hub id
    result = bpy.ops.kinema.pull_model(model=model, accept_license=True)
    seen = []

    def half_done():
        pull = session.server.pulls.get(model) or {}
        seen.append([pull.get("status"), pull.get("progress")])
        progress = pull.get("progress")
        return pull.get("status") == "downloading" and progress is not None and 0 < progress < 1

    run_until(addon, half_done, timeout=120)
    half = dict(session.server.pulls[model])
    shown = session.pull_text(half)
    urllib.request.urlopen(args["hub"] + "/release", timeout=30).read()
    run_until(addon, lambda: not session.server.pulling, timeout=120)
    run_until(addon, lambda: (session.catalogue_row(model) or {}).get("installed"), timeout=60)
    return {
        "operator": sorted(result),
        "half": half,
        "shown": shown,
        "final": session.server.pulls[model],
        "row": session.catalogue_row(model),
    }


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]  # blender -b --python … -- ARGS
    name, arguments = argv[0], json.loads(argv[1])
    outcome = globals()[name](arguments)
    print("RESULT " + json.dumps(outcome, default=str), flush=True)
