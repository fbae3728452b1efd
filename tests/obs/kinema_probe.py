"""A test-only OBS script: lets tests/test_obs.py see and change the kinema script's settings as a user would.

OBS runs every Python script in one interpreter, so the kinema script is
``sys.modules["kinema_obs"]``. Pressing this script's hotkey (obs-websocket's
TriggerHotkeyByName; OBS runs it on its UI thread, like the Scripts dialog)
runs the command in ``$KINEMA_PROBE_DIR/command.json`` and writes
``result.json`` beside it:

- ``{"id": N, "do": "properties", "names": [...]}``: build the kinema script's
  properties (what the Scripts dialog shows) and describe the named ones:
  type, label, long description, list items (label, value), path filter, value,
  and an info text's kind (normal, warning, error).
- ``{"id": N, "do": "set", "settings": {...}}``: set values in the script's
  settings and call its ``script_update``, as OBS does when a property is edited.
- ``{"id": N, "do": "press", "button": NAME}``: press one of the script's
  buttons, as a click in the Scripts dialog does; answers the status text.
"""

import json
import os
import sys
import traceback

import obspython as obs

HOTKEY = "kinema_probe.run"


def script_description():
    return "kinema tests only: inspects and sets the kinema script's properties"


def script_load(settings):
    obs.obs_hotkey_register_frontend(HOTKEY, "kinema tests: run the probe command", _pressed)


def _pressed(is_pressed):
    if not is_pressed:
        return
    folder = os.environ["KINEMA_PROBE_DIR"]
    with open(os.path.join(folder, "command.json"), encoding="utf-8") as handle:
        command = json.load(handle)
    try:
        answer = {"id": command["id"], "result": COMMANDS[command["do"]](command)}
    except Exception:  # noqa: BLE001 - handed to the test, which shows it
        answer = {"id": command["id"], "error": traceback.format_exc()}
    temp = os.path.join(folder, "result.json.part")
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(answer, handle)
    os.replace(temp, os.path.join(folder, "result.json"))


def _kinema():
    return sys.modules["kinema_obs"]


def _properties(command):
    kinema = _kinema()
    types = {
        obs.OBS_PROPERTY_LIST: "list",
        obs.OBS_PROPERTY_PATH: "path",
        obs.OBS_PROPERTY_TEXT: "text",
        obs.OBS_PROPERTY_INT: "int",
        obs.OBS_PROPERTY_FLOAT: "float",
        obs.OBS_PROPERTY_BOOL: "bool",
        obs.OBS_PROPERTY_BUTTON: "button",
        obs.OBS_PROPERTY_GROUP: "group",
    }
    props = kinema.script_properties()
    found = {}
    try:
        for name in command["names"]:
            prop = obs.obs_properties_get(props, name)  # looks inside groups too
            if prop is None:
                found[name] = None
                continue
            kind = types.get(obs.obs_property_get_type(prop), "other")
            entry = {
                "type": kind,
                "label": obs.obs_property_description(prop),
                "long_description": obs.obs_property_long_description(prop),
            }
            if kind == "list":
                entry["items"] = [
                    [obs.obs_property_list_item_name(prop, i), obs.obs_property_list_item_string(prop, i)]
                    for i in range(obs.obs_property_list_item_count(prop))
                ]
                entry["editable"] = obs.obs_property_list_type(prop) == obs.OBS_COMBO_TYPE_EDITABLE
            if kind == "path":
                entry["filter"] = obs.obs_property_path_filter(prop)
                entry["file"] = obs.obs_property_path_type(prop) == obs.OBS_PATH_FILE
            if kind in ("list", "path", "text"):
                entry["value"] = obs.obs_data_get_string(kinema.state.settings, name)
            if kind == "text" and obs.obs_property_text_type(prop) == obs.OBS_TEXT_INFO:
                info_types = {obs.OBS_TEXT_INFO_NORMAL: "normal", obs.OBS_TEXT_INFO_WARNING: "warning"}
                entry["info_type"] = info_types.get(obs.obs_property_text_info_type(prop), "error")
            found[name] = entry
    finally:
        obs.obs_properties_destroy(props)
    return found


def _set(command):
    kinema = _kinema()
    settings = kinema.state.settings
    for name, value in command["settings"].items():
        if isinstance(value, bool):
            obs.obs_data_set_bool(settings, name, value)
        elif isinstance(value, int):
            obs.obs_data_set_int(settings, name, value)
        elif isinstance(value, float):
            obs.obs_data_set_double(settings, name, value)
        else:
            obs.obs_data_set_string(settings, name, value)
    kinema.script_update(settings)
    return {name: kinema.state.config.get(name) for name in command["settings"]}


def _press(command):
    kinema = _kinema()
    props = kinema.script_properties()
    try:
        prop = obs.obs_properties_get(props, command["button"])
        if prop is None or obs.obs_property_get_type(prop) != obs.OBS_PROPERTY_BUTTON:
            raise ValueError(f"the kinema script has no button {command['button']!r}")
        obs.obs_property_button_clicked(prop, None)
    finally:
        obs.obs_properties_destroy(props)
    return obs.obs_data_get_string(kinema.state.settings, "status")


COMMANDS = {"properties": _properties, "set": _set, "press": _press}
