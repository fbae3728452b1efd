"""kinema: local text/image to video with synchronized audio.

Importing kinema is cheap: torch and diffusers load when the first clip is generated.
"""

from kinema.clip import Clip
from kinema.engine import generate, get_backend, get_backends, plan
from kinema.errors import (
    GenerationCancelled,
    InvalidRequestError,
    KinemaError,
    MissingWeightsError,
    OutputError,
    UnknownBackendError,
)
from kinema.home import kinema_home
from kinema.hookspecs import hookimpl
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.version import __version__

__all__ = [
    "CancelToken",
    "Clip",
    "GenerationCancelled",
    "GenerationRequest",
    "InvalidRequestError",
    "KinemaError",
    "MissingWeightsError",
    "OutputError",
    "Progress",
    "UnknownBackendError",
    "__version__",
    "generate",
    "get_backend",
    "get_backends",
    "hookimpl",
    "kinema_home",
    "plan",
]
