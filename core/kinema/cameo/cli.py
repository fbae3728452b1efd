"""``kinema cameo ...``: capture a consenting person, say who may use them, see every clip made with them."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import click

from kinema.cameo import challenge as challenges
from kinema.cameo.make import make_cameo
from kinema.cameo.store import VERIFY_HINT, CameoStore, CameoTamperedError, check_name, local_user


def _store():
    return CameoStore()


def _me() -> str:
    return local_user()


def _when(moment) -> str:
    return "never" if moment is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def _verify_hint(name: str) -> str:
    return VERIFY_HINT.split("; ", 1)[1].replace("NAME", name)


def _who(row: dict) -> str:
    if row.get("revoked"):
        return "revoked"
    return {
        "only_me": "only the owner",
        "everyone": "everyone",
        "listed": "the owner and " + (", ".join(row["allowed_users"]) or "nobody else"),
    }[row["permission"]]


@click.group(invoke_without_command=True)
@click.pass_context
def cameo(ctx):
    """People you can put in clips, with their consent.

    Example: kinema cameo create alice --video alice.mp4 --audio alice.wav,
    then: kinema generate "alice surfing at dawn" --cameo alice --backend ltx2
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(cameo_list)


@cameo.command("challenge")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cameo_challenge(as_json):
    """A one-time phrase to say on camera when you record your cameo.

    It is valid for a few minutes, once, and only for you. Example: kinema cameo challenge, then record yourself saying it, then
    kinema cameo create alice --video me.mp4 --challenge chl_...
    """
    issued = challenges.issue(_me())
    if as_json:
        click.echo(json.dumps(issued.public(), indent=2))
        return
    click.echo(f'Say: "{issued.phrase}"  ({issued.digits})')
    click.echo(f"challenge id: {issued.id} (valid {challenges.CHALLENGE_SECONDS // 60} minutes, once)")
    click.echo(f"Then: kinema cameo create NAME --video RECORDING.mp4 --challenge {issued.id}")


@cameo.command("create")
@click.argument("name")
@click.option(
    "--video",
    type=click.Path(path_type=Path),
    required=True,
    help="A few seconds of the person alone, facing the camera (3-10 s works best).",
)
@click.option(
    "--audio",
    type=click.Path(path_type=Path),
    help="The person talking for at least 3 s (default: the video's own sound, if it has speech).",
)
@click.option("--allow", "allowed", multiple=True, help="Also let this kinema user use it (repeatable).")
@click.option("--everyone", is_flag=True, help="Let every user of this kinema use it.")
@click.option("--expires", help="Consent ends then: a date (2026-01-31) or a duration (30d, 12h).")
@click.option("--replace", is_flag=True, help="Replace your existing cameo of that name.")
@click.option(
    "--challenge",
    help="The id from `kinema cameo challenge` whose phrase the video shows you saying (verifies the cameo).",
)
def cameo_create(name, video, audio, allowed, everyone, expires, replace, challenge):
    """Capture cameo NAME from a video of yourself.

    Example: kinema cameo create alice --video me.mp4 --challenge chl_...
    (the id from `kinema cameo challenge`, whose phrase the video shows you saying)
    """
    check_name(name)
    owner = _me()
    click.echo(f"Capturing {video.name}" + (f" with the voice from {audio.name}" if audio else "") + "...", err=True)
    permission = "everyone" if everyone else ("listed" if allowed else "only_me")
    made, captured = make_cameo(
        name,
        owner,
        video,
        audio,
        challenge=challenge,
        store=_store(),
        permission=permission,
        allowed_users=tuple(allowed),
        expires=expires,
        replace=replace,
    )
    report = captured.report
    click.echo(
        f"cameo {made.name}{'' if made.id == made.name else f' (id char_{made.id}: another user has one called so)'}:"
        f" {len(made.references)} reference pictures (face {report['face_px']} px, seen in"
        f" {report['frames_with_face']}/{report['frames_sampled']} frames, {report['detector']})"
    )
    click.echo(
        "  voice: "
        + (f"{report['voice_seconds']:g} s at {report.get('voice_lufs', 0):g} LUFS" if made.voice else "none")
    )
    click.echo("  identity embedding: " + (made.embedding_model or "none"))
    click.echo(f"  owner {made.owner}; may use it: {_who(made.public())}; expires {_when(made.expires_at)}")
    click.echo("  verified" if made.verified else f"  {made.public()['verification']}")
    for note in captured.notes:
        click.echo(f"Note: {note}", err=True)


