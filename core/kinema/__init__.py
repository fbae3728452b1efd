"""kinema: local text/image to video with synchronized audio.

Importing kinema is cheap: torch and diffusers load when the first clip is generated.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinema")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

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
