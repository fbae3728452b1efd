"""Talks to the kinema server on worker threads, so Blender's UI never waits on the network.

Nothing here imports bpy: Blender data may only be touched on the main thread.
Each job's thread submits, follows progress, downloads and posts plain
``Update`` messages to a queue; the add-on's timer drains that queue on the main
thread (session.py), which is the only place that changes Blender data.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
import traceback
from typing import Any

from . import clipfiles

try:
    from . import kinema_client as api
except ImportError as error:  # pragma: no cover - a hand-copied plugins/blender folder
    raise ImportError(
        "kinema_client.py is missing from the add-on: build and install it with `kinema install blender`"
        " instead of copying plugins/blender by hand"
    ) from error

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How to reach a server, read from the add-on preferences on the main thread."""

    url: str = ""
    start_local: bool = False
    python: str = ""
    api_key: str = ""
    stop_with_blender: bool = True  # a server this add-on starts ends with Blender, even if Blender crashes

    @property
    def shown_url(self) -> str:
        return (self.url or api.DEFAULT_URL).rstrip("/")


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs for one clip; built on the main thread, never changed."""

    prompt: str
    fields: dict  # Client.submit keyword arguments
    output_dir: str
    stem: str
    image: bytes | None = None
    storyboard: dict | None = None  # markers.storyboard_from_markers: one film instead of one clip
    follow_up: dict | None = None  # {"action": "extend"|"remix", "parent": server id, ...}: a new clip from that one


@dataclasses.dataclass(frozen=True)
class Update:
    """``job`` is the add-on's job number, or 0 for news about the server itself."""

    job: int
    changes: dict


def find_kinema_python(environ=None) -> str:
    """The interpreter kinema is installed in, for starting a server; "" if none is found.

    ``KINEMA_PYTHON`` first, else the Python of the ``kinema`` command on PATH (its
    script's ``#!`` line, or the python.exe beside kinema.exe on Windows). Nothing
    is run: this is called on Blender's main thread.
    """
    environ = os.environ if environ is None else environ
    explicit = environ.get("KINEMA_PYTHON", "").strip()
    if explicit:
        return explicit
    command = shutil.which("kinema", path=environ.get("PATH"))
    return interpreter_of(command) if command else ""


def interpreter_of(script: str) -> str:
    """The Python a console script (``kinema``) runs in, or ""."""
    folder = os.path.dirname(script)
    if script.lower().endswith(".exe"):  # Windows: Scripts\kinema.exe beside Scripts\python.exe
        python = os.path.join(folder, "python.exe")
        return python if os.path.isfile(python) else ""
    try:
        with open(script, "rb") as file:
            head = file.read(1024).decode("utf-8", "replace")
    except OSError:
        return ""
    # pip writes "#!/venv/bin/python", or, for paths with spaces, a /bin/sh line that execs "/venv/bin/python".
    match = re.search(r"""exec' "([^"]+)"|^#!(\S+)$""", head, re.MULTILINE)
    python = (match.group(1) or match.group(2)) if match else ""
    if python and os.path.basename(python) not in ("env", "sh") and os.path.isfile(python):
        return python
    sibling = os.path.join(folder, "python")
    return sibling if os.path.isfile(sibling) else ""


def is_local_url(url: str) -> bool:
    """True for loopback URLs (no name lookup: this runs while Blender draws)."""
    from urllib.parse import urlsplit

    host = (urlsplit(url if "//" in url else f"http://{url}").hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class PythonUnknown(api.ServerStartError):
    """No Python with kinema is set or found, so no server can be started: the panel asks for one."""


def start_failure_reason(text: str) -> str:
    """Why ``kinema serve`` did not start, from a ServerStartError's text (its first line, then the server's log).

    The log's last ``Error: ...`` line (what kinema's command line prints), else the
    last exception line of a traceback, else its last line.
    """
    head, _, log = text.partition("\n")
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line[len("Error:") :].strip() for line in lines if line.startswith("Error:")]
    exceptions = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*", line)]
    reason = (errors or exceptions or lines or [""])[-1]
    head = head.rstrip(":")
    return f"{reason} ({head})" if reason else head


def describe(error: BaseException, settings: ServerSettings) -> str:
    """One line a Blender user can act on."""
    if isinstance(error, api.ServerUnavailable):
        if settings.start_local:
            return f"The kinema server at {settings.shown_url} stopped answering; press Generate again to restart it"
        return (
            f"No kinema server at {settings.shown_url}: run `kinema serve`, or turn on 'Start a local server'"
            " in the add-on preferences"
        )
    if isinstance(error, PythonUnknown):
        return str(error)
    if isinstance(error, api.ServerStartError):
        return f"Could not start the kinema server: {start_failure_reason(str(error))}"
    if isinstance(error, api.AuthenticationError):
        return "The kinema server wants an API key: set it in the add-on preferences"
    if isinstance(error, api.JobCancelled):
        return "Cancelled"
    if isinstance(error, api.ClientError):
        return str(error).splitlines()[0]
    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return f"Could not save the clip{where}: {error.strerror or error}"
    return f"Unexpected {type(error).__name__}: {error} (details in the system console)"


