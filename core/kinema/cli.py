"""The ``kinema`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from kinema import engine, licences
from kinema import models as model_store
from kinema.backends import limits, single_file
from kinema.backends.device import free_memory_bytes, pick_device, pick_dtype
from kinema.backends.memory import policy_report
from kinema.cameo import verify as cameo_verification
from kinema.cameo.face import KNOWN_FACE_MODELS, pull_face_model
from kinema.cameo.store import authorize_request, local_user
from kinema.cli_options import check_output, parse_size
from kinema.engine import get_backends
from kinema.errors import DownloadError, KinemaError
from kinema.extend import ExtendRequest
from kinema.extend import extend as extend_clip
from kinema.home import kinema_home, models_dir
from kinema.media import tts
from kinema.media.provenance import verify as check
from kinema.plugins import load_plugins, plugin_info
from kinema.remix import RemixRequest
from kinema.remix import remix as remix_clip
from kinema.request import DEFAULT_BACKEND, GenerationRequest
from kinema.storyboard import load_storyboard, plan_storyboard, run_storyboard
from kinema.storyboard.plan import sent_prompts
from kinema.styles import get_style, list_styles
from kinema.tiers import DEFAULT_TIER, tier_names


class _Group(click.Group):
    """Turns kinema's errors into one line and a non-zero exit; ``--debug`` keeps the traceback.

    Commands that plugins add (``register_commands``: the hosts' own, third parties') join the first time the
    group lists or looks up a command, however it is called (``main``, click's test runner, the docs).
    """

    _plugin_commands_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugin_commands_added:
            type(self)._plugin_commands_added = True
            load_plugins().hook.register_commands(cli=self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KinemaError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(error)) from None


@click.group(cls=_Group)
@click.version_option(package_name="kinema")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kinema: video with synchronized sound from a prompt, on your own machine.

    Start with: kinema generate "a red fox running through snow" -o fox.mp4
    """
    ctx.ensure_object(dict)["debug"] = debug


def _single_file_parts(function):
    """--text-encoder and --vae: files that supply what a single-file --model lacks (ComfyUI's text_encoders, vae)."""
    for decorator in reversed(
        [
            click.option(
                "--text-encoder",
                type=click.Path(path_type=Path),
                help="With a single-file --model: its text encoder (and tokenizer) from this .safetensors file,"
                " e.g. umt5_xxl_fp16.safetensors for Wan, gemma_3_12B_it.safetensors for LTX-2.",
            ),
            click.option(
                "--vae",
                type=click.Path(path_type=Path),
                help="With a single-file Wan --model: its VAE from this .safetensors file, e.g. wan2.2_vae.safetensors.",
            ),
        ]
    ):
        function = decorator(function)
    return function


def _model_with_parts(model: str | None, text_encoder: Path | None, vae: Path | None) -> str | None:
    """The model to run: ``model`` itself, or a recipe naming it with the part files (``single_file.with_parts``)."""
    if text_encoder is None and vae is None:
        return model
    flag = "--text-encoder" if text_encoder is not None else "--vae"
    if not model or Path(model).expanduser().suffix.lower() not in single_file.SUFFIXES:
        raise click.BadParameter(
            f"{flag} goes with a single-file checkpoint: add --model PATH.safetensors"
            " (a model folder or id already holds its text encoder and VAE)",
            param_hint=f"'{flag}'",
        )
    if not Path(model).expanduser().is_file():
        raise click.BadParameter(f"{model} does not exist: give the checkpoint's path", param_hint="'--model'")
    for path, name in ((text_encoder, "--text-encoder"), (vae, "--vae")):
        if path is None:
            continue
        if path.suffix.lower() not in single_file.SUFFIXES:
            raise click.BadParameter(
                f"{path.name} is not a .safetensors file: kinema loads no pickled weights", param_hint=f"'{name}'"
            )
        if not path.expanduser().is_file():
            raise click.BadParameter(f"{path} does not exist: give a file that does", param_hint=f"'{name}'")
    # Whether the parts fit the checkpoint (family, sizes) is checked from their headers before anything loads.
    return single_file.with_parts(model, text_encoder=text_encoder, vae=vae)


@cli.command()
@click.argument("prompt")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the MP4 (default: kinema-<time>.mp4 here).",
)
@click.option("--seconds", type=float, help="Clip length in seconds.")
@click.option("--fps", type=float, help="Frames per second.")
@click.option("--size", callback=parse_size, help="WIDTHxHEIGHT, snapped to what the model accepts.")
@click.option("--seed", type=int, help="Same seed, same clip.")
@click.option("--steps", type=int, help="Denoising steps.")
@click.option("--guidance", type=float, help="Guidance scale.")
@click.option("--negative", default="", help="What the clip should not show.")
@click.option("--style", help="A style preset (see `kinema styles`).")
@click.option("--image", type=click.Path(path_type=Path), help="Start from this picture (first frame).")
@click.option("--no-audio", is_flag=True, help="Picture only.")
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, help="Backend (see `kinema backends`).")
@click.option("--model", help="A model id or folder for the backend, or a single-file .safetensors checkpoint.")
@_single_file_parts
@click.option(
    "--cameo",
    "cameo_names",
    multiple=True,
    help="Put this person in the clip (repeatable; see `kinema cameo list`; backends ltx2, wan-vace).",
)
@click.option(
    "--speech", help="A recorded line the clip follows (ltx2): an audio file, or a --cameo name for its voice."
)
@click.option(
    "--say",
    "dialogue",
    metavar="LINE",
    help="A line spoken in the --cameo's voice (or --speech NAME's) by the voice model; it drives the clip (ltx2).",
)
@click.option(
    "--tier",
    type=click.Choice(tier_names()),
    default=DEFAULT_TIER,
    show_default=True,
    help="draft: fast preview (fewer steps, step caching); final: more steps, no caching.",
)
@click.option(
    "--two-stage/--one-stage",
    default=None,
    help="ltx2: half size, the latent upsampler x2, a few refining steps (default: final tier, when the"
    " checkpoint has a latent upsampler).",
)
@click.option(
    "--no-provenance",
    is_flag=True,
    help="Write no signed C2PA manifest and no invisible watermark (the file's metadata says so).",
)
@click.option("--visible-mark", metavar="TEXT", help="Also draw TEXT in the bottom-right corner, e.g. 'AI-generated'.")
def generate(
    prompt,
    output,
    seconds,
    fps,
    size,
    seed,
    steps,
    guidance,
    negative,
    style,
    image,
    no_audio,
    backend,
    model,
    text_encoder,
    vae,
    cameo_names,
    speech,
    dialogue,
    tier,
    two_stage,
    no_provenance,
    visible_mark,
):
    """Generate a clip with sound from PROMPT.

    Example: kinema generate "waves at dawn, gulls crying" --seconds 2 -o waves.mp4
    """
    output = check_output(output or Path(time.strftime("kinema-%Y%m%d-%H%M%S.mp4")))
    model = _model_with_parts(model, text_encoder, vae)
    width, height = size or (None, None)
    request = GenerationRequest(
        prompt=prompt,
        negative_prompt=negative,
        seconds=seconds,
        fps=fps,
        width=width,
        height=height,
        seed=seed,
        steps=steps,
        guidance=guidance,
        style=style,
        image=image,
        audio=not no_audio,
        backend=backend,
        model=model,
        tier=tier,
        two_stage=two_stage,
    )
    if cameo_names or speech or dialogue:
        request = request.with_(cameos=tuple(cameo_names), speech=speech, dialogue=dialogue, user=local_user())
        authorize_request(request)  # before any model loads
    chosen = engine.resolve_backend(request)
    plan = chosen.plan(request)  # a request beyond the backend's limits (kinema.backends.limits) stops here
    chosen.require_weights(request)  # then missing weights, before diffusers loads
    if chosen.is_demo:
        click.echo(
            f"Note: '{chosen.name}' is {chosen.demo_note}. For real clips: `kinema models pull Lightricks/LTX-2 --accept-license`, then add --backend ltx2.",
            err=True,
        )
    for note in plan.notes:
        click.echo(f"Note: {note}", err=True)
    bar, on_progress = _progress_bar()
    try:
        clip = engine.generate(request.with_(seed=plan.seed), progress=on_progress, backend=chosen)
    finally:
        bar.close()
    for note in clip.metadata.get("notes", [])[len(plan.notes) :]:  # what happened while generating (a memory retry)
        click.echo(f"Note: {note}", err=True)
    written = clip.save(output, provenance=not no_provenance, visible_mark=visible_mark)
    audio = f", {clip.sample_rate} Hz audio" if clip.audio is not None else ", no audio"
    click.echo(
        f"{written} ({clip.width}x{clip.height}, {clip.frame_count} frames at {float(clip.fps):g} fps"
        f" = {clip.duration:.2f} s{audio}, seed {plan.seed})"
    )
    for name, match in clip.metadata.get("cameo_identity", {}).items():
        shown = f"{match['score']:.2f}" if match.get("score") is not None else f"not scored ({match.get('note')})"
        click.echo(f"cameo {name}: identity match {shown}")


