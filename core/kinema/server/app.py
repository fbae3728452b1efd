"""``kinema serve``: the OpenAI Videos API, served locally, plus kinema's extensions.

Clients written for OpenAI's (deprecated) Sora 2 API work by pointing the
official SDK at ``http://127.0.0.1:8765/v1``. Hosts such as Blender and OBS
talk to this server with ``kinema/client.py`` and never import torch.

OpenAI endpoints: ``POST /v1/videos`` (JSON or multipart), ``GET /v1/videos``,
``GET /v1/videos/{id}``, ``GET /v1/videos/{id}/content``, ``DELETE /v1/videos/{id}``.
kinema's: ``POST /v1/videos/{id}/cancel``, ``GET /v1/videos/{id}/events``
(server-sent events), ``GET /v1/models``, ``GET /v1/styles``, ``GET /health``.

A cancelled job reads ``status: "failed"`` with ``error.code == "cancelled"``
(OpenAI's status enum has no "cancelled", and clients written for it poll
until completed or failed); ``kinema.status`` says ``"cancelled"``.

This module builds the app and serves it. The routes live in ``video_api``
(with ``storyboard_api``), ``models_api`` and ``cameo_api``; request parsing in
``video_requests``, shapes in ``server_schemas``, errors in ``server_errors``,
and the bind, Host/Origin and API-key checks in ``server_security``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from kinema.errors import KinemaError
from kinema.home import kinema_home
from kinema.plugins import load_plugins
from kinema.request import DEFAULT_BACKEND, MAX_SEED
from kinema.server.cameos import router as cameo_router
from kinema.server.errors import APIError, add_error_handlers, error_responses
from kinema.server.files import router as files_router
from kinema.server.health import ServerHealth
from kinema.server.jobs import JobManager, JobsBusyError, _lock_directory
from kinema.server.models import models_router
from kinema.server.schemas import VIDEO_ID_PATTERN, ErrorResponse, add_create_video_schemas, to_video
from kinema.server.security import Guard, authorize, check_bind, is_loopback, owned_jobs_only
from kinema.server.styles import router as styles_router
from kinema.server.video_requests import MAX_IMAGE_BYTES, MAX_IMAGE_SIDE, decode_image  # noqa: F401 (re-exported)
from kinema.server.videos import router as video_router
from kinema.version import __version__

DEFAULT_PORT = 8765
# The /v1/videos calls vLLM-Omni, SGLang and OpenAI's hosted API share (create_app(videos_only=True)).
PLAIN_VIDEO_ROUTES = frozenset(
    {
        ("/videos", "POST"),
        ("/videos/{video_id}", "GET"),
        ("/videos/{video_id}/content", "GET"),
        ("/videos/{video_id}", "DELETE"),
    }
)
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 2**20  # the image as base64 JSON, plus the other fields


def create_app(
    *,
    api_key: Any = ...,
    home: Path | None = None,
    default_backend: str = DEFAULT_BACKEND,
    start_workers: bool = True,
    allowed_hosts: tuple[str, ...] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    ray: str | None = None,
    manager: JobManager | None = None,
    videos_only: bool = False,
) -> FastAPI:
    """The ASGI app. ``api_key`` defaults to ``KINEMA_API_KEY``; ``None`` or '' means no key.

    ``home`` is the data directory (default ``kinema_home()``); jobs live in ``home/jobs``.
    ``start_workers=False`` queues jobs without running them (schema fuzzing).
    ``ray``: run jobs on the Ray cluster at that address (``auto``: one on this machine) instead of in-process
    (``kinema.server.ray_pool``); ``manager``: a job manager made by the caller (tests).
    ``videos_only``: serve only the plain ``/v1/videos`` subset other engines share (create, retrieve, content,
    delete; no kinema extras, cameos or models), as a far side for the ``remote`` backend's tests.
    """
    if api_key is ...:
        api_key = os.environ.get("KINEMA_API_KEY") or None
    api_key = api_key or None
    expected = api_key.encode("utf-8") if api_key else None
    if manager is None and ray is not None:
        from kinema.server.ray_pool import RayJobManager  # Ray is imported only with --ray

        manager = RayJobManager(home, address=ray, start_workers=start_workers)
    elif manager is None:
        manager = JobManager(home, start_workers=start_workers)

    def startup() -> None:
        load_plugins()  # once, before requests: its first call is not safe from several threads at once
        manager.start()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(startup)
        app.state.manager = manager
        try:
            yield
        finally:
            await run_in_threadpool(manager.stop)

    app = FastAPI(
        title="kinema",
        version=__version__,
        summary="Local video with synchronized audio, speaking the OpenAI Videos API.",
        lifespan=lifespan,
    )
    # What the routes' dependencies read (kinema.server.dependencies, kinema.server.security).
    app.state.manager = manager
    app.state.default_backend = default_backend
    app.state.api_key = expected
    app.add_middleware(
        Guard,
        max_body=max_body_bytes,
        check_hosts=expected is None,
        extra_hosts=frozenset(h.lower() for h in allowed_hosts),
    )
    add_error_handlers(app)

    @app.get("/health", response_model=ServerHealth, tags=["kinema"])
    def health() -> dict:
        """Liveness: answers as soon as the server accepts jobs. With --ray, the cluster too: a lost one keeps the
        server up (status stays ok: jobs are still taken, and wait for it) and says so under ``ray``."""
        report: dict[str, Any] = {"status": "ok", "version": __version__, "auth": expected is not None}
        ray_health = getattr(manager, "health", None)  # kinema.server.ray_pool.RayJobManager
        if callable(ray_health):
            report["ray"] = ray_health()
        return report

    # Every /v1 route: who is asking, and a job named in the path must be theirs (or the owner asks).
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[Depends(authorize), Depends(owned_jobs_only)],
        responses={401: {"model": ErrorResponse}},
    )
    if videos_only:
        plain = APIRouter()
        plain.routes.extend(
            route
            for route in video_router.routes
            if isinstance(route, APIRoute) and any((route.path, m) in PLAIN_VIDEO_ROUTES for m in route.methods or ())
        )
        v1.include_router(plain)
        app.include_router(v1)
    else:
        v1.include_router(video_router)
        v1.include_router(models_router())
        v1.include_router(styles_router)
        app.include_router(v1)
        for router in (cameo_router, files_router):  # their ids are no video's: owned_jobs_only has nothing to check
            app.include_router(
                router,
                prefix="/v1",
                dependencies=[Depends(authorize)],
                responses={401: {"model": ErrorResponse}},
            )

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            add_create_video_schemas(
                schema.setdefault("components", {}).setdefault("schemas", {}), app.state.default_backend
            )
            publish_truthfully(schema, key_required=expected is not None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def publish_truthfully(schema: dict, *, key_required: bool) -> None:
    """Make the generated schema say what the server does: its validation failures are 400 in OpenAI's error
    shape (FastAPI would document 422), and without ``KINEMA_API_KEY`` a key is optional (a user's own key
    still picks who asks; no key on loopback acts as the server's owner)."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": "The request is not valid.", **_ERROR_CONTENT})
            if "{video_id}" in path:  # owned_jobs_only tells a taken-down video's maker so, on every such route
                responses.setdefault("410", {"description": TAKEN_DOWN, **_ERROR_CONTENT})
            if not key_required and operation.get("security"):
                operation["security"] = [*operation["security"], {}]
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "video_id":
                    parameter["schema"]["pattern"] = VIDEO_ID_PATTERN  # any other id is a video not found (404)
    _restore_integer_bounds(schema)
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)


