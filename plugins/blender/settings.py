"""The panel's fields, saved with each scene (``scene.kinema``)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .kinema_client import DEFAULT_TIER
from .kinema_client import TIERS as TIER_NAMES
from .preferences import install_defaults

# Suggestions only: the style presets of the kinema that built the add-on; any other name may be typed.
STYLES = tuple(install_defaults().get("styles") or ())
BACKENDS = ("tiny", "tiny-wan", "ltx2", "wan")
# Quality tiers and what each trades, from the kinema that built the add-on; the names are the server's `tier` values.
# Without that file, the tiers of the client copied in beside this one (kinema/client.py, built with the add-on).
# Once the server answers, the Tier menu shows the server's own tiers (Client.tiers()).
_TIER_HINTS = {"draft": "Fast preview", "standard": "The model's default steps", "final": "The shot you keep"}
TIERS = dict(install_defaults().get("tiers") or {name: _TIER_HINTS.get(name, name) for name in TIER_NAMES})
_TIER_NUMBERS = {"draft": 0, "standard": 1, "final": 2}  # a .blend saves the choice by number: never renumber
MAX_SEED = 2**31 - 1  # Blender's integer properties are 32-bit


def _suggest(names):
    def search(self, context, edit_text):
        return [name for name in names() if edit_text.lower() in name.lower()]

    return search


def _backend_names():
    from . import session

    return sorted(set(BACKENDS) | set(session.server.models))


def _cameo_names():
    from . import session

    return list(session.server.cameos)


_tier_items: dict[tuple, list] = {}  # Blender keeps no reference to a dynamic enum's strings: this does


def _tiers(self, context):
    """The Tier menu: the server's tiers once it has answered, else those known when the add-on was built."""
    from . import session

    names = tuple(session.server.tiers) or tuple(TIERS)
    default = session.server.default_tier
    key = (names, default)
    if key not in _tier_items:
        items = []
        for index, name in enumerate(names):
            hint = TIERS.get(name) or _TIER_HINTS.get(name) or name
            hint = hint[:1].upper() + hint[1:] + (" (the server's default)" if name == default else "")
            items.append((name, name.title(), hint, _TIER_NUMBERS.get(name, 100 + index)))
        _tier_items[key] = items
    return _tier_items[key]


class KINEMA_PG_settings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What the clip shows and sounds like")
    negative_prompt: StringProperty(name="Negative", description="What the clip should not show or sound like")
    seconds: FloatProperty(
        name="Seconds",
        description="Clip length; the backend snaps it to its frame grid",
        default=4.0,
        min=0.1,
        soft_max=20.0,
        step=50,
        precision=1,
        unit="TIME_ABSOLUTE",
    )
    use_scene_size: BoolProperty(
        name="Scene Size",
        default=True,
        description="Use the scene's render resolution (the backend snaps it to its grid)",
    )
    width: IntProperty(name="Width", default=768, min=16, soft_max=1920, subtype="PIXEL")
    height: IntProperty(name="Height", default=512, min=16, soft_max=1080, subtype="PIXEL")
    random_seed: BoolProperty(name="Random Seed", default=True, description="A new seed for every clip")
    seed: IntProperty(name="Seed", default=0, min=0, max=MAX_SEED, description="Same seed and settings, same clip")
    style: StringProperty(
        name="Style",
        description="A kinema style preset, or empty for none",
        search=_suggest(lambda: STYLES),
        search_options={"SUGGESTION", "SORT"},
    )
    backend: StringProperty(
        name="Backend",
        description="Backend or pulled model (tiny, ltx2, wan, or e.g. Lightricks/LTX-2); empty uses"
        " the add-on's default",
        search=_suggest(_backend_names),
        search_options={"SUGGESTION", "SORT"},
    )
    cameo: StringProperty(
        name="Cameo",
        description="A person to put in the clip: a kinema cameo whose owner lets you use it"
        " (backends ltx2, wan-vace); empty for nobody",
        search=_suggest(_cameo_names),
        search_options={"SUGGESTION", "SORT"},
    )
    dialogue: StringProperty(
        name="Says",
        description="A line the cameo says in its own voice, spoken by the server's voice model from its recorded"
        " sample (backend ltx2); another user's cameo needs its owner's voice permission. Empty: nothing",
    )
    tier: EnumProperty(
        name="Tier",
        default=_TIER_NUMBERS.get(DEFAULT_TIER, 1),  # a menu filled by a function takes its default by number
        description="Quality tier: speed against quality (Generate from Markers: every shot's)",
        items=_tiers,
    )
    steps: IntProperty(
        name="Steps",
        default=0,
        min=0,
        soft_max=100,
        description="Denoising steps; 0 uses the tier's for the backend (its default, for standard)",
    )
    audio: BoolProperty(name="Sound", default=True, description="Generate a synchronized soundtrack")
    variations: IntProperty(
        name="Variations",
        default=1,
        min=1,
        soft_max=8,
        max=32,
        description="How many clips each button makes, each with its own seed, stacked on free channels",
    )
    remix_strength: FloatProperty(
        name="Remix Strength",
        default=0.6,
        min=0.01,
        max=1.0,
        description="How far a remix moves from its strip: near 0 keeps it, 1 keeps only its length",
    )
    remix_keep_audio: BoolProperty(
        name="Keep Sound", default=False, description="A remix keeps the strip's sound instead of making new sound"
    )
    image_fit: EnumProperty(
        name="Fit",
        description="Clips are made on the model's 32-pixel grid, then shown at exactly the size asked for, never"
        " stretched. A first frame (camera or strip) is padded or cropped into the clip, and the clip lines up with"
        " it; a clip from the prompt alone is fitted inside the frame or covers it",
        items=(
            (
                "pad",
                "Pad",
                "Keep the whole picture: a first frame gets black bars in the clip, cut off again when the clip is"
                " shown, so it fills the frame; a clip from a prompt shows whole, with bars if its shape differs",
                0,
            ),
            (
                "crop",
                "Crop",
                "Fill the clip, cutting the picture's edges: those edges stay empty when a clip from a first frame"
                " is shown; a clip from a prompt covers the frame, its edges cut",
                1,
            ),
        ),
        default="pad",
    )
    show_advanced: BoolProperty(name="More", default=False)


def register():
    bpy.types.Scene.kinema = bpy.props.PointerProperty(type=KINEMA_PG_settings)


def unregister():
    del bpy.types.Scene.kinema