# --------------------------------------------------------------------------- storyboard, extend, remix


def _progress_bar():
    """A tqdm bar on stderr and the progress callback that drives it."""
    from tqdm import tqdm

    # Weights load before the first step: say so, then time the steps alone. The delay keeps a command that
    # fails at once (a limit, an unreadable clip) to its one line of error.
    bar = tqdm(total=None, unit="step", desc="loading model", file=sys.stderr, dynamic_ncols=True, delay=0.5)

    def on_progress(event):
        if bar.total != event.total:
            bar.reset(total=event.total)
        bar.set_description_str(event.stage, refresh=False)
        bar.update(event.step - bar.n)

    return bar, on_progress


def _describe(path, clip) -> str:
    audio = f", {clip.sample_rate} Hz audio" if clip.audio is not None else ", no audio"
    return (
        f"{path} ({clip.width}x{clip.height}, {clip.frame_count} frames at {float(clip.fps):g} fps"
        f" = {clip.duration:.2f} s{audio})"
    )


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the film (default: FILE's name with .mp4, here).",
)
@click.option("--backend", help=f"Backend (default: the storyboard's, else {DEFAULT_BACKEND}).")
@click.option("--model", help="A model id or folder for the backend.")
@click.option("--seed", type=int, help="Shot N uses seed + N - 1 (default: the storyboard's, else 0).")
@click.option("--size", callback=parse_size, help="WIDTHxHEIGHT for every shot.")
@click.option("--fps", type=float, help="Frames per second.")
@click.option("--steps", type=int, help="Denoising steps per shot.")
@click.option("--guidance", type=float, help="Guidance scale.")
@click.option(
    "--tier",
    type=click.Choice(tier_names()),
    default=None,
    help=f"Quality tier for every shot (default: the storyboard's, else {DEFAULT_TIER}).",
)
@click.option("--style", help="Style for the whole film, instead of the storyboard's (see `kinema styles`).")
@click.option("--no-audio", is_flag=True, help="Picture only.")
@click.option("--no-cache", is_flag=True, help="Regenerate every shot instead of reusing unchanged ones.")
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print each shot's frames, seed and full prompt (world and style included); generate nothing.",
)
def storyboard(
    file, output, backend, model, seed, size, fps, steps, guidance, tier, style, no_audio, no_cache, plan_only
):
    """Make one film with sound from a storyboard FILE: YAML, JSON, or one shot per line.

    \b
    Shot 1 (2s): a fox trots through snow at dawn
    Shot 2 (3s, continue): the fox stops and looks up
      Camera: slow push in
    Shot 3 (2s): an owl takes off from a branch

    A 'continue' shot starts from the previous shot's last frame; others cut.
    Unchanged shots come from a cache, so editing shot 2 remakes shot 2 and the
    'continue' shots after it. The film lasts exactly the sum of the shots.

    Example: kinema storyboard night-market.txt -o film.mp4
    """
    import dataclasses

    board = load_storyboard(file)
    width, height = size or (None, None)
    board = board.with_(
        backend=backend,
        model=model,
        seed=seed,
        width=width,
        height=height,
        fps=fps,
        steps=steps,
        guidance=guidance,
        tier=tier,
        audio=False if no_audio else None,
    )
    if style:
        get_style(style)
        board = board.with_(world=dataclasses.replace(board.world, style=style))
    chosen = engine.resolve_backend(GenerationRequest("storyboard", backend=board.backend, model=board.model))
    plans = plan_storyboard(board, chosen)
    if plan_only:
        click.echo(
            f"{'shot':>4} {'line':>4} {'cut':<8} {'start':>7} {'seconds':>7} {'frames':>6} {'made':>5} {'seed':>6}  prompt"
        )
        for p in plans:
            prompt, negative = sent_prompts(board, p)  # in full, as the backend gets it: world and style included
            click.echo(
                f"{p.index + 1:>4} {p.shot.line or '':>4} {p.shot.cut:<8} {p.start:>7.3f} {p.seconds:>7.3f}"
                f" {p.frames:>6} {p.generated:>5} {p.seed:>6}  {prompt}"
            )
            if negative:
                click.echo(f"{'':>54}  negative: {negative}")
        total = sum(p.frames for p in plans)
        click.echo(
            f"{len(plans)} shots, {total} frames = {float(total / plans[0].fps):.3f} s at {float(plans[0].fps):g} fps"
            f" on {chosen.name}"
        )
        return
    output = check_output(output or Path(f"{Path(file).stem}.mp4"))
    if chosen.is_demo:
        click.echo(f"Note: '{chosen.name}' is {chosen.demo_note}.", err=True)
    bar, on_progress = _progress_bar()

    def on_shot(result):
        where = "from the cache" if result.cached else "made"
        bar.write(f"shot {result.plan.index + 1}/{len(plans)}: {result.plan.seconds:.2f} s {where}", file=sys.stderr)

    try:
        result = run_storyboard(board, progress=on_progress, cache=not no_cache, backend=chosen, on_shot=on_shot)
    finally:
        bar.close()
    written = result.film.save(output)
    remade = ", ".join(map(str, result.regenerated)) or "none"
    click.echo(f"{_describe(written, result.film)}: {len(plans)} shots, made {remade}")


