"""Add-on preferences: which server, which backend by default, where clips go."""

import json
import os
import tempfile

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import runner

DEFAULT_URL = "http://127.0.0.1:8765"


def install_defaults() -> dict:
    """What `kinema install blender` wrote into the zip: the style presets and tiers it knew (no paths: the zip
    is shared, and the Python kinema runs in is found on this computer, see ``runner.find_kinema_python``)."""
    try:
        with open(os.path.join(os.path.dirname(__file__), "kinema_defaults.json"), encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


class KINEMA_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_url: StringProperty(
        name="Server URL",
        description="Where `kinema serve` listens. Servers on other computers need Blender's 'Allow Online Access'",
        default=DEFAULT_URL,
    )
    start_server: BoolProperty(
        name="Start a local server",
        description="If nothing answers at the URL, start `kinema serve` there with the Python below",
        default=True,
    )
    python_path: StringProperty(
        name="Python with kinema",
        description="The interpreter of the environment where kinema is installed (e.g. ~/kinema/.venv/bin/python);"
        " torch and the models stay out of Blender. Empty: KINEMA_PYTHON, else the `kinema` command on PATH",
        subtype="FILE_PATH",
        default="",
    )
    api_key: StringProperty(
        name="API key",
        description="Only if the server was started with KINEMA_API_KEY",
        subtype="PASSWORD",
    )
    default_backend: StringProperty(
        name="Default backend",
        description="Backend or pulled model for new scenes (tiny, ltx2, wan, or e.g. Lightricks/LTX-2);"
        " empty uses the server's default",
        default="",
    )
    output_dir: StringProperty(
        name="Clips folder",
        description="Where generated clips are saved; // means beside the .blend file."
        " Unsaved files use the temporary folder",
        default="//kinema/",
        subtype="DIR_PATH",
    )
    camera_engine: EnumProperty(
        name="Camera render",
        description="Engine for 'Generate from Camera' (EEVEE is left out: it is far slower for one still frame)",
        items=(
            ("BLENDER_WORKBENCH", "Workbench", "Fast solid shading; enough to block out the shot"),
            ("CYCLES", "Cycles", "Materials and lights, with few samples"),
        ),
        default="BLENDER_WORKBENCH",
    )
    cycles_samples: IntProperty(
        name="Cycles samples",
        description="Samples for the first-frame render with Cycles",
        default=16,
        min=1,
        soft_max=256,
    )
    stop_server_on_quit: BoolProperty(
        name="Stop the server when Blender quits",
        description="Stop a server this add-on started when Blender quits, or crashes (keeping it saves loading the"
        " model again)",
        default=True,
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        column = layout.column(heading="Server")
        column.prop(self, "server_url")
        column.prop(self, "start_server")
        row = column.row()
        row.active = self.start_server
        try:
            row.prop(self, "python_path", placeholder=runner.find_kinema_python() or "not found: choose it")
        except TypeError:  # 'placeholder' is newer than some supported Blenders
            row.prop(self, "python_path")
        column.prop(self, "api_key")
        if not runner.is_local_url(self.server_url) and not bpy.app.online_access:
            column.label(
                text="Online access is off (Preferences > System > Network): only local servers work", icon="ERROR"
            )
        column = layout.column(heading="Clips")
        column.prop(self, "default_backend")
        column.prop(self, "output_dir")
        column.prop(self, "camera_engine")
        if self.camera_engine == "CYCLES":
            column.prop(self, "cycles_samples")
        column = layout.column(heading="Started server")
        column.prop(self, "stop_server_on_quit")
        column.operator("kinema.stop_server", icon="CANCEL")


def get(context=None) -> KINEMA_AP_preferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def server_settings(context=None) -> runner.ServerSettings:
    prefs = get(context)
    python = bpy.path.abspath(prefs.python_path) if prefs.python_path.strip() else runner.find_kinema_python()
    return runner.ServerSettings(
        url=prefs.server_url.strip(),
        start_local=prefs.start_server,
        python=os.path.expanduser(python),
        api_key=prefs.api_key,
        stop_with_blender=prefs.stop_server_on_quit,
    )


def online_refusal(context=None) -> str | None:
    """Why the configured server may not be used, or None: Blender's online-access switch covers non-local hosts."""
    url = get(context).server_url.strip() or DEFAULT_URL
    if runner.is_local_url(url) or bpy.app.online_access:
        return None
    return (
        f"{url} is not on this computer and Blender's online access is off: allow it in Preferences > System"
        " > Network, or use a local server"
    )


def output_dir(context=None) -> str:
    """The clips folder as an absolute path; for an unsaved .blend, // means the temporary folder."""
    context = context or bpy.context
    folder = get(context).output_dir or "//kinema/"
    if folder.startswith("//") and not bpy.data.filepath:
        temp = context.preferences.filepaths.temporary_directory or tempfile.gettempdir()
        return os.path.join(bpy.path.abspath(temp), "kinema-unsaved")
    return os.path.normpath(bpy.path.abspath(folder))
