"""What each kinema node takes and gives, as plain data.

ComfyUI's V3 schema (``comfy_api.latest.io.Schema``) is built from these in
``v3.py``; keeping the description free of ComfyUI imports lets CI, which has
no ComfyUI, check every node's inputs against the functions that run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kinema.backends.base import DEFAULT_STRENGTH as DEFAULT_REMIX_STRENGTH
from kinema.request import DEFAULT_BACKEND, MAX_FPS, MAX_GUIDANCE, MAX_SECONDS, MAX_SIDE, MAX_STEPS
from kinema.tiers import DEFAULT_TIER, TIERS

from .single_files import MODELS_OWN

# Widget types and the socket types ComfyUI passes between nodes.
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SOCKET_TYPES = {"IMAGE", "AUDIO", "VIDEO", "KINEMA_MODEL", "KINEMA_CLIP", "KINEMA_CAMEO"}
CATEGORY = "kinema"
MAX_SEED = 2**53 - 1  # the largest integer the browser's JSON numbers hold exactly
AUTO = "auto"
DEFAULT_MODEL = "(backend default)"
STORYBOARD_TIER = "(storyboard's own)"  # the Storyboard node's tier: what the text says, else standard

Options = tuple | Callable[[], list]


@dataclass(frozen=True)
class Input:
    id: str
    type: str
    tooltip: str
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: Options = ()  # COMBO choices, or a function listing them when ComfyUI asks
    multiline: bool = False
    optional: bool = False
    control_after_generate: bool = False  # the seed widget's "randomize / increment" control

    def choices(self) -> list:
        return list(self.options() if callable(self.options) else self.options)


@dataclass(frozen=True)
class Output:
    id: str
    type: str
    tooltip: str


@dataclass(frozen=True)
class Node:
    node_id: str
    display_name: str
    description: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...] = ()
    output_node: bool = False
    search_aliases: tuple[str, ...] = field(default=())


def _default_backend_defaults() -> Any:
    """The default backend's own settings, which Generate's widgets show (registering backends loads no weights)."""
    from kinema.engine import get_backend

    return get_backend(DEFAULT_BACKEND).defaults


_DEFAULTS = _default_backend_defaults()


def _backends() -> list[str]:
    from kinema.engine import get_backends

    names = sorted({backend.name for backend in get_backends().values()})
    first = DEFAULT_BACKEND
    return [first, *[n for n in names if n != first]] if first in names else names


def _models() -> list[str]:
    from .logic import model_choices

    return [DEFAULT_MODEL, *model_choices()]


def _text_encoders() -> list[str]:
    from .single_files import part_choices

    return [MODELS_OWN, *part_choices("text_encoder")]


def _vaes() -> list[str]:
    from .single_files import part_choices

    return [MODELS_OWN, *part_choices("vae")]


def _memory_policies() -> list[str]:
    from kinema.backends.device import PLACEMENT_POLICIES

    return list(PLACEMENT_POLICIES)


def _styles() -> list[str]:
    from kinema.styles import list_styles

    return ["none", *sorted(list_styles())]


def _licence_summary() -> str:
    from kinema.engine import get_backends

    from .licence_logic import summary

    return summary(get_backends())


# Built from kinema's tier table, so the tooltip says what each tier trades in this kinema version.
TIER_TOOLTIP = "Speed against quality. " + "; ".join(
    f"{name} — {entry['description']}" for name, entry in TIERS.items()
)


MODEL_LOADER = Node(
    node_id="KinemaModelLoader",
    display_name="Kinema Model Loader",
    description="Picks a kinema backend and model (from models/kinema, kinema's own model folder, or a pulled hub id)"
    " and how to hold it in memory. Weights load on the first Generate and stay loaded until ComfyUI"
    " frees memory. It shows the chosen models' licences, and refuses one that restricts use (a revenue"
    f" threshold, non-commercial only, a required credit) until accept_license is on. Licences: {_licence_summary()}"
    " (each model card is the authority).",
    search_aliases=("kinema", "ltx-2 loader", "wan loader", "video with audio"),
    inputs=(
        Input(
            "backend",
            "COMBO",
            "Model family: tiny is kinema's offline demo world (a ball bouncing in a room, with its sound); ltx2 makes picture and"
            " sound in one pass; wan adds a Stable Audio pass.",
            default=DEFAULT_BACKEND,
            options=_backends,
        ),
        Input(
            "model",
            "COMBO",
            "A model folder (with model_index.json) from models/kinema or kinema's model folder;"
            " the default is the backend's own model.",
            default=DEFAULT_MODEL,
            options=_models,
        ),
        Input(
            "precision",
            "COMBO",
            "Weight precision; auto is bf16/fp16 on GPUs and fp32 on CPU.",
            default=AUTO,
            options=(AUTO, "bf16", "fp16", "fp32"),
        ),
        Input(
            "memory",
            "COMBO",
            "auto: the fastest way that fits this GPU; gpu: always all on the GPU; offload:"
            " each part moves to the GPU only while it runs (less VRAM, slower); the rest are kinema's named"
            " memory policies.",
            default=AUTO,
            options=_memory_policies,
        ),
        Input(
            "model_id",
            "STRING",
            "Optional: a pulled hub id (e.g. Lightricks/LTX-2) or a folder path; overrides the model list.",
            default="",
            optional=True,
        ),
        Input(
            "accept_license",
            "BOOLEAN",
            "Accept the licence of a model whose licence restricts use (LTX-2.x: a paid licence above $10M annual"
            " revenue; Stable Audio, wan's sound: above $1M). Off, such a model is refused with its licence's terms;"
            " one pulled with `kinema models pull --accept-license` is already accepted.",
            default=False,
            optional=True,
        ),
        Input(
            "text_encoder",
            "COMBO",
            "For a single-file checkpoint: its text encoder from models/text_encoders (UMT5-XXL for Wan, e.g."
            " umt5_xxl_fp8_e4m3fn_scaled.safetensors; Gemma 3 12B for LTX-2, e.g. gemma_3_12B_it.safetensors). The"
            " tokenizer comes from the same file. Left as the model's own, it comes from the model's base folder.",
            default=MODELS_OWN,
            options=_text_encoders,
            optional=True,
        ),
        Input(
            "vae",
            "COMBO",
            "For a Wan single-file checkpoint: its VAE from models/vae (wan2.2_vae.safetensors for Wan 2.2 TI2V"
            " 5B). LTX-2 checkpoints carry their own. Left as the model's own, it comes from the model's base folder.",
            default=MODELS_OWN,
            options=_vaes,
            optional=True,
        ),
    ),
    outputs=(Output("model", "KINEMA_MODEL", "The backend and model, for Kinema Generate."),),
)

GENERATE = Node(
    node_id="KinemaGenerate",
    display_name="Kinema Generate (video + audio)",
    description="Text or image to a video clip with synchronized sound, in one node. Sizes, length and steps are"
    " snapped to what the model accepts; the clip's metadata says what it used.",
    search_aliases=("text to video", "image to video", "video with audio", "t2v", "i2v", "kinema"),
    inputs=(
        Input("model", "KINEMA_MODEL", "From Kinema Model Loader."),
        Input("prompt", "STRING", "What happens, and what it sounds like.", default="", multiline=True),
        Input("negative_prompt", "STRING", "What the clip should not show or sound like.", default="", multiline=True),
        # Real values, as native nodes show (the default backend's own); 0 (-1 for guidance) from workflows saved
        # before still means the model's default, so the minimums stay.
        Input(
            "seconds",
            "FLOAT",
            "Clip length in seconds; the model rounds it to the frame counts it makes.",
            default=round(_DEFAULTS.seconds * 8) / 8,
            min=0.0,
            max=MAX_SECONDS,
            step=0.125,
        ),
        Input(
            "width",
            "INT",
            "Width in pixels; snapped to what the model accepts.",
            default=_DEFAULTS.width,
            min=0,
            max=MAX_SIDE,
            step=32,
        ),
        Input(
            "height",
            "INT",
            "Height in pixels; snapped to what the model accepts.",
            default=_DEFAULTS.height,
            min=0,
            max=MAX_SIDE,
            step=32,
        ),
        Input(
            "fps",
            "FLOAT",
            "Frames per second (a model that makes one rate, like the demo world, makes its own).",
            default=float(_DEFAULTS.fps),
            min=0.0,
            max=MAX_FPS,
            step=1.0,
        ),
        Input(
            "steps",
            "INT",
            "Denoising steps at the standard tier; draft and final scale them as the tier says.",
            default=_DEFAULTS.steps,
            min=0,
            max=MAX_STEPS,
        ),
        Input(
            "guidance",
            "FLOAT",
            "Guidance scale: how closely the clip follows the prompt.",
            default=float(_DEFAULTS.guidance),
            min=-1.0,
            max=MAX_GUIDANCE,
            step=0.1,
        ),
        Input(
            "seed",
            "INT",
            "Same seed and inputs, same clip.",
            default=0,
            min=0,
            max=MAX_SEED,
            control_after_generate=True,
        ),
        Input("style", "COMBO", "A kinema style preset (see `kinema styles`).", default="none", options=_styles),
        Input("audio", "BOOLEAN", "Make the sound track too.", default=True),
        # Optional, so API-format workflows saved before tiers still validate; the widget shows either way.
        Input(
            "tier",
            "COMBO",
            f"{TIER_TOOLTIP}. Scales the steps set here.",
            default=DEFAULT_TIER,
            options=tuple(TIERS),
            optional=True,
        ),
        Input("image", "IMAGE", "Optional first frame (the first image of a batch).", optional=True),
        Input(
            "cameo",
            "KINEMA_CAMEO",
            "Optional: a person from Kinema Cameo, used with their consent (ltx2 and tiny:"
            " their portrait starts the clip; wan-vace and tiny-wan-vace: a reference picture).",
            optional=True,
        ),
        Input(
            "last_image",
            "IMAGE",
            "Optional last frame: the clip ends on it (with image: goes from one to the other). ltx2 and"
            " tiny-ltx2 can; other backends say so.",
            optional=True,
        ),
        Input(
            "speech",
            "AUDIO",
            "Optional speech line (e.g. from Load Audio) that drives the clip: mouth and motion follow it and"
            " it is the clip's sound (ltx2 and tiny-ltx2).",
            optional=True,
        ),
    ),
    outputs=(
        Output("frames", "IMAGE", "The clip's frames, [frames, height, width, 3] in 0..1."),
        Output("audio", "AUDIO", "The sound track (silence when audio is off), as long as the clip."),
        Output("video", "VIDEO", "Frames, sound and frame rate together, for Save Video."),
        Output("clip", "KINEMA_CLIP", "The clip with kinema's provenance, for Kinema Save Clip."),
    ),
)

SAVE_CLIP = Node(
    node_id="KinemaSaveClip",
    display_name="Kinema Save Clip",
    description="Writes an MP4 (H.264 + AAC) into ComfyUI's output folder with kinema's provenance (prompt, seed,"
    " model, settings) and the workflow, and shows it. Frames or audio edited downstream can replace"
    " the clip's own.",
    search_aliases=("save video", "save mp4", "kinema"),
    output_node=True,
    inputs=(
        Input("clip", "KINEMA_CLIP", "From Kinema Generate."),
        Input(
            "filename_prefix",
            "STRING",
            "File name prefix; may include a subfolder, e.g. kinema/fox.",
            default="kinema/clip",
        ),
        Input(
            "images", "IMAGE", "Optional frames to save instead of the clip's (e.g. after an upscale).", optional=True
        ),
        Input("audio", "AUDIO", "Optional sound to save instead of the clip's.", optional=True),
    ),
)

STORYBOARD_EXAMPLE = """Setting: a misty harbour at dawn
Shot 1 (2s): a fishing boat leaves the pier, gulls crying
Shot 2 (2s, continue): the boat turns toward the open sea
Shot 3 (1.5s): a lighthouse on the cliff, waves crashing"""

STORYBOARD = Node(
    node_id="KinemaStoryboard",
    display_name="Kinema Storyboard (multi-shot video + audio)",
    description="One film from several shots: one 'Shot N (2s): …' per line, or YAML/JSON. The setting, characters"
    " and style reach every shot; a 'continue' shot starts from the previous shot's last frame; sound is"
    " crossfaded at the cuts and the film lasts exactly the sum of the shots. Unchanged shots come from"
    " kinema's shot cache, so editing one shot remakes only it (and the continue shots after it).",
    search_aliases=("storyboard", "multi-shot", "multi shot", "prompt schedule", "long video", "kinema"),
    inputs=(
        Input("model", "KINEMA_MODEL", "From Kinema Model Loader."),
        Input(
            "storyboard",
            "STRING",
            "The shots (see kinema's README: Storyboards).",
            default=STORYBOARD_EXAMPLE,
            multiline=True,
        ),
        Input(
            "seed",
            "INT",
            "Shot N uses seed + N - 1. Fix it while editing shots, so unchanged shots are reused.",
            default=0,
            min=0,
            max=MAX_SEED,
            control_after_generate=True,
        ),
        Input(
            "width",
            "INT",
            "Width in pixels (0: the storyboard's, else the model's default).",
            default=0,
            min=0,
            max=MAX_SIDE,
            step=32,
        ),
        Input(
            "height",
            "INT",
            "Height in pixels (0: the storyboard's, else the model's default).",
            default=0,
            min=0,
            max=MAX_SIDE,
            step=32,
        ),
        Input(
            "fps",
            "FLOAT",
            "Frames per second (0: the storyboard's, else the model's default).",
            default=0.0,
            min=0.0,
            max=MAX_FPS,
            step=1.0,
        ),
        Input(
            "steps",
            "INT",
            "Denoising steps per shot (0: the storyboard's, else the model's default).",
            default=0,
            min=0,
            max=MAX_STEPS,
        ),
        Input(
            "style",
            "COMBO",
            "A style for the whole film (none: the storyboard's own).",
            default="none",
            options=_styles,
        ),
        Input("audio", "BOOLEAN", "Make the sound track too.", default=True),
        Input(
            "tier",
            "COMBO",
            f"Every shot's quality tier; {STORYBOARD_TIER} — the storyboard's 'Tier:' line, else"
            f" {DEFAULT_TIER}. {TIER_TOOLTIP}. Steps set here win over the tier's.",
            default=STORYBOARD_TIER,
            options=(STORYBOARD_TIER, *TIERS),
            optional=True,
        ),
        Input("image", "IMAGE", "Optional first frame of shot 1.", optional=True),
    ),
    outputs=GENERATE.outputs,
)


def _cameos() -> list[str]:
    from .cameo_logic import cameo_choices

    return cameo_choices()


CAMEO_CAPTURE = Node(
    node_id="KinemaCameoCapture",
    display_name="Kinema Cameo Capture",
    description="Turns a short video of one consenting person (you) into a kinema cameo: reference portraits, an"
    " identity embedding when a face model is installed, and a clean voice sample. You own it and"
    " choose who may use it. Refuses videos with no face, several people, a tiny face or no speech.",
    search_aliases=("cameo", "capture person", "face reference", "kinema"),
    output_node=True,
    inputs=(
        Input("name", "STRING", "The cameo's name: lowercase letters, digits, - or _ (e.g. alice).", default="me"),
        Input("video", "VIDEO", "A few seconds of the person alone, facing the camera (e.g. from Load Video)."),
        Input(
            "permission",
            "COMBO",
            "Who may use it: only you, you and allowed_users, or everyone.",
            default="only_me",
            options=("only_me", "listed", "everyone"),
        ),
        Input("allowed_users", "STRING", "For 'listed': kinema user names, comma-separated.", default=""),
        Input("replace", "BOOLEAN", "Replace your cameo of the same name.", default=False),
        Input(
            "audio",
            "AUDIO",
            "Optional: the person talking for at least 3 s (default: the video's sound).",
            optional=True,
        ),
        Input(
            "challenge",
            "STRING",
            "The id from `kinema cameo challenge` whose phrase the video shows you saying: verifies the cameo"
            " (without one it stays unverified: only you may use it).",
            default="",
            optional=True,
        ),
    ),
    outputs=(
        Output("cameo", "KINEMA_CAMEO", "The new cameo, for Kinema Generate."),
        Output("references", "IMAGE", "The reference portraits it keeps."),
    ),
)

CAMEO = Node(
    node_id="KinemaCameo",
    display_name="Kinema Cameo",
    description="Picks a cameo you may use (yours, or one its owner allowed you) for Kinema Generate. Consent is"
    " checked again when the clip is generated: a revoked cameo stops the run.",
    search_aliases=("cameo", "person", "character reference", "kinema"),
    inputs=(
        Input(
            "name",
            "COMBO",
            "A cameo you own or may use (see `kinema cameo list`); press R after adding one.",
            default="(pick a cameo)",
            options=_cameos,
        ),
        Input(
            "speak", "BOOLEAN", "Let the cameo's recorded voice drive the clip (ltx2 and tiny backends).", default=False
        ),
        Input(
            "dialogue",
            "STRING",
            "A line the cameo says in its own voice, spoken by the voice model from its recorded sample; the line"
            " drives the clip and is its sound (ltx2). Others' cameos need their owner's voice permission.",
            default="",
            multiline=True,
            optional=True,
        ),
    ),
    outputs=(
        Output("cameo", "KINEMA_CAMEO", "The cameo, for Kinema Generate."),
        Output("portrait", "IMAGE", "Its best reference portrait."),
    ),
)


def _loras() -> list[str]:
    from .logic import lora_choices

    return [NO_LORA, *lora_choices()]


NO_LORA = "(pick a LoRA)"

LORA = Node(
    node_id="KinemaLoRA",
    display_name="Kinema LoRA",
    description="Adds a LoRA from ComfyUI's models/loras (.safetensors) to a Kinema model: it is loaded for each"
    " clip Generate, Extend or Remix makes with it and removed after, as a kinema style's LoRAs are. Chain"
    " several for several LoRAs.",
    search_aliases=("lora", "load lora", "lora loader", "kinema"),
    inputs=(
        Input("model", "KINEMA_MODEL", "From Kinema Model Loader (or another Kinema LoRA)."),
        Input(
            "lora_name",
            "COMBO",
            "A .safetensors LoRA in models/loras (or kinema's loras folder); press R after adding one.",
            default=NO_LORA,
            options=_loras,
        ),
        Input(
            "strength",
            "FLOAT",
            "How strongly it applies (1: as trained; 0: not at all; negative: the opposite).",
            default=1.0,
            min=-4.0,
            max=4.0,
            step=0.05,
        ),
    ),
    outputs=(Output("model", "KINEMA_MODEL", "The model with the LoRA, for Kinema Generate, Extend or Remix."),),
)

_SOURCE_INPUTS = (
    Input("video", "VIDEO", "Optional: the clip (e.g. from Load Video or Kinema Generate's video).", optional=True),
    Input(
        "images",
        "IMAGE",
        "Optional, instead of video: the clip's frames (e.g. Kinema Generate's frames), played at fps.",
        optional=True,
    ),
    Input("audio", "AUDIO", "Optional, with images: the clip's sound.", optional=True),
)

EXTEND = Node(
    node_id="KinemaExtend",
    display_name="Kinema Extend (longer video + audio)",
    description="Makes a clip longer: new frames continue from its last ones (ltx2: its last 17 frames, so motion"
    " carries on; others: the last frame), and the sound is crossfaded across the seam. Gives the whole"
    " longer clip. Connect video, or images (with fps and optionally audio).",
    search_aliases=("extend video", "continue video", "longer video", "video extension", "kinema"),
    inputs=(
        Input("model", "KINEMA_MODEL", "From Kinema Model Loader."),
        Input("prompt", "STRING", "What happens next, and what it sounds like.", default="", multiline=True),
        Input("seconds", "FLOAT", "Seconds to add.", default=1.0, min=0.125, max=MAX_SECONDS, step=0.125),
        Input(
            "seed",
            "INT",
            "Same seed and inputs, same extension.",
            default=0,
            min=0,
            max=MAX_SEED,
            control_after_generate=True,
        ),
        Input("fps", "FLOAT", "Frame rate of images (a video keeps its own).", default=24.0, min=1.0, max=MAX_FPS),
        Input("tier", "COMBO", TIER_TOOLTIP, default=DEFAULT_TIER, options=tuple(TIERS)),
        Input(
            "negative_prompt", "STRING", "What the new part should not show or sound like.", default="", optional=True
        ),
        *_SOURCE_INPUTS,
    ),
    outputs=GENERATE.outputs,
)

REMIX = Node(
    node_id="KinemaRemix",
    display_name="Kinema Remix (video to video + audio)",
    description="Redoes a clip to follow a new prompt, keeping as much of it as strength says: same length, size"
    " and frame rate, new sound for the new prompt unless keep_audio (ltx2, wan and the tiny demos). Connect"
    " video, or images (with fps and optionally audio).",
    search_aliases=("remix", "video to video", "v2v", "restyle video", "kinema"),
    inputs=(
        Input("model", "KINEMA_MODEL", "From Kinema Model Loader."),
        Input("prompt", "STRING", "What the clip should become, and sound like.", default="", multiline=True),
        Input(
            "strength",
            "FLOAT",
            "How far to move from the clip: near 0 keeps it, 1 follows only the prompt.",
            default=DEFAULT_REMIX_STRENGTH,
            min=0.05,
            max=1.0,
            step=0.05,
        ),
        Input(
            "seed",
            "INT",
            "Same seed and inputs, same remix.",
            default=0,
            min=0,
            max=MAX_SEED,
            control_after_generate=True,
        ),
        Input("keep_audio", "BOOLEAN", "Keep the clip's own sound instead of making new sound.", default=False),
        Input("fps", "FLOAT", "Frame rate of images (a video keeps its own).", default=24.0, min=1.0, max=MAX_FPS),
        Input("tier", "COMBO", TIER_TOOLTIP, default=DEFAULT_TIER, options=tuple(TIERS)),
        Input("negative_prompt", "STRING", "What the remix should not show or sound like.", default="", optional=True),
        *_SOURCE_INPUTS,
    ),
    outputs=GENERATE.outputs,
)

NODES = (MODEL_LOADER, GENERATE, STORYBOARD, SAVE_CLIP, CAMEO_CAPTURE, CAMEO, LORA, EXTEND, REMIX)
