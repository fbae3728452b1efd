"""The plugin manager. Built-in backends register through the same hooks as third-party ones."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import TYPE_CHECKING

import pluggy

from kinema import hookspecs
from kinema.errors import UnknownBackendError

if TYPE_CHECKING:
    from kinema.backends.base import Backend

DEFAULT_PLUGINS = (
    "kinema.backends.ltx2",
    "kinema.backends.wan",
    "kinema.backends.tiny",
    "kinema.backends.wan_vace",
    "kinema.backends.world",
    "kinema.backends.remote",  # remote:NAME for each server named in KINEMA_HOME/remotes.json
    "kinema.cameo.store",  # notes where cameo clips are saved, for their owners' use logs
    "kinema.hosts.obs",
    "kinema.hosts.comfyui",
    "kinema.hosts.blender",
)

pm = pluggy.PluginManager("kinema")
pm.add_hookspecs(hookspecs)

_defaults_loaded = False
_tracing = False
# Server worker threads and request handlers may call load_plugins() at the same moment.
_load_lock = threading.RLock()


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins once, then any new ``kinema`` entry points. Safe to call often.

    ``KINEMA_LOAD_PLUGINS`` is a comma-separated allow-list of entry-point names
    ('' loads none); ``KINEMA_TRACE_PLUGINS=1`` prints every hook call.
    """
    global _defaults_loaded
    with _load_lock:
        if not _defaults_loaded:
            for name in DEFAULT_PLUGINS:
                pm.register(importlib.import_module(name), name=name)
            _defaults_loaded = True
        allow = os.environ.get("KINEMA_LOAD_PLUGINS")
        if allow is None:
            # pluggy skips entry points whose name is already registered.
            pm.load_setuptools_entrypoints("kinema")
        else:
            for name in filter(None, (n.strip() for n in allow.split(","))):
                if pm.get_plugin(name) is None:
                    pm.load_setuptools_entrypoints("kinema", name=name)
        _enable_tracing()
    return pm


def get_backends() -> dict[str, Backend]:
    """Every registered backend by name and alias. Rebuilt per call, so newly registered plugins count at once."""
    backends: dict[str, Backend] = {}

    def register(backend: Backend, aliases: tuple[str, ...] = ()) -> None:
        for name in (backend.name, *aliases):
            backends.setdefault(name, backend)

    load_plugins().hook.register_backends(register=register)
    return backends


def get_backend(name: str) -> Backend:
    backends = get_backends()
    try:
        return backends[name]
    except KeyError:
        names = ", ".join(sorted({b.name for b in backends.values()}))
        hint = (
            " (name remote servers in KINEMA_HOME/remotes.json; `kinema remotes` lists them)"
            if name.startswith("remote:")
            else ""
        )
        raise UnknownBackendError(
            f"unknown backend {name!r}; choose one of: {names} (see `kinema backends`){hint}"
        ) from None


def _enable_tracing() -> None:
    global _tracing
    if _tracing or not os.environ.get("KINEMA_TRACE_PLUGINS"):
        return

    def before(hook_name, hook_impls, kwargs):
        print(f"kinema hook: {hook_name} {kwargs!r} -> {[i.plugin_name for i in hook_impls]}", file=sys.stderr)

    def after(outcome, hook_name, hook_impls, kwargs):
        print(f"kinema hook: {hook_name} returned {outcome.get_result()!r}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)
    _tracing = True


def plugin_info() -> list[dict]:
    """Name, version and hooks of every registered plugin (for ``kinema plugins`` and bug reports)."""
    load_plugins()
    dists = {id(p): d for p, d in pm.list_plugin_distinfo()}
    info = []
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        entry = {"name": name, "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or ())}
        if dist is not None:
            entry["version"] = dist.version
        info.append(entry)
    return info