def server_error(error: BaseException, settings: ServerSettings) -> dict:
    """The panel's server line for ``error``; ``ask_python``: show the 'Python with kinema' field there."""
    return {"state": "error", "message": describe(error, settings), "ask_python": isinstance(error, PythonUnknown)}


class Connection:
    """The one server all jobs share: found at the URL, or started once from the configured Python."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: api.Client | None = None
        self._settings: ServerSettings | None = None
        self.started: Any = None  # the Popen of a server this add-on started

    def client(self, settings: ServerSettings, post) -> api.Client:
        with self._lock:
            if self._client is not None and self._settings == settings:
                return self._client
            key = settings.api_key or None
            if settings.start_local:
                if not settings.python:
                    raise PythonUnknown(
                        f"No kinema server at {settings.shown_url}, and kinema was not found on this computer:"
                        " choose 'Python with kinema' (the interpreter of the environment where kinema is"
                        " installed, e.g. ~/kinema/.venv/bin/python), or run `kinema serve` yourself"
                    )
                post(Update(0, {"state": "starting", "message": f"Starting a kinema server at {settings.shown_url}…"}))
                client = api.ensure_server(
                    python=settings.python,
                    url=settings.url or None,
                    api_key=key,
                    stop_with_caller=settings.stop_with_blender,
                )
                if client.process is not None:
                    self.started = client.process
            else:
                client = api.Client(settings.url or None, api_key=key)
                client.health()
            self._client, self._settings = client, settings
            try:
                catalogue = client.models()
            except api.ClientError:
                catalogue = []  # only suggestions for the panel, and the preferences' model list
            models = [row["id"] for row in catalogue if row.get("role") != "component"]
            try:
                # The id names one cameo for everyone (names are only unique per user); older servers lack it.
                cameos = [row.get("character_id") or row["id"] for row in client.cameos() if row.get("usable")]
            except api.ClientError:
                cameos = []  # a server from before cameos
            tiers, default_tier = client.tiers()  # the copied client's own if the server cannot say
            post(
                Update(
                    0,
                    {
                        "state": "connected",
                        "message": "",
                        "ask_python": False,
                        "url": client.base_url,
                        "models": models,
                        "catalogue": catalogue,
                        "cameos": cameos,
                        "tiers": list(tiers),
                        "default_tier": default_tier,
                    },
                )
            )
            return client

    def forget(self) -> None:
        """After the server went away: look (or start) again next time."""
        with self._lock:
            self._client = None

    def stop_started_server(self) -> bool:
        process, self.started = self.started, None
        if process is None or process.poll() is not None:
            return False
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return True


class Runner:
    """Starts one daemon thread per job; ``drain()`` hands their updates to the main thread."""

    def __init__(self) -> None:
        self.connection = Connection()
        self._updates: queue.SimpleQueue[Update] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._cancel: dict[int, threading.Event] = {}
        self._server_ids: dict[int, str] = {}

    def post(self, update: Update) -> None:
        self._updates.put(update)

    def drain(self) -> list[Update]:
        updates = []
        while True:
            try:
                updates.append(self._updates.get_nowait())
            except queue.Empty:
                return updates

    def start(self, job: int, spec: JobSpec, settings: ServerSettings) -> None:
        with self._lock:
            self._cancel[job] = threading.Event()
        thread = threading.Thread(target=self._run, args=(job, spec, settings), name=f"kinema-job-{job}", daemon=True)
        thread.start()

    def cancel(self, job: int, settings: ServerSettings) -> None:
        """Ask the job to stop: at once if not yet queued, else on the server (off the main thread)."""
        with self._lock:
            event = self._cancel.get(job)
            server_id = self._server_ids.get(job)
        if event is None or event.is_set():
            return
        event.set()
        if server_id is not None:
            threading.Thread(
                target=self._cancel_on_server, args=(job, server_id, settings), daemon=True, name=f"kinema-cancel-{job}"
            ).start()

    def connect(self, settings: ServerSettings) -> None:
        """Find (or start) the server now, off the main thread; the outcome arrives as an Update for job 0."""

        def work():
            try:
                self.connection.client(settings, self.post)
            except (api.ClientError, OSError) as error:
                self.connection.forget()
                if isinstance(error, api.ServerStartError):
                    print(f"kinema: {error}")
                self.post(Update(0, server_error(error, settings)))

        threading.Thread(target=work, name="kinema-connect", daemon=True).start()

    def list_models(self, settings: ServerSettings) -> None:
        """The server's models, with licences and whether each is installed, for the preferences (off the main
        thread); arrives as an Update for job 0 (``catalogue``, or ``models_message`` saying why not)."""

        def work():
            try:
                client = self.connection.client(settings, self.post)
                self.post(Update(0, {"catalogue": client.models(), "models_message": ""}))
            except (api.ClientError, OSError) as error:
                self.connection.forget()
                self.post(Update(0, {"models_message": describe(error, settings)}))

        threading.Thread(target=work, name="kinema-models", daemon=True).start()

    def pull_model(self, model: str, accept_license: bool, settings: ServerSettings, poll_seconds: float = 0.5) -> None:
        """Ask the server to download ``model``, then follow it: each poll arrives as an Update for job 0 with
        ``pull`` (the server's ModelPull), and the model list again once it ends."""

        def work():
            try:
                client = self.connection.client(settings, self.post)
                pull = client.pull_model(model, accept_license=accept_license)
                self.post(Update(0, {"pull": pull}))
                while pull.get("status") in ("queued", "downloading"):
                    time.sleep(poll_seconds)
                    pull = client.model_pull(model)
                    self.post(Update(0, {"pull": pull}))
                self.post(Update(0, {"catalogue": client.models()}))
            except (api.ClientError, OSError) as error:
                failed = {
                    "model": model,
                    "status": "failed",
                    "progress": None,
                    "error": {"message": describe(error, settings)},
                }
                self.post(Update(0, {"pull": failed}))

        threading.Thread(target=work, name=f"kinema-pull-{model}", daemon=True).start()

    # -- worker side

    def _cancel_on_server(self, job: int, server_id: str, settings: ServerSettings) -> None:
        try:
            self.connection.client(settings, self.post).cancel(server_id)
        except api.APIError as error:
            if error.code != "already_final":
                self.post(Update(job, {"message": describe(error, settings)}))
        except (api.ClientError, OSError) as error:
            self.post(Update(job, {"message": f"Could not cancel: {describe(error, settings)}"}))

    def _run(self, job: int, spec: JobSpec, settings: ServerSettings) -> None:
        post = self.post
        cancelled = self._cancel[job]
        try:
            post(Update(job, {"status": "connecting"}))
            client = self.connection.client(settings, post)
            if cancelled.is_set():
                post(Update(job, {"status": "cancelled", "message": "Cancelled"}))
                return
            if spec.storyboard is not None:
                video = client.submit_storyboard(spec.storyboard, **spec.fields)
            elif spec.follow_up is not None:
                video = self._follow_up(client, spec)
            else:
                video = client.submit(spec.prompt, image=spec.image, **spec.fields)
            with self._lock:
                self._server_ids[job] = video["id"]
            post(Update(job, {"status": "queued", "video": video}))
            if cancelled.is_set():  # pressed while submitting
                self._cancel_on_server(job, video["id"], settings)

            def on_progress(progress) -> None:
                post(
                    Update(
                        job,
                        {
                            "status": "running",
                            "progress": progress.percent / 100.0,
                            "stage": progress.stage,
                            "step": progress.step,
                            "total": progress.total,
                            **({"preview": progress.preview_jpeg} if progress.preview_jpeg else {}),
                        },
                    )
                )

            video = client.wait(video["id"], progress=on_progress)
            post(Update(job, {"status": "downloading", "progress": 1.0, "video": video}))
            path = self._download(client, video["id"], spec)
            if cancelled.is_set():  # too late for the server; drop the clip as asked
                os.unlink(path)
                post(Update(job, {"status": "cancelled", "message": "Cancelled"}))
                return
            post(Update(job, {"status": "completed", "path": path}))
        except api.JobCancelled:
            post(Update(job, {"status": "cancelled", "message": "Cancelled"}))
        except (api.ClientError, OSError) as error:
            message = describe(error, settings)
            if isinstance(error, (api.ServerUnavailable, api.ServerStartError, api.AuthenticationError)):
                self.connection.forget()
                post(Update(0, server_error(error, settings)))
            if isinstance(error, api.ServerStartError):
                print(f"kinema: {error}")  # the server's log tail, for the system console
            post(Update(job, {"status": "failed", "message": message}))
        except Exception as error:  # a bug must reach the panel, not end the thread silently
            traceback.print_exc()
            post(Update(job, {"status": "failed", "message": describe(error, settings)}))
        finally:
            with self._lock:
                self._server_ids.pop(job, None)

    @staticmethod
    def _follow_up(client, spec: JobSpec) -> dict:
        follow = spec.follow_up or {}
        try:
            if follow["action"] == "extend":
                return client.extend(follow["parent"], follow["seconds"], prompt=follow.get("prompt"), **spec.fields)
            return client.remix(
                follow["parent"],
                spec.prompt,
                strength=follow.get("strength"),
                keep_audio=follow.get("keep_audio"),
                **spec.fields,
            )
        except api.NotFoundError:
            raise api.ClientError(
                f"The server no longer has the clip of '{follow.get('parent_strip')}' ({follow['parent']}):"
                " regenerate it, or use Image to Video from its frame"
            ) from None

    @staticmethod
    def _download(client, server_id: str, spec: JobSpec) -> str:
        os.makedirs(spec.output_dir, exist_ok=True)
        staging = os.path.join(spec.output_dir, f".{spec.stem}.{secrets.token_hex(4)}.download")
        client.download(server_id, staging)  # itself atomic: staging appears complete or not at all
        try:
            return clipfiles.claim(staging, spec.output_dir, spec.stem)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
