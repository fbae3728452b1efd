"""kinema's ComfyUI nodes: text/image to video with synchronized audio, in one node.

ComfyUI imports this folder as a package and calls ``comfy_entrypoint()``
(the V3 node API). Importing the folder needs only kinema, not ComfyUI, so
the node logic (``logic.py``) and the node descriptions (``spec.py``) are
tested without ComfyUI; the ComfyUI layer (``v3.py``, ``comfy_host.py``) is
imported when ComfyUI asks for the nodes.
"""

import logging
import os
import sys

try:
    import kinema  # noqa: F401
except ImportError as error:
    _clone = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if error.name and error.name.split(".")[0] != "kinema":
        # kinema is here (a clone of its repository, or an install), one of its dependencies is not.
        message = (
            f"kinema needs {error.name!r}, which ComfyUI's Python ({sys.executable}) lacks: run"
            f" `{sys.executable} -m pip install -r {os.path.join(_clone, 'requirements.txt')}` for a clone of"
            " kinema's repository in custom_nodes/ (or reinstall kinema), then restart ComfyUI"
        )
    else:
        message = (
            f"kinema is not installed in ComfyUI's Python ({sys.executable}): run `{sys.executable} -m pip install"
            " kinema` (or `-m pip install -e PATH_TO_KINEMA` for a source checkout), then restart ComfyUI"
        )
    logging.getLogger("kinema").error(message)
    raise ImportError(message) from error

from . import logic, spec  # noqa: E402

__all__ = ["comfy_entrypoint", "logic", "spec"]


async def comfy_entrypoint():
    from .v3 import KinemaExtension

    return KinemaExtension()
