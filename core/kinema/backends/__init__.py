"""Generation backends. Each family is an ordinary plugin registering through ``register_backends``."""

from kinema.backends.base import Backend, BackendStatus, Plan

__all__ = ["Backend", "BackendStatus", "Plan"]
