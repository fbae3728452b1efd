"""The nodes in ComfyUI's V3 schema (``comfy_api.latest``), built from ``spec.py`` and running ``logic.py``.

Imported only by ``comfy_entrypoint()``, inside ComfyUI.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import folder_paths
from comfy.cli_args import args
from comfy_api.latest import ComfyExtension, InputImpl, Types, io, ui

from kinema.errors import KinemaError

from . import cameo_logic, comfy_host, logic, spec

_CUSTOM = {name: io.Custom(name) for name in ("KINEMA_MODEL", "KINEMA_CLIP", "KINEMA_CAMEO")}
_SOCKETS = {"IMAGE": io.Image, "AUDIO": io.Audio, "VIDEO": io.Video, **_CUSTOM}


class KinemaNodeError(Exception):
    """A kinema error, raised from the node itself so ComfyUI shows one clear line, not kinema's internals."""


# ComfyUI shows an error's type as module.qualname; this module's name is the node folder's path on disk.
KinemaNodeError.__module__ = "kinema"


def _input(field: spec.Input) -> Any:
    common = dict(tooltip=field.tooltip, optional=field.optional)
    if field.type == "INT":
        return io.Int.Input(
            field.id,
            default=field.default,
            min=field.min,
            max=field.max,
            step=field.step,
            control_after_generate=field.control_after_generate or None,
            **common,
        )
    if field.type == "FLOAT":
        return io.Float.Input(field.id, default=field.default, min=field.min, max=field.max, step=field.step, **common)
    if field.type == "STRING":
        return io.String.Input(field.id, default=field.default, multiline=field.multiline, **common)
    if field.type == "BOOLEAN":
        return io.Boolean.Input(field.id, default=field.default, **common)
    if field.type == "COMBO":
        return io.Combo.Input(field.id, options=field.choices(), default=field.default, **common)
    return _SOCKETS[field.type].Input(field.id, **common)


# Fields that only newer ComfyUIs' Schema has (search_aliases came after 0.8): given only where it has them.
_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def schema(node: spec.Node) -> io.Schema:
    newer = {"search_aliases": list(node.search_aliases)} if "search_aliases" in _SCHEMA_FIELDS else {}
    return io.Schema(
        node_id=node.node_id,
        display_name=node.display_name,
        category=spec.CATEGORY,
        description=node.description,
        inputs=[_input(field) for field in node.inputs],
        outputs=[_SOCKETS[out.type].Output(out.id, display_name=out.id, tooltip=out.tooltip) for out in node.outputs],
        is_output_node=node.output_node,
        **newer,
    )


def _run(function, *arguments, **keywords):
    try:
        return function(*arguments, **keywords)
    except KinemaError as error:
        # ComfyUI's interrupt is a BaseException and passes through untouched.
        raise KinemaNodeError(f"kinema: {error}") from None


def _clip_outputs(frames, sound, clip) -> io.NodeOutput:
    """frames, audio, video and the clip: the outputs every clip-making node gives."""
    video = InputImpl.VideoFromComponents(
        Types.VideoComponents(images=frames, frame_rate=clip.fps, audio=sound if clip.audio is not None else None)
    )
    return io.NodeOutput(frames, sound, video, clip)


def _source(video, images, audio, fps: float):
    parts = video.get_components() if video is not None else None
    return _run(
        logic.source_clip,
        (parts.images, parts.frame_rate, parts.audio) if parts is not None else None,
        images,
        audio,
        fps,
    )


class KinemaModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.MODEL_LOADER)

    @classmethod
    def execute(
        cls,
        backend: str,
        model: str,
        precision: str,
        memory: str,
        model_id: str = "",
        accept_license: bool = False,
        text_encoder: str = spec.MODELS_OWN,
        vae: str = spec.MODELS_OWN,
    ) -> io.NodeOutput:
        handle = _run(
            logic.load_model,
            backend,
            model,
            precision,
            memory,
            model_id,
            device=comfy_host.comfy_device(),
            accept_license=accept_license,
            text_encoder=text_encoder,
            vae=vae,
        )
        return io.NodeOutput(handle, ui=ui.PreviewText("Licence: " + "\n".join(handle.licences)))


class KinemaGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.GENERATE)

    @classmethod
    def execute(
        cls,
        model,
        prompt: str,
        negative_prompt: str,
        seconds: float,
        width: int,
        height: int,
        fps: float,
        steps: int,
        guidance: float,
        seed: int,
        style: str,
        audio: bool,
        tier: str = spec.DEFAULT_TIER,
        image=None,
        cameo=None,
        last_image=None,
        speech=None,
    ) -> io.NodeOutput:
        frames, sound, clip = _run(
            logic.generate,
            model,
            prompt,
            negative_prompt,
            seconds,
            width,
            height,
            fps,
            steps,
            guidance,
            seed,
            style,
            audio,
            image,
            host=comfy_host.ComfyHost(),
            cameo=cameo,
            tier=tier,
            last_image=last_image,
            speech=speech,
        )
        return _clip_outputs(frames, sound, clip)


