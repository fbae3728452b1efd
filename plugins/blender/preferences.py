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

    pull_model_id: StringProperty(
        name="Other model",
        description="A Hugging Face model id to download on the server (safetensors only), e.g. Lightricks/LTX-2",
        default="",
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
        self._draw_models(layout.box())

    def _draw_models(self, box) -> None:
        """The server's models, each with its licence, whether it is downloaded, and a Download button."""
        from . import operators, session

        server = session.server
        header = box.row()
        header.label(text="Models on the server", icon="FILE_3D")
        header.operator("kinema.refresh_models", text="", icon="FILE_REFRESH")
        if not bpy.app.online_access:
            box.label(text="Downloads need online access (Preferences > System > Network)", icon="ERROR")
        if server.models_message:
            box.label(text=server.models_message, icon="INFO")
        elif not server.catalogue:
            box.label(text="Press the refresh button to read the server's models and their licences")
        for row in server.catalogue:
            if "/" not in row.get("id", "") or row.get("id", "").startswith("kinema/"):
                continue  # backends and embedded models: nothing to download
            item = box.box()
            line = item.row()
            installed = row.get("installed")
            line.label(text=row["id"], icon="CHECKMARK" if installed else "IMPORT")
            pull = server.pulls.get(row["id"])
            for text in operators.licence_lines(row, row["id"]):
                item.label(text=text)
            if pull and pull.get("status") in ("queued", "downloading"):
                progress = pull.get("progress")
                text = session.pull_text(pull)
                if hasattr(item, "progress") and progress is not None:
                    item.progress(factor=progress, type="BAR", text=text)
                else:
                    item.label(text=text, icon="SORTTIME")
            elif pull and pull.get("status") == "failed":
                item.label(text=session.pull_text(pull), icon="ERROR")
            if not installed and not (pull and pull.get("status") in ("queued", "downloading")):
                sub = line.row()
                sub.enabled = bpy.app.online_access
                sub.operator("kinema.pull_model", text="Download…", icon="IMPORT").model = row["id"]
        row = box.row(align=True)
        row.enabled = bpy.app.online_access
        row.prop(self, "pull_model_id")
        row.operator("kinema.pull_model", text="Download…", icon="IMPORT").model = self.pull_model_id.strip()


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
