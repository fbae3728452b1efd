"""Who may talk to the job server: the bind check, the Host/Origin and body-size guard, and API keys.

Without ``KINEMA_API_KEY`` the server listens on loopback only and answers only
requests addressed to this machine; with one, every /v1 call must carry it or a
user's own key (``kinema keys add``).

Who is asking decides what a request sees: a user key acts as its user and
sees only that user's jobs; the master key, or no key on loopback, acts as
``SERVER_OWNER`` and sees every job (``owned_jobs_only``).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinema.cameo.store import SERVER_OWNER
from kinema.errors import KinemaError
from kinema.server.cameos import MAX_UPLOAD_BYTES as CAMEO_UPLOAD_BYTES
from kinema.server.dependencies import job_manager
from kinema.server.errors import APIError, BodyTooLarge, allowed_methods, error_response, video_not_found
from kinema.server.jobs import JobManager
from kinema.server.users import user_for_key

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
VIDEO_UPLOAD_PATHS = frozenset({"/v1/cameos", "/v1/videos/edits", "/v1/videos/extensions", "/v1/videos/characters"})


def is_loopback(host: str) -> bool:
    """True if ``host`` (an address or name) reaches only this machine."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if is_loopback(host) or api_key:
        return
    raise KinemaError(
        f"refusing to listen on {host} without an API key: anyone who can reach this machine could run jobs"
        " and download your clips. Set KINEMA_API_KEY to a long random secret (clients send it as"
        " 'Authorization: Bearer <key>'), or serve on 127.0.0.1."
    )


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: cap request bodies, and without an API key accept only loopback Host and Origin.

    The Host/Origin check stops web pages in the user's browser from driving a
    loopback server (DNS rebinding, cross-site form posts).
    """

    def __init__(self, app: Any, *, max_body: int, check_hosts: bool, extra_hosts: frozenset[str]):
        self.app, self.max_body, self.check_hosts = app, max_body, check_hosts
        self.hosts = LOOPBACK_HOSTS | extra_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.check_hosts:
            host = _host_name(headers.get("host", ""))
            origin = headers.get("origin")
            origin_host = _host_name(origin.split("://", 1)[-1].split("/", 1)[0]) if origin else None
            if host not in self.hosts or (origin is not None and origin_host not in self.hosts):
                response = error_response(
                    403,
                    "this kinema server answers only requests addressed to this machine"
                    " (loopback Host, no foreign Origin); set KINEMA_API_KEY to serve others",
                    type="permission_error",
                    code="forbidden_host",
                )
                return await response(scope, receive, send)
        length = headers.get("content-length")
        # A cameo recording and OpenAI's edits, extensions and characters are video uploads: a larger limit.
        limit = max(self.max_body, CAMEO_UPLOAD_BYTES) if scope.get("path") in VIDEO_UPLOAD_PATHS else self.max_body
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = error_response(413, str(BodyTooLarge(limit)), code="request_too_large")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


bearer = HTTPBearer(auto_error=False, description="KINEMA_API_KEY, when the server has one.")


def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
    """The /v1 dependency: the kinema user asking, a user's own key (`kinema keys add`), else SERVER_OWNER;
    401 when the server has a key (``app.state.api_key``, bytes) and the request lacks it."""
    expected: bytes | None = request.app.state.api_key
    user = user_for_key(credentials.credentials if credentials is not None else None)
    if user is None:
        if expected is not None:
            given = credentials.credentials.encode("utf-8") if credentials is not None else b""
            if not hmac.compare_digest(given, expected):
                raise APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer <KINEMA_API_KEY>'",
                    type="authentication_error",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        user = SERVER_OWNER
    request.state.kinema_user = user
    return user


def owned_jobs_only(
    request: Request, user: str = Depends(authorize), manager: JobManager = Depends(job_manager)
) -> None:
    """A /v1 dependency: a route whose path names a job (``{video_id}``) answers 404 unless the caller may see it.

    Every such route, present and future, passes through this one check, so none can forget it. The answer
    is the unknown id's (404, not 403), so another user's job does not even seem to exist.
    """
    video_id = request.path_params.get("video_id")
    if video_id is not None and manager.find(video_id, user) is None:
        if allowed_methods(request.app, request.url.path, own_only=True):
            raise StarletteHTTPException(405)  # GET /v1/videos/edits: a POST route, not the video 'edits'
        raise video_not_found(video_id)