def _clip_options(function):
    for decorator in reversed(
        [
            click.option("--seed", type=int, help="Same seed, same result."),
            click.option("--steps", type=int, help="Denoising steps."),
            click.option("--guidance", type=float, help="Guidance scale."),
            click.option(
                "--tier",
                type=click.Choice(tier_names()),
                default=None,
                help=f"Quality tier (default: the one CLIP was made at, else {DEFAULT_TIER}).",
            ),
            click.option("--negative", default=None, help="What the new frames should not show."),
            click.option("--style", help="A style preset (see `kinema styles`)."),
            click.option("--backend", help=f"Backend (default: the one that made the clip, else {DEFAULT_BACKEND})."),
            click.option("--model", help="A model id or folder for the backend."),
        ]
    ):
        function = decorator(function)
    return function


@cli.command()
@click.argument("clip", type=click.Path(path_type=Path))
@click.option("--seconds", type=float, default=2.0, show_default=True, help="How much to add.")
@click.option("--prompt", help="What happens next (default: the clip's own prompt).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the longer clip (default: CLIP-extended.mp4 beside it).",
)
@_clip_options
def extend(clip, seconds, prompt, output, seed, steps, guidance, tier, negative, style, backend, model):
    """Make CLIP longer: new frames continue from its last ones, sound crossfaded.

    Example: kinema extend fox.mp4 --seconds 3 --prompt "the fox jumps into the snow" -o fox-longer.mp4
    """
    output = check_output(output or clip.with_name(f"{clip.stem}-extended.mp4"))
    bar, on_progress = _progress_bar()
    try:
        request = ExtendRequest(
            clip,
            seconds,
            prompt=prompt,
            negative_prompt=negative,
            style=style,
            seed=seed,
            steps=steps,
            guidance=guidance,
            tier=tier,
            backend=backend,
            model=model,
        )
        longer = extend_clip(request, progress=on_progress)
    finally:
        bar.close()
    written = longer.save(output)
    click.echo(
        f"{_describe(written, longer)}, {longer.metadata['extended_seconds']:.2f} s added, seed {longer.metadata['seed']}"
    )


