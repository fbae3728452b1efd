"""The Kinema tab's "Make a Cameo" panel: the phrase to say on camera, with its time left, then the recording.

The fields live on the window manager, not in the .blend: a recording of a person is not scene data to be shared.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, PointerProperty, StringProperty

from . import cameo_capture, preferences, session

COUNTDOWN_SECONDS = 1.0  # how often the panel's time left is redrawn while a phrase is live

state = cameo_capture.CaptureState()
work = cameo_capture.CaptureWork()


class KINEMA_PG_cameo(bpy.types.PropertyGroup):
    name: StringProperty(
        name="Name",
        description="The cameo's name, as others will pick it: 1-40 lowercase letters, digits, - or _ (e.g. alice)",
        default="",
    )
    video: StringProperty(
        name="Recording",
        description="A video of you alone, facing the camera, saying the phrase aloud (3-10 s, with its sound)",
        subtype="FILE_PATH",
        default="",
    )
    audio: StringProperty(
        name="Voice",
        description="Optional: a recording of your voice alone (3 s or more); empty: the recording's own speech",
        subtype="FILE_PATH",
        default="",
    )
    permission: EnumProperty(
        name="Who May Use It",
        description="Others may use a cameo only once the server has verified it",
        items=(
            ("only_me", "Only Me", "Only you may put this person in clips"),
            ("listed", "Listed Users", "You and the users named below (verified cameos only)"),
            ("everyone", "Everyone", "Every user of this server (verified cameos only)"),
        ),
        default="only_me",
    )
    allowed_users: StringProperty(
        name="Users", description="Comma-separated kinema user names who may use it", default=""
    )


def tick() -> float | None:
    """Apply the workers' news; keeps running (redrawing the time left) while a phrase is live."""
    news = work.drain()
    for update in news:
        _apply(update)
    if news or state.challenge:
        session._redraw()
    if state.busy or state.phrase_live():
        return COUNTDOWN_SECONDS if not state.busy else session.TICK_SECONDS
    return None


def _apply(update: dict) -> None:
    level = update.pop("level", "")
    keep = update.pop("keep_phrase", False)
    usable = update.pop("usable_cameos", None)
    for key, value in update.items():
        setattr(state, key, value)
    if state.state == "refused":
        if keep and state.challenge and state.seconds_left() > 0:
            state.state = "ready"  # the server never saw it: the same phrase may be sent again
        else:
            state.challenge = ""
    if usable is not None:
        session.server.cameos = usable  # the Cameo picker lists it at once
    if level:
        session.notify(level, f"Kinema: {state.message}")


def ensure_ticking() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=session.TICK_SECONDS, persistent=True)
    session.ensure_ticking()  # finding or starting the server posts its news to the add-on's own tick


class KINEMA_OT_cameo_phrase(bpy.types.Operator):
    """Ask the server for a one-time phrase to say on camera while you record your cameo"""

    bl_idname = "kinema.cameo_phrase"
    bl_label = "Get Phrase"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return not state.busy

    def execute(self, context):
        refusal = preferences.online_refusal(context)
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        state.state, state.challenge, state.message, state.code = "asking", "", "", ""
        work.ask(session.work, preferences.server_settings(context))
        ensure_ticking()
        self.report({"INFO"}, "Kinema: asking the server for a phrase")
        return {"FINISHED"}


class KINEMA_OT_cameo_create(bpy.types.Operator):
    """Send the recording of you saying the phrase: the server checks it and makes the cameo"""

    bl_idname = "kinema.cameo_create"
    bl_label = "Make Cameo"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if state.phrase_live():
            return True
        cls.poll_message_set(
            "Checking the recording…" if state.busy else "Get a phrase first, then record yourself saying it"
        )
        return False

    def execute(self, context):
        fields = context.window_manager.kinema_cameo
        if not state.phrase_live():
            self.report({"ERROR"}, "The phrase expired: press Get Phrase, record yourself saying the new one")
            return {"CANCELLED"}
        name = fields.name.strip()
        if not name:
            self.report({"ERROR"}, "Name the cameo first (e.g. alice)")
            return {"CANCELLED"}
        video = bpy.path.abspath(fields.video) if fields.video.strip() else ""
        problem = cameo_capture.recording_problem(video)
        audio = bpy.path.abspath(fields.audio) if fields.audio.strip() else ""
        if problem is None and audio and cameo_capture.recording_problem(audio):
            problem = f"No voice recording at {audio}: choose it again, or leave Voice empty"
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        refusal = preferences.online_refusal(context)
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        users = tuple(user.strip() for user in fields.allowed_users.split(",") if user.strip())
        state.state, state.name, state.message, state.code = "uploading", name, "", ""
        work.create(
            session.work,
            preferences.server_settings(context),
            name,
            video,
            challenge=state.challenge,
            audio=audio,
            permission=fields.permission,
            allowed_users=users if fields.permission == "listed" else (),
        )
        ensure_ticking()
        self.report({"INFO"}, "Kinema: sending the recording; the server checks that it is you saying the phrase")
        return {"FINISHED"}


STATE_ICONS = {"verified": "CHECKMARK", "unverified": "INFO", "refused": "ERROR"}


def phrase_lines(width: int = 28) -> list[str]:
    """The phrase as the panel shows it, a few words a line, so that it reads at a glance."""
    import textwrap

    return textwrap.wrap(f'"{state.phrase}"', width) if state.phrase else []


class KINEMA_PT_cameo(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Kinema"
    bl_label = "Make a Cameo"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        from .ui import _wrapped

        layout = self.layout
        fields = context.window_manager.kinema_cameo
        box = layout.box()
        if state.state == "asking":
            box.label(text="Asking the server for a phrase…", icon="TIME")
        elif state.phrase_live() or state.state == "uploading":
            box.label(text="Say this on camera:", icon="REC")
            column = box.column(align=True)
            column.scale_y = 1.5
            for line in phrase_lines():
                column.label(text=line)
            box.label(text=f"Code: {' '.join(state.digits)}")
            if state.state == "uploading":
                box.label(text="Checking the recording…", icon="TIME")
            else:
                box.label(text=state.time_left_text(), icon="TIME")
        else:
            if state.challenge:
                box.label(text=state.time_left_text(), icon="ERROR")
            _wrapped(box, context, "Get a one-time phrase, then record yourself alone, facing the camera, saying it")
        box.operator("kinema.cameo_phrase", icon="FILE_REFRESH" if state.challenge else "PLAY")

        layout.use_property_split = True
        layout.use_property_decorate = False
        column = layout.column()
        column.prop(fields, "name")
        column.prop(fields, "video")
        column.prop(fields, "audio")
        column.prop(fields, "permission")
        if fields.permission == "listed":
            column.prop(fields, "allowed_users")
        layout.use_property_split = False
        row = layout.row()
        row.scale_y = 1.4
        row.operator("kinema.cameo_create", icon="USER")
        if state.message and state.state in STATE_ICONS:
            _wrapped(layout.box(), context, state.message, icon=STATE_ICONS[state.state])


classes = (KINEMA_PG_cameo, KINEMA_OT_cameo_phrase, KINEMA_OT_cameo_create, KINEMA_PT_cameo)


def register() -> None:
    bpy.types.WindowManager.kinema_cameo = PointerProperty(type=KINEMA_PG_cameo)


def unregister() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    del bpy.types.WindowManager.kinema_cameo
