"""The add-on's jobs as the panel shows them, and the timer tick that moves them on.

Main thread only. Worker threads (runner.py) never touch these objects: they post
updates, and ``tick`` applies them, adds finished clips to the Sequencer and
redraws. Headless Blender never fires timers, so scripts and tests call ``tick()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import time
import traceback

import bpy

from . import clipfiles, frame_fit, live, markers, preferences, runner, settings, timeline

TICK_SECONDS = 0.2
ACTIVE = ("rendering", "starting", "connecting", "queued", "running", "downloading", "cancelling")
FINAL = ("done", "failed", "cancelled")
STATUS_TEXT = {
    "rendering": "Rendering the first frame",
    "starting": "Starting",
    "connecting": "Connecting",
    "queued": "Queued",
    "running": "Generating",
    "downloading": "Saving",
    "cancelling": "Cancelling",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


class UserError(Exception):
    """Something the user can fix before a job starts; shown as an operator report."""


@dataclasses.dataclass
class Job:
    id: int
    prompt: str
    seed: int
    model: str
    scene_name: str
    blend_path: str
    frame: int
    has_image: bool
    fields: dict
    status: str = "starting"
    progress: float = 0.0
    stage: str = ""
    message: str = ""
    server_id: str = ""
    path: str = ""
    video: dict = dataclasses.field(default_factory=dict)
    notes: tuple = ()
    strips: tuple = ()
    created: float = dataclasses.field(default_factory=time.time)
    parent: str = ""  # the server id of the clip this one was made from (extend, remix, regenerate, frame)
    parent_strip: str = ""
    action: str = "generate"  # generate, frame, extend, remix, regenerate
    above: int = 0  # the new strips go on channels above this one (the source strip's)
    previews: int = 0  # step previews received
    preview_icon: int = 0  # the newest one, for the panel (live.show_preview)
    preview_path: str = ""
    # How the clip goes back into the frame: (the size it must show at, Fit mode, the size asked for)
    fit: tuple = ()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def status_text(self) -> str:
        text = STATUS_TEXT.get(self.status, self.status)
        if self.status == "running" and self.stage:
            text = f"{text} ({self.stage})"
        return text

    @property
    def summary(self) -> str:
        """What will be (or was) made, e.g. '768x512, 4.04 s, seed 7'."""
        if not self.video:
            return f"seed {self.seed}"
        return f"{self.video.get('size')}, {float(self.video.get('seconds', 0)):.2f} s, seed {self.seed}"

    def strip_properties(self) -> dict:
        info = self.video.get("kinema") or {}
        return {
            "kinema_prompt": self.prompt,
            "kinema_negative_prompt": info.get("negative_prompt", self.fields.get("negative_prompt") or ""),
            "kinema_seed": info.get("seed", self.seed),
            "kinema_backend": info.get("backend", self.model),
            "kinema_model": self.video.get("model", self.model),
            "kinema_style": info.get("style") or "",
            "kinema_steps": info.get("steps", 0),
            "kinema_tier": info.get("tier") or self.fields.get("tier") or "",
            "kinema_size": self.video.get("size", ""),
            "kinema_fps": info.get("fps", ""),
            "kinema_first_frame": self.has_image,
            "kinema_job": self.server_id,
            "kinema_action": self.action,
            "kinema_parent": self.parent,
            "kinema_parent_strip": self.parent_strip,
        }


@dataclasses.dataclass
class ServerState:
    state: str = "unknown"  # unknown, starting, connected, error
    message: str = ""
    url: str = ""
    models: list = dataclasses.field(default_factory=list)
    cameos: list = dataclasses.field(default_factory=list)  # cameo names the server lets this user use
    tiers: list = dataclasses.field(default_factory=list)  # the server's tier names; empty until it answers
    default_tier: str = ""
    ask_python: bool = False  # no server, and no kinema found to start one: the panel asks where it is
    catalogue: list = dataclasses.field(default_factory=list)  # GET /v1/models rows: licences, installed
    models_message: str = ""  # why the model list could not be read
    pulls: dict = dataclasses.field(default_factory=dict)  # model id -> the server's pull of it, as last polled

    @property
    def pulling(self) -> bool:
        return any(pull.get("status") in ("queued", "downloading") for pull in self.pulls.values())


jobs: list[Job] = []
server = ServerState()
work = runner.Runner()
stop_server_on_exit = True
_ids = itertools.count(1)


def get(job_id: int) -> Job | None:
    return next((job for job in jobs if job.id == job_id), None)


def latest_active() -> Job | None:
    return next((job for job in reversed(jobs) if job.active and job.status != "cancelling"), None)


def submit(
    context, *, image: bytes | None = None, from_markers: bool = False, render=None, size: tuple | None = None
) -> list[Job]:
    """Start jobs from the scene's Kinema settings (one per variation); raises UserError for what the user must
    fix first.

    ``from_markers``: one film from the timeline markers (kinema storyboard), placed at the first marker;
    the prompt, if any, is the setting every shot shares. ``render``: a background_render.RenderTask whose frame
    starts the clips once it is there (they wait as "rendering"); ``size``: the clip's size instead of the scene's.
    """
    scene = timeline.target_scene(context)
    options = scene.kinema
    prompt = " ".join(options.prompt.split())
    board = None
    if from_markers:
        try:
            board = markers.storyboard_from_markers(
                [(marker.frame, marker.name) for marker in scene.timeline_markers],
                timeline.scene_fps(scene),
                scene.frame_end,
                setting=prompt,
                frame_start=scene.frame_start,
            )
        except markers.MarkerError as error:
            raise UserError(str(error)) from None
    elif not prompt:
        raise UserError("Type a prompt first")
    _check_online(context)
    width, height = size or size_for(scene)
    model = options.backend.strip() or preferences.get(context).default_backend.strip()
    fields = {
        "seconds": round(options.seconds, 3),
        "size": (width, height),
        "fps": round(timeline.scene_fps(scene), 6),  # the clip's frames then match the scene's one to one
        "negative_prompt": options.negative_prompt.strip() or None,
        "style": options.style.strip() or None,
        "model": model or None,
        "steps": options.steps or None,
        "tier": options.tier,  # for markers too: the film's tier, over the storyboard's own
        "audio": options.audio,
    }
    if options.cameo.strip() and board is None:
        fields["cameos"] = [options.cameo.strip()]
        if options.dialogue.strip():
            fields["dialogue"] = options.dialogue.strip()  # said in the cameo's voice (the server's voice model)
    frame = scene.frame_current
    if board is not None:
        fields.pop("seconds")  # the markers say how long each shot is
        first = board["shots"][0]["prompt"]
        prompt, frame = (
            f"{len(board['shots'])} shots: {first}",
            min(m.frame for m in scene.timeline_markers if scene.frame_start <= m.frame <= scene.frame_end),
        )
    count = 1 if board is not None else options.variations
    return [
        _start(
            context,
            scene,
            prompt,
            model,
            dict(fields, seed=seed),
            frame=frame,
            image=image,
            storyboard=board,
            render=render,
            fit=(size_for(scene), options.image_fit, (width, height)),
        )
        for seed in seeds(options, count)
    ]


STRIP_ACTIONS = ("frame", "extend", "remix", "regenerate")
FOLLOW_UP_FIELDS = ("model", "backend", "negative_prompt", "seed", "steps", "guidance", "style", "tier")


def submit_from_strips(
    context, action: str, strips, *, image: bytes | None = None, render=None, size: tuple | None = None
) -> list[Job]:
    """New clips from Sequencer strips, each recording its parent; the panel's Variations make several of each.

    ``frame``: image to video from ``image`` (the strip's frame under the playhead), placed at the playhead;
    ``extend``: the clip plus the panel's Seconds, continued from its last frames; ``remix``: the same shot for
    the panel's prompt; ``regenerate``: the strip's own settings with a new seed. All but ``frame`` need a strip
    kinema made (its ``kinema_job`` on the server); the new strips go on free channels above the source.
    """
    if action not in STRIP_ACTIONS:
        raise ValueError(action)
    scene = timeline.target_scene(context)
    options = scene.kinema
    _check_online(context)
    panel_prompt = " ".join(options.prompt.split())
    count = options.variations
    started: list[Job] = []
    for strip in strips:
        recorded = {key[len("kinema_") :]: strip[key] for key in strip.keys() if key.startswith("kinema_")}  # noqa: SIM118 - custom properties
        parent = str(recorded.get("job") or "")
        if action != "frame" and not parent:
            raise UserError(f"'{strip.name}' was not made by Kinema: extend, remix and regenerate need a Kinema clip")
        prompt = panel_prompt or str(recorded.get("prompt") or "")
        if action in ("frame", "remix") and not prompt:
            raise UserError("Type a prompt first: it says what the new clip shows")
        lineage = {"parent": parent, "parent_strip": strip.name, "action": action}
        fps = round(timeline.scene_fps(scene), 6)
        model = str(recorded.get("model") or recorded.get("backend") or "") or options.backend.strip()
        if action == "frame":
            width, height = size or size_for(scene)
            model = options.backend.strip() or preferences.get(context).default_backend.strip()
            fields = {
                "seconds": round(options.seconds, 3),
                "size": (width, height),
                "fps": fps,
                "negative_prompt": options.negative_prompt.strip() or None,
                "style": options.style.strip() or None,
                "model": model or None,
                "steps": options.steps or None,
                "tier": options.tier,
                "audio": options.audio,
            }
            frame, above = scene.frame_current, 0
        else:
            fields = {
                "negative_prompt": str(recorded.get("negative_prompt") or "") or None,
                "style": str(recorded.get("style") or "") or None,
                "model": model or None,
                "steps": int(recorded.get("steps") or 0) or None,
                "tier": str(recorded.get("tier") or "") or options.tier,
            }
            frame, above = strip.frame_final_start, strip.channel
            if action == "regenerate":
                size = str(recorded.get("size") or "")
                fields.update(
                    seconds=round(strip.frame_final_duration / timeline.scene_fps(scene), 3),
                    fps=fps,
                    audio=bool(options.audio),
                )
                if "x" in size:
                    fields["size"] = size
            elif action == "extend":
                lineage["seconds"] = round(options.seconds, 3)
                if panel_prompt:
                    lineage["prompt"] = panel_prompt
            else:
                lineage["strength"] = round(options.remix_strength, 3)
                lineage["keep_audio"] = bool(options.remix_keep_audio)
        old_seed = recorded.get("seed")
        for seed in seeds(options, count, avoid=old_seed if action == "regenerate" else None):
            started.append(
                _start(
                    context,
                    scene,
                    prompt,
                    model,
                    dict(fields, seed=seed),
                    frame=frame,
                    image=image if action == "frame" else None,
                    lineage=lineage,
                    above=above,
                    render=render if action == "frame" else None,
                    fit=(size_for(scene), options.image_fit, fields["size"] if action == "frame" else ()),
                )
            )
    if not started:
        raise UserError("Select a movie strip first")
    return started


def seeds(options, count: int, *, avoid=None) -> list[int]:
    """``count`` seeds: random ones (always, to regenerate), else the panel's seed and the ones after it."""
    if options.random_seed or avoid is not None:
        chosen: list[int] = []
        generator = random.SystemRandom()
        while len(chosen) < count:
            seed = generator.randint(0, settings.MAX_SEED)
            if seed not in chosen and str(seed) != str(avoid):
                chosen.append(seed)
        return chosen
    return [(options.seed + index) % (settings.MAX_SEED + 1) for index in range(count)]


def _check_online(context) -> None:
    global stop_server_on_exit
    refusal = preferences.online_refusal(context)
    if refusal:
        raise UserError(refusal)
    stop_server_on_exit = preferences.get(context).stop_server_on_quit


def _start(
    context,
    scene,
    prompt: str,
    model: str,
    fields: dict,
    *,
    frame: int,
    image: bytes | None = None,
    storyboard: dict | None = None,
    lineage: dict | None = None,
    above: int = 0,
    render=None,
    fit: tuple = (),
) -> Job:
    lineage = dict(lineage or {})
    action = lineage.get("action", "")
    if action in ("extend", "remix"):
        fields = {key: value for key, value in fields.items() if key in FOLLOW_UP_FIELDS}
    job = Job(
        id=next(_ids),
        prompt=prompt,
        seed=fields["seed"],
        model=model,
        scene_name=scene.name,
        blend_path=bpy.data.filepath,
        frame=frame,
        has_image=image is not None or render is not None,
        fields=fields,
        parent=lineage.get("parent", ""),
        parent_strip=lineage.get("parent_strip", ""),
        action=action or "generate",
        above=above,
        fit=fit,
    )
    jobs.append(job)
    spec = runner.JobSpec(
        prompt=prompt,
        fields=fields,
        output_dir=preferences.output_dir(context),
        stem=clipfiles.stem_from_prompt(prompt, fields["seed"]),
        image=image,
        storyboard=storyboard,
        follow_up=lineage if action in ("extend", "remix") else None,
    )
    if render is not None:  # the frame is still rendering: tick() starts the job once it is there
        job.status = "rendering"
        _rendering.setdefault(id(render), (render, []))[1].append((job.id, spec, preferences.server_settings(context)))
    else:
        work.start(job.id, spec, preferences.server_settings(context))
    ensure_ticking()
    return job


# Renders in flight: id(task) -> (task, [(job id, spec, server settings)]) for the jobs that wait on its frame.
_rendering: dict[int, tuple] = {}


def _poll_renders() -> bool:
    """Start the jobs whose frame has arrived, fail those whose render failed; True if any changed."""
    changed = False
    for key, (task, waiting) in list(_rendering.items()):
        try:
            image = task.poll()
        except Exception as error:  # camera.CameraError with the reason, or a bug: the jobs must not hang
            del _rendering[key]
            for job_id, _spec, _settings in waiting:
                job = get(job_id)
                if job is not None and job.status == "rendering":
                    job.status, job.message = "failed", str(error)
            notify("ERROR", f"Kinema: {error}")
            changed = True
            continue
        if image is None:
            continue
        del _rendering[key]
        for job_id, spec, server_settings in waiting:
            job = get(job_id)
            if job is not None and job.status == "rendering":
                job.status = "starting"
                work.start(job.id, dataclasses.replace(spec, image=image), server_settings)
        changed = True
    return changed


def _cancel_render(job_id: int) -> None:
    """A job cancelled while its frame renders: the render stops when no other job waits on it."""
    for key, (task, waiting) in list(_rendering.items()):
        waiting[:] = [entry for entry in waiting if entry[0] != job_id]
        if not waiting:
            task.cancel()
            del _rendering[key]


def size_for(scene) -> tuple[int, int]:
    options = scene.kinema
    if not options.use_scene_size:
        return options.width, options.height
    render = scene.render
    scale = render.resolution_percentage / 100.0
    return max(16, round(render.resolution_x * scale)), max(16, round(render.resolution_y * scale))


def cancel(job_id: int, context=None) -> bool:
    job = get(job_id)
    if job is None or not job.active or job.status == "cancelling":
        return False
    if job.status == "rendering":
        _cancel_render(job.id)
        job.status, job.message = "cancelled", "Cancelled"
        ensure_ticking()
        return True
    work.cancel(job.id, preferences.server_settings(context))
    if job.status in ("starting", "connecting"):
        job.status, job.message = "cancelled", "Cancelled"  # never reached the server; its thread gives up
    else:
        job.status = "cancelling"
    ensure_ticking()
    return True


def dismiss(job_id: int | None = None) -> None:
    """Forget one finished job, or all of them."""
    jobs[:] = [job for job in jobs if job.active or (job_id is not None and job.id != job_id)]


def connect(context=None) -> None:
    refusal = preferences.online_refusal(context)
    if refusal:
        server.state, server.message = "error", refusal
        return
    server.state, server.message = "starting", "Connecting…"
    work.connect(preferences.server_settings(context))
    ensure_ticking()


# --------------------------------------------------------------------------- the timer


def tick() -> float | None:
    """Apply worker news; returns when to run again (None: nothing to wait for, the timer stops)."""
    updates = work.drain()
    rendered = False
    try:
        rendered = _poll_renders()
        for update in updates:
            _apply(update)
    except Exception:  # a timer that raises is dropped by Blender for good; keep the add-on alive
        traceback.print_exc()
    if updates or rendered:
        _redraw()
    waiting = any(job.active for job in jobs) or server.state == "starting" or server.pulling
    return TICK_SECONDS if waiting else None


def refresh_models(context=None) -> None:
    """Read the server's models (licences, installed) for the preferences, off the main thread."""
    refusal = preferences.online_refusal(context)
    if refusal:
        server.models_message = refusal
        return
    server.models_message = "Reading the models…"
    work.list_models(preferences.server_settings(context))
    ensure_ticking()


def pull_model(context, model: str, accept_license: bool) -> None:
    """Have the server download ``model`` once its licence was shown and accepted; raises UserError first for
    what the user must fix. The server downloads from the Internet, so Blender's online access must allow it."""
    model = model.strip()
    if not bpy.app.online_access:
        raise UserError("Downloading a model needs Blender's online access: allow it in Preferences > System > Network")
    refusal = preferences.online_refusal(context)
    if refusal:
        raise UserError(refusal)
    if "/" not in model:
        raise UserError("Name the model by its Hugging Face id, e.g. Lightricks/LTX-2")
    if not accept_license:
        raise UserError(f"Read the licence of {model} and tick 'I accept its licence' first")
    if server.pulls.get(model, {}).get("status") in ("queued", "downloading"):
        raise UserError(f"{model} is already being downloaded")
    server.pulls[model] = {"model": model, "status": "queued", "progress": None}
    work.pull_model(model, accept_license, preferences.server_settings(context))
    ensure_ticking()


def catalogue_row(model: str) -> dict | None:
    return next((row for row in server.catalogue if row.get("id") == model), None)


def pull_text(pull: dict) -> str:
    """One line about a pull, for the preferences and the status bar."""
    model, status = pull.get("model", ""), pull.get("status")
    if status == "failed":
        return f"Kinema: {model} was not downloaded: {(pull.get('error') or {}).get('message', 'failed')}"
    if status == "completed":
        return f"Kinema: {model} is downloaded"
    progress = pull.get("progress")
    done = pull.get("downloaded_bytes")
    size = f" ({done / 1e9:.2f} of {pull['total_bytes'] / 1e9:.2f} GB)" if done and pull.get("total_bytes") else ""
    return f"Downloading {model}" + (f" {progress:.0%}{size}" if progress is not None else "…")


def ensure_ticking() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)