@cli.command()
@click.argument("clip", type=click.Path(path_type=Path))
@click.argument("prompt")
@click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.6,
    show_default=True,
    help="How far to move from CLIP: near 0 keeps it, 1 keeps only its length.",
)
@click.option("--keep-audio", is_flag=True, help="Keep CLIP's sound instead of making new sound for PROMPT.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the remix (default: CLIP-remix.mp4 beside it).",
)
@_clip_options
def remix(clip, prompt, strength, keep_audio, output, seed, steps, guidance, tier, negative, style, backend, model):
    """Redo CLIP following PROMPT, keeping its layout and motion as much as --strength says.

    Example: kinema remix fox.mp4 "the same fox, as a paper cut-out animation" --strength 0.5
    """
    output = check_output(output or clip.with_name(f"{clip.stem}-remix.mp4"))
    bar, on_progress = _progress_bar()
    try:
        request = RemixRequest(
            clip,
            prompt,
            strength=strength,
            negative_prompt=negative or "",
            style=style,
            seed=seed,
            steps=steps,
            guidance=guidance,
            tier=tier,
            keep_audio=keep_audio,
            backend=backend,
            model=model,
        )
        made = remix_clip(request, progress=on_progress)
    finally:
        bar.close()
    written = made.save(output)
    click.echo(f"{_describe(written, made)}, strength {strength:g}, seed {made.metadata['seed']}")


