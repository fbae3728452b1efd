"""A client for ``kinema serve``, in one file, using only the Python standard library.

Blender and OBS add-ons ship a copy of this file and never import torch: the
server does the work. Keep it importing nothing outside the standard library
(a test checks), and working on Python 3.9+.

    from kinema.client import Client, ensure_server

    client = ensure_server(python="/path/to/kinema-venv/bin/python")  # starts `kinema serve` if needed
    job = client.submit("rain on a tin roof", seconds=2, size="768x512")
    job = client.wait(job["id"], progress=lambda p: print(f"{p.percent}%"))
    client.download(job["id"], "rain.mp4")

Errors: ``ServerUnavailable`` (nothing listening), ``AuthenticationError``
(missing or wrong ``KINEMA_API_KEY``), ``APIError`` (a request the server
refused, e.g. a bad size), ``JobFailed`` / ``JobCancelled`` (from ``wait``),
``ServerStartError`` (``ensure_server`` could not start one). All derive from
``ClientError``.
"""

from __future__ import annotations

import base64
import builtins
import collections
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "Client",
    "ClientError",
    "JobCancelled",
    "JobFailed",
    "NotFoundError",
    "Progress",
    "ServerStartError",
    "ServerUnavailable",
    "WaitTimeout",
    "ensure_server",
]

DEFAULT_URL = "http://127.0.0.1:8765"
# Quality tiers, for the menus of hosts that copy this file (Blender, OBS): what ``Client.tiers()`` answers when the
# server cannot say. A copy of kinema.tiers, because this file imports nothing of kinema; tests/test_client.py
# checks that the two agree.
TIERS = ("draft", "standard", "final")
DEFAULT_TIER = "standard"
BACKGROUND_NICE = 10  # ensure_server(background=True): how much lower the server's CPU priority is than the caller's
FINAL_EVENTS = ("completed", "failed", "cancelled", "deleted")
_READY_LINE = re.compile(r"serving .* on (http://\S+?)/v1\b")


class ClientError(Exception):
    """Base of every error this module raises; ``str(error)`` is one line a user can act on."""


class ServerUnavailable(ClientError):
    """No kinema server answered at the URL (connection refused, reset or timed out)."""


class AuthenticationError(ClientError):
    """The server wants an API key, or a different one (HTTP 401)."""