def _apply(update: runner.Update) -> None:
    changes = dict(update.changes)
    if update.job == 0:
        pull = changes.pop("pull", None)
        if pull:
            server.pulls[pull["model"]] = pull
            if pull.get("status") in ("completed", "failed"):
                notify("INFO" if pull["status"] == "completed" else "ERROR", pull_text(pull))
        for key, value in changes.items():
            setattr(server, key, value)
        return
    job = get(update.job)
    if job is None or job.status in FINAL:
        return  # dismissed, or cancelled here before its thread noticed
    preview = changes.pop("preview", None)
    if preview:
        live.show_preview(job, preview)
    video = changes.pop("video", None)
    if video:
        job.video, job.server_id = video, video["id"]
        job.notes = tuple((video.get("kinema") or {}).get("notes") or ())  # e.g. how the size or length was snapped
    if job.status == "cancelling" and changes.get("status") in ("queued", "running", "downloading"):
        changes.pop("status")
    for key, value in changes.items():
        setattr(job, key, value)
    if job.status == "completed":
        _add_to_sequencer(job)
    elif job.status == "failed":
        notify("ERROR", f"Kinema: {job.message}")


def _add_to_sequencer(job: Job) -> None:
    job.status = "done"
    try:
        live.adopt(job)  # made for an unsaved file that has been saved since: beside it now
    except OSError as error:
        job.message = f"Could not move {job.path} beside the .blend: {error}"
    scene = bpy.data.scenes.get(job.scene_name)
    if scene is None or bpy.data.filepath != job.blend_path:
        job.message = f"Saved {job.path}; its scene is not open any more, add it from there"
        notify("WARNING", f"Kinema: {job.message}")
        return
    path = job.path
    if bpy.data.filepath and bpy.context.preferences.filepaths.use_relative_paths:
        with contextlib.suppress(ValueError):  # another drive (Windows)
            path = bpy.path.relpath(job.path)  # "//kinema/…": the project folder can move
    try:
        movie, sound, warning = timeline.insert_clip(
            scene,
            path,
            frame=job.frame,
            name=timeline.strip_name(job.prompt),
            properties=job.strip_properties(),
            sound=(job.video.get("kinema") or {}).get("audio", True),
            above=job.above,
        )
    except RuntimeError as error:
        job.message = f"Saved {job.path}, but could not add it to the Sequencer: {error}"
        notify("ERROR", f"Kinema: {job.message}")
        return
    _place(job, scene, movie)
    job.strips = tuple(strip.name for strip in (movie, sound) if strip is not None)
    job.message = warning or f"Added '{movie.name}' on channel {movie.channel}"
    _undo_push("Kinema: add clip")
    notify("WARNING" if warning else "INFO", f"Kinema: {job.message}")


