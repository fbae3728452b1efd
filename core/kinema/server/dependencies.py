"""What the routes need from the app that serves them, as FastAPI dependencies.

``create_app`` puts the job manager, the default backend and the API key on ``app.state``; routes are
module-level functions that ask for them with ``Depends`` (FastAPI's "bigger applications" layout), so no
route is a closure over the app's objects and tests can override any of them (``app.dependency_overrides``).
"""

from __future__ import annotations

from fastapi import Request

from kinema.cameo.store import CameoStore
from kinema.server.jobs import JobManager


def job_manager(request: Request) -> JobManager:
    """The app's job manager."""
    return request.app.state.manager


def default_backend(request: Request) -> str:
    """The backend for requests that name no model (``kinema serve --default-backend``)."""
    return request.app.state.default_backend


def current_user(request: Request) -> str:
    """The kinema user asking, as ``kinema.server.security.authorize`` found them; every /v1 router runs
    that first (its routers' dependencies come before a route's own)."""
    return request.state.kinema_user


def cameo_store() -> CameoStore:
    """The cameo store of the data directory (``kinema_home()/cameos``)."""
    return CameoStore()
