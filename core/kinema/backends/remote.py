"""``remote:NAME``: a job sent to another server that speaks OpenAI's ``/v1/videos`` (vLLM-Omni, SGLang, another kinema).

Remotes are named in ``$KINEMA_HOME/remotes.json`` (or ``remotes.yaml``), one entry a name::

    {"gpu-box": {"url": "http://gpu-box:8091", "engine": "vllm-omni",
                 "model": "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "api_key_env": "GPU_BOX_KEY"}}

The API key is read from the environment variable the entry names, never from the file: an entry holding a key is
refused. Each entry registers the backend ``remote:NAME``, so the CLI, the server and the hosts use it like any other.

The job is created with ``POST /v1/videos``, followed by polling ``GET /v1/videos/{id}`` (its ``progress``, 0-100,
becomes kinema's progress), fetched with ``GET /v1/videos/{id}/content`` and checked before kinema keeps it: it must
decode, and last what was asked (within ``LENGTH_TOLERANCE``). A cancel sends ``DELETE /v1/videos/{id}`` (kinema and
vLLM-Omni stop the job); where the far side cannot, the job is abandoned there and cancelled here. A cameo is sent
only when its owner allowed remote use (``kinema cameo allow NAME --remote``) and it is verified: its portrait goes
as the first frame (``input_reference``), as ltx2 takes a cameo here. Voices are never sent: /v1/videos has no field
for a speech line, so speech and dialogue lines run only on this machine's backends.

Only the standard library speaks HTTP here (urllib), so a remote needs no extra package.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kinema.backends.base import Backend, BackendStatus, Defaults, Plan
from kinema.cameo.store import CameoNotAllowedError, authorize_request, requester
from kinema.clip import Clip
from kinema.errors import GenerationCancelled, InvalidRequestError, KinemaError
from kinema.home import kinema_home
from kinema.hookspecs import hookimpl
from kinema.media.files import MediaError, encode_png, read_mp4
from kinema.media.temps import workspace
from kinema.progress import CancelToken, Progress

if TYPE_CHECKING:
    from kinema.request import GenerationRequest

PREFIX = "remote:"
CONFIG_FILES = ("remotes.json", "remotes.yaml", "remotes.yml")
ENGINES = ("kinema", "vllm-omni", "sglang", "openai")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
ENV_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A returned clip may differ from the asked length by the far model's frame grid (Wan: 4k+1 frames, LTX-2: 8k+1).
LENGTH_TOLERANCE = (0.5, 0.1)  # seconds, and a fraction of the asked length: whichever is larger
REQUEST_TIMEOUT = 60.0  # one HTTP exchange
MAX_DOWNLOAD_BYTES = 4 * 2**30
_KEYS = {
    "url",
    "engine",
    "model",
    "api_key_env",
    "poll_seconds",
    "timeout_seconds",
    "delete_after",
    "extra_fields",
    "defaults",
    "description",
}
# What each engine's create takes besides OpenAI's prompt, model, size and seconds (from its documented API), and
# whether it must be a multipart form (vLLM-Omni documents only forms; SGLang documents JSON).
_ENGINE_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "kinema": (
        "multipart",
        {"fps": "fps", "steps": "steps", "guidance": "guidance", "seed": "seed", "negative_prompt": "negative_prompt"},
    ),
    "vllm-omni": (
        "multipart",
        {
            "width": "width",
            "height": "height",
            "num_frames": "num_frames",
            "fps": "fps",
            "steps": "num_inference_steps",
            "guidance": "guidance_scale",
            "seed": "seed",
            "negative_prompt": "negative_prompt",
        },
    ),
    "sglang": ("json", {}),
    "openai": ("multipart", {}),
}


class RemoteError(KinemaError):
    """The remote server could not be reached, refused the job, failed it, or returned something kinema refuses."""


@dataclass(frozen=True)
class Remote:
    """One entry of remotes.json, checked."""

    name: str
    url: str  # the server's root, without /v1
    engine: str = "openai"
    model: str | None = None  # the far side's model name; None: the far side's default
    api_key_env: str | None = None
    poll_seconds: float = 2.0
    timeout_seconds: float = 6 * 3600.0
    delete_after: bool = True  # remove the far copy once kinema holds the clip
    extra_fields: dict[str, Any] = field(default_factory=dict)
    defaults: Defaults = Defaults(width=832, height=480, fps=16, seconds=5.0, steps=40, guidance=5.0)
    description: str = ""
    problem: str | None = None  # why the entry cannot be used, shown by `kinema backends` and on use

    @property
    def origin(self) -> str:
        """The URL without any user:password, path or query: what provenance and messages name."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise RemoteError(
                f"remote {self.name!r} needs an API key: set the environment variable {self.api_key_env}"
                " (remotes.json names the variable, never the key)"
            )
        return key


