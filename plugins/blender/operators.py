"""Buttons: Generate, Generate from Camera, Cancel, and a few helpers. None of them waits on the network."""

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import background_render, camera, frame_fit, preferences, session, timeline


class KINEMA_OT_generate(bpy.types.Operator):
    """Generate a clip with sound from the prompt; it appears at the playhead when ready"""

    bl_idname = "kinema.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    def execute(self, context):
        try:
            made = session.submit(context)
        except session.UserError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Kinema: generating {_clips(made)} of '{made[0].prompt}' (Esc in the Sequencer cancels)")
        return {"FINISHED"}


def _clips(made) -> str:
    return "a clip" if len(made) == 1 else f"{len(made)} variations"


class KINEMA_OT_generate_from_camera(bpy.types.Operator):
    """Render the active camera's current frame and generate a clip that starts from it"""

    bl_idname = "kinema.generate_from_camera"
    bl_label = "Generate from Camera"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if context.scene is None or context.scene.camera is None:
            cls.poll_message_set("The scene has no active camera")
            return False
        return True

    def execute(self, context):
        prefs = preferences.get(context)
        target_scene = timeline.target_scene(context)
        width, height = session.size_for(target_scene)
        size = frame_fit.clip_size(width, height)
        task = None
        try:
            # The camera lives in the active scene, which in Blender 5 may differ from the Sequencer's scene.
            # Rendered by another Blender: this one only saves a copy of the file, then goes on.
            task = background_render.start(
                context.scene,
                what="camera",
                width=width,
                height=height,
                target=size,
                fit=target_scene.kinema.image_fit,
                engine=prefs.camera_engine,
                cycles_samples=prefs.cycles_samples,
            )
            made = session.submit(context, render=task, size=size)
        except (camera.CameraError, session.UserError) as error:
            if task is not None:
                task.cancel()
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report(
            {"INFO"},
            f"Kinema: generating {_clips(made)} of '{made[0].prompt}' from camera '{context.scene.camera.name}'",
        )
        return {"FINISHED"}


class KINEMA_OT_generate_from_markers(bpy.types.Operator):
    """Make one film from the timeline markers: each marker's name is a shot, the gap to the next its length
    (a name starting with + continues the previous shot); the prompt, if any, is the shared setting"""

    bl_idname = "kinema.generate_from_markers"
    bl_label = "Generate from Markers"
    bl_options = {"REGISTER"}

    def execute(self, context):
        try:
            (job,) = session.submit(context, from_markers=True)
        except session.UserError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Kinema: generating {job.prompt}; it appears at frame {job.frame} when ready")
        return {"FINISHED"}


def selected_movie_strips(context) -> list:
    """The selected movie strips of the Sequencer's scene (the active one if none is selected), one per clip."""
    scene = timeline.target_scene(context)
    editor = scene.sequence_editor
    if editor is None:
        return []
    chosen = [strip for strip in timeline.top_level_strips(editor) if strip.select and strip.type == "MOVIE"]
    active = editor.active_strip
    if not chosen and active is not None and active.type == "MOVIE":
        chosen = [active]
    return sorted(chosen, key=lambda strip: (strip.frame_final_start, strip.channel))


class KINEMA_OT_from_strip(bpy.types.Operator):
    """Make new clips from the selected movie strips; each new strip records the one it came from"""

    bl_idname = "kinema.from_strip"
    bl_label = "From Strip"
    bl_options = {"REGISTER"}

    action: EnumProperty(
        name="Action",
        items=(
            ("frame", "Image to Video", "A clip that starts from the strip's frame under the playhead"),
            ("extend", "Extend", "The clip, the panel's Seconds longer, continued from its last frames"),
            ("remix", "Remix", "The same shot redone for the panel's prompt (Remix Strength says how far)"),
            ("regenerate", "New Seed", "The strip's own prompt and settings again, with a new seed"),
        ),
        default="regenerate",
    )

    @classmethod
    def description(cls, context, properties):
        return {item.identifier: item.description for item in cls.bl_rna.properties["action"].enum_items}.get(
            properties.action, ""
        )

    @classmethod
    def poll(cls, context):
        if not selected_movie_strips(context):
            cls.poll_message_set("Select a movie strip in the Sequencer")
            return False
        return True

    def execute(self, context):
        scene = timeline.target_scene(context)
        strips = selected_movie_strips(context)
        task = size = None
        try:
            if self.action == "frame":
                frame = scene.frame_current
                strips = [strip for strip in strips if strip.frame_final_start <= frame < strip.frame_final_end]
                if len(strips) != 1:
                    raise session.UserError(
                        "Select one movie strip under the playhead: its frame there starts the new clip"
                    )
                width, height = session.size_for(scene)
                size = frame_fit.clip_size(width, height)
                task = background_render.start(
                    scene,
                    what="strip",
                    strip=strips[0].name,
                    width=width,
                    height=height,
                    target=size,
                    fit=scene.kinema.image_fit,
                )
            made = session.submit_from_strips(context, self.action, strips, render=task, size=size)
        except (camera.CameraError, session.UserError) as error:
            if task is not None:
                task.cancel()
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Kinema: {len(made)} new clip(s) from {len(strips)} strip(s)")
        return {"FINISHED"}