@cli.group(invoke_without_command=True)
@click.pass_context
def backends(ctx):
    """Registered backends and whether each can run here."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(backends_list)


@backends.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backends_list(as_json):
    """List backends. Example: kinema backends list --json"""
    rows: list[dict[str, Any]] = []
    by_object: dict[int, list[str]] = {}
    registry = get_backends()
    for name, backend in registry.items():
        by_object.setdefault(id(backend), []).append(name)
    seen = set()
    for backend in registry.values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        status = backend.status()
        rows.append(
            {
                "name": backend.name,
                "aliases": by_object[id(backend)][1:],
                "ready": status.ready,
                "device": status.device,
                "model": backend.model_id,
                "detail": status.detail,
                "description": backend.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        mark = "ready" if row["ready"] else "not ready"
        aliases = f" (also: {', '.join(row['aliases'])})" if row["aliases"] else ""
        click.echo(f"{row['name']}{aliases}: {row['description']}\n  {mark} on {row['device']}: {row['detail']}")


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """Downloaded models."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(models_list)


@models.command("list")
def models_list():
    """List downloaded models and their licences. Example: kinema models list"""
    names = model_store.pulled()
    if not names:
        click.echo(f"No models in {models_dir()} yet: kinema models pull Lightricks/LTX-2 --accept-license")
    for name in names:
        click.echo(f"{name}\n  licence: {licences.installed(model_store.local_dir_for(name), name)}")