def _place(job: Job, scene, movie) -> None:
    """Show the clip at exactly the size it was made for (the render size), by the panel's Fit: a clip made from a
    strip at its size as that strip is; one started from a frame lined up with that frame; else fitted or covering."""
    size = timeline.picture_size(movie)
    every = getattr(scene.sequence_editor, "strips_all", None) or scene.sequence_editor.sequences_all  # 4.2, 4.3
    parent = every.get(job.parent_strip) if job.parent_strip and job.action != "frame" else None
    if parent is not None and parent.type == "MOVIE" and timeline.picture_size(parent) == size:
        timeline.same_placement(movie, parent)
        return
    if not job.fit or not all(size):
        return
    target, mode, asked = job.fit
    from_frame = job.has_image and tuple(asked) == tuple(size)  # else the server made another size than asked
    crop, scale = frame_fit.placement(tuple(target), size, mode, from_frame=from_frame)
    timeline.place(movie, crop, scale)


# --------------------------------------------------------------------------- talking to the user


def notify(level: str, message: str) -> None:
    """Show ``message`` in the status bar and the Info log; printed in background mode."""
    window = _any_window()
    if bpy.app.background or window is None:
        print(message)
        return
    try:
        with bpy.context.temp_override(window=window):
            bpy.ops.kinema.report(level=level, message=message)
    except (RuntimeError, AttributeError):  # during shutdown or add-on reload
        print(message)