@cameo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cameo_list(as_json):
    """Cameos you own or may use. Example: kinema cameo list"""
    rows = _store().list(_me())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No cameos yet: kinema cameo create NAME --video you.mp4")
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']}: unusable: {row['error']}")
            continue
        state = "" if row["usable"] else f" [{row['status'].replace('_', ' ')}]"
        voice = ", voice" if row["has_voice"] else ""
        verified = ", verified" if row["verified"] else ", unverified"
        # Names are unique per owner only: the id (char_...) names one for everyone.
        ident = "" if row["id"] == row["name"] else f", id {row['character_id']}"
        click.echo(f"{row['name']} (owner {row['owner']}{ident}{voice}{verified}): {_who(row)}{state}")
        if row["on_hold"] and row["owner"] == _me():
            click.echo(f"  on hold: only you may use it until it is verified; {_verify_hint(row['name'])}")


@cameo.command("show")
@click.argument("name")
def cameo_show(name):
    """Everything about cameo NAME (yours first, else one shared with you; or its id, char_...), as JSON.

    Example: kinema cameo show alice
    """
    store = _store()
    item = store.get(store.resolve(name, _me()).id)
    usable, reason, message = item.may_use(_me())
    info = {**item.public(), "usable_by_you": usable, "status": message or reason, "capture": item.capture}
    click.echo(json.dumps(info, indent=2, default=str))


@cameo.command("allow")
@click.argument("name")
@click.argument("users", nargs=-1)
@click.option("--everyone", is_flag=True, help="Every user of this kinema may use it.")
@click.option("--only-me", is_flag=True, help="Only you may use it (keeps the list for later).")
@click.option("--expires", help="Consent ends then: a date, a duration (30d) or 'never'.")
@click.option("--voice/--no-voice", default=None, help="Others may (not) make it speak: its voice, or new lines in it.")
@click.option(
    "--remote/--no-remote", default=None, help="It may (not) be sent to another server (a remote:NAME backend)."
)
def cameo_allow(name, users, everyone, only_me, expires, voice, remote):
    """Let USERS (or --everyone) use your cameo NAME; also lifts a revoke. Its voice and remote use are
    separate: --voice, --remote (each off until you say so).

    Example: kinema cameo allow alice bob carol --expires 30d --voice
    """
    if everyone and only_me:
        raise click.UsageError("choose one of --everyone and --only-me")
    permission = "everyone" if everyone else ("only_me" if only_me else ("listed" if users else None))
    options = {} if expires is None else {"expires": None if expires.lower() == "never" else expires}
    made = _store().allow(
        name, _me(), permission=permission, add_users=tuple(users), voice=voice, remote=remote, **options
    )
    click.echo(f"{made.name}: may use it: {_who(made.public())}; expires {_when(made.expires_at)}")
    click.echo(
        f"  voice: {'others may use it' if made.voice_allowed else 'yours only'};"
        f" remote engines: {'allowed' if made.remote_allowed else 'never'}"
    )


@cameo.command("revoke")
@click.argument("name")
@click.argument("users", nargs=-1)
def cameo_revoke(name, users):
    """Withdraw consent for NAME: from USERS, or from everyone (yourself included) at once.

    Queued and running jobs using it fail. Example: kinema cameo revoke alice
    """
    made = _store().revoke(name, _me(), users=tuple(users))
    if users:
        click.echo(f"{made.name}: may use it: {_who(made.public())}")
    else:
        click.echo(f"{made.name} is revoked: nobody can use it until you `kinema cameo allow {made.name}` again")


