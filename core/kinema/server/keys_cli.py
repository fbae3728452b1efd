"""``kinema keys ...``: one API key per user of a shared kinema server (cameo consent is per user)."""

from __future__ import annotations

import click

from kinema.server.users import add_key, list_users, remove_key


@click.group(invoke_without_command=True)
@click.pass_context
def keys(ctx):
    """API keys for the users of `kinema serve`. Example: kinema keys add bob"""
    if ctx.invoked_subcommand is None:
        ctx.invoke(keys_list)


@keys.command("add")
@click.argument("user")
def keys_add(user):
    """Make (or replace) USER's API key and print it once. Example: kinema keys add bob"""
    key = add_key(user)
    click.echo(key)
    click.echo(f"Give this key to {user}: it is stored only as a hash and cannot be shown again.", err=True)


@keys.command("list")
def keys_list():
    """Users with an API key. Example: kinema keys list"""
    names = list_users()
    click.echo(
        "\n".join(names) if names else "No user keys: requests act as the server's owner. Add: kinema keys add USER"
    )


@keys.command("remove")
@click.argument("user")
def keys_remove(user):
    """Remove USER's API key at once. Example: kinema keys remove bob"""
    if not remove_key(user):
        raise click.ClickException(f"{user} has no API key")
    click.echo(f"removed the key of {user}")