def _undo_push(message: str) -> None:
    """Strips added from a timer join no undo step by themselves; without one, Ctrl+Z would also undo them."""
    window = _any_window()
    if bpy.app.background or window is None:
        return
    try:
        with bpy.context.temp_override(window=window):
            bpy.ops.ed.undo_push(message=message)
    except RuntimeError:
        pass


def _any_window():
    manager = getattr(bpy.context, "window_manager", None)
    return manager.windows[0] if manager is not None and manager.windows else None


def _redraw() -> None:
    manager = getattr(bpy.context, "window_manager", None)
    if manager is None or not manager.windows:
        return
    for window in manager.windows:
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()
    # The status bar is a global area, outside screen.areas; it redraws when a window's view layer is
    # said to change (its message-bus subscription), and publishing that changes nothing.
    bpy.msgbus.publish_rna(key=(bpy.types.Window, "view_layer"))


def shutdown() -> None:
    """Add-on disabled or Blender quitting: stop our jobs on the server, and the server we started.

    At exit Blender may already be half gone, so each part guards itself.
    """
    try:
        server_settings = preferences.server_settings()
        for job in jobs:
            if job.active:
                work.cancel(job.id, server_settings)
    except Exception:  # preferences or context already torn down
        pass
    for task, _waiting in list(_rendering.values()):
        with contextlib.suppress(Exception):
            task.cancel()
    _rendering.clear()
    try:
        if bpy.app.timers.is_registered(tick):
            bpy.app.timers.unregister(tick)
    except Exception:
        pass
    with contextlib.suppress(Exception):  # previews already torn down
        live.forget_previews()
    if stop_server_on_exit:
        work.connection.stop_started_server()