@cameo.command("uses")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cameo_uses(name, as_json):
    """Every clip made with your cameo NAME. Example: kinema cameo uses alice"""
    entries = _store().uses(name, _me())
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo(f"{name} has not been used yet")
    for entry in entries:
        score = "" if entry.get("identity") is None else f", identity {entry['identity']:.2f}"
        saved = f" -> {', '.join(entry['saved_to'])}" if entry.get("saved_to") else ""
        click.echo(
            f"{_when(entry.get('at'))} by {entry.get('user')} ({entry.get('backend')}{score}):"
            f" {entry.get('prompt')!r}{saved}"
        )


@cameo.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
def cameo_delete(name, yes):
    """Delete your cameo NAME and every file of it. Example: kinema cameo delete alice --yes"""
    store = _store()
    with contextlib.suppress(CameoTamperedError):  # a tampered cameo can still be deleted
        store.resolve(name, _me())  # say "no such cameo" before asking
    if not yes:
        click.confirm(f"Delete cameo {name} and all its files?", abort=True)
    store.delete(name, _me())
    click.echo(f"deleted {name}")


# ---------------------------------------------------------------- takedowns: on a server, where the clips are

_server_options = [
    click.option(
        "--url",
        envvar="KINEMA_URL",
        default="http://127.0.0.1:8765",
        show_default=True,
        help="The kinema server the clips are on (or set KINEMA_URL).",
    ),
    click.option(
        "--api-key",
        envvar="KINEMA_API_KEY",
        help="Your key on that server: who you are there (or set KINEMA_API_KEY).",
    ),
]


def _server(function):
    for option in reversed(_server_options):
        function = option(function)
    return function


def _client(url: str, api_key: str | None):
    from kinema.client import Client

    return Client(url, api_key=api_key)


def _client_errors(call):
    """The server's refusal as a CLI error that says what to do (its message names the fix)."""
    from kinema.client import ClientError

    try:
        return call()
    except ClientError as error:
        raise click.ClickException(str(error)) from None


@cameo.command("clips")
@click.argument("name")
@_server
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cameo_clips(name, url, api_key, as_json):
    """Every video on a kinema server made with your cameo NAME, whoever made it: what you may take down.

    Example: KINEMA_API_KEY=... kinema cameo clips alice --url http://studio:8765
    """
    videos = _client_errors(lambda: _client(url, api_key).cameo_videos(name))
    if as_json:
        click.echo(json.dumps(videos, indent=2))
        return
    if not videos:
        click.echo(f"no video on {url} was made with {name}")
    for video in videos:
        state = video.get("status")
        if state == "taken_down":
            state = f"taken down: {video['taken_down'].get('reason')}"
        click.echo(f"{video['id']}  {_when(video.get('created_at'))}  by {video.get('made_by')}  [{state}]")
        click.echo(f"  {video.get('prompt')!r}")


@cameo.command("takedown")
@click.argument("name")
@click.argument("video_id")
@click.option("--reason", help="Why; the video's maker is told. Default: the person shown did not agree to it.")
@_server
def cameo_takedown(name, video_id, reason, url, api_key):
    """Take down VIDEO_ID, a video made with your cameo NAME, on a kinema server (see `kinema cameo clips`).

    Its maker then gets 410 taken_down with your reason; remix, extend and edit of it are refused, its cached
    shots deleted, and the takedown is written to the cameo's use log. Copies already downloaded keep their
    provenance. Example: kinema cameo takedown alice video_... --reason "I never agreed to this"
    """
    done = _client_errors(lambda: _client(url, api_key).take_down(name, video_id, reason=reason))
    click.echo(f"took down {done['video']} (made by {done['made_by']}): {done['reason']}")
    if done.get("shots_purged"):
        click.echo(f"  {done['shots_purged']} cached shot(s) of it deleted")