@models.command("pull")
@click.argument("model_id")
@click.option("--revision", help="A branch, tag or commit.")
@click.option(
    "--accept-license",
    is_flag=True,
    help="Accept the model's licence when it restricts use (shown first; see `kinema models list`).",
)
def models_pull(model_id, revision, accept_license):
    """Download a model's safetensors weights, after showing its licence.

    Example: kinema models pull Lightricks/LTX-2 --accept-license
    """
    click.echo(f"licence: {licences.describe(model_id)}", err=True)
    licences.require_accepted(model_id, accept_license)  # before any network call
    if model_id in KNOWN_FACE_MODELS:  # ONNX face models for cameos, not diffusers pipelines
        try:
            path = pull_face_model(model_id, revision=revision)
        except KinemaError:
            raise
        except Exception as error:  # noqa: BLE001 - huggingface_hub's errors, as one line
            raise DownloadError(model_store.download_problem(model_id, revision, error)) from error
        licences.record(path.parent, model_id, accept_license)
    else:
        path = model_store.pull(model_id, revision=revision, accept_license=accept_license)
    click.echo(f"{model_id} is in {path}")


@cli.command()
def styles():
    """List style presets. Example: kinema generate "a harbour at night" --style cinematic"""
    for style in list_styles().values():
        click.echo(f"{style.name}: {style.description} [{style.source}]")
        for lora in style.loras:
            only = f", {'/'.join(lora.backends)} only" if lora.backends else ""
            click.echo(f"  + LoRA {lora.path} (weight {lora.weight:g}{only})")
    click.echo(f"Add your own as JSON or YAML files in {kinema_home() / 'styles'}")


@cli.command()
def plugins():
    """Installed plugins as JSON (include this in bug reports)."""
    click.echo(json.dumps(plugin_info(), indent=2))


@cli.command()
def doctor():
    """Check this machine: Python, torch, device, memory, codecs, models, backends and hosts."""
    import platform

    import av

    def line(name, value, ok=True):
        click.echo(f"{'ok ' if ok else '!! '} {name}: {value}")

    line("python", f"{platform.python_version()} ({sys.executable})")
    try:
        import torch

        device = pick_device()
        line("torch", torch.__version__)
        free = free_memory_bytes(device)
        memory = f", {free / 2**30:.1f} GiB free" if free is not None else ""
        line("device", f"{device} ({str(pick_dtype(device)).replace('torch.', '')}{memory})")
    except ImportError as error:
        line("torch", f"not importable: {error}", ok=False)
    try:
        import diffusers

        line("diffusers", diffusers.__version__)
    except ImportError as error:
        line("diffusers", f"not importable: {error}", ok=False)
    codecs = av.codecs_available
    for codec in ("libx264", "aac"):
        line(f"codec {codec}", "available" if codec in codecs else "missing", ok=codec in codecs)
    line("data dir", kinema_home())
    line("model dir", models_dir())
    try:
        device = pick_device()
        for model, policy in policy_report(device, pick_dtype(device)):
            line(f"memory policy {model}", policy)
    except ImportError as error:
        line("memory policy", f"unknown without torch: {error}", ok=False)
    for model in model_store.pulled():
        line(f"licence {model}", licences.installed(model_store.local_dir_for(model), model))
    seen = set()
    for backend in get_backends().values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        status = backend.status()
        line(f"backend {backend.name}", status.detail, ok=status.ready)
        line(f"limits {backend.name}", limits.describe(backend))
    hosts: list[Any] = []
    load_plugins().hook.register_hosts(register=hosts.append)
    line("hosts", ", ".join(h.name for h in hosts) or "none registered")
    ready, detail = cameo_verification.status()
    line("cameo verification", detail, ok=ready)
    ready, detail = tts.status()
    line("voice lines", detail, ok=ready)


# --------------------------------------------------------------------------- install (register_hosts)


def _registered_hosts() -> dict:
    hosts: list = []
    load_plugins().hook.register_hosts(register=hosts.append)
    return {host.name: host for host in hosts}


