"""The ``kinema`` command line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from .errors import KinemaError


class _Group(click.Group):
    """Turns kinema's errors into one line and a non-zero exit; ``--debug`` keeps the traceback."""

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


def _parse_size(ctx, param, value):
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 768x512") from None
    return width, height


def _check_output(path: Path) -> Path:
    path = path.expanduser()
    if path.suffix.lower() != ".mp4":
        raise click.BadParameter(f"{path} must end in .mp4", param_hint="'-o'")
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name ending in .mp4", param_hint="'-o'")
    if not path.parent.is_dir():
        raise click.BadParameter(f"directory {path.parent} does not exist; create it first", param_hint="'-o'")
    if not os.access(path.parent, os.W_OK):
        raise click.BadParameter(f"directory {path.parent} is not writable", param_hint="'-o'")
    return path


@cli.command()
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the MP4 (default: kinema-<time>.mp4 here).")
@click.option("--seconds", type=float, help="Clip length in seconds.")
@click.option("--fps", type=float, help="Frames per second.")
@click.option("--size", callback=_parse_size, help="WIDTHxHEIGHT, snapped to what the model accepts.")
@click.option("--seed", type=int, help="Same seed, same clip.")
@click.option("--steps", type=int, help="Denoising steps.")
@click.option("--guidance", type=float, help="Guidance scale.")
@click.option("--negative", default="", help="What the clip should not show.")
@click.option("--style", help="A style preset (see `kinema styles`).")
@click.option("--image", type=click.Path(path_type=Path), help="Start from this picture (first frame).")
@click.option("--no-audio", is_flag=True, help="Picture only.")
@click.option("--backend", default="tiny", show_default=True, help="Backend (see `kinema backends`).")
@click.option("--model", help="A model id or folder for the backend.")
def generate(prompt, output, seconds, fps, size, seed, steps, guidance, negative, style, image, no_audio, backend, model):
    """Generate a clip with sound from PROMPT.

    Example: kinema generate "waves at dawn, gulls crying" --seconds 2 -o waves.mp4
    """
    from tqdm import tqdm

    from . import engine
    from .request import GenerationRequest

    output = _check_output(output or Path(time.strftime("kinema-%Y%m%d-%H%M%S.mp4")))
    width, height = size or (None, None)
    request = GenerationRequest(
        prompt=prompt, negative_prompt=negative, seconds=seconds, fps=fps, width=width, height=height,
        seed=seed, steps=steps, guidance=guidance, style=style, image=image, audio=not no_audio,
        backend=backend, model=model,
    )
    chosen = engine.resolve_backend(request)
    if chosen.is_demo:
        click.echo(
            f"Note: '{chosen.name}' is kinema's tiny demo model (random weights: expect coloured noise and"
            " noise for sound). For real clips: `kinema models pull Lightricks/LTX-2`, then add --backend ltx2.",
            err=True,
        )
    plan = chosen.plan(request)
    for note in plan.notes:
        click.echo(f"Note: {note}", err=True)
    bar = tqdm(total=None, unit="step", desc="generating", file=sys.stderr, dynamic_ncols=True)

    def on_progress(event):
        bar.total = event.total
        bar.set_description_str(event.stage, refresh=False)
        bar.update(event.step - bar.n)

    try:
        clip = engine.generate(request.with_(seed=plan.seed), progress=on_progress, backend=chosen)
    finally:
        bar.close()
    written = clip.save(output)
    audio = f", {clip.sample_rate} Hz audio" if clip.audio is not None else ", no audio"
    click.echo(f"{written} ({clip.width}x{clip.height}, {clip.frame_count} frames at {float(clip.fps):g} fps"
               f" = {clip.duration:.2f} s{audio}, seed {plan.seed})")


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
    from .engine import get_backends

    rows = []
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
        rows.append({"name": backend.name, "aliases": by_object[id(backend)][1:], "ready": status.ready,
                     "device": status.device, "model": backend.model_id, "detail": status.detail,
                     "description": backend.description})
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
    """List downloaded models. Example: kinema models list"""
    from . import models as model_store
    from .home import models_dir

    names = model_store.pulled()
    click.echo("\n".join(names) if names else f"No models in {models_dir()} yet: kinema models pull Lightricks/LTX-2")


@models.command("pull")
@click.argument("model_id")
@click.option("--revision", help="A branch, tag or commit.")
def models_pull(model_id, revision):
    """Download a model's safetensors weights. Example: kinema models pull Lightricks/LTX-2"""
    from . import models as model_store

    path = model_store.pull(model_id, revision=revision)
    click.echo(f"{model_id} is in {path}")


@cli.command()
def styles():
    """List style presets. Example: kinema generate "a harbour at night" --style cinematic"""
    from .home import kinema_home
    from .styles import list_styles

    for style in list_styles().values():
        click.echo(f"{style.name}: {style.description} [{style.source}]")
    click.echo(f"Add your own as JSON files in {kinema_home() / 'styles'}")


@cli.command()
def plugins():
    """Installed plugins as JSON (include this in bug reports)."""
    from .plugins import plugin_info

    click.echo(json.dumps(plugin_info(), indent=2))


@cli.command()
def doctor():
    """Check this machine: Python, torch, device, memory, codecs, models, backends and hosts."""
    import platform

    import av

    from .engine import get_backends
    from .home import kinema_home, models_dir
    from .plugins import load_plugins

    def line(name, value, ok=True):
        click.echo(f"{'ok ' if ok else '!! '} {name}: {value}")

    line("python", f"{platform.python_version()} ({sys.executable})")
    try:
        import torch

        from .device import free_memory_bytes, pick_device, pick_dtype

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
    seen = set()
    for backend in get_backends().values():
        if id(backend) in seen:
            continue
        seen.add(id(backend))
        status = backend.status()
        line(f"backend {backend.name}", status.detail, ok=status.ready)
    hosts = []
    load_plugins().hook.register_hosts(register=hosts.append)
    line("hosts", ", ".join(h.name for h in hosts) or "none registered")


# --------------------------------------------------------------------------- serve (kinema.server)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Loopback keeps the server to this machine; any other address"
                   " needs KINEMA_API_KEY.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port; 0 picks a free one and prints it.")
@click.option("--default-backend", default="tiny", show_default=True,
              help="Backend for requests that name no model (or an OpenAI sora-* model).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True, help="Server log detail (on stderr).")
def serve(host, port, default_backend, log_level):
    """Serve the OpenAI Videos API (and kinema's extensions) for other programs.

    Blender, OBS and scripts written for OpenAI's Sora 2 API send jobs here;
    they run one at a time per device and survive restarts (jobs live in the
    data directory). It listens on 127.0.0.1 by default so only programs on
    this machine can use your GPU and read your clips; to listen on another
    address, set KINEMA_API_KEY and send it as a bearer token.

    Example: kinema serve --port 8765, then
    OpenAI(base_url="http://127.0.0.1:8765/v1", api_key="-").videos.create(prompt="rain on a tin roof")
    """
    from .server import serve as run_server

    def ready(url):
        click.echo(f"kinema: serving the OpenAI Videos API on {url}/v1 (docs: {url}/docs)")
        sys.stdout.flush()

    run_server(host, port, api_key=os.environ.get("KINEMA_API_KEY") or None, default_backend=default_backend,
               log_level=log_level, on_ready=ready)


def main() -> None:
    from .plugins import load_plugins

    load_plugins().hook.register_commands(cli=cli)
    cli(prog_name="kinema")


if __name__ == "__main__":
    main()