def config_path(home: Path | None = None) -> Path | None:
    """The remotes file in use (the first of ``CONFIG_FILES`` that exists), else None."""
    home = home or kinema_home()
    return next((home / name for name in CONFIG_FILES if (home / name).is_file()), None)


def load_remotes(home: Path | None = None) -> list[Remote]:
    """Every remote in the data directory's remotes file; an unusable entry comes back with its ``problem``.

    Raises ``RemoteError`` when the file itself cannot be read.
    """
    path = config_path(home)
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (OSError, ValueError) as error:
        raise RemoteError(f"{path} cannot be read: {error}") from None
    except Exception as error:  # yaml's errors
        raise RemoteError(f"{path} cannot be read: {error}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise RemoteError(f"{path} must map remote names to their settings, got {type(data).__name__}")
    return [_entry(str(name), settings, path) for name, settings in data.items()]


def _entry(name: str, settings: Any, path: Path) -> Remote:
    try:
        return _parse_entry(name, settings)
    except InvalidRequestError as error:
        shown = name if NAME_PATTERN.match(name) else "invalid"
        return Remote(shown, "http://invalid", problem=f"{path.name}: remote {name!r}: {error}")


def _parse_entry(name: str, settings: Any) -> Remote:
    if not NAME_PATTERN.match(name):
        raise InvalidRequestError("a name is lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(settings, dict):
        raise InvalidRequestError(f"settings must be an object, got {type(settings).__name__}")
    if "api_key" in settings or "key" in settings:
        raise InvalidRequestError(
            "holds an API key; remove it and name an environment variable that holds it with api_key_env"
        )
    unknown = sorted(set(settings) - _KEYS)
    if unknown:
        raise InvalidRequestError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    url = settings.get("url")
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"url must be http(s)://HOST[:PORT], got {url!r}")
    if parts.username or parts.password:
        raise InvalidRequestError("url holds a user or password; put the key in the variable api_key_env names")
    root = str(url).rstrip("/").removesuffix("/v1")
    engine = settings.get("engine", "openai")
    if engine not in ENGINES:
        raise InvalidRequestError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    env = settings.get("api_key_env")
    if env is not None and not (isinstance(env, str) and ENV_PATTERN.match(env)):
        raise InvalidRequestError(f"api_key_env must name an environment variable, got {env!r}")
    model = settings.get("model")
    if model is not None and not (isinstance(model, str) and model.strip()):
        raise InvalidRequestError(f"model must be the far side's model name, got {model!r}")
    poll = _seconds(settings, "poll_seconds", 0.01)
    timeout = _seconds(settings, "timeout_seconds", 1.0)
    extra = settings.get("extra_fields", {})
    if not isinstance(extra, dict) or not all(isinstance(v, (str, int, float, bool)) for v in extra.values()):
        raise InvalidRequestError("extra_fields must map field names to plain values")
    defaults = Remote.defaults
    given = settings.get("defaults", {})
    if not isinstance(given, dict) or set(given) - set(Defaults.__dataclass_fields__):
        raise InvalidRequestError(f"defaults may set {', '.join(Defaults.__dataclass_fields__)}")
    defaults = replace(defaults, **given)
    return Remote(
        name=name,
        url=root,
        engine=engine,
        model=model,
        api_key_env=env,
        delete_after=bool(settings.get("delete_after", True)),
        extra_fields=dict(extra),
        defaults=defaults,
        description=str(settings.get("description", "")),
        poll_seconds=poll,
        timeout_seconds=timeout,
    )


def _seconds(settings: dict, key: str, low: float) -> float:
    value = settings.get(key, getattr(Remote, key))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise InvalidRequestError(f"{key} must be a number of seconds of at least {low:g}, got {value!r}")
    return float(value)


class RemoteBackend(Backend):
    """A backend that forwards each job to a ``/v1/videos`` server; one instance per configured remote."""

    name: ClassVar[str] = "remote"
    description: ClassVar[str] = "a server that speaks /v1/videos"
    defaults: ClassVar[Defaults] = Remote.defaults
    size_multiple = 16  # what video models need at least; the far side snaps further, and the clip says what it made
    frame_multiple = 1
    min_frames = 1
    supports_image = True
    supports_remix = False
    max_start_frames = 0
    max_cameos = 1  # its portrait as the first frame, only with its owner's remote permission (plan checks it)
    supports_speech = False
    makes_audio = True  # when the far model makes sound; a silent clip stays silent
    remote: Remote

    def __init__(self, remote: Remote, model: str | None = None):
        self.remote = remote
        self.model_id = model or remote.model or ""

    @classmethod
    def for_remote(cls, remote: Remote) -> RemoteBackend:
        """A backend named ``remote:NAME`` with the remote's defaults (its own class: names are class attributes)."""
        subclass = type(
            "RemoteBackend",
            (cls,),
            {
                "name": PREFIX + remote.name,
                "description": remote.description
                or f"{remote.engine} at {remote.origin}" + (f" running {remote.model}" if remote.model else ""),
                "defaults": remote.defaults,
            },
        )
        return subclass(remote)

    def for_model(self, model: str) -> RemoteBackend:
        """The same remote asked for another of its models (``--model``)."""
        return type(self)(self.remote, model)

    def status(self) -> BackendStatus:
        remote = self.remote
        if remote.problem:
            return BackendStatus(False, remote.problem, device=self.name)
        if remote.api_key_env and not os.environ.get(remote.api_key_env):
            return BackendStatus(False, f"set {remote.api_key_env} to the API key of {remote.origin}", self.name)
        # Not contacted here: listing backends must stay offline and quick. A worker of its own in the server.
        return BackendStatus(True, f"{remote.engine} at {remote.origin} (not contacted until a job)", device=self.name)

    def require_weights(self, request: GenerationRequest | None = None) -> None:
        """The weights are the far side's."""

    def plan(self, request: GenerationRequest) -> Plan:
        if self.remote.problem:
            raise InvalidRequestError(self.remote.problem)
        voices = [
            what
            for what, given in (("a speech line", request.speech is not None), ("a dialogue line", request.dialogue))
            if given
        ]
        if voices:
            raise InvalidRequestError(
                f"backend {self.name!r} is another server: kinema never sends a voice to one (/v1/videos has no"
                f" field for it), so speech and dialogue lines run only on this machine's backends; drop"
                f" {' and '.join(voices)} or pick a local backend"
            )
        if request.cameos:
            if request.image is not None:
                raise InvalidRequestError(
                    f"backend {self.name!r} sends a cameo as the clip's first frame, so it cannot also take an image;"
                    " drop one of them"
                )
            require_remote(authorize_request(request), requester(request))
        if request.start_frames is not None:
            raise InvalidRequestError(f"backend {self.name!r} cannot extend a clip yet; pick a local backend")
        return super().plan(request)

    def generate(
        self,
        request: GenerationRequest,
        plan: Plan,
        *,
        progress: Callable[[Progress], None],
        cancel: CancelToken,
        conditioning: Any = None,
    ) -> Clip:
        client = _Client(self.remote)
        cancel.raise_if_cancelled()
        image = request.image
        cameos = conditioning.cameos if conditioning else ()
        if cameos:
            require_remote(cameos, requester(request))  # consent as the job starts: allowed then, allowed still
            image = cameos[0].reference_images()[0]
        video = client.create(self._fields(request, plan), image=image)
        video_id = str(video.get("id") or "")
        if not video_id:
            raise RemoteError(f"remote {self.remote.name!r} answered the create without a video id: {video!r}")
        try:
            video = self._wait(client, video, progress, cancel)
            clip = self._fetch(client, video_id, request, plan)
            if cameos:  # the clip's provenance says whose likeness left this machine, and to where
                clip.metadata["remote"]["cameos_sent"] = [c.name for c in cameos]
        except GenerationCancelled:
            raise GenerationCancelled(f"generation cancelled; {client.cancel(video_id)}") from None
        if self.remote.delete_after:
            client.delete_quietly(video_id)
        return clip

    def _fields(self, request: GenerationRequest, plan: Plan) -> dict[str, Any]:
        remote = self.remote
        fields: dict[str, Any] = {
            "prompt": request.prompt,
            "size": f"{plan.width}x{plan.height}",
            "seconds": f"{plan.seconds:g}",
        }
        if self.model_id:
            fields["model"] = self.model_id
        values = {
            "width": plan.width,
            "height": plan.height,
            "num_frames": plan.num_frames,
            "fps": float(plan.fps),
            "steps": plan.steps,
            "guidance": plan.guidance,
            "seed": plan.seed,
            "negative_prompt": request.negative_prompt or None,
        }
        for ours, theirs in _ENGINE_FIELDS[remote.engine][1].items():
            if values[ours] is not None:
                fields[theirs] = values[ours]
        if remote.engine == "kinema" and not request.audio:
            fields["audio"] = False
        fields.update(remote.extra_fields)
        return fields

    def _wait(self, client: _Client, video: dict, progress: Callable[[Progress], None], cancel: CancelToken) -> dict:
        remote = self.remote
        deadline = time.monotonic() + remote.timeout_seconds
        reported = -1
        while True:
            status = video.get("status")
            percent = video.get("progress")
            if isinstance(percent, (int, float)) and not isinstance(percent, bool) and int(percent) > reported:
                reported = max(0, min(100, int(percent)))
                progress(Progress(step=reported, total=100))
            if status == "completed":
                return video
            if status in ("failed", "cancelled", "canceled", "expired"):
                raise RemoteError(f"remote {remote.name!r} ({remote.origin}) {_failure(video)}")
            if time.monotonic() > deadline:
                client.cancel(str(video["id"]))
                raise RemoteError(
                    f"remote {remote.name!r} did not finish video {video['id']} within {remote.timeout_seconds:g} s"
                    " (timeout_seconds in remotes.json); it was cancelled there where the server allows"
                )
            _sleep(remote.poll_seconds, cancel)
            video = client.get(str(video["id"]))

    def _fetch(self, client: _Client, video_id: str, request: GenerationRequest, plan: Plan) -> Clip:
        remote = self.remote
        with workspace() as folder:
            path = client.download(video_id, folder / "remote.mp4")
            try:
                frames, fps, audio, sample_rate, _tags = read_mp4(path)
            except MediaError as error:
                reason = str(error).replace(str(path), "the file")
                raise RemoteError(
                    f"remote {remote.name!r} returned video {video_id} as a file that does not decode ({reason});"
                    " kinema did not keep it"
                ) from None
        got = len(frames) / fps
        allowed = max(LENGTH_TOLERANCE[0], LENGTH_TOLERANCE[1] * plan.seconds)
        if abs(got - plan.seconds) > allowed:
            raise RemoteError(
                f"remote {remote.name!r} returned video {video_id} lasting {float(got):.2f} s ({len(frames)} frames"
                f" at {float(fps):g} fps) where {plan.seconds:.2f} s was asked; kinema did not keep it"
            )
        notes = []
        if (frames.shape[2], frames.shape[1]) != (plan.width, plan.height):
            notes.append(f"{remote.name} made {frames.shape[2]}x{frames.shape[1]} for {plan.width}x{plan.height}")
        if audio is not None and not request.audio:
            audio, sample_rate = None, None
        if not _ENGINE_FIELDS[remote.engine][1]:
            notes.append(
                f"{remote.engine} was sent prompt, size and seconds only: steps, guidance and seed are its own"
            )
        metadata = {
            "remote": {
                "name": remote.name,
                "engine": remote.engine,
                "url": remote.origin,
                "model": self.model_id or None,
                "video_id": video_id,
            },
            "notes": notes,
        }
        return Clip(frames, fps, audio, sample_rate, metadata)


def require_remote(cameos: Any, user: str) -> None:
    """Raises ``CameoNotAllowedError`` unless every one of ``cameos`` may go to another server for ``user``."""
    for cameo in cameos:
        allowed, reason, message = cameo.may_send_remote(user)
        if not allowed:
            raise CameoNotAllowedError(message, reason)


def _failure(video: dict) -> str:
    error = video.get("error")
    if not isinstance(error, dict):
        error = {}
    message = error.get("message") or "gave no reason"
    code = f" [{error['code']}]" if error.get("code") else ""
    return f"failed video {video.get('id')}: {message}{code}"


def _sleep(seconds: float, cancel: CancelToken) -> None:
    """Wait ``seconds``, waking at once (GenerationCancelled) on a cancel."""
    end = time.monotonic() + seconds
    while True:
        cancel.raise_if_cancelled()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


class _Client:
    """The few ``/v1/videos`` calls a remote needs, over urllib."""

    def __init__(self, remote: Remote):
        self.remote = remote
        self.key = remote.api_key()

    def create(self, fields: dict[str, Any], image: Any = None) -> dict:
        form, _ = _ENGINE_FIELDS[self.remote.engine]
        if image is not None or form == "multipart":
            files = {"input_reference": ("input.png", encode_png(image), "image/png")} if image is not None else {}
            body, content_type = _multipart(fields, files)
        else:
            body, content_type = json.dumps(fields).encode(), "application/json"
        return self._json("POST", "/v1/videos", body, content_type, what="create a video")

    def get(self, video_id: str) -> dict:
        return self._json("GET", f"/v1/videos/{_quote(video_id)}", what=f"read video {video_id}")

    def download(self, video_id: str, path: Path) -> Path:
        with self._open("GET", f"/v1/videos/{_quote(video_id)}/content", what=f"download video {video_id}") as answer:
            size = 0
            with open(path, "wb") as handle:
                while chunk := answer.read(2**20):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise RemoteError(
                            f"remote {self.remote.name!r} sent more than {MAX_DOWNLOAD_BYTES // 2**30} GiB for"
                            f" video {video_id}; kinema did not keep it"
                        )
                    handle.write(chunk)
        return path

    def cancel(self, video_id: str) -> str:
        """Stop the far job where the server can (DELETE); what happened, in words."""
        try:
            self._json("DELETE", f"/v1/videos/{_quote(video_id)}", what=f"cancel video {video_id}")
        except RemoteError as error:
            return f"remote {self.remote.name!r} could not stop video {video_id}, so it was abandoned there ({error})"
        return f"remote {self.remote.name!r} stopped and deleted video {video_id}"

    def delete_quietly(self, video_id: str) -> None:
        with contextlib.suppress(RemoteError):  # the far copy stays; kinema has its own
            self._json("DELETE", f"/v1/videos/{_quote(video_id)}", what="delete")

    def _json(self, method: str, path: str, body: bytes | None = None, content_type: str = "", *, what: str) -> dict:
        with self._open(method, path, body, content_type, what=what) as answer:
            raw = answer.read(2**22)
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise RemoteError(
                f"remote {self.remote.name!r} answered '{what}' with something that is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise RemoteError(
                f"remote {self.remote.name!r} answered '{what}' with {type(data).__name__}, not an object"
            )
        return data

    def _open(self, method: str, path: str, body: bytes | None = None, content_type: str = "", *, what: str) -> Any:
        remote = self.remote
        headers = {"Accept": "application/json", "User-Agent": "kinema-remote"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(remote.url + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT)
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            raise RemoteError(
                f"remote {remote.name!r} ({remote.origin}) refused to {what}: HTTP {error.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RemoteError(
                f"cannot reach remote {remote.name!r} at {remote.origin} to {what}: {reason}; is its server running?"
            ) from None


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The far side's own message: OpenAI's ``error.message``, FastAPI's ``detail``, else the start of the body."""
    try:
        raw = error.read(2**16)
    except OSError:
        raw = b""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300] or str(error.reason)
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            code = f" [{inner['code']}]" if inner.get("code") else ""
            return f"{inner['message']}{code}"
        if data.get("detail"):
            return str(data["detail"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    return json.dumps(data)[:300]


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _multipart(fields: dict[str, Any], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = f"kinema-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode())
    for name, (filename, data, media_type) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {media_type}\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@hookimpl
def register_backends(register):
    """``remote:NAME`` for each entry of the remotes file; a file that cannot be read registers none (``kinema
    remotes`` says why)."""
    try:
        remotes = load_remotes()
    except RemoteError:
        return
    for remote in remotes:
        register(RemoteBackend.for_remote(remote))


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command("remotes")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def remotes_command(as_json: bool) -> None:
        """The servers named in KINEMA_HOME/remotes.json, each usable as --backend remote:NAME.

        Example: kinema remotes --json
        """
        path = config_path()
        try:
            remotes = load_remotes()
        except RemoteError as error:
            raise click.ClickException(str(error)) from None
        rows = [
            {
                "backend": PREFIX + r.name,
                "engine": r.engine,
                "url": r.origin,
                "model": r.model,
                "api_key_env": r.api_key_env,
                "ready": RemoteBackend(r).status().ready if not r.problem else False,
                "problem": r.problem or (RemoteBackend(r).status().detail if r.api_key_env else None),
            }
            for r in remotes
        ]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        if not rows:
            click.echo(
                f"No remotes: name servers that speak /v1/videos in {kinema_home() / CONFIG_FILES[0]}"
                ' as {"NAME": {"url": "http://HOST:PORT", "engine": "vllm-omni", "model": "...",'
                ' "api_key_env": "VARIABLE"}} (see the README).'
            )
            return
        click.echo(f"From {path}:")
        for row in rows:
            state = "ready" if row["ready"] else f"not ready: {row['problem']}"
            click.echo(
                f"  {row['backend']}  {row['engine']} at {row['url']}  model {row['model'] or '(default)'}  {state}"
            )