def _install_params(host) -> list:
    """A host's ``install_params`` (click parameters), else one ``--option`` per keyword of its ``install``."""
    import inspect

    if getattr(host, "install_params", None) is not None:
        return list(host.install_params)
    params = []
    for name, parameter in inspect.signature(host.install).parameters.items():
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            default = None if parameter.default is inspect.Parameter.empty else parameter.default
            params.append(
                click.Option(
                    [f"--{name.replace('_', '-')}", name],
                    default=default,
                    required=parameter.default is inspect.Parameter.empty,
                )
            )
    return params


class _HostsGroup(click.Group):
    """One subcommand per registered host adapter, so hosts added by plugins get ``kinema install NAME`` too."""

    def list_commands(self, ctx):
        return sorted(_registered_hosts())

    def get_command(self, ctx, name):
        host = _registered_hosts().get(name)
        if host is None:
            return None

        def run(**options):
            result = host.install(**options)
            instructions = getattr(host, "instructions", None)
            click.echo(instructions(result) if callable(instructions) else str(result))

        doc = (host.install.__doc__ or "").strip() or f"Install kinema into {name}."
        return click.Command(
            name, callback=run, params=_install_params(host), help=doc, short_help=getattr(host, "description", None)
        )


@cli.group(cls=_HostsGroup)
def install():
    """Install kinema into a host program. Example: kinema install comfyui --comfy-dir ~/ComfyUI"""


# --------------------------------------------------------------------------- serve (kinema.server.app)


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Loopback keeps the server to this machine; any other address needs KINEMA_API_KEY.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port; 0 picks a free one and prints it.",
)
@click.option(
    "--default-backend",
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Backend for requests that name no model (or an OpenAI sora-* model).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="Server log detail (on stderr).",
)
@click.option(
    "--stop-with-stdin",
    is_flag=True,
    help="Also stop when standard input closes. Programs that start a server for themselves (the"
    " Blender add-on, the OBS script) hold it open, so the server ends when they do, crashes"
    " included.",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Run jobs on a Ray cluster's GPUs (pip install 'kinema[ray]'): the head's address (10.0.0.5:6379,"
    " ray://host:10001), or auto for a Ray of this machine alone. Keep a cluster on a private network and"
    " Ray's token authentication on: its ports listen on every interface.",
)
def serve(host, port, default_backend, log_level, stop_with_stdin, ray_address):
    """Serve the OpenAI Videos API (and kinema's extensions) for other programs.

    Blender, OBS and scripts written for OpenAI's Sora 2 API send jobs here;
    they run one at a time per device and survive restarts (jobs live in the
    data directory). It listens on 127.0.0.1 by default so only programs on
    this machine can use your GPU and read your clips; to listen on another
    address, set KINEMA_API_KEY and send it as a bearer token.

    \b
    Example: kinema serve --port 8765, then from any program:
      OpenAI(base_url="http://127.0.0.1:8765/v1", api_key="-").videos.create(prompt="rain")
    """
    from kinema.server.app import serve as run_server

    def ready(url):
        click.echo(f"kinema: serving the OpenAI Videos API on {url}/v1 (docs: {url}/docs)")
        sys.stdout.flush()

    run_server(
        host,
        port,
        api_key=os.environ.get("KINEMA_API_KEY") or None,
        default_backend=default_backend,
        log_level=log_level,
        on_ready=ready,
        stop_with_stdin=stop_with_stdin,
        ray=ray_address,
    )


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(file, as_json):
    """Check FILE's provenance: C2PA manifest, signer, generator, cameos and watermark.

    Exit status: 0 valid manifest, 1 invalid (the file was edited or badly signed),
    3 no manifest (saved with provenance off, or stripped by re-encoding; the
    watermark may still name the clip). Works offline.

    Example: kinema verify fox.mp4
    """
    report = check(file)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines()))
    sys.exit(report.exit_code)


from kinema.cameo.cli import cameo  # noqa: E402  (own modules: cameo and key commands are many)
from kinema.server.keys_cli import keys  # noqa: E402

cli.add_command(cameo)
cli.add_command(keys)


def main() -> None:
    cli(prog_name="kinema")


if __name__ == "__main__":
    main()
