"""Kinema for OBS Studio: type a prompt, press Generate, review the clip, and play it on air with its sound.

Install with ``kinema install obs`` (it copies this file and kinema's ``client.py``
into one folder), then in OBS: Tools → Scripts → + → ``kinema_obs.py``.

The clip is made by a kinema server (``kinema serve``), never inside OBS: OBS's
Python is not kinema's, and generating here would stall OBS's video thread.
Each Generate runs on its own thread (network only: submit, wait, download);
a 100 ms timer on OBS's video thread takes finished clips from a queue. A
finished clip waits in the "Clips for air" list and plays for review in
"Kinema Preview", a media source in no scene (so never on air; Open preview
window shows it), or, in Studio Mode, in the preview scene's own source. Play
switches the ``local_file`` of the target scene's Media Source, "Kinema Clip
(<scene>)". Each scene has its own, so changing the target (or, with the
default target, the scene on air) never shows a clip in the scene left behind,
and each scene keeps where the streamer placed its clip; ``kinema obs play``
uses the same sources. With auto-play on, clips skip review: each plays when
it is ready or when the one on air ends.

Only the standard library: OBS runs this with its own Python (the system
python3 on Linux, the one set in Tools → Scripts → Python Settings elsewhere).
"""

import collections
import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback

import obspython as obs

SOURCE_PREFIX = "Kinema Clip"  # a scene's source is "Kinema Clip (<scene>)", as in kinema.hosts.obs_remote
SOURCE_KIND = "ffmpeg_source"
TICK_MS = 100
DEFAULT_URL = "http://127.0.0.1:8765"
# The tier menu's labels; the tiers themselves (and the default) come from the server, else the copied client.py.
TIER_LABELS = {"draft": "Draft: fast preview", "standard": "Standard", "final": "Final: more steps, no caching"}
PICTURE_FILTER = "Pictures (*.png *.jpg *.jpeg *.webp);;All files (*.*)"
PREVIEW_SOURCE = "Kinema Preview"  # where clips are reviewed outside Studio Mode: in no scene, so never on air
AT_END = (("hold", "Hold the last frame"), ("hide", "Hide it (the source goes blank)"))
TEXT_KINDS = ("text_ft2_source", "text_gdiplus")  # unversioned ids of OBS's Text sources
STATUS_TICKS = 5  # the timer refreshes the status every 5 ticks (0.5 s), and writes it only when it changed
BACKENDS = ("", "ltx2", "wan", "tiny", "tiny-wan")
SIZES = ("", "768x512", "512x768", "1280x704", "704x1280", "512x512")
VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.webm *.flv *.ts);;All files (*.*)"
CAMEO_PERMISSIONS = (
    ("only_me", "Only me"),
    ("listed", "Me and the users below (verified cameos only)"),
    ("everyone", "Everyone on the server (verified cameos only)"),
)
# What each refusal of a cameo means to the person at the camera; the server's own sentence follows it.
CAMEO_REFUSALS = {
    "challenge_expired": "The phrase expired before the recording arrived",
    "challenge_used": "That phrase was already used for a capture",
    "challenge_unknown": "The server does not know that phrase",
    "challenge_not_yours": "That phrase was issued to another user",
    "cameo_wrong_code": "The recording does not say the phrase's code",
    "cameo_no_speech_heard": "No speech was heard in the recording",
    "cameo_lips_mismatch": "The mouth in the recording does not follow the voice",
    "cameo_different_face": "The voice comes from another face than the one kept",
    "cameo_widen_unverified": "Only a verified cameo may be shared",
    "cameo_no_face": "No face was found in the recording",
    "cameo_several_people": "More than one person is in the recording",
    "cameo_too_short": "The recording is too short",
}
HOTKEYS = (
    ("kinema.generate", "Kinema: Generate a clip from the prompt", "generate"),
    ("kinema.play_next", "Kinema: Play the next clip on air", "play_next"),
    ("kinema.clear_queue", "Kinema: Clear the clip queue", "clear_queue"),
    ("kinema.cancel", "Kinema: Cancel the generations under way", "cancel"),
)
PLAYING_STATES = (
    "OBS_MEDIA_STATE_PLAYING",
    "OBS_MEDIA_STATE_OPENING",
    "OBS_MEDIA_STATE_BUFFERING",
    "OBS_MEDIA_STATE_PAUSED",
)
HERE = os.path.dirname(os.path.abspath(__file__))


def _log(message):
    """Into OBS's log. From other threads it waits for the timer, so OBS can say which script it came from."""
    if threading.current_thread() is threading.main_thread() or _on_obs_thread.active:
        print("kinema: " + message)
    else:
        state.inbox.append(("log", message))


class _ObsThread(threading.local):
    active = False


_on_obs_thread = _ObsThread()


