"""kinema's ComfyUI nodes, for a clone of this repository in ComfyUI/custom_nodes/.

ComfyUI's Manager ("Install via Git URL") and a plain ``git clone`` put this
repository in ``custom_nodes/`` and install its root ``requirements.txt``
(kinema's dependencies, without torch: ComfyUI's own torch is kept). ComfyUI
then imports this file. It makes the clone's ``core/`` importable as
``kinema`` and ``plugins/comfyui`` as ``kinema_comfyui`` (unless a kinema is
already loaded), and hands ComfyUI the nodes. A pip-installed kinema does
not need this file: ``kinema install comfyui`` links ``plugins/comfyui``.

Nothing else imports this file: kinema's own code, tests and tools never do.
"""

import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
_NODES = os.path.join(_ROOT, "plugins", "comfyui")

if __name__ == "kinema":
    # An older ComfyUI registers a custom node under its folder's name: a clone named kinema would stand in for
    # the kinema package itself. Step aside, so that `import kinema` finds the real one in core/.
    del sys.modules[__name__]

if "kinema" not in sys.modules:
    _CORE = os.path.join(_ROOT, "core")
    if _CORE not in sys.path:
        sys.path.insert(0, _CORE)  # the clone's kinema, matching the clone's nodes

if "kinema_comfyui" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "kinema_comfyui", os.path.join(_NODES, "__init__.py"), submodule_search_locations=[_NODES]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["kinema_comfyui"] = _module
    try:
        _spec.loader.exec_module(_module)
    except BaseException:
        del sys.modules["kinema_comfyui"]
        raise

comfy_entrypoint = sys.modules["kinema_comfyui"].comfy_entrypoint

__all__ = ["comfy_entrypoint"]
