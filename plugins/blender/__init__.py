"""Kinema for Blender: generate video clips with sound into the Video Sequencer.

The add-on never imports torch: it sends jobs to a kinema server (``kinema serve``,
started for you if the preferences say so) and polls them from a timer, so
Blender stays responsive while clips are made. Build and install it with
``kinema install blender``, which adds kinema's stdlib client as kinema_client.py.
"""

from __future__ import annotations

import atexit

import bpy

from . import cameo_panel, live, operators, preferences, session, settings, ui

_classes = (
    preferences.KINEMA_AP_preferences,
    settings.KINEMA_PG_settings,
    *operators.classes,
    *ui.classes,
    *cameo_panel.classes,
)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)
    settings.register()
    cameo_panel.register()
    ui.register()
    bpy.app.handlers.save_pre.append(live.on_save_pre)
    atexit.register(session.shutdown)


def unregister() -> None:
    atexit.unregister(session.shutdown)
    session.shutdown()
    if live.on_save_pre in bpy.app.handlers.save_pre:
        bpy.app.handlers.save_pre.remove(live.on_save_pre)
    ui.unregister()
    cameo_panel.unregister()
    settings.unregister()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