def _load_client():
    """kinema's client.py from beside this file, imported by path: OBS's Python has no kinema installed."""
    path = os.path.join(HERE, "client.py")
    if not os.path.isfile(path):
        raise ImportError(f"{path} is missing: reinstall with `kinema install obs`")
    spec = importlib.util.spec_from_file_location("kinema_obs_client", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # namedtuples and exceptions look themselves up here
    spec.loader.exec_module(module)
    return module


def _installed_defaults():
    """What `kinema install obs` recorded: the Python kinema lives in, so Generate can start a server."""
    try:
        with open(os.path.join(HERE, "kinema_obs.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


try:
    client_module = _load_client()
    CLIENT_ERROR = None
except (ImportError, SyntaxError) as error:  # shown in the script's status instead of a traceback
    client_module = None
    CLIENT_ERROR = str(error)
TIERS = tuple(getattr(client_module, "TIERS", None) or TIER_LABELS)
DEFAULT_TIER = getattr(client_module, "DEFAULT_TIER", None) or "standard"


class _State:
    """Everything the script keeps. Threads share it through ``lock`` and the ``inbox`` deque."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inbox = collections.deque()  # (kind, ...) for the timer; deque appends are atomic
        self.playlist = []  # clips waiting for air: dict(path, key, prompt); edited under ``lock``
        self.preview = None  # dict(name, path): the clip under review and the source it plays in
        self.now_playing = None
        self.playing_source = None  # name of the source now_playing went to
        self.sources = {}  # source name -> our strong reference while connected to its media_ended signal
        self.source_lock = threading.Lock()
        self.config = {}  # a plain copy of the settings, replaced whole by script_update
        self.settings = None  # the script's obs_data; touched on the UI thread only
        self.jobs = collections.OrderedDict()  # key -> dict(prompt, state, percent, ...)
        self.counter = 0
        self.message = ""
        self.server_lock = threading.Lock()
        self.server_process = None  # the `kinema serve` this script started, stopped on unload
        self.server_note = ""
        self.backends = []
        self.styles = []  # the server's style presets (its users' own included), for the Style list
        self.tiers = list(TIERS)  # the server's tier names, for the Quality list; the client's copy until it answers
        self.default_tier = DEFAULT_TIER
        self.status_text = ""  # what the timer last wrote to the status text source
        self.ticks = 0
        self.cameos = []  # the ids (char_...) of the cameos this server's user may use, for the Cameo list
        # Make a cameo: state idle, asking, ready (phrase shown), uploading, verified, unverified or refused
        self.cameo = {"state": "idle", "challenge": "", "phrase": "", "digits": "", "deadline": 0.0, "until": 0.0}
        self.cameo_message = ""
        self.hotkeys = {}


state = _State()


# --------------------------------------------------------------------------- OBS script API


def script_description():
    text = (
        f"<b>Kinema</b>: type a prompt and press Generate; the finished clip waits for review in"
        f" “{PREVIEW_SOURCE}” (in Studio Mode, in the preview scene) and goes on air, with its sound, when you"
        f" press Play, in the target scene's media source “{SOURCE_PREFIX} (<i>scene</i>)”. A kinema server"
        f" makes it, at a lower CPU priority than OBS, so OBS keeps its frame rate."
    )
    if CLIENT_ERROR:
        text += f"<br><font color='#e05050'>{CLIENT_ERROR}</font>"
    return text


def script_defaults(settings):
    installed = _installed_defaults()
    obs.obs_data_set_default_string(settings, "server_url", installed.get("server_url", DEFAULT_URL))
    obs.obs_data_set_default_bool(settings, "start_local", bool(installed.get("kinema_python")))
    obs.obs_data_set_default_string(settings, "kinema_python", installed.get("kinema_python", ""))
    obs.obs_data_set_default_string(settings, "clips_dir", _default_clips_dir())
    obs.obs_data_set_default_double(settings, "seconds", 4.0)
    obs.obs_data_set_default_int(settings, "steps", 0)
    obs.obs_data_set_default_string(settings, "tier", DEFAULT_TIER)
    obs.obs_data_set_default_bool(settings, "auto_play", False)
    obs.obs_data_set_default_string(settings, "at_end", AT_END[0][0])
    obs.obs_data_set_default_string(settings, "cameo_permission", CAMEO_PERMISSIONS[0][0])


def script_properties():
    props = obs.obs_properties_create()
    obs.obs_properties_add_text(props, "prompt", "Prompt", obs.OBS_TEXT_MULTILINE)
    obs.obs_properties_add_button(props, "generate", "Generate", _button(generate))
    status = obs.obs_properties_add_text(props, "status", "Status", obs.OBS_TEXT_INFO)
    obs.obs_property_text_set_info_word_wrap(status, True)
    obs.obs_properties_add_button(props, "refresh", "Refresh status", _button(lambda: None))
    obs.obs_properties_add_button(props, "cancel", "Cancel generation", _button(cancel_jobs))

    clip = obs.obs_properties_create()
    seconds = obs.obs_properties_add_float(clip, "seconds", "Seconds", 0.1, 60.0, 0.5)
    obs.obs_property_float_set_suffix(seconds, " s")
    _combo(
        clip,
        "style",
        "Style",
        ("",) + tuple(state.styles),
        "Blank: no style preset. The server's presets, yours included (`kinema styles` lists them), as of when"
        " the server last answered; if the list is empty, start kinema serve or check the server URL",
    )
    _combo(clip, "backend", "Backend", _backend_choices(), "Blank: the server's default backend")
    _combo(
        clip,
        "cameo",
        "Cameo",
        ("",) + tuple(state.cameos),
        "Blank: nobody; else a person (a kinema cameo whose owner lets you use it) to put in the clip"
        " (backends ltx2 and wan-vace)",
    )
    line = obs.obs_properties_add_text(clip, "dialogue", "Cameo says", obs.OBS_TEXT_DEFAULT)
    obs.obs_property_set_long_description(
        line,
        "Blank: nothing; else a line the cameo says in its own voice, spoken by the server's voice model from its"
        " recorded sample (backend ltx2). Another user's cameo needs its owner's voice permission.",
    )
    _combo(clip, "size", "Size", SIZES, "WIDTHxHEIGHT; blank: the model's default")
    tier = obs.obs_properties_add_list(clip, "tier", "Quality", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING)
    for value in state.tiers:
        obs.obs_property_list_add_string(tier, TIER_LABELS.get(value, value.title()), value)
    obs.obs_property_set_long_description(
        tier,
        "Draft: a fast preview (half the steps, step caching). Standard: the model's default steps."
        " Final: the shot you keep (1.5x the steps, no caching). Steps set below win over this.",
    )
    picture = obs.obs_properties_add_path(clip, "image", "Start from picture", obs.OBS_PATH_FILE, PICTURE_FILTER, None)
    obs.obs_property_set_long_description(
        picture, "A PNG, JPEG or WebP picture the clip starts from (its first frame); blank: from the prompt alone"
    )
    steps = obs.obs_properties_add_int(clip, "steps", "Steps", 0, 200, 1)
    obs.obs_property_set_long_description(steps, "Denoising steps; 0 = the model's default")
    obs.obs_properties_add_group(props, "clip", "Clip", obs.OBS_GROUP_NORMAL, clip)

    air = obs.obs_properties_create()
    scene = obs.obs_properties_add_list(
        air, "scene", "Target scene", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING
    )
    obs.obs_property_list_add_string(scene, "(current scene)", "")
    for name in obs.obs_frontend_get_scene_names() or []:
        obs.obs_property_list_add_string(scene, name, name)
    queue = obs.obs_properties_add_list(
        air, "queue", "Clips for air", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING
    )
    for number, entry in enumerate(_playlist(), 1):
        label = f"{number}. {_short(entry['prompt'], 32)} ({os.path.basename(entry['path'])})"
        obs.obs_property_list_add_string(queue, label, entry["path"])
    obs.obs_property_set_long_description(
        queue, "Finished clips waiting for air, in the order they play; the buttons below act on the one picked here"
    )
    obs.obs_properties_add_button(air, "play_selected", "Play on air", _button(play_selected))
    obs.obs_properties_add_button(air, "preview_selected", "Preview", _button(preview_selected))
    obs.obs_properties_add_button(air, "move_up", "Move up", _button(lambda: move_selected(-1)))
    obs.obs_properties_add_button(air, "move_down", "Move down", _button(lambda: move_selected(1)))
    obs.obs_properties_add_button(air, "remove_selected", "Remove", _button(remove_selected))
    obs.obs_properties_add_button(air, "play_next", "Play next", _button(play_next))
    obs.obs_properties_add_button(air, "clear_queue", "Clear the list", _button(clear_queue))
    obs.obs_properties_add_button(air, "open_preview", "Open preview window", _button(open_preview))
    auto = obs.obs_properties_add_bool(air, "auto_play", "Play clips on air as soon as they are ready (no review)")
    obs.obs_property_set_long_description(
        auto, "Off (the default): a finished clip waits in Clips for air, playing in the preview, until you press Play"
    )
    at_end = obs.obs_properties_add_list(
        air, "at_end", "At a clip's end", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING
    )
    for value, label in AT_END:
        obs.obs_property_list_add_string(at_end, label, value)
    status_source = obs.obs_properties_add_list(
        air, "status_source", "Show the status in", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING
    )
    obs.obs_property_list_add_string(status_source, "(nowhere)", "")
    for name in _text_sources():
        obs.obs_property_list_add_string(status_source, name, name)
    obs.obs_property_set_long_description(
        status_source,
        "A Text source kept up to date with the status (twice a second), e.g. in a scene you watch in a projector",
    )
    obs.obs_properties_add_group(props, "air", "On air", obs.OBS_GROUP_NORMAL, air)

    _cameo_properties(props)

    server = obs.obs_properties_create()
    obs.obs_properties_add_text(server, "server_url", "Server URL", obs.OBS_TEXT_DEFAULT)
    obs.obs_properties_add_bool(server, "start_local", "Start kinema serve if none is running")
    obs.obs_properties_add_path(server, "kinema_python", "kinema's Python", obs.OBS_PATH_FILE, "", None)
    obs.obs_properties_add_text(server, "api_key", "API key (remote servers)", obs.OBS_TEXT_PASSWORD)
    obs.obs_properties_add_path(server, "clips_dir", "Save clips in", obs.OBS_PATH_DIRECTORY, "", None)
    obs.obs_properties_add_group(props, "server", "Server", obs.OBS_GROUP_NORMAL, server)

    _show_status()
    return props


def script_update(settings):
    state.config = {
        "server_url": obs.obs_data_get_string(settings, "server_url").strip() or DEFAULT_URL,
        "start_local": obs.obs_data_get_bool(settings, "start_local"),
        "kinema_python": obs.obs_data_get_string(settings, "kinema_python").strip(),
        "api_key": obs.obs_data_get_string(settings, "api_key").strip(),
        "clips_dir": obs.obs_data_get_string(settings, "clips_dir").strip() or _default_clips_dir(),
        "prompt": obs.obs_data_get_string(settings, "prompt").strip(),
        "seconds": obs.obs_data_get_double(settings, "seconds"),
        "style": obs.obs_data_get_string(settings, "style").strip(),
        "backend": obs.obs_data_get_string(settings, "backend").strip(),
        "cameo": obs.obs_data_get_string(settings, "cameo").strip(),
        "dialogue": obs.obs_data_get_string(settings, "dialogue").strip(),
        "size": obs.obs_data_get_string(settings, "size").strip().lower().replace(" ", ""),
        "steps": obs.obs_data_get_int(settings, "steps"),
        "tier": obs.obs_data_get_string(settings, "tier").strip() or state.default_tier,
        "image": obs.obs_data_get_string(settings, "image").strip(),
        "scene": obs.obs_data_get_string(settings, "scene"),
        "auto_play": obs.obs_data_get_bool(settings, "auto_play"),
        "at_end": obs.obs_data_get_string(settings, "at_end") or AT_END[0][0],
        "queue": obs.obs_data_get_string(settings, "queue"),
        "status_source": obs.obs_data_get_string(settings, "status_source"),
        "cameo_name": obs.obs_data_get_string(settings, "cameo_name").strip(),
        "cameo_video": obs.obs_data_get_string(settings, "cameo_video").strip(),
        "cameo_permission": obs.obs_data_get_string(settings, "cameo_permission") or CAMEO_PERMISSIONS[0][0],
        "cameo_users": obs.obs_data_get_string(settings, "cameo_users").strip(),
    }


def script_load(settings):
    state.settings = settings
    script_update(settings)
    for name, description, action in HOTKEYS:
        callback = _hotkey(ACTIONS[action])
        hotkey_id = obs.obs_hotkey_register_frontend(name, description, callback)
        saved = obs.obs_data_get_array(settings, name)
        obs.obs_hotkey_load(hotkey_id, saved)
        obs.obs_data_array_release(saved)
        state.hotkeys[name] = hotkey_id
    obs.obs_frontend_add_event_callback(_on_frontend_event)
    obs.timer_add(_tick, TICK_MS)
    if CLIENT_ERROR:
        _log(f"cannot reach kinema servers: {CLIENT_ERROR}")
    else:
        threading.Thread(target=_check_server, args=(dict(state.config),), name="kinema-check", daemon=True).start()
    _log(f"loaded (Python {sys.version.split()[0]}, server {state.config['server_url']})")


def script_save(settings):
    for name, hotkey_id in state.hotkeys.items():
        saved = obs.obs_hotkey_save(hotkey_id)
        obs.obs_data_set_array(settings, name, saved)
        obs.obs_data_array_release(saved)


def script_unload():
    obs.timer_remove(_tick)
    obs.obs_frontend_remove_event_callback(_on_frontend_event)
    state.hotkeys.clear()  # OBS unregisters a script's hotkeys when it unloads it
    _release_sources()
    _cancel_running(timeout=1.0)
    process = state.server_process
    if process is not None and process.poll() is None:
        _log(f"stopping the kinema server this script started (pid {process.pid})")
        process.terminate()
    state.settings = None


# --------------------------------------------------------------------------- user actions (UI or hotkey thread)


def generate():
    """Submit the prompt on a new thread; the clip joins the queue when it is downloaded."""
    if CLIENT_ERROR:
        _set_message(CLIENT_ERROR)
        return
    config = dict(state.config)
    if not config.get("prompt"):
        _set_message("Type a prompt first.")
        return
    with state.lock:
        state.counter += 1
        key = state.counter
        state.jobs[key] = {
            "prompt": config["prompt"],
            "state": "starting",
            "percent": 0.0,
            "stage": "",
            "job_id": None,
            "error": None,
            "path": None,
        }
        while len(state.jobs) > 8:  # keep the status short: drop the oldest finished jobs
            oldest = next((k for k, j in state.jobs.items() if j["state"] in ("ready", "failed", "cancelled")), None)
            if oldest is None:
                break
            del state.jobs[oldest]
    threading.Thread(target=_run_job, args=(key, config), name=f"kinema-job-{key}", daemon=True).start()


def play_next():
    """The first clip in Clips for air goes on air."""
    state.inbox.append(("play", None))


def play_selected():
    """The clip picked in Clips for air goes on air (the first one if none is picked)."""
    state.inbox.append(("play", state.config.get("queue") or None))


def preview_selected():
    entry = _find(state.config.get("queue")) or next(iter(_playlist()), None)
    if entry is None:
        _set_message("Clips for air is empty: nothing to preview.")
        return
    state.inbox.append(("preview", entry["path"]))


def remove_selected():
    with state.lock:
        index = _index_locked(state.config.get("queue"))
        entry = state.playlist.pop(index) if index is not None else None
    if entry is None:
        _set_message("Pick a clip in Clips for air first.")
        return
    _set_message(f"Removed {os.path.basename(entry['path'])} from Clips for air (the file stays on disk).")
    state.inbox.append(("unpreview", entry["path"]))


def move_selected(step):
    with state.lock:
        index = _index_locked(state.config.get("queue"))
        if index is not None and 0 <= index + step < len(state.playlist):
            playlist = state.playlist
            playlist[index], playlist[index + step] = playlist[index + step], playlist[index]
            moved, name = index + step, os.path.basename(playlist[index + step]["path"])
        else:
            moved = None
    if index is None:
        _set_message("Pick a clip in Clips for air first.")
    elif moved is not None:
        _set_message(f"Moved {name} to place {moved + 1}.")


def clear_queue():
    with state.lock:
        dropped = [entry["path"] for entry in state.playlist]
        state.playlist.clear()
    _set_message(f"Cleared {len(dropped)} clip{'s' if len(dropped) != 1 else ''} from Clips for air.")
    for path in dropped:
        state.inbox.append(("unpreview", path))


def open_preview():
    """A window showing Kinema Preview (OBS's windowed source projector)."""
    source = obs.obs_get_source_by_name(PREVIEW_SOURCE)
    if source is None:
        _set_message("Nothing to preview yet: a finished clip plays in the preview when it is ready.")
        return
    obs.obs_source_release(source)
    open_projector = getattr(obs, "obs_frontend_open_projector", None)
    if open_projector is None:  # not in this OBS's Python bindings
        _set_message("This OBS cannot open a projector from a script: review clips in Studio Mode's preview instead.")
        return
    open_projector("Source", -1, "", PREVIEW_SOURCE)


def _playlist():
    with state.lock:
        return [dict(entry) for entry in state.playlist]


def _index_locked(path):
    return next((i for i, entry in enumerate(state.playlist) if entry["path"] == path), None) if path else None


def _find(path):
    with state.lock:
        index = _index_locked(path)
        return dict(state.playlist[index]) if index is not None else None


def cancel_jobs():
    threading.Thread(target=_cancel_running, name="kinema-cancel", daemon=True).start()


# --------------------------------------------------------------------------- making a cameo


def _cameo_properties(props):
    """The "Make a cameo" group: the server's one-time phrase, then the recording of you saying it."""
    group = obs.obs_properties_create()
    info = obs.obs_properties_add_text(group, "cameo_info", "", obs.OBS_TEXT_INFO)
    obs.obs_property_text_set_info_word_wrap(info, True)
    kind = {"refused": "OBS_TEXT_INFO_ERROR", "unverified": "OBS_TEXT_INFO_WARNING"}.get(_cameo()["state"])
    if kind and hasattr(obs, "obs_property_text_set_info_type"):  # OBS 28+
        obs.obs_property_text_set_info_type(info, getattr(obs, kind))
    obs.obs_properties_add_button(group, "cameo_phrase", "Get a phrase to say", _button(cameo_phrase))
    obs.obs_properties_add_text(group, "cameo_name", "Name", obs.OBS_TEXT_DEFAULT)
    video = obs.obs_properties_add_path(group, "cameo_video", "Recording", obs.OBS_PATH_FILE, VIDEO_FILTER, None)
    obs.obs_property_set_long_description(
        video, "You alone, facing the camera, saying the phrase aloud (3-10 s, with its sound)"
    )
    obs.obs_properties_add_button(
        group, "cameo_last_recording", "Use my last OBS recording", _button(cameo_use_last_recording)
    )
    permission = obs.obs_properties_add_list(
        group, "cameo_permission", "Who may use it", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING
    )
    for value, label in CAMEO_PERMISSIONS:
        obs.obs_property_list_add_string(permission, label, value)
    obs.obs_properties_add_text(group, "cameo_users", "Users (comma-separated)", obs.OBS_TEXT_DEFAULT)
    obs.obs_properties_add_button(group, "cameo_create", "Make cameo", _button(cameo_create))
    obs.obs_properties_add_group(props, "cameo_group", "Make a cameo", obs.OBS_GROUP_NORMAL, group)


def _cameo():
    with state.lock:
        return dict(state.cameo)


def _cameo_update(message=None, **fields):
    with state.lock:
        state.cameo.update(fields)
        if message is not None:
            state.cameo_message = message


def _cameo_seconds_left(cameo):
    return max(0.0, cameo["deadline"] - time.monotonic()) if cameo.get("challenge") else 0.0


def _cameo_text():
    """What the "Make a cameo" group says: the phrase and its time left, or the outcome of the last capture."""
    cameo = _cameo()
    lines = []
    left = _cameo_seconds_left(cameo)
    if cameo["state"] == "asking":
        lines.append("Asking the server for a phrase…")
    elif cameo["state"] in ("ready", "uploading") and left > 0:
        lines.append(f"Say this on camera: “{cameo['phrase']}” (code {' '.join(cameo['digits'])})")
        until = time.strftime("%H:%M:%S", time.localtime(cameo["until"]))
        if cameo["state"] == "uploading":
            lines.append("Checking the recording…")
        else:
            lines.append(f"Valid until {until} ({int(left) // 60}:{int(left) % 60:02d} left) and once only")
    elif cameo.get("challenge"):
        lines.append("The phrase expired: get a new one, and record yourself saying it")
    else:
        lines.append(
            "Get a phrase, then record yourself alone, facing the camera, saying it (e.g. Start Recording with your"
            " camera in the scene), and make the cameo from that recording"
        )
    if state.cameo_message:
        lines.append(state.cameo_message)
    return "\n".join(lines)


def cameo_phrase():
    """Ask the server for a one-time phrase to say on camera (UI thread; the request on a thread)."""
    if CLIENT_ERROR:
        _cameo_update(CLIENT_ERROR, state="refused")
        return
    if _cameo()["state"] in ("asking", "uploading"):
        return
    _cameo_update("", state="asking", challenge="", phrase="", digits="")
    threading.Thread(target=_ask_phrase, args=(dict(state.config),), name="kinema-cameo-phrase", daemon=True).start()


def _ask_phrase(config):
    try:
        client = _client(config)
        asked = time.monotonic()
        issued = client.cameo_challenge()
        lifetime = max(0.0, float(issued["expires_at"]) - float(issued["issued_at"]))
        _cameo_update(
            "",
            state="ready",
            challenge=issued["id"],
            phrase=issued["phrase"],
            digits=issued.get("digits", ""),
            deadline=asked + lifetime,  # from when it was asked for: never later than the server's own expiry
            until=time.time() - (time.monotonic() - asked) + lifetime,
        )
        _log(f"cameo phrase to say on camera: “{issued['phrase']}” (valid {lifetime / 60:.0f} minutes, once)")
    except Exception as error:  # noqa: BLE001 - every failure becomes the group's message
        _cameo_failed(error, config, keep_phrase=False)


def cameo_use_last_recording():
    """Recording ← the file of OBS's last recording (UI thread): record yourself with OBS, then use it."""
    last = getattr(obs, "obs_frontend_get_last_recording", lambda: None)()
    if not last:
        _cameo_update(
            "OBS has no recording yet: put your camera in a scene, Start Recording, say the phrase, Stop Recording"
        )
        return
    if state.settings is not None:
        obs.obs_data_set_string(state.settings, "cameo_video", last)
        script_update(state.settings)
    _cameo_update(f"Recording: {last}")


def cameo_create():
    """Send the recording with the phrase's challenge id (UI thread; the upload on a thread)."""
    config = dict(state.config)
    cameo = _cameo()
    problem = None
    if CLIENT_ERROR:
        problem = CLIENT_ERROR
    elif cameo["state"] in ("asking", "uploading"):
        return
    elif not cameo.get("challenge"):
        problem = "Get a phrase first, then record yourself saying it"
    elif _cameo_seconds_left(cameo) <= 0:
        problem = "The phrase expired: get a new one, and record yourself saying it"
    elif not config.get("cameo_name"):
        problem = "Name the cameo first (1-40 lowercase letters, digits, - or _, e.g. alice)"
    elif not config.get("cameo_video"):
        problem = "Choose the recording of you saying the phrase (or Use my last OBS recording)"
    elif not os.path.isfile(os.path.expanduser(config["cameo_video"])):
        problem = f"No recording at {config['cameo_video']}: choose the file you recorded"
    if problem:
        _cameo_update(problem)
        _log(f"cameo not sent: {problem}")
        return
    _cameo_update("", state="uploading")
    threading.Thread(
        target=_send_cameo, args=(config, cameo["challenge"]), name="kinema-cameo-create", daemon=True
    ).start()


def _send_cameo(config, challenge):
    permission = config.get("cameo_permission") or "only_me"
    users = [u.strip() for u in config.get("cameo_users", "").split(",") if u.strip()] if permission == "listed" else []
    try:
        client = _client(config)
        made = client.create_cameo(
            config["cameo_name"],
            os.path.expanduser(config["cameo_video"]),
            challenge=challenge,
            permission=permission,
            allowed_users=users,
        )
    except Exception as error:  # noqa: BLE001 - every failure becomes the group's message
        _cameo_failed(error, config, keep_phrase=False)
        return
    name = made.get("name") or config["cameo_name"]
    if made.get("verified"):
        message = f"Cameo “{name}” is verified: you said the phrase on camera; others may use it if you let them"
    else:
        message = f"Cameo “{name}” is unverified, so only you may use it: {made.get('verification') or 'unverified'}"
    with contextlib.suppress(client_module.ClientError):  # the Cameo list offers it at once
        state.cameos = _cameo_ids(client)
    _cameo_update(message, state="verified" if made.get("verified") else "unverified", challenge="")
    _log(message)


def _cameo_failed(error, config, keep_phrase):
    code = getattr(error, "code", None) or ""
    if client_module is not None and isinstance(error, client_module.APIError):
        title = CAMEO_REFUSALS.get(code)
        message = f"{title}: {error}" if title else str(error)
        # The server uses a challenge up before it looks at the recording: after these, a new phrase is needed.
        keep_phrase = not code.startswith(("challenge_", "cameo_"))
    elif client_module is not None and isinstance(error, client_module.ServerUnavailable):
        message = f"no kinema server answered at {config['server_url']}: start `kinema serve`, or check the Server URL"
        keep_phrase = True
    else:
        message = str(error) or type(error).__name__
    fields = {"state": "ready" if keep_phrase and _cameo().get("challenge") else "refused"}
    if not keep_phrase:
        fields["challenge"] = ""
    _cameo_update(f"Cameo refused: {message}" if code else message, **fields)
    _log(f"cameo refused ({code or type(error).__name__}): {message}")


ACTIONS = {"generate": generate, "play_next": play_next, "clear_queue": clear_queue, "cancel": cancel_jobs}


def _button(action):
    def pressed(props, prop):
        action()
        _show_status()
        return True  # redraws the properties, so the status text is fresh

    return pressed


def _hotkey(action):
    def pressed(is_pressed):
        if is_pressed:
            action()

    return pressed


# --------------------------------------------------------------------------- network work (job threads)


def _client(config):
    """A Client for the configured server; starts a local `kinema serve` first if allowed and needed."""
    api_key = config.get("api_key") or None
    if not config.get("start_local"):
        return client_module.Client(config["server_url"], api_key=api_key)
    with state.server_lock:  # two Generates must not start two servers
        try:
            client = client_module.ensure_server(
                python=config.get("kinema_python") or None,
                url=config["server_url"],
                api_key=api_key,
                stop_with_caller=True,
                background=True,  # below OBS's CPU priority, one core left free: OBS keeps its frame rate
            )
        except client_module.ServerStartError as error:
            if not config.get("kinema_python") and "no Python" in str(error):
                raise client_module.ServerStartError(
                    f"no kinema server at {config['server_url']}: start `kinema serve`, or set kinema's"
                    " Python in the Server section (the interpreter kinema is installed in)"
                ) from None
            raise
        if client.process is not None:
            state.server_process = client.process
            state.server_note = f"started kinema serve (pid {client.process.pid}) at a lower CPU priority than OBS"
            _log(f"started kinema serve (pid {client.process.pid}) at {client.base_url}, below OBS's CPU priority")
            _check_server(config, started=True)  # its backends, cameos, styles and tiers, for the lists
        return client


def _run_job(key, config):
    def update(**fields):
        with state.lock:
            state.jobs.get(key, {}).update(fields)

    def progress(report):
        update(
            state="generating",
            percent=float(report.percent or 0),
            stage=report.stage or "",
            step=report.step,
            total=report.total,
        )

    job_id = None
    try:
        picture = _read_picture(config.get("image"))  # before any server starts: a wrong path fails at once
        client = _client(config)
        size = config.get("size") or None
        job = client.submit(
            config["prompt"],
            seconds=config.get("seconds") or None,
            size=size,
            steps=config.get("steps") or None,
            style=config.get("style") or None,
            backend=config.get("backend") or None,
            tier=config.get("tier") or None,
            image=picture,
            cameos=[config["cameo"]] if config.get("cameo") else None,
            # The line goes with the cameo only: said by nobody, it is not asked for.
            **({"dialogue": config["dialogue"]} if config.get("cameo") and config.get("dialogue") else {}),
        )
        job_id = job["id"]
        update(state="queued", job_id=job_id, client=client)
        _log(f"job {job_id} queued: {_short(config['prompt'])!r} (Generate #{key})")
        with state.lock:
            cancelled_early = state.jobs.get(key, {}).get("cancel")
        if cancelled_early:  # Cancel was pressed while this job was being submitted
            with contextlib.suppress(client_module.APIError):  # the Cancel button got there too
                client.cancel(job_id)
        job = client.wait(job_id, progress=progress)
        clips_dir = os.path.expanduser(config["clips_dir"])
        os.makedirs(clips_dir, exist_ok=True)
        path = os.path.join(clips_dir, f"kinema-{time.strftime('%Y%m%d-%H%M%S')}-{job_id[-8:]}.mp4")
        update(state="downloading")
        client.download(job_id, path)  # atomic: OBS never sees half a file
        update(state="ready", percent=100.0, path=path)
        _log(f"clip ready: {path}")
        state.inbox.append(("ready", path, key, config["prompt"]))
    except Exception as error:  # noqa: BLE001 - every failure becomes the job's status line
        expected = isinstance(error, (_JobError, OSError)) or (
            client_module is not None and isinstance(error, client_module.ClientError)
        )
        cancelled = client_module is not None and isinstance(error, client_module.JobCancelled)
        if client_module is not None and isinstance(error, client_module.ServerUnavailable) and job_id is None:
            error = _JobError(
                f"no kinema server answered at {config['server_url']}: start `kinema serve`, check the Server URL,"
                " or tick Start kinema serve (Server section)"
            )
            expected = True
        elif client_module is not None and isinstance(error, client_module.AuthenticationError):
            error = _JobError(
                f"the kinema server at {config['server_url']} wants an API key, or another one: set API key"
                " (Server section) to the server's KINEMA_API_KEY"
            )
        update(state="cancelled" if cancelled else "failed", error=str(error) or type(error).__name__)
        if cancelled:
            _log(f"job {job_id} cancelled")
        elif expected:
            _log(f"generation failed: {error}")
        else:
            _log(f"generation failed unexpectedly: {type(error).__name__}: {error}\n{traceback.format_exc()}")
    finally:
        with state.lock:
            state.jobs.get(key, {}).pop("client", None)


class _JobError(Exception):
    """A job that cannot start for a reason the user can fix; the message says how."""


def _read_picture(path):
    """The start picture's bytes (None without one), or a _JobError that says what to fix."""
    if not path:
        return None
    path = os.path.expanduser(path)
    fix = "pick another in Clip → Start from picture, or clear it to start from the prompt alone"
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise _JobError(f"the start picture {path} does not exist: {fix}") from None
    except IsADirectoryError:
        raise _JobError(f"the start picture {path} is a folder, not a picture: {fix}") from None
    except OSError as error:
        raise _JobError(f"cannot read the start picture {path} ({error.strerror or error}): {fix}") from None
    if not data:
        raise _JobError(f"the start picture {path} is empty: {fix}")
    return data


def _check_server(config, started=False):
    """Is the server there, and what does it offer (for the Backend, Cameo, Style and Quality lists)? At load, and
    after the script started one."""
    client = client_module.Client(config["server_url"], api_key=config.get("api_key") or None, timeout=10)
    try:
        client.health()
        # A "component" (wan's sound model) is downloaded for a backend, never named in a job.
        state.backends = [row["id"] for row in client.models() if row.get("id") and row.get("role") != "component"]
        try:
            state.cameos = _cameo_ids(client)
        except client_module.APIError:
            state.cameos = []  # a server from before cameos
        try:
            state.styles = [row["id"] for row in client.styles() if row.get("id")]
        except client_module.APIError as error:  # a server from before /v1/styles, or a broken style file
            state.styles = []
            _log(f"the server's styles are not listed: {error}")
        tiers, state.default_tier = client.tiers()  # the client's own list if the server cannot say
        state.tiers = list(tiers)
        if not started:
            state.server_note = f"{client.base_url} is up"
        _log(
            f"server {client.base_url} lists {len(state.backends)} backends, {len(state.cameos)} cameos,"
            f" {len(state.styles)} styles and tiers {', '.join(state.tiers)} ({state.default_tier} by default)"
        )
    except client_module.ServerUnavailable:
        then = (
            "Generate starts one"
            if config.get("start_local")
            else "start `kinema serve` there, or check the Server URL (Server section)"
        )
        state.server_note = f"no kinema server at {client.base_url} yet: {then}"
    except client_module.AuthenticationError:
        state.server_note = f"{client.base_url} wants an API key, or another one: set API key (Server section)"
    except client_module.ClientError as error:
        state.server_note = f"{client.base_url}: {error}"


def _cancel_running(timeout=None):
    """Cancel every job under way; one still being submitted cancels itself once it has an id."""
    with state.lock:
        running = []
        for job in state.jobs.values():
            if job["state"] in ("starting", "queued", "generating"):
                job["cancel"] = True
                if job.get("job_id") and job.get("client") is not None:
                    running.append(dict(job))
    for job in running:
        client = job["client"]
        try:
            if timeout is not None:
                client = client_module.Client(client.base_url, api_key=client.api_key, timeout=timeout)
            client.cancel(job["job_id"])
        except client_module.ClientError as error:
            _log(f"could not cancel {job['job_id']}: {error}")


# --------------------------------------------------------------------------- on air (OBS's video thread)


def _tick():
    """Apply what the threads produced. Runs every 100 ms on the video thread: keep it short."""
    state.ticks += 1
    if not state.inbox and state.ticks % STATUS_TICKS:
        return
    _on_obs_thread.active = True
    try:
        while state.inbox:
            item = state.inbox.popleft()
            kind = item[0]
            if kind == "log":
                print("kinema: " + item[1])
            elif kind == "ready":
                _ready(*item[1:])
            elif kind == "ended":
                _media_ended(item[1])
            elif kind == "play":
                entry = _take(item[1])
                if entry is None:
                    _set_message("Clips for air is empty: Generate one first.")
                else:
                    _play(entry["path"])
            elif kind == "preview":
                _preview(item[1])
            elif kind == "unpreview" and state.preview and state.preview["path"] == item[1]:
                _end_preview()
        if state.ticks % STATUS_TICKS == 0:
            _refresh_status()
    except _UserError as error:
        _set_message(str(error))
        _log(str(error))
    except Exception as error:  # noqa: BLE001 - a bug must not kill the timer; report it once
        _set_message(f"internal error: {type(error).__name__}: {error}")
        _log(f"internal error on air:\n{traceback.format_exc()}")
    finally:
        _on_obs_thread.active = False


def _ready(path, key, prompt):
    """A downloaded clip: on air at once with auto-play, else into Clips for air and the preview for review."""
    _enqueue(path, key, prompt)
    if state.config.get("auto_play"):
        if not _busy():
            _play(_take(None)["path"])
        return
    where = _preview(path)
    _set_message(f"Ready for review: {os.path.basename(path)} plays in {where}; press Play to put it on air.")


def _enqueue(path, key, prompt):
    """Add a clip in the order Generate was pressed: jobs submit and download on racing threads."""
    entry = {"path": path, "key": key, "prompt": prompt}
    with state.lock:
        later = [i for i, queued in enumerate(state.playlist) if queued["key"] > key]
        state.playlist.insert(later[0] if later else len(state.playlist), entry)


def _take(path):
    """Remove and return the entry for ``path`` (the first entry if ``path`` is None or not listed), or None."""
    with state.lock:
        index = _index_locked(path)
        if index is None:
            index = 0 if state.playlist else None
        return state.playlist.pop(index) if index is not None else None


class _UserError(Exception):
    """Something the user can fix (a missing scene, a source of the wrong kind)."""


def _busy():
    with state.source_lock:
        source = state.sources.get(state.playing_source)
        if state.now_playing is None or source is None:
            return False
        current = obs.obs_source_media_get_state(source)
    return current in [getattr(obs, name) for name in PLAYING_STATES]


def _play(path):
    """Put ``path`` on air in the target scene's own media source."""
    if not os.path.isfile(path):
        raise _UserError(f"{path} is gone; skipped it")
    if state.preview and state.preview["path"] == path:
        _end_preview()  # it is not reviewed any more, and must not go on air twice
    scene_source = _target_scene(state.config.get("scene", ""))
    try:
        scene_name = obs.obs_source_get_name(scene_source)
        scene = obs.obs_scene_from_source(scene_source)
        with state.source_lock:
            name, source, created = _ensure_source(scene, scene_name, path)
            if not created:
                _set_file(source, path)  # reopens the file, and plays it if the source is live
            _add_to_scene(scene, scene_name, source)  # a new item starts playing as it goes live
            on_program = _add_to_program_copy(scene_name, source)
        live = on_program or obs.obs_source_active(scene_source)
    finally:
        obs.obs_source_release(scene_source)
    state.now_playing = path
    state.playing_source = name
    if live:
        _set_message(f"Put {os.path.basename(path)} on air in scene {scene_name!r}.")
        _log(f"on air: {path} in {name!r}")
    else:
        _set_message(f"Loaded {os.path.basename(path)} into scene {scene_name!r}: it plays when that scene is shown")
        _log(f"loaded {path} into {name!r}, not on air")


def _add_to_program_copy(scene_name, source):
    """Studio Mode shows a private copy of the program scene (OBS's "Duplicate scene"), made when it went to
    program: a source added to the scene since is not in that copy. Add it there too; True if it is on air so."""
    if not obs.obs_frontend_preview_program_mode_active():
        return False
    transition = obs.obs_frontend_get_current_transition()
    if transition is None:
        return False
    try:
        shown = obs.obs_transition_get_active_source(transition)  # a new reference, or None
    finally:
        obs.obs_source_release(transition)
    if shown is None:
        return False
    try:
        copy = obs.obs_scene_from_source(shown)
        if copy is None or obs.obs_source_get_name(shown) != scene_name:
            return False
        _add_to_scene(copy, scene_name + " (on air in Studio Mode)", source)
        return True
    finally:
        obs.obs_source_release(shown)


def _preview(path):
    """Play ``path`` where only the streamer sees it; returns where, in words."""
    if not os.path.isfile(path):
        raise _UserError(f"{path} is gone; cannot preview it")
    if state.preview is not None:
        _end_preview()
    scene_name = _studio_preview_scene()
    with state.source_lock:
        if scene_name:  # Studio Mode: the preview scene's own source, which is shown but not live
            scene_source = obs.obs_get_source_by_name(scene_name)
            try:
                scene = obs.obs_scene_from_source(scene_source)
                name, source, created = _ensure_source(scene, scene_name, path)
                if not created:
                    _set_file(source, path)
                _add_to_scene(scene, scene_name, source)
            finally:
                obs.obs_source_release(scene_source)
            obs.obs_source_media_restart(source)  # not live, so a new file does not start by itself
            where = f"the preview scene {scene_name!r}"
        else:
            name = PREVIEW_SOURCE
            _ensure_preview_source(path)
            where = f"{PREVIEW_SOURCE!r} (Open preview window shows it)"
    state.preview = {"name": name, "path": path}
    _log(f"preview: {path} in {name!r}")
    return where


def _studio_preview_scene():
    """In Studio Mode, the preview scene's name when it is not also the scene on air; else None."""
    if not obs.obs_frontend_preview_program_mode_active():
        return None
    names = []
    for scene in (obs.obs_frontend_get_current_preview_scene(), obs.obs_frontend_get_current_scene()):
        names.append(obs.obs_source_get_name(scene) if scene is not None else None)
        if scene is not None:
            obs.obs_source_release(scene)
    preview, program = names
    return preview if preview and preview != program else None


def _ensure_preview_source(path):
    """Kinema Preview, in no scene (never on air), playing ``path`` now and holding its last frame."""
    source = state.sources.get(PREVIEW_SOURCE)
    if source is not None and obs.obs_source_removed(source):
        _forget_source_locked(PREVIEW_SOURCE)
        source = None
    if source is not None:
        _set_file(source, path, hold=True)  # not live, restart_on_activate off: it starts at once
        return source
    source = obs.obs_get_source_by_name(PREVIEW_SOURCE)
    if source is None:
        settings = _media_settings(path, hold=True)
        obs.obs_data_set_bool(settings, "restart_on_activate", False)  # in no scene: play when the file is set
        source = obs.obs_source_create(SOURCE_KIND, PREVIEW_SOURCE, settings, None)
        obs.obs_data_release(settings)
        obs.obs_source_set_monitoring_type(source, obs.OBS_MONITORING_TYPE_MONITOR_ONLY)  # heard, never streamed
        _log(f"created the media source {PREVIEW_SOURCE!r} for previews")
    elif obs.obs_source_get_unversioned_id(source) != SOURCE_KIND:
        kind = obs.obs_source_get_unversioned_id(source)
        obs.obs_source_release(source)
        raise _UserError(
            f"a source named {PREVIEW_SOURCE!r} exists but is a {kind}, not a Media Source: rename it so kinema"
            " can make its own"
        )
    else:
        _set_file(source, path, hold=True)
    obs.signal_handler_connect(obs.obs_source_get_signal_handler(source), "media_ended", _on_media_ended)
    state.sources[PREVIEW_SOURCE] = source
    return source


def _end_preview():
    """Stop the clip under review: blank the preview source, empty the preview scene's."""
    preview, state.preview = state.preview, None
    if preview is None:
        return
    with state.source_lock:
        source = state.sources.get(preview["name"])
        if source is None or obs.obs_source_removed(source):
            return
        settings = obs.obs_source_get_settings(source)
        current = obs.obs_data_get_string(settings, "local_file")
        obs.obs_data_release(settings)
        if current == preview["path"]:
            _set_file(source, "")


def _target_scene(scene_name):
    """A new reference to the target scene's source (the one on air if ``scene_name`` is blank)."""
    if scene_name:
        scene_source = obs.obs_get_source_by_name(scene_name)
        if scene_source is None:
            raise _UserError(f"there is no scene {scene_name!r} any more: pick the target scene again")
    else:
        scene_source = obs.obs_frontend_get_current_scene()
        if scene_source is None:
            raise _UserError("OBS has no current scene")
    if obs.obs_scene_from_source(scene_source) is None:
        obs.obs_source_release(scene_source)
        raise _UserError(f"{scene_name!r} is not a scene: pick the target scene again")
    return scene_source


def _source_name(scene_name):
    return f"{SOURCE_PREFIX} ({scene_name})"


def _ensure_source(scene, scene_name, path):
    """(name, source, created): the scene's media source, made with ``path`` if missing, its media_ended ours."""
    for held_name, held in list(state.sources.items()):  # deleted or renamed since: look it up afresh
        if obs.obs_source_removed(held) or obs.obs_source_get_name(held) != held_name:
            _forget_source_locked(held_name)
    name = _source_name(scene_name)
    source = state.sources.get(name)
    if source is not None:
        return name, source, False
    created = False
    source = obs.obs_get_source_by_name(name) or _adopt_renamed(scene, name)
    if source is None:
        settings = _media_settings(path)
        obs.obs_data_set_bool(settings, "restart_on_activate", True)
        source = obs.obs_source_create(SOURCE_KIND, name, settings, None)
        obs.obs_data_release(settings)
        created = True
        _log(f"created the media source {name!r}")
    elif obs.obs_source_get_unversioned_id(source) != SOURCE_KIND:
        kind = obs.obs_source_get_unversioned_id(source)
        obs.obs_source_release(source)
        raise _UserError(
            f"a source named {name!r} exists but is a {kind}, not a Media Source: rename it so kinema can make its own"
        )
    obs.signal_handler_connect(obs.obs_source_get_signal_handler(source), "media_ended", _on_media_ended)
    state.sources[name] = source
    return name, source, created


def _adopt_renamed(scene, name):
    """After a scene was renamed, its "Kinema Clip (<old name>)" takes the new name instead of gaining a twin."""
    items = obs.obs_scene_enum_items(scene) or []
    try:
        for item in items:
            source = obs.obs_sceneitem_get_source(item)
            old = obs.obs_source_get_name(source) or ""
            if (
                obs.obs_source_get_unversioned_id(source) == SOURCE_KIND
                and old.startswith(SOURCE_PREFIX + " (")
                and old.endswith(")")
            ):
                _forget_source_locked(old)
                obs.obs_source_set_name(source, name)
                _log(f"renamed the media source {old!r} to {name!r}, after its scene")
                return obs.obs_get_source_by_name(name)
    finally:
        obs.sceneitem_list_release(items)
    return None


def _add_to_scene(scene, scene_name, source):
    """Add the source to the scene once, scaled to fit the canvas; never a second copy."""
    if obs.obs_scene_find_source(scene, obs.obs_source_get_name(source)) is not None:
        return
    item = obs.obs_scene_add(scene, source)
    video = obs.obs_video_info()
    if obs.obs_get_video_info(video):
        bounds = obs.vec2()
        bounds.x, bounds.y = float(video.base_width), float(video.base_height)
        obs.obs_sceneitem_set_bounds_type(item, obs.OBS_BOUNDS_SCALE_INNER)
        obs.obs_sceneitem_set_bounds_alignment(item, 0)  # centred in the canvas
        obs.obs_sceneitem_set_bounds(item, bounds)
    _log(f"added {obs.obs_source_get_name(source)!r} to scene {scene_name!r}")


def _media_settings(path, hold=None):
    """A media source's settings for one clip; at its end it holds the last frame or goes blank (At a clip's end)."""
    if hold is None:
        hold = state.config.get("at_end", AT_END[0][0]) == "hold"
    settings = obs.obs_data_create()
    obs.obs_data_set_string(settings, "local_file", path)
    obs.obs_data_set_bool(settings, "is_local_file", True)
    obs.obs_data_set_bool(settings, "looping", False)
    obs.obs_data_set_bool(settings, "clear_on_media_end", not hold)
    obs.obs_data_set_bool(settings, "close_when_inactive", False)
    return settings


def _set_file(source, path, hold=None):
    settings = _media_settings(path, hold)
    obs.obs_source_update(source, settings)
    obs.obs_data_release(settings)


def _media_ended(name):
    """A source of ours finished its clip: no longer on air; with auto-play the next clip follows."""
    if state.preview is not None and name == state.preview["name"]:
        return  # the preview holds its last frame until the next preview or Play
    if name is not None and name != state.playing_source:
        _let_go(name)  # e.g. the scene left behind when the target changed
        return
    if _busy():
        return  # a late signal from the clip before the current one
    finished, state.now_playing = state.now_playing, None
    if finished:
        _log(f"ended: {finished} in {name!r}")
        hold = state.config.get("at_end", AT_END[0][0]) == "hold"
        _set_message(
            f"{os.path.basename(finished)} ended; {'its last frame stays' if hold else 'its source is blank'}."
        )
    with state.lock:
        waiting = bool(state.playlist)
    if waiting and state.config.get("auto_play"):  # without review, the list plays through
        _play(_take(None)["path"])
    if name is not None and (state.now_playing is None or state.playing_source != name):
        _let_go(name)


def _let_go(name):
    """At a clip's end, with "Hide it": empty the source, or showing its scene again would replay the clip.

    With "Hold the last frame" the source keeps the clip (OBS replays it if its scene is shown again, as it does
    for any media source set to restart when shown)."""
    if state.config.get("at_end", AT_END[0][0]) == "hold":
        return
    with state.source_lock:
        source = state.sources.get(name)
        if source is None or obs.obs_source_removed(source):
            return
        if obs.obs_source_media_get_state(source) != obs.OBS_MEDIA_STATE_ENDED:
            return  # switched to another clip since (e.g. by `kinema obs play`): that one is not over
        settings = obs.obs_source_get_settings(source)
        current = obs.obs_data_get_string(settings, "local_file")
        obs.obs_data_release(settings)
        if current:
            _set_file(source, "")


def _on_media_ended(calldata):
    # Called on the media thread: hand over, do nothing else.
    source = obs.calldata_source(calldata, "source")
    state.inbox.append(("ended", obs.obs_source_get_name(source) if source is not None else None))


def _release_sources():
    with state.source_lock:
        for name in list(state.sources):
            _forget_source_locked(name)


def _forget_source_locked(name):
    source = state.sources.pop(name, None)
    if source is not None:
        obs.signal_handler_disconnect(obs.obs_source_get_signal_handler(source), "media_ended", _on_media_ended)
        obs.obs_source_release(source)


def _on_frontend_event(event):
    # Let go of the sources before OBS tears the collection down (a held reference would leak them).
    if event in (obs.OBS_FRONTEND_EVENT_SCENE_COLLECTION_CLEANUP, obs.OBS_FRONTEND_EVENT_EXIT):
        _release_sources()
        state.now_playing = None
        state.playing_source = None
        state.preview = None
    elif event == obs.OBS_FRONTEND_EVENT_FINISHED_LOADING:
        _log("ready")


# --------------------------------------------------------------------------- status (UI thread)


def _status_text():
    lines = []
    with state.lock:
        jobs = [dict(job) for job in state.jobs.values()]
        waiting = [dict(entry) for entry in state.playlist]
    for job in jobs[-4:]:
        prompt = _short(job["prompt"])
        if job["state"] == "generating":
            stage = f" ({job['stage']} step {job.get('step', 0)} of {job.get('total', 0)})" if job.get("stage") else ""
            lines.append(f"Generating “{prompt}”: {job['percent']:.0f}%{stage}")
        elif job["state"] == "failed":
            lines.append(f"Failed “{prompt}”: {job['error']}")
        elif job["state"] == "ready":
            lines.append(f"Ready “{prompt}”: {os.path.basename(job['path'])}")
        else:
            lines.append(f"{job['state'].capitalize()} “{prompt}”")
    if state.now_playing and _busy():
        lines.append(f"On air: {os.path.basename(state.now_playing)} ({state.playing_source})")
    preview = state.preview
    if preview is not None:
        lines.append(f"In review: {os.path.basename(preview['path'])} ({preview['name']})")
    if waiting:
        lines.append(
            f"Clips for air: {len(waiting)}, next {os.path.basename(waiting[0]['path'])}"
            + ("" if state.config.get("auto_play") else "; press Play to put it on air")
        )
    if not lines:
        lines.append("Type a prompt and press Generate.")
    if state.message:
        lines.append(state.message)
    cameo = _cameo()
    if cameo["state"] == "ready" and _cameo_seconds_left(cameo) > 0:
        left = int(_cameo_seconds_left(cameo))
        lines.append(f"Cameo: say “{cameo['phrase']}” on camera ({left // 60}:{left % 60:02d} left)")
    if state.server_note:
        lines.append(f"Server: {state.server_note}")
    if CLIENT_ERROR:
        lines.append(CLIENT_ERROR)
    return "\n".join(lines)


def _show_status():
    if state.settings is not None:
        obs.obs_data_set_string(state.settings, "status", _status_text())
        obs.obs_data_set_string(state.settings, "cameo_info", _cameo_text())


def _refresh_status():
    """From the timer: the status Text source, if one is picked, rewritten only when the status changed."""
    name = state.config.get("status_source")
    if not name:
        return
    text = _status_text()
    if text == state.status_text:
        return
    source = obs.obs_get_source_by_name(name)
    if source is None:
        return
    try:
        if obs.obs_source_get_unversioned_id(source) in TEXT_KINDS:
            settings = obs.obs_data_create()
            obs.obs_data_set_string(settings, "text", text)
            obs.obs_source_update(source, settings)
            obs.obs_data_release(settings)
            state.status_text = text
    finally:
        obs.obs_source_release(source)


def _text_sources():
    sources = obs.obs_enum_sources() or []
    try:
        return sorted(obs.obs_source_get_name(s) for s in sources if obs.obs_source_get_unversioned_id(s) in TEXT_KINDS)
    finally:
        obs.source_list_release(sources)


def _set_message(text):
    state.message = text


# --------------------------------------------------------------------------- helpers


def _combo(props, name, label, values, hint):
    # An editable list stores the text shown, so each item's label is its value ("" = default).
    prop = obs.obs_properties_add_list(props, name, label, obs.OBS_COMBO_TYPE_EDITABLE, obs.OBS_COMBO_FORMAT_STRING)
    for value in values:
        obs.obs_property_list_add_string(prop, value, value)
    obs.obs_property_set_long_description(prop, hint)
    return prop


def _cameo_ids(client):
    # The id (char_...) names one cameo for everyone, as names are only unique per user; older servers lack it.
    return [row.get("character_id") or row["id"] for row in client.cameos() if row.get("usable")]


def _backend_choices():
    seen, choices = set(), []
    for name in ("",) + tuple(state.backends) + BACKENDS:
        if name not in seen:
            seen.add(name)
            choices.append(name)
    return choices


def _default_clips_dir():
    videos = os.path.join(os.path.expanduser("~"), "Videos")
    return os.path.join(videos if os.path.isdir(videos) else os.path.expanduser("~"), "kinema")


def _short(text, limit=40):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