class KINEMA_OT_cancel(bpy.types.Operator):
    """Stop a running or queued clip (the newest one if none is given)"""

    bl_idname = "kinema.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    job: IntProperty(name="Job", default=0, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        # Esc falls through to Blender (e.g. stopping playback) when there is nothing of ours to stop.
        screen = context.screen
        if screen is not None and screen.is_animation_playing:
            return False
        return session.latest_active() is not None

    def execute(self, context):
        job = session.get(self.job) if self.job else session.latest_active()
        if job is None or not session.cancel(job.id, context):
            return {"CANCELLED"}
        self.report({"INFO"}, f"Kinema: cancelling '{job.prompt}'")
        return {"FINISHED"}


class KINEMA_OT_dismiss(bpy.types.Operator):
    """Remove finished clips from the list (the clips and strips stay)"""

    bl_idname = "kinema.dismiss"
    bl_label = "Clear"
    bl_options = {"REGISTER", "INTERNAL"}

    job: IntProperty(name="Job", default=0, options={"SKIP_SAVE"})

    def execute(self, context):
        session.dismiss(self.job or None)
        return {"FINISHED"}


class KINEMA_OT_connect(bpy.types.Operator):
    """Check the kinema server (starting it if the preferences say so) and list its backends"""

    bl_idname = "kinema.connect"
    bl_label = "Connect"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context):
        session.connect(context)
        return {"FINISHED"}


class KINEMA_OT_stop_server(bpy.types.Operator):
    """Stop the kinema server this add-on started"""

    bl_idname = "kinema.stop_server"
    bl_label = "Stop Started Server"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return session.work.connection.started is not None

    def execute(self, context):
        if session.work.connection.stop_started_server():
            session.work.connection.forget()
            session.server.state, session.server.message = "unknown", "Server stopped"
        return {"FINISHED"}


class KINEMA_OT_refresh_models(bpy.types.Operator):
    """Read the server's models: each one's licence, and whether it is downloaded"""

    bl_idname = "kinema.refresh_models"
    bl_label = "Refresh Models"
    bl_options = {"REGISTER", "INTERNAL"}

    def execute(self, context):
        session.refresh_models(context)
        return {"FINISHED"}


class KINEMA_OT_pull_model(bpy.types.Operator):
    """Download a model on the kinema server, after showing its licence"""

    bl_idname = "kinema.pull_model"
    bl_label = "Download Model"
    bl_options = {"REGISTER", "INTERNAL"}

    model: StringProperty(name="Model", description="A Hugging Face model id, e.g. Lightricks/LTX-2")
    accept_license: BoolProperty(
        name="I accept its licence",
        description="You have read the model's licence (shown here, and on its model card) and accept it",
        default=False,
        options={"SKIP_SAVE"},
    )

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=480, confirm_text="Download")

    def draw(self, context):
        layout = self.layout
        layout.label(text=self.model, icon="IMPORT")
        for line in licence_lines(session.catalogue_row(self.model), self.model):
            layout.label(text=line)
        layout.prop(self, "accept_license")

    def execute(self, context):
        try:
            session.pull_model(context, self.model or preferences.get(context).pull_model_id, self.accept_license)
        except session.UserError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Kinema: downloading {self.model or preferences.get(context).pull_model_id}")
        return {"FINISHED"}


def licence_lines(row: dict | None, model: str, width: int = 72) -> list[str]:
    """The licence as the dialog and the preferences show it, wrapped to ``width`` characters."""
    import textwrap

    licence = (row or {}).get("licence") or {}
    if not licence:
        text = f"Licence not known here: read https://huggingface.co/{model} before downloading"
    else:
        text = licence.get("summary") or ""
        if licence.get("must_accept"):
            text = "RESTRICTS USE: " + text
    return textwrap.wrap(text, width) or [""]


class KINEMA_OT_report(bpy.types.Operator):
    """Show a message from a finished job in the status bar and the Info log"""

    bl_idname = "kinema.report"
    bl_label = "Kinema Message"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[(name, name, "") for name in ("INFO", "WARNING", "ERROR")], default="INFO")
    message: StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


classes = (
    KINEMA_OT_generate,
    KINEMA_OT_generate_from_camera,
    KINEMA_OT_generate_from_markers,
    KINEMA_OT_from_strip,
    KINEMA_OT_cancel,
    KINEMA_OT_dismiss,
    KINEMA_OT_connect,
    KINEMA_OT_stop_server,
    KINEMA_OT_refresh_models,
    KINEMA_OT_pull_model,
    KINEMA_OT_report,
)