# FastAPI's OpenAPI model keeps bounds as floats, which cannot hold 2**63 - 1 (the largest seed) exactly.
_EXACT_BOUNDS = {float(MAX_SEED): MAX_SEED}


def _restore_integer_bounds(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = _EXACT_BOUNDS.get(value, int(value))
        for child in node.values():
            _restore_integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _restore_integer_bounds(child)


TAKEN_DOWN = error_responses(410)[410]["description"]
_ERROR_CONTENT = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


# --------------------------------------------------------------------------- running


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    api_key: str | None = None,
    default_backend: str = DEFAULT_BACKEND,
    log_level: str = "info",
    on_ready: Any = None,
    stop_with_stdin: bool = False,
    ray: str | None = None,
) -> None:
    """Bind, then serve until interrupted. ``port=0`` picks a free port; ``on_ready(url)`` runs once serving.

    ``stop_with_stdin``: also stop, as on Ctrl-C, when standard input reaches end of file. A host that
    starts the server keeps the other end of that pipe; the OS closes it when the host exits, however it
    exits (a crash or a kill included), so the server never outlives the program that owns it.

    ``ray``: jobs run on the Ray cluster at that address (``auto`` starts one on this machine, on loopback); an
    unreachable cluster is one clear error, before anything listens.
    """
    import uvicorn

    check_bind(host, api_key)
    if ray is not None:
        from kinema.server.ray_pool import connect  # Ray is imported only with --ray

        connect(ray)
    jobs_dir = kinema_home() / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    _lock_directory(jobs_dir).close()  # fail early and clearly if another server owns the data directory
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise KinemaError(f"cannot listen on {host}:{port}: {error.strerror or error}; pick another --port") from None
    bound_port = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound_port}"
    app = create_app(api_key=api_key, default_backend=default_backend, ray=ray)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5, lifespan="on")

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and stop_with_stdin:
                threading.Thread(target=self._stop_at_end_of_stdin, name="kinema-stdin-watch", daemon=True).start()
            if self.started and on_ready is not None:
                on_ready(url)

        def _stop_at_end_of_stdin(self) -> None:
            try:
                while os.read(0, 4096):
                    pass
            except OSError:
                pass  # an unreadable stdin also means nobody is holding it for us
            logging.getLogger("uvicorn.error").info(
                "standard input closed (the program that started this server quit); stopping"
            )
            self.should_exit = True

    server = _Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise KinemaError("the server did not start; see the messages above")


__all__ = ["APIError", "JobsBusyError", "create_app", "check_bind", "is_loopback", "serve", "to_video"]