class KinemaStoryboard(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.STORYBOARD)

    @classmethod
    def execute(
        cls,
        model,
        storyboard: str,
        seed: int,
        width: int,
        height: int,
        fps: float,
        steps: int,
        style: str,
        audio: bool,
        tier: str = spec.STORYBOARD_TIER,
        image=None,
    ) -> io.NodeOutput:
        frames, sound, clip = _run(
            logic.storyboard,
            model,
            storyboard,
            seed,
            width,
            height,
            fps,
            steps,
            style,
            audio,
            image,
            host=comfy_host.ComfyHost(),
            tier=tier,
        )
        return _clip_outputs(frames, sound, clip)


class KinemaSaveClip(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.SAVE_CLIP)

    @classmethod
    def execute(cls, clip, filename_prefix: str, images=None, audio=None) -> io.NodeOutput:
        edited = _run(logic.edited_clip, clip, images, audio)
        output_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _prefix = folder_paths.get_save_image_path(
            filename_prefix, output_dir, edited.width, edited.height
        )
        os.makedirs(folder, exist_ok=True)
        file = f"{name}_{counter:05}_.mp4"
        tags = {} if args.disable_metadata else logic.workflow_tags(cls.hidden.prompt, cls.hidden.extra_pnginfo)
        _run(edited.save, os.path.join(folder, file), extra_tags=tags)
        return io.NodeOutput(ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))


class KinemaCameoCapture(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.CAMEO_CAPTURE)

    @classmethod
    def execute(
        cls, name: str, video, permission: str, allowed_users: str, replace: bool, audio=None, challenge: str = ""
    ) -> io.NodeOutput:
        parts = video.get_components()
        frames = _run(logic.image_to_frames, parts.images)
        voice = _run(logic.audio_to_array, audio) if audio is not None else None
        own = _run(logic.audio_to_array, parts.audio) if parts.audio is not None else None
        cameo, references, report = _run(
            cameo_logic.capture_cameo,
            name,
            frames,
            parts.frame_rate,
            voice,
            permission,
            allowed_users,
            replace,
            video_audio=own,
            challenge=challenge,
        )
        return io.NodeOutput(cameo, references, ui=ui.PreviewText(report))


class KinemaCameo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.CAMEO)

    @classmethod
    def fingerprint_inputs(cls, name: str, speak: bool, dialogue: str = "") -> str:
        # Consent can change between runs with the same inputs (a revoke, an expiry): look again every time.
        return f"{cameo_logic.consent_state(name)}:{speak}:{dialogue}"

    @classmethod
    def execute(cls, name: str, speak: bool, dialogue: str = "") -> io.NodeOutput:
        cameo, portrait = _run(cameo_logic.use_cameo, name, speak, dialogue)
        return io.NodeOutput(cameo, portrait)


class KinemaLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.LORA)

    @classmethod
    def execute(cls, model, lora_name: str, strength: float) -> io.NodeOutput:
        return io.NodeOutput(_run(logic.add_lora, model, lora_name, strength))


class KinemaExtend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.EXTEND)

    @classmethod
    def execute(
        cls,
        model,
        prompt: str,
        seconds: float,
        seed: int,
        fps: float,
        tier: str,
        negative_prompt: str = "",
        video=None,
        images=None,
        audio=None,
    ) -> io.NodeOutput:
        source = _source(video, images, audio, fps)
        frames, sound, clip = _run(
            logic.extend,
            model,
            source,
            prompt,
            seconds,
            negative_prompt=negative_prompt,
            seed=seed,
            tier=tier,
            host=comfy_host.ComfyHost(),
        )
        return _clip_outputs(frames, sound, clip)


class KinemaRemix(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(spec.REMIX)

    @classmethod
    def execute(
        cls,
        model,
        prompt: str,
        strength: float,
        seed: int,
        keep_audio: bool,
        fps: float,
        tier: str,
        negative_prompt: str = "",
        video=None,
        images=None,
        audio=None,
    ) -> io.NodeOutput:
        source = _source(video, images, audio, fps)
        frames, sound, clip = _run(
            logic.remix,
            model,
            source,
            prompt,
            strength,
            negative_prompt=negative_prompt,
            seed=seed,
            keep_audio=keep_audio,
            tier=tier,
            host=comfy_host.ComfyHost(),
        )
        return _clip_outputs(frames, sound, clip)


class KinemaExtension(ComfyExtension):
    async def on_load(self) -> None:
        comfy_host.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            KinemaModelLoader,
            KinemaGenerate,
            KinemaStoryboard,
            KinemaSaveClip,
            KinemaCameoCapture,
            KinemaCameo,
            KinemaLoRA,
            KinemaExtend,
            KinemaRemix,
        ]
