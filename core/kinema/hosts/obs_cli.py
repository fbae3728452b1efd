"""``kinema obs``: put clips on air in a running OBS Studio over obs-websocket, added to the CLI by ``hosts.obs``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from kinema import client as kinema_client
from kinema.cli_options import check_output, parse_size
from kinema.hosts.obs_remote import connect, play
from kinema.request import DEFAULT_BACKEND
from kinema.tiers import DEFAULT_TIER, tier_names


def _obs_options(function):
    options = [
        click.option("--scene", help="Scene to show the clip in (default: the one on air)."),
        click.option(
            "--input",
            "input_name",
            help="The media source to play clips through, created if missing [default: one per scene,"
            " 'Kinema Clip (SCENE)', shared with the OBS script].",
        ),
        click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            envvar="OBS_WEBSOCKET_HOST",
            help="Where OBS runs. OBS opens the clip itself, so it must see the same path.",
        ),
        click.option(
            "--port",
            type=click.IntRange(1, 65535),
            default=4455,
            show_default=True,
            envvar="OBS_WEBSOCKET_PORT",
            help="obs-websocket port.",
        ),
        click.option(
            "--password",
            envvar="OBS_WEBSOCKET_PASSWORD",
            help="obs-websocket password (OBS: Tools → WebSocket Server Settings → Show Connect Info);"
            " or set OBS_WEBSOCKET_PASSWORD.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _obs_play(clip, scene, input_name, host, port, password):
    result = play(clip, scene=scene, input_name=input_name, host=host, port=port, password=password)
    made = ", created now" if result.created else ""
    if result.on_air:
        after = f"; playing after {result.started_after:.2f} s" if result.started_after is not None else ""
        click.echo(f"On air: {result.path} in scene {result.scene!r} ({result.input_name!r}{made}){after}")
    else:
        click.echo(
            f"Loaded {result.path} into {result.input_name!r} in scene {result.scene!r}{made}; that scene"
            " is not on air, so the clip plays when you switch to it"
        )


@click.group()
def obs():
    """Put clips on air in a running OBS Studio 28+ (over obs-websocket 5).

    Inside OBS, the kinema script (`kinema install obs`) does the same from a prompt box.
    """


@obs.command("play")
@click.argument("clip", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_obs_options
def obs_play(clip, scene, input_name, host, port, password):
    """Play CLIP now, picture and sound, through the scene's kinema media source.

    That is "Kinema Clip (SCENE)", one per scene, created if missing; the OBS script plays through the same.

    Example: OBS_WEBSOCKET_PASSWORD=... kinema obs play fox.mp4 --scene Live
    """
    _obs_play(clip, scene, input_name, host, port, password)


@obs.command("generate")
@click.argument("prompt")
@click.option("--play", "play_now", is_flag=True, help="Put the clip on air in OBS when it is ready.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the MP4 (default: kinema-<time>.mp4 here).",
)
@click.option("--seconds", type=float, help="Clip length in seconds.")
@click.option("--size", callback=parse_size, help="WIDTHxHEIGHT, snapped to what the model accepts.")
@click.option("--seed", type=int, help="Same seed, same clip.")
@click.option("--steps", type=int, help="Denoising steps.")
@click.option("--style", help="A style preset (see `kinema styles`).")
@click.option("--backend", help="Backend (default: the server's, or tiny here).")
@click.option(
    "--tier",
    type=click.Choice(tier_names()),
    default=None,
    help=f"draft: fast preview (fewer steps, step caching); final: more steps, no caching [default: {DEFAULT_TIER}].",
)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Start from this picture (PNG, JPEG or WebP; the first frame).",
)
@click.option(
    "--server",
    "server_url",
    envvar="KINEMA_URL",
    help="A kinema server to generate on [default: http://127.0.0.1:8765 if one answers, else here].",
)
@_obs_options
@click.pass_context
def obs_generate(
    ctx,
    prompt,
    play_now,
    output,
    seconds,
    size,
    seed,
    steps,
    style,
    backend,
    tier,
    image,
    server_url,
    scene,
    input_name,
    host,
    port,
    password,
):
    """Generate a clip from PROMPT on a kinema server (or here), then with --play put it on air.

    Example: kinema obs generate "fireworks over a lake" --seconds 4 --play
    """
    if play_now:  # a wrong password should fail now, not after minutes of generating
        import asyncio

        async def check():
            await (await connect(host, port, password)).close()

        asyncio.run(check())
    output = check_output(output or Path(time.strftime("kinema-%Y%m%d-%H%M%S.mp4"))).resolve()
    client = kinema_client.Client(server_url)
    remote: kinema_client.Client | None = client
    try:
        client.health()
    except kinema_client.ServerUnavailable:
        if server_url:
            raise click.ClickException(
                f"no kinema server answers at {client.base_url}; start one with"
                " `kinema serve`, or leave out --server to generate here"
            ) from None
        remote = None
    except kinema_client.ClientError as error:
        raise click.ClickException(str(error)) from None
    if remote is None:
        ctx.invoke(
            ctx.find_root().command.get_command(ctx, "generate"),  # kinema's own generate, here
            prompt=prompt,
            output=output,
            seconds=seconds,
            size=size,
            seed=seed,
            steps=steps,
            style=style,
            backend=backend or DEFAULT_BACKEND,
            tier=tier or DEFAULT_TIER,
            image=image,
        )
    else:
        from tqdm import tqdm

        bar = tqdm(
            total=None, unit="step", desc=f"generating on {remote.base_url}", file=sys.stderr, dynamic_ncols=True
        )

        def on_progress(report):
            bar.total = report.total or bar.total
            bar.update(report.step - bar.n)

        try:
            remote.generate(
                prompt,
                output,
                progress=on_progress,
                seconds=seconds,
                size=size,
                seed=seed,
                steps=steps,
                style=style,
                backend=backend,
                tier=tier,
                image=image,
            )
        except kinema_client.ClientError as error:
            raise click.ClickException(str(error)) from None
        finally:
            bar.close()
        click.echo(str(output))
    if play_now:
        _obs_play(output, scene, input_name, host, port, password)
    else:
        click.echo(f"Put it on air with: kinema obs play {output}")
