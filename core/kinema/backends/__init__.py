"""Generation backends. Each family is an ordinary plugin registering through ``register_backends``."""

from .base import Backend, BackendStatus, Plan

__all__ = ["Backend", "BackendStatus", "Plan"]