class APIError(ClientError):
    """The server refused a request; ``status``, ``code`` and ``param`` say why."""

    def __init__(self, message: str, *, status: int, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


class NotFoundError(APIError):
    """No such job (HTTP 404)."""


class JobFailed(ClientError):
    """The job ended without a clip; ``job`` is its final state, ``code`` the server's reason code."""

    def __init__(self, message: str, job: dict):
        super().__init__(message)
        self.job = job
        self.code = (job.get("error") or {}).get("code")


class JobCancelled(JobFailed):
    """The job was cancelled."""


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up before the job finished; the job goes on."""


class ServerStartError(ClientError):
    """``ensure_server`` could not start a healthy server; the message ends with its log."""


Progress = collections.namedtuple("Progress", "job_id step total stage percent preview_jpeg")
Progress.__doc__ = """One progress report: step of total in stage, percent 0..100, preview_jpeg bytes or None."""


class Client:
    """Talks to one kinema server. Thread-safe: every call opens its own connection."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 30.0):
        url = (base_url or os.environ.get("KINEMA_URL") or DEFAULT_URL).rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        self.base_url = url
        self.api_key = api_key if api_key is not None else os.environ.get("KINEMA_API_KEY") or None
        self.timeout = timeout
        self.process: subprocess.Popen | None = None  # set by ensure_server when it started the server
        # A local server needs no proxy; a proxy from the environment would only get in the way.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"

    # -- plumbing

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: dict | None = None,
        timeout: float | None = None,
        accept: str = "application/json",
        form: tuple[bytes, str] | None = None,
    ) -> http.client.HTTPResponse:
        headers = {"Accept": accept, "User-Agent": "kinema-client"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data, headers["Content-Type"] = form
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            return self._opener.open(request, timeout=timeout if timeout is not None else self.timeout)
        except urllib.error.HTTPError as error:
            raise _http_error(error) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise ServerUnavailable(
                f"no kinema server answered at {self.base_url} ({reason}); start one with `kinema serve`"
                " or call ensure_server()"
            ) from None

    def _json(self, method: str, path: str, body: dict | None = None) -> Any:
        with self._open(method, path, body=body) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise ClientError(f"{self.base_url}{path} did not answer with JSON: is this a kinema server?") from None

    # -- the API

    def health(self) -> dict:
        """{"status": "ok", "version": ..., "auth": bool}; raises ServerUnavailable if nobody answers."""
        return self._json("GET", "/health")

    def models(self) -> list:
        """Backends and pulled models the server can run."""
        return self._json("GET", "/v1/models")["data"]

    def pull_model(self, model: str, *, accept_license: bool, revision: str | None = None) -> dict:
        """Ask the server to download ``model`` (a hub id) in the background; returns the pull (``status``,
        ``progress``, ``licence``...). Show the model's licence (``models()``, its ``licence``) first: one whose
        ``must_accept`` is true needs ``accept_license=True``. Only the server's owner may pull."""
        body = {"model": model, "accept_license": bool(accept_license), "revision": revision}
        return self._json("POST", "/v1/models/pulls", body)

    def model_pull(self, model: str) -> dict:
        """The server's pull of ``model``: ``status`` queued, downloading, completed or failed (``error``),
        ``progress`` 0..1 (None until the size is known), ``downloaded_bytes``, ``total_bytes``."""
        return self._json("GET", "/v1/models/pulls/" + urllib.parse.quote(model, safe="/"))

    def cameos(self) -> list:
        """Cameos this key's user owns or may use now (``name``, ``owner``, ``has_voice``, ``usable``...)."""
        return self._json("GET", "/v1/cameos")["data"]

    def cameo_challenge(self) -> dict:
        """A one-time phrase (``phrase``, ``digits``) for this key's user to say on camera while recording a cameo:
        pass its ``id`` to ``create_cameo`` before ``expires_at`` (Unix time; ``expires_in`` seconds from issue)."""
        return self._json("POST", "/v1/cameos/challenge")

    def create_cameo(
        self,
        name: str,
        video: str | os.PathLike[str],
        *,
        challenge: str | None = None,
        audio: str | os.PathLike[str] | None = None,
        permission: str | None = None,
        allowed_users: builtins.list[str] | None = None,
        expires: str | None = None,
        timeout: float = 600.0,
    ) -> dict:
        """Upload a recording of the person and make cameo ``name`` of it; returns the cameo (``verified``,
        ``verification``: why it is or is not, ``capture``: what the server found).

        ``challenge`` is the id from ``cameo_challenge()`` whose phrase the recording shows the person saying: with
        it (and a speech recogniser on the server) the cameo is verified; without, it is unverified and only its
        owner may use it. Raises APIError whose ``code`` says why it was refused: ``challenge_expired``,
        ``challenge_used``, ``challenge_unknown``, ``challenge_not_yours``, ``cameo_wrong_code``,
        ``cameo_no_speech_heard``, ``cameo_lips_mismatch``, ``cameo_different_face``, ``cameo_no_face``...
        ``timeout``: the server finds the face and checks the speech before it answers.
        """
        fields: builtins.list[tuple[str, str]] = [("name", name)]
        optional = {"challenge": challenge, "permission": permission, "expires": expires}
        fields += [(key, str(value)) for key, value in optional.items() if value]
        fields += [("allowed_users", user) for user in allowed_users or ()]
        files = [("video", os.fspath(video))] + ([("audio", os.fspath(audio))] if audio is not None else [])
        form = _multipart(fields, files)
        with self._open("POST", "/v1/cameos", form=form, timeout=timeout) as response:
            return json.loads(response.read())

    def cameo_videos(self, name: str) -> list:
        """Every video on the server made with your cameo ``name`` (its owner only), whoever made it: ``id``,
        ``made_by``, ``prompt``, ``created_at``, ``status`` (``taken_down`` once taken down, with ``taken_down``:
        when and why). ``name`` is your cameo's name, or its id (``char_...``)."""
        return self._json("GET", f"/v1/cameos/{urllib.parse.quote(name, safe='')}/videos")["data"]

    def take_down(self, name: str, video_id: str, *, reason: str | None = None) -> dict:
        """Take down ``video_id``, a video made with your cameo ``name`` (see ``cameo_videos``): its maker gets
        410 ``taken_down`` with ``reason``, everyone else 404, and it can no longer be downloaded, remixed,
        extended or edited. Returns the takedown (``made_by``, ``reason``, ``shots_purged``). Raises APIError
        ``not_made_with_cameo`` or ``already_taken_down`` (409), ``cameo_not_owner`` (403) for another's cameo."""
        body = {"video": video_id} | ({"reason": reason} if reason else {})
        return self._json("POST", f"/v1/cameos/{urllib.parse.quote(name, safe='')}/takedowns", body)

    def styles(self) -> list:
        """Style presets the server offers, its users' own included (``id``, ``description``, ``source``)."""
        return self._json("GET", "/v1/styles")["data"]

    def tiers(self) -> tuple[tuple[str, ...], str]:
        """The server's quality tiers and its default one, ``(names, default)``, for a host's tier menu.

        Read from the server's OpenAPI schema (``GET /openapi.json``: the ``tier`` enum of a video request, and
        the tier a job gets when it names none). When the server does not answer, refuses, or is too old to
        name its tiers, this file's own copy: ``(TIERS, DEFAULT_TIER)``. Never raises.
        """
        try:
            found = _schema_tiers(self._json("GET", "/openapi.json"))
        except ClientError:
            found = None
        return found or (TIERS, DEFAULT_TIER)

    def submit(
        self,
        prompt: str,
        *,
        seconds: float | None = None,
        size: str | tuple[int, int] | None = None,
        model: str | None = None,
        image: str | os.PathLike[str] | bytes | None = None,
        negative_prompt: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        fps: float | None = None,
        style: str | None = None,
        backend: str | None = None,
        audio: bool | None = None,
        cameos: builtins.list[str] | None = None,
        speech: str | None = None,
        tier: str | None = None,
        dialogue: str | None = None,
    ) -> dict:
        """Queue a job and return it (``job["id"]``, ``job["size"]``, ``job["seconds"]`` as will be made).

        ``image`` (a path or PNG/JPEG/WebP bytes) is the first frame; ``cameos`` names people to put in
        the clip (see ``cameos()``), ``speech`` one of them whose voice drives it; ``dialogue`` a line
        spoken in that voice (or the only cameo's) by the server's voice model. Raises APIError for a
        bad request (403 for a cameo this key's user may not use, or whose voice its owner keeps).
        """
        body: dict[str, Any] = {"prompt": prompt}
        if isinstance(size, (tuple, list)):
            size = f"{int(size[0])}x{int(size[1])}"
        optional = {
            "seconds": None if seconds is None else f"{seconds:g}" if isinstance(seconds, (int, float)) else seconds,
            "size": size,
            "model": model,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "fps": fps,
            "style": style,
            "backend": backend,
            "audio": audio,
            "cameos": list(cameos) if cameos else None,
            "speech": speech,
            "tier": tier,
            "dialogue": dialogue,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if image is not None:
            data = image if isinstance(image, bytes) else _read_file(image)
            body["input_reference"] = {
                "image_url": f"data:{_image_type(data)};base64,{base64.b64encode(data).decode('ascii')}"
            }
        return self._json("POST", "/v1/videos", body)

    def submit_storyboard(self, storyboard: str | dict[str, Any], **settings: Any) -> dict:
        """Queue a storyboard ('Shot 1 (2s): …' lines, YAML/JSON text, or a dict with 'shots'): one film.

        ``settings``: size, fps, model, backend, seed, steps, guidance, style, audio, negative_prompt, format.
        A bad storyboard raises APIError naming the lines at fault.
        """
        return self._json("POST", "/v1/storyboards", {"storyboard": storyboard, **_settings(settings)})

    def remix(
        self,
        job_id: str,
        prompt: str,
        *,
        strength: float | None = None,
        keep_audio: bool | None = None,
        **settings: Any,
    ) -> dict:
        """Queue a remix of a completed video: the same shot for ``prompt``; ``strength`` in (0, 1] says how far."""
        body = {"prompt": prompt, **_settings({"strength": strength, "keep_audio": keep_audio, **settings})}
        return self._json("POST", f"/v1/videos/{_quote(job_id)}/remix", body)

    def extend(self, job_id: str, seconds: float, *, prompt: str | None = None, **settings: Any) -> dict:
        """Queue a longer copy of a completed video: ``seconds`` more, continued from its last frames."""
        body = {"seconds": seconds, **_settings({"prompt": prompt, **settings})}
        return self._json("POST", f"/v1/videos/{_quote(job_id)}/extend", body)

    def get(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/videos/{_quote(job_id)}")

    def list(self, *, limit: int = 20, after: str | None = None, order: str = "desc") -> dict:
        """One page: {"data": [...], "has_more": bool, "last_id": ...}; pass ``after=page["last_id"]`` for the next."""
        query = {"limit": limit, "order": order, **({"after": after} if after else {})}
        return self._json("GET", "/v1/videos?" + urllib.parse.urlencode(query))

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued job, or stop a running one within one step; ``wait`` then raises JobCancelled."""
        return self._json("POST", f"/v1/videos/{_quote(job_id)}/cancel")

    def delete(self, job_id: str) -> dict:
        """Delete the job and its files (a running job is cancelled first)."""
        return self._json("DELETE", f"/v1/videos/{_quote(job_id)}")

    def events(self, job_id: str, *, timeout: float = 60.0) -> Iterator[tuple[str, dict]]:
        """Yield ``(event, data)`` from the job's server-sent events until its final event.

        First comes ``("video", job)`` as it is now, then ``progress`` events, then
        ``completed``/``failed``/``cancelled`` with the job (or ``deleted``).
        ``timeout`` bounds the silence between events (the server pings every 15 s).
        """
        response = self._open("GET", f"/v1/videos/{_quote(job_id)}/events", timeout=timeout, accept="text/event-stream")
        with response:
            name = "message"
            data_lines: list[str] = []
            while True:
                try:
                    raw = response.readline()
                except (OSError, http.client.HTTPException) as error:
                    raise ServerUnavailable(f"lost the event stream from {self.base_url}: {error}") from None
                if not raw:
                    return  # the server closed the stream (e.g. it is shutting down)
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data_lines:
                        yield name, json.loads("\n".join(data_lines))
                        if name in FINAL_EVENTS:
                            return
                    name, data_lines = "message", []
                elif line.startswith(":"):
                    continue
                else:
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if key == "event":
                        name = value
                    elif key == "data":
                        data_lines.append(value)

    def wait(
        self,
        job_id: str,
        *,
        progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        reconnect_for: float = 30.0,
    ) -> dict:
        """Block until the job finishes; return it if completed, else raise JobFailed or JobCancelled.

        ``progress`` gets a Progress for every step (from server-sent events;
        polling, with percent only, if the stream is unavailable). A server that
        restarts meanwhile is waited for up to ``reconnect_for`` seconds.
        Raises WaitTimeout after ``timeout`` seconds (the job goes on).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            job = self._wait_events(job_id, progress, deadline)
        except (ServerUnavailable, _StreamUnavailable):
            job = None
        if job is None:
            job = self._wait_polling(job_id, progress, deadline, poll_interval, reconnect_for)
        return _settle(job)

    def _wait_events(self, job_id: str, progress: Callable | None, deadline: float | None) -> dict | None:
        silence = 60.0 if deadline is None else max(0.1, min(60.0, deadline - time.monotonic()))
        try:
            stream = self.events(job_id, timeout=silence)
            for name, data in stream:
                if name == "progress" and progress is not None:
                    preview = data.get("preview_jpeg_base64")
                    progress(
                        Progress(
                            job_id,
                            data["step"],
                            data["total"],
                            data.get("stage", ""),
                            data.get("progress", 0),
                            base64.b64decode(preview) if preview else None,
                        )
                    )
                elif name in ("completed", "failed", "cancelled"):
                    return data
                elif name == "deleted":
                    raise JobFailed(
                        f"job {job_id} was deleted",
                        {"id": job_id, "status": "failed", "error": {"code": "deleted", "message": "deleted"}},
                    )
                if deadline is not None and time.monotonic() > deadline:
                    raise WaitTimeout(f"job {job_id} did not finish within the timeout; it goes on")
        except APIError as error:
            # No events endpoint (an OpenAI-compatible server that is not kinema), or no such job:
            # polling tells the two apart.
            if error.status in (404, 405):
                raise _StreamUnavailable() from None
            raise
        except ServerUnavailable as error:
            if "timed out" in str(error) and deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} did not finish within the timeout; it goes on") from None
            raise
        return None  # stream ended early: fall back to polling

    def _wait_polling(
        self, job_id: str, progress: Callable | None, deadline: float | None, interval: float, reconnect_for: float
    ) -> dict:
        last_seen, unreachable_since = None, None
        while True:
            try:
                job = self.get(job_id)
                unreachable_since = None
            except ServerUnavailable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > reconnect_for:
                    raise
                job = None
            if job is not None:
                if job["status"] in ("completed", "failed"):
                    return job
                info = job.get("kinema") or {}
                seen = (job.get("progress"), info.get("step"))
                if progress is not None and job["status"] == "in_progress" and seen != last_seen:
                    last_seen = seen
                    progress(
                        Progress(
                            job_id,
                            info.get("step", 0),
                            info.get("total", 0),
                            info.get("stage", ""),
                            job.get("progress", 0),
                            None,
                        )
                    )
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} did not finish within the timeout; it goes on")
            time.sleep(interval)

    def download(self, job_id: str, path: str | os.PathLike[str], *, variant: str = "video") -> str:
        """Save the clip (or ``variant="thumbnail"``, a PNG) to ``path`` atomically; return the path.

        The file appears complete or not at all: it is written to a hidden temp
        file beside ``path`` and renamed, so a player or OBS never sees half a clip.
        """
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.part")
        query = urllib.parse.urlencode({"variant": variant})
        response = self._open("GET", f"/v1/videos/{_quote(job_id)}/content?{query}", accept="*/*")
        try:
            with response, open(temp, "wb") as handle:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
                expected = response.headers.get("Content-Length")
                if expected is not None and handle.tell() != int(expected):
                    raise ServerUnavailable(f"download of {job_id} was cut short ({handle.tell()} of {expected} bytes)")
            os.replace(temp, path)
        except BaseException as error:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(error, (OSError, http.client.HTTPException)) and not isinstance(error, ClientError):
                raise ServerUnavailable(f"download of {job_id} failed: {error}") from None
            raise
        return path

    def generate(
        self,
        prompt: str,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> str:
        """Submit, wait and download in one call; ``fields`` are ``submit``'s keyword arguments."""
        job = self.submit(prompt, **fields)
        self.wait(job["id"], progress=progress, timeout=timeout)
        return self.download(job["id"], path)


class _StreamUnavailable(Exception):
    pass


def _settle(job: dict) -> dict:
    if job.get("status") == "completed":
        return job
    error = job.get("error") or {}
    message = error.get("message") or "the job failed"
    if error.get("code") == "cancelled":
        raise JobCancelled(f"job {job.get('id')} was cancelled", job)
    raise JobFailed(f"job {job.get('id')} failed: {message}", job)


def _http_error(error: urllib.error.HTTPError) -> ClientError:
    try:
        detail = json.loads(error.read() or b"{}").get("error") or {}
    except (ValueError, AttributeError, OSError):
        detail = {}
    message = detail.get("message") or f"HTTP {error.code} {error.reason}"
    if error.code == 401:
        return AuthenticationError(f"{message} (set KINEMA_API_KEY, or pass api_key=, to the server's key)")
    cls = NotFoundError if error.code == 404 else APIError
    return cls(message, status=error.code, code=detail.get("code"), param=detail.get("param"))


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    size = settings.get("size")
    if isinstance(size, (tuple, list)):
        settings = {**settings, "size": f"{int(size[0])}x{int(size[1])}"}
    return {key: value for key, value in settings.items() if value is not None}


def _schema_tiers(schema: Any) -> tuple[tuple[str, ...], str] | None:
    """``(names, default)`` of the ``tier`` properties in an OpenAPI schema; None if it names no tiers."""
    components = schema.get("components") if isinstance(schema, dict) else None
    models = components.get("schemas") if isinstance(components, dict) else None
    if not isinstance(models, dict):
        return None

    def resolve(node: Any) -> dict:
        ref = node.get("$ref") if isinstance(node, dict) else None
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            node = models.get(ref.rsplit("/", 1)[-1])
        return node if isinstance(node, dict) else {}

    names: tuple[str, ...] = ()
    defaults = []
    # A video request's own first (a job's tier), then every other model with a `tier`.
    for name in ["VideoCreateParams", *(key for key in models if key != "VideoCreateParams")]:
        tier = resolve((resolve(models.get(name)).get("properties") or {}).get("tier"))
        if not tier:
            continue
        if isinstance(tier.get("default"), str):
            defaults.append(tier["default"])
        for option in [tier, *(resolve(o) for key in ("anyOf", "oneOf", "allOf") for o in tier.get(key) or ())]:
            enum = option.get("enum")
            if not names and isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
                names = tuple(enum)
    if not names:
        return None
    default = next((value for value in defaults if value in names), None)
    if default is None:
        default = DEFAULT_TIER if DEFAULT_TIER in names else names[0]
    return names, default


def _multipart(fields: builtins.list[tuple[str, str]], files: builtins.list[tuple[str, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body of text ``fields`` and ``files`` (field, path), and its Content-Type."""
    boundary = "kinema-" + secrets.token_hex(16)
    parts: builtins.list[bytes] = []
    for key, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode())
        parts.append(value.encode("utf-8") + b"\r\n")
    for key, path in files:
        filename = os.path.basename(path).replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
        parts.append((head + "Content-Type: application/octet-stream\r\n\r\n").encode("utf-8"))
        parts.append(_read_file(path) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _quote(job_id: str) -> str:
    return urllib.parse.quote(str(job_id), safe="")


def _read_file(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"  # the server says what is wrong with it


# --------------------------------------------------------------------------- starting a server


def ensure_server(
    python: str | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    log_path: str | None = None,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    stop_with_caller: bool = False,
    background: bool = False,
) -> Client:
    """Return a Client for a healthy server at ``url``, starting ``kinema serve`` if none answers.

    ``python`` is the interpreter kinema is installed in (default: ``KINEMA_PYTHON``);
    ``client.process`` is the Popen of a server this call started. That server keeps
    running after this process exits, unless ``stop_with_caller``: then it stops when
    this process ends, cleanly or not, because it watches a pipe only this process
    holds open (keep ``client.process`` referenced: dropping it closes the pipe).
    With port 0 in ``url`` the server picks a free port. Its output goes to
    ``log_path`` (default: a file in the temp directory).

    ``background`` is for hosts that must keep their own frame rate (OBS): the
    server runs at a lower CPU priority than the caller (``nice`` +10; below
    normal on Windows) and with one CPU core fewer for torch's threads
    (``OMP_NUM_THREADS``, unless the environment sets it), so that the host's
    threads win the CPU while a clip is made.
    """
    client = Client(url, api_key=api_key)
    parsed = urllib.parse.urlsplit(client.base_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port if parsed.port is not None else 8765
    if port != 0:
        try:
            _check_health(client)
            return client
        except ServerUnavailable:
            pass
    python = python or os.environ.get("KINEMA_PYTHON")
    if not python:
        raise ServerStartError(
            f"no kinema server at {client.base_url}, and no Python to start one with: pass python= or set"
            " KINEMA_PYTHON to the interpreter kinema is installed in"
        )
    if log_path is None:
        log_path = os.path.join(tempfile.gettempdir(), f"kinema-serve-{port or secrets.token_hex(4)}.log")
    command = [python, "-m", "kinema.cli", "serve", "--host", host, "--port", str(port), *extra_args]
    if stop_with_caller:
        command.append("--stop-with-stdin")
    server_env = dict(os.environ if env is None else env)
    if background:
        server_env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
        nice = shutil.which("nice") if os.name != "nt" else None
        if nice:  # every thread the server starts inherits it
            if shutil.which(python) is None:
                raise ServerStartError(f"cannot run {python}: no such program")
            command = [nice, "-n", str(BACKGROUND_NICE), *command]
    if api_key:
        server_env["KINEMA_API_KEY"] = api_key
    options: dict[str, Any] = {}
    if os.name == "nt":
        options["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
            subprocess, "CREATE_NO_WINDOW", 0
        )
        if background:
            options["creationflags"] |= getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0)
    else:
        options["start_new_session"] = True  # Ctrl-C in the host's terminal is for the host, not the server
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if stop_with_caller else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env,
                close_fds=True,
                **options,
            )
        except OSError as error:
            raise ServerStartError(f"cannot run {python}: {error}") from None
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServerStartError(f"kinema serve exited with code {code}:\n{_tail(log_path)}")
        if port == 0:
            match = _READY_LINE.search(_tail(log_path, 64 * 1024))
            if match:
                client.base_url = match[1]
        if port != 0 or match:
            try:
                _check_health(client)
                client.process = process
                return client
            except ServerUnavailable:
                pass
        if time.monotonic() > deadline:
            process.kill()
            raise ServerStartError(f"kinema serve was not healthy after {timeout:g} s:\n{_tail(log_path)}")
        time.sleep(0.2)


def _check_health(client: Client) -> None:
    try:
        health = client.health()
    except APIError as error:
        raise ClientError(f"{client.base_url} answers, but it is not a kinema server ({error})") from None
    if not isinstance(health, dict) or health.get("status") != "ok":
        raise ClientError(f"{client.base_url} answers, but it is not a healthy kinema server: {health!r}")


def _tail(path: str, size: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


# Below requires-python on purpose: this file is copied into hosts' own Pythons (Blender, OBS), which are
# not bound by it, and there the guard names the need instead of failing later on some syntax.
if sys.version_info < (3, 9):  # noqa: UP036  # pragma: no cover
    raise ImportError("kinema's client needs Python 3.9 or newer")
