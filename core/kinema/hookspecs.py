"""kinema's plugin contract.

Implementations may accept any subset of a hook's arguments (pluggy passes
only the ones named), so adding an argument to a hook breaks no plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from kinema.clip import Clip
    from kinema.progress import Progress
    from kinema.request import GenerationRequest

hookspec = pluggy.HookspecMarker("kinema")
hookimpl = pluggy.HookimplMarker("kinema")


@hookspec
def register_backends(register: Callable[..., None]) -> None:
    """Call ``register(backend, aliases=())`` for each generation backend this plugin provides."""


@hookspec
def register_hosts(register: Callable[..., None]) -> None:
    """Call ``register(host)`` for each host adapter (an object with ``name`` and ``install(**options)``).

    ``kinema install NAME`` runs ``install``; its options come from the host's
    optional ``install_params`` (click parameters), else from ``install``'s
    keyword arguments. It prints ``host.instructions(result)`` if the host has
    that method, else the result. Raise a ``KinemaError`` saying what to do.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``kinema`` CLI."""


@hookspec
def generation_progress(request: GenerationRequest, progress: Progress) -> None:
    """Called after every denoising step of every generation, in the generating thread."""


@hookspec
def clip_generated(request: GenerationRequest, clip: Clip) -> None:
    """Called once a generation finished; ``clip.metadata`` may still be amended here."""


@hookspec
def clip_saved(clip: Clip, path: Any) -> None:
    """Called after a clip was written completely (atomically) to ``path``."""
