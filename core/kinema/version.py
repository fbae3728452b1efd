"""kinema's version, for clip metadata, provenance manifests and the server: ``kinema.__version__`` is this one.

A module of its own so that the modules ``kinema/__init__`` imports can read the version without importing
the package's facade (which imports them: a cycle).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kinema")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
