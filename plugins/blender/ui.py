"""The Kinema tab in the Sequencer's sidebar, the status-bar progress, and Esc to cancel."""

from __future__ import annotations

import textwrap

import bpy

from . import operators, preferences, session, timeline

STATUS_ICONS = {
    "done": "CHECKMARK",
    "failed": "ERROR",
    "cancelled": "CANCEL",
    "queued": "SORTTIME",
    "cancelling": "CANCEL",
}


def _wrapped(layout, context, text: str, icon: str = "NONE") -> None:
    """Labels do not wrap: split long messages to the sidebar's width."""
    width = max(20, int((context.region.width if context.region else 300) / (7 * context.preferences.view.ui_scale)))
    for index, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if index == 0 else "BLANK1" if icon != "NONE" else "NONE")


def _prop(layout, data, name: str, **options) -> None:
    try:
        layout.prop(data, name, **options)
    except TypeError:  # 'placeholder' is newer than some supported Blenders
        options.pop("placeholder", None)
        layout.prop(data, name, **options)


def _progress(layout, factor: float, text: str) -> None:
    if hasattr(layout, "progress"):
        layout.progress(factor=factor, type="BAR", text=text)
    else:
        layout.label(text=text)


class KINEMA_PT_generate(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Kinema"
    bl_label = "Kinema"

    def draw(self, context):
        layout = self.layout
        scene = timeline.target_scene(context)
        options = scene.kinema

        column = layout.column(align=True)
        _prop(column, options, "prompt", text="", placeholder="A red fox running through snow, wind howling")
        _prop(column, options, "negative_prompt", text="", placeholder="Negative prompt", icon="REMOVE")

        layout.use_property_split = True
        layout.use_property_decorate = False
        column = layout.column()
        column.prop(options, "seconds")
        column.prop(options, "use_scene_size")
        if options.use_scene_size:
            width, height = session.size_for(scene)
            row = column.row()
            row.enabled = False
            row.label(text=f"{width} × {height} (scene)")
        else:
            sub = column.column(align=True)
            sub.prop(options, "width")
            sub.prop(options, "height", text="Height")
        column.row().prop(options, "image_fit", expand=True)  # Pad | Crop: how a clip fits the size above
        column.prop(options, "random_seed")
        sub = column.row()
        sub.enabled = not options.random_seed
        sub.prop(options, "seed")
        column.prop(options, "style")
        _prop(column, options, "backend", placeholder=preferences.get(context).default_backend or "server default")
        column.row().prop(options, "tier", expand=True)  # Draft | Standard | Final, one click apart
        _prop(column, options, "cameo", placeholder="nobody")
        if options.cameo.strip():  # a line only a cameo says
            _prop(column, options, "dialogue", placeholder="nothing")
        column.prop(options, "show_advanced", text="More Options", toggle=False)
        if options.show_advanced:
            column.prop(options, "steps")
            column.prop(options, "audio")

        column.prop(options, "variations")

        layout.use_property_split = False
        column = layout.column(align=True)
        column.scale_y = 1.4
        column.operator("kinema.generate", icon="RENDER_ANIMATION")
        column.operator("kinema.generate_from_camera", icon="CAMERA_DATA")
        column.operator("kinema.generate_from_markers", icon="MARKER_HLT")
        self._draw_strip(layout, context, options)

        self._draw_server(layout, context)
        self._draw_jobs(layout, context)

    @staticmethod
    def _draw_strip(layout, context, options) -> None:
        """What the selected strips can become: image to video from the playhead, extend, remix, a new seed."""
        strips = operators.selected_movie_strips(context)
        if not strips:
            return
        box = layout.box()
        strip = strips[-1]
        made_by_kinema = "kinema_job" in strip
        title = strip.name if len(strips) == 1 else f"{len(strips)} strips"
        box.label(text=title, icon="SEQUENCE")
        if made_by_kinema and len(strips) == 1:
            _wrapped(box, context, f"seed {strip.get('kinema_seed', '?')}: {strip.get('kinema_prompt', '')}")
            if strip.get("kinema_parent"):
                box.label(
                    text=f"{str(strip.get('kinema_action', '')).title()} of {strip.get('kinema_parent_strip', '')}"
                )
        grid = box.grid_flow(columns=2, align=True, even_columns=True)
        grid.operator("kinema.from_strip", text="Image to Video", icon="IMAGE_DATA").action = "frame"
        grid.operator("kinema.from_strip", text="Extend", icon="FORWARD").action = "extend"
        grid.operator("kinema.from_strip", text="Remix", icon="MOD_NOISE").action = "remix"
        grid.operator("kinema.from_strip", text="New Seed", icon="FILE_REFRESH").action = "regenerate"
        row = box.row(align=True)
        row.prop(options, "remix_strength", text="Strength")
        row.prop(options, "remix_keep_audio", text="", icon="SOUND")

    @staticmethod
    def _draw_server(layout, context) -> None:
        server = session.server
        if server.state == "error":
            box = layout.box()
            _wrapped(box, context, server.message, icon="ERROR")
            if server.ask_python:  # asked here, at first use, rather than sent to the preferences
                box.prop(preferences.get(context), "python_path", text="")
            box.operator("kinema.connect", text="Try Again", icon="FILE_REFRESH")
        elif server.state == "starting":
            _wrapped(layout, context, server.message or "Connecting…", icon="TIME")

    @staticmethod
    def _draw_jobs(layout, context) -> None:
        if not session.jobs:
            return
        for job in reversed(session.jobs):
            box = layout.box()
            row = box.row(align=True)
            row.label(text=job.prompt, icon=STATUS_ICONS.get(job.status, "RENDER_ANIMATION"))
            if job.active:
                row.operator("kinema.cancel", text="", icon="X", emboss=False).job = job.id
            else:
                row.operator("kinema.dismiss", text="", icon="PANEL_CLOSE", emboss=False).job = job.id
            if job.active and job.preview_icon:
                box.template_icon(icon_value=job.preview_icon, scale=6)  # the server's newest step preview
            if job.active:
                _progress(box, job.progress, f"{job.status_text} {job.progress:.0%}")
            else:
                box.label(text=job.status_text)
            box.label(text=job.summary)
            if job.active:
                for note in job.notes:
                    _wrapped(box, context, note)
            if job.message and job.message != "Cancelled":
                _wrapped(box, context, job.message, icon="ERROR" if job.status == "failed" else "INFO")
        if any(not job.active for job in session.jobs):
            layout.operator("kinema.dismiss", text="Clear Finished", icon="TRASH").job = 0


def draw_status_bar(self, context) -> None:
    """Progress of the newest running clip at the bottom of the window, like Blender's own jobs."""
    job = session.latest_active()
    if job is None:
        return
    row = self.layout.row(align=True)
    row.ui_units_x = 12
    _progress(row, job.progress, f"Kinema: {job.status_text} {job.progress:.0%}")
    row.operator("kinema.cancel", text="", icon="X").job = job.id


classes = (KINEMA_PT_generate,)
_keymaps: list = []


def sequencer_keymap_name() -> str:
    """The keymap for the whole Sequencer: "Video Sequence Editor" in Blender 5, "SequencerCommon" before.

    An add-on keymap only takes effect under the exact name of one of Blender's own.
    """
    from bl_keymap_utils.keymap_hierarchy import generate

    def names(items):
        for name, _space, _region, children in items:
            yield name
            yield from names(children)

    return "SequencerCommon" if "SequencerCommon" in set(names(generate())) else "Video Sequence Editor"


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is not None:  # None in background mode
        keymap = keyconfig.keymaps.new(name=sequencer_keymap_name(), space_type="SEQUENCE_EDITOR")
        _keymaps.append((keymap, keymap.keymap_items.new("kinema.cancel", "ESC", "PRESS")))


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    for keymap, item in _keymaps:
        keymap.keymap_items.remove(item)
    _keymaps.clear()
