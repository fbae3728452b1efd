"""A real OBS Studio, headless and offline, for tests/test_obs.py and benchmarks/obs_on_air.py.

Everything lives in a fresh loopback-only network namespace (OBS calls its
services host at every start; obs-websocket listens on every interface):
Xvfb, OBS with a throwaway HOME and config, and ``kinema serve``. The test
process reaches into the namespace in two ways: subprocesses under
``nsenter`` (the ``kinema obs`` CLI), and :class:`NamespaceLoop`, one thread
that joined the namespace and runs an asyncio loop for obs-websocket calls.
Teardown kills every process in the namespace by PID; there are no others,
because the namespace was made here.

Needs root (``unshare --net``), ``obs``, ``Xvfb``, ``ip`` and ``nsenter``.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import contextlib
import ctypes
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

OBS_VERSION_29_0_2 = (29 << 24) | (0 << 16) | 2  # global.ini LastVersion: skips the first-run wizard
CLONE_NEWNET = 0x40000000
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\bError\b.*\.py\b|SyntaxError|ImportError")


def missing_tools() -> list[str]:
    """What this machine lacks to run the harness ([] = ready)."""
    missing = [tool for tool in ("obs", "Xvfb", "ip", "nsenter", "unshare") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (for unshare --net)")
    elif "unshare" not in missing:
        probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=30)
        if probe.returncode != 0:  # e.g. a container without CAP_SYS_ADMIN
            missing.append("permission to make network namespaces (unshare --net)")
    return missing


# --------------------------------------------------------------------------- the namespace


class Namespace:
    """A loopback-only network namespace held open by one ``sleep`` process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && exec sleep infinity"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        own = os.readlink("/proc/self/ns/net")
        while time.monotonic() < deadline:
            if self.holder.poll() is not None:
                raise RuntimeError(f"unshare --net exited with {self.holder.returncode}")
            try:
                ns = os.readlink(f"/proc/{self.holder.pid}/ns/net")
                cmdline = Path(f"/proc/{self.holder.pid}/cmdline").read_bytes()
            except OSError:
                ns, cmdline = own, b""
            if ns != own and cmdline.startswith(b"sleep"):
                self.id = ns
                self.path = f"/proc/{self.holder.pid}/ns/net"
                return
            time.sleep(0.02)
        self.holder.kill()
        raise RuntimeError("the network namespace did not come up within 10 s")

    def command(self, args: Iterable[str]) -> list[str]:
        """``args`` run inside the namespace."""
        return ["nsenter", f"--net={self.path}", "--", *map(str, args)]

    def popen(self, args: Iterable[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(args), **kwargs)

    def run(self, args: Iterable[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), **kwargs)

    def pids(self) -> list[int]:
        """Every process in the namespace (all of them were started here)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/net") == self.id:
                        found.append(int(entry))
                except OSError:
                    pass  # gone, or a kernel thread
        return found

    def close(self, grace: float = 5.0) -> None:
        """SIGTERM everything in the namespace, SIGKILL what is left after ``grace`` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = [p for p in self.pids() if p != self.holder.pid]
            for pid in pids:
                _signal(pid, sig)
            deadline = time.monotonic() + wait
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if _alive(p)]
                time.sleep(0.05)
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(5)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class NamespaceLoop:
    """An asyncio loop on a thread that joined ``namespace``: sockets it opens live there."""

    def __init__(self, namespace: Namespace) -> None:
        self.loop = asyncio.new_event_loop()
        ready: list[BaseException | None] = []
        started = threading.Event()

        def main() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(namespace.path, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                ready.append(None)
            except BaseException as error:  # reported to the constructor's caller
                ready.append(error)
                started.set()
                return
            asyncio.set_event_loop(self.loop)
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name="obs-namespace-loop", daemon=True)
        self.thread.start()
        started.wait(10)
        if not ready or ready[0] is not None:
            raise RuntimeError(f"could not join the namespace: {ready[0] if ready else 'timeout'}")

    def run(self, coroutine: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run a blocking function in the namespace (e.g. urllib against the kinema server)."""

        async def wrapper() -> Any:
            return function()

        return self.run(wrapper(), timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# --------------------------------------------------------------------------- Xvfb


class Display:
    """Xvfb with its framebuffer in a file (XWD), so screenshots need no X client."""

    def __init__(self, namespace: Namespace, workdir: Path, size: tuple[int, int] = (1280, 800)) -> None:
        self.fbdir = workdir / "xvfb"
        self.fbdir.mkdir(parents=True, exist_ok=True)
        read, write = os.pipe()
        with open(workdir / "xvfb.log", "wb") as log:  # the child keeps its own copy of the file
            self.process = namespace.popen(
                [
                    "Xvfb",
                    "-displayfd",
                    str(write),
                    "-screen",
                    "0",
                    f"{size[0]}x{size[1]}x24",
                    "-nolisten",
                    "tcp",
                    "-fbdir",
                    self.fbdir,
                    "-noreset",
                ],
                pass_fds=(write,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb did not start: {(workdir / 'xvfb.log').read_text()}")
        self.name = f":{number}"

    def screenshot(self) -> Any:
        """The screen as a PIL image (Xvfb's XWD framebuffer file, decoded here)."""
        return read_xwd(self.fbdir / "Xvfb_screen0")


def read_xwd(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    data = path.read_bytes()
    header = np.frombuffer(data[:100], ">u4")
    header_size, width, height = int(header[0]), int(header[4]), int(header[5])
    bits_per_pixel, bytes_per_line, ncolors = int(header[11]), int(header[12]), int(header[19])
    if bits_per_pixel != 32:
        raise ValueError(f"expected a 32-bit XWD framebuffer, got {bits_per_pixel} bits")
    offset = header_size + ncolors * 12
    pixels = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=offset)
    pixels = pixels.reshape(height, bytes_per_line)[:, : width * 4].reshape(height, width, 4)
    byte_order = int(header[7])  # 0 = LSBFirst: BGRX in memory
    rgb = pixels[..., [2, 1, 0]] if byte_order == 0 else pixels[..., [1, 2, 3]]
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


# --------------------------------------------------------------------------- OBS


def free_port(namespace_loop: NamespaceLoop | None = None) -> int:
    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return namespace_loop.call(pick) if namespace_loop else pick()


def write_obs_config(
    config_home: Path,
    *,
    websocket_port: int,
    password: str,
    scripts: Iterable[dict] = (),
    scenes: Iterable[str] = ("Scene",),
    canvas: tuple[int, int] = (640, 360),
    fps: int = 30,
) -> Path:
    """A complete first-run-free OBS configuration under ``config_home/obs-studio``."""
    root = config_home / "obs-studio"
    (root / "basic" / "profiles" / "kinema").mkdir(parents=True, exist_ok=True)
    (root / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
    (root / "plugin_config" / "obs-websocket").mkdir(parents=True, exist_ok=True)

    def ini(path: Path, sections: dict) -> None:
        parser = configparser.RawConfigParser()
        parser.optionxform = str  # OBS keys are case-sensitive
        for section, values in sections.items():
            parser[section] = {k: str(v) for k, v in values.items()}
        with open(path, "w") as handle:
            parser.write(handle, space_around_delimiters=False)

    ini(
        root / "global.ini",
        {
            "General": {
                "FirstRun": "true",
                "LastVersion": OBS_VERSION_29_0_2,
                "EnableAutoUpdates": "false",
                "Pre19Defaults": "false",
                "Pre21Defaults": "false",
                "Pre23Defaults": "false",
                "Pre24.1Defaults": "false",
                "MaxLogs": 3,
            },
            "Basic": {
                "Profile": "kinema",
                "ProfileDir": "kinema",
                "SceneCollection": "kinema",
                "SceneCollectionFile": "kinema",
                "ConfigOnNewProfile": "false",
            },
            "BasicWindow": {
                "PreviewEnabled": "false",
                "PreviewProgramMode": "false",
                "SysTrayEnabled": "false",
                "ShowTransitions": "false",
                "WarnBeforeStartingStream": "false",
                "WarnBeforeStoppingStream": "false",
                "RecordWhenStreaming": "false",
            },
            # obs-websocket 5.1.0 (OBS 29) reads these; newer versions read config.json below.
            "OBSWebSocket": {
                "FirstLoad": "false",
                "ServerEnabled": "true",
                "ServerPort": websocket_port,
                "AlertsEnabled": "false",
                "AuthRequired": "true",
                "ServerPassword": password,
            },
        },
    )
    (root / "plugin_config" / "obs-websocket" / "config.json").write_text(
        json.dumps(
            {
                "first_load": False,
                "server_enabled": True,
                "server_port": websocket_port,
                "alerts_enabled": False,
                "auth_required": True,
                "server_password": password,
            }
        )
    )
    ini(
        root / "basic" / "profiles" / "kinema" / "basic.ini",
        {
            "General": {"Name": "kinema"},
            "Video": {
                "BaseCX": canvas[0],
                "BaseCY": canvas[1],
                "OutputCX": canvas[0],
                "OutputCY": canvas[1],
                "FPSType": 1,
                "FPSInt": fps,
                "ScaleType": "bilinear",
                "ColorFormat": "NV12",
            },
            "Audio": {"SampleRate": 48000, "ChannelSetup": "Stereo"},
            "Output": {"Mode": "Simple"},
            "SimpleOutput": {
                "FilePath": str(config_home.parent / "recordings"),
                "RecFormat": "mkv",
                "RecQuality": "Stream",
                "VBitrate": 2500,
                "Preset": "veryfast",
            },
        },
    )
    (config_home.parent / "recordings").mkdir(parents=True, exist_ok=True)
    scene_names = list(scenes)
    collection = {
        "name": "kinema",
        "current_scene": scene_names[0],
        "current_program_scene": scene_names[0],
        "scene_order": [{"name": name} for name in scene_names],
        "sources": [
            {
                "id": "scene",
                "versioned_id": "scene",
                "name": name,
                "enabled": True,
                "volume": 1.0,
                "mixers": 0,
                "settings": {"items": [], "id_counter": 0, "custom_size": False},
                "private_settings": {},
            }
            for name in scene_names
        ],
        "groups": [],
        "transitions": [],
        "current_transition": "Cut",
        "transition_duration": 300,
        "modules": {"scripts-tool": list(scripts)},
    }
    (root / "basic" / "scenes" / "kinema.json").write_text(json.dumps(collection, indent=1))
    return root


class Obs:
    """OBS Studio 29 under Xvfb in ``namespace``, with obs-websocket on loopback behind a password."""

    def __init__(
        self,
        namespace: Namespace,
        workdir: Path,
        *,
        scripts: Iterable[dict] = (),
        scenes: Iterable[str] = ("Scene",),
        canvas: tuple[int, int] = (640, 360),
        fps: int = 30,
        port: int | None = None,
        password: str | None = None,
        env: dict | None = None,
        screen: tuple[int, int] = (1280, 800),
    ) -> None:
        self.namespace = namespace
        self.workdir = workdir
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_home = self.home / ".config"
        self.password = password or secrets.token_urlsafe(12)
        self.port = port or 4455
        self.canvas = canvas
        self.fps = fps
        self.root = write_obs_config(
            self.config_home,
            websocket_port=self.port,
            password=self.password,
            scripts=scripts,
            scenes=scenes,
            canvas=canvas,
            fps=fps,
        )
        self.display = Display(namespace, workdir, screen)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_RUNTIME_DIR": str(self._runtime_dir()),
            "DISPLAY": self.display.name,
            "LANG": "C.UTF-8",
            "LIBGL_ALWAYS_SOFTWARE": "1",
            "QT_QPA_PLATFORM": "xcb",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        self.stdout_path = workdir / "obs.stdout.log"
        with open(self.stdout_path, "wb") as log:  # the child keeps its own copy of the file
            self.process = namespace.popen(
                [
                    "obs",
                    "--collection",
                    "kinema",
                    "--profile",
                    "kinema",
                    "--multi",
                    "--disable-shutdown-check",
                    "--disable-missing-files-check",
                ],
                cwd=str(self.home),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _runtime_dir(self) -> Path:
        path = self.workdir / "runtime"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_path(self) -> Path | None:
        logs = sorted((self.root / "logs").glob("*.txt"), key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

    def log(self) -> str:
        """OBS's log file (what Help → Log Files shows)."""
        path = self.log_path()
        return path.read_text(errors="replace") if path else ""

    def output(self) -> str:
        """What OBS printed (the log again, plus messages from before the log file opened)."""
        return self.stdout_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            match = compiled.search(self.log())
            if match:
                return match
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"OBS exited with {self.process.returncode} before {pattern!r}:\n{self.output()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} in OBS's log after {timeout:g} s:\n{self.log()[-4000:]}")
            time.sleep(0.1)

    def script_errors(self) -> list[str]:
        """Lines of OBS's log that show a Python traceback or script error."""
        lines = (self.log() + "\n" + self.output()).splitlines()
        return [line for line in lines if TRACEBACK.search(line) or "[Python]" in line and "rror" in line]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (OBS's clean exit), then SIGKILL if it hangs; returns the exit code."""
        if self.process.poll() is None:
            _signal(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


# --------------------------------------------------------------------------- obs-websocket from the test process


class Websocket:
    """A simpleobsws connection made on a NamespaceLoop, with every event recorded."""

    def __init__(
        self, loop: NamespaceLoop, url: str, password: str, *, subscriptions: int | None = None, timeout: float = 30.0
    ) -> None:
        import simpleobsws

        self.loop = loop
        self.events: list[tuple[float, str, dict]] = []
        self.lock = threading.Lock()
        parameters = simpleobsws.IdentificationParameters(ignoreNonFatalRequestChecks=False)
        if subscriptions is not None:
            parameters.eventSubscriptions = subscriptions
        self.client = simpleobsws.WebSocketClient(url=url, password=password, identification_parameters=parameters)

        async def on_event(event_type: str, data: dict | None) -> None:
            with self.lock:
                self.events.append((time.monotonic(), event_type, data or {}))

        async def connect() -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await self.client.connect()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            self.client.register_event_callback(on_event)
            if not await self.client.wait_until_identified(timeout=10):
                raise RuntimeError(f"obs-websocket at {url} did not identify us")

        loop.run(connect(), timeout + 15)

    def call(self, request_type: str, data: dict | None = None, *, check: bool = True) -> dict:
        import simpleobsws

        response = self.loop.run(self.client.call(simpleobsws.Request(request_type, data)), 30)
        if check and not response.ok():
            raise AssertionError(f"{request_type}({data}) failed: {response.requestStatus}")
        return response.responseData or {} if response.ok() else {"_status": response.requestStatus}

    def events_of(self, event_type: str, since: float = 0.0) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, d) for t, kind, d in self.events if kind == event_type and t >= since]

    def wait_event(
        self,
        event_type: str,
        predicate: Callable[[dict], bool] = lambda d: True,
        *,
        since: float = 0.0,
        timeout: float = 60.0,
    ) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            for t, data in self.events_of(event_type, since):
                if predicate(data):
                    return t, data
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event_type} event within {timeout:g} s")
            time.sleep(0.02)

    def screenshot(self, source: str, width: int = 160) -> Any:
        """GetSourceScreenshot as a PIL image."""
        from PIL import Image

        data = self.call("GetSourceScreenshot", {"sourceName": source, "imageFormat": "png", "imageWidth": width})
        encoded = data["imageData"].split(",", 1)[1]
        return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")

    def close(self) -> None:
        with contextlib.suppress(Exception):  # OBS may be gone already; closing is best effort
            self.loop.run(self.client.disconnect(), 10)


# --------------------------------------------------------------------------- kinema serve in the namespace


class KinemaServer:
    """``kinema serve`` on a loopback port inside the namespace."""

    def __init__(
        self, namespace: Namespace, home: Path, port: int, *, python: str = sys.executable, env: dict | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.home = home
        self.log_path = home / "server.log"
        server_env = {
            **os.environ,
            "KINEMA_HOME": str(home),
            "KINEMA_LOAD_PLUGINS": "",
            "KINEMA_DEVICE": "cpu",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        server_env.pop("KINEMA_API_KEY", None)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the file
            self.process = namespace.popen(
                [python, "-m", "kinema.cli", "serve", "--port", str(port)],
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, loop: NamespaceLoop, timeout: float = 180.0) -> None:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout

        def healthy() -> bool:
            try:
                with opener.open(self.url + "/health", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        while not loop.call(healthy):
            if self.process.poll() is not None:
                raise RuntimeError(f"kinema serve exited:\n{self.log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"kinema serve not healthy after {timeout:g} s:\n{self.log_path.read_text()[-4000:]}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        if self.process.poll() is None:
            _signal(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                _signal(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


# --------------------------------------------------------------------------- everything together


SUBSCRIBE_ALL = 0x7FF  # obs-websocket's non-high-volume events
SUBSCRIBE_METERS = 1 << 16  # InputVolumeMeters, every 50 ms


class Rig:
    """A namespace with ``kinema serve`` in it, the OBS script installed by ``kinema install obs``, and OBS on demand."""

    def __init__(self, workdir: Path, kinema_home: Path, *, python: str = sys.executable) -> None:
        self.workdir = workdir
        self.python = python
        self.namespace = Namespace()
        self.obs: list[Obs] = []
        self.sockets: list[Websocket] = []
        try:
            self.loop = NamespaceLoop(self.namespace)
            self.server = KinemaServer(self.namespace, kinema_home, free_port(self.loop), python=python)
            self.script_dir = workdir / "obs-script"
            done = subprocess.run(
                [python, "-m", "kinema.cli", "install", "obs", "--dir", str(self.script_dir)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(f"kinema install obs failed:\n{done.stdout}{done.stderr}")
            self.install_output = done.stdout
            self.script = self.script_dir / "kinema_obs.py"
            self.server.wait_ready(self.loop)
        except BaseException:
            self.close()
            raise

    def script_settings(self, **overrides: Any) -> dict:
        """The script's settings for a tiny, quick clip from this rig's server."""
        return {
            "server_url": self.server.url,
            "start_local": False,
            "prompt": "a red fox running through snow",
            "seconds": 2.0,
            "size": "32x32",
            "steps": 2,
            "auto_play": True,
            "scene": "",
            "clips_dir": str(self.workdir / "clips"),
            **overrides,
        }

    def start_obs(
        self,
        name: str,
        *,
        settings: dict | None = None,
        scenes: Iterable[str] = ("Scene", "Other"),
        with_script: bool = True,
        extra_scripts: Iterable[Path] = (),
        timeout: float = 90.0,
        **options: Any,
    ) -> Obs:
        scripts = [{"path": str(self.script), "settings": settings or self.script_settings()}] if with_script else []
        scripts += [{"path": str(path), "settings": {}} for path in extra_scripts]
        instance = Obs(
            self.namespace, self.workdir / name, scripts=scripts, scenes=scenes, port=free_port(self.loop), **options
        )
        self.obs.append(instance)
        instance.wait_for_log(r"kinema: ready" if with_script else r"Switched to scene", timeout)
        return instance

    def connect(self, instance: Obs, *, meters: bool = False) -> Websocket:
        socket_ = Websocket(
            self.loop,
            instance.url,
            instance.password,
            subscriptions=SUBSCRIBE_ALL | (SUBSCRIBE_METERS if meters else 0),
        )
        self.sockets.append(socket_)
        return socket_

    def kinema(self, *args: str, env: dict | None = None, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """``kinema ARGS`` inside the namespace (so it reaches this OBS and server), with output captured."""
        full_env = {
            **os.environ,
            "KINEMA_HOME": str(self.server.home),
            "KINEMA_DEVICE": "cpu",
            "KINEMA_LOAD_PLUGINS": "",
            **(env or {}),
        }
        for name in [k for k, v in full_env.items() if v is None]:
            del full_env[name]
        return self.namespace.run(
            [self.python, "-m", "kinema.cli", *args], env=full_env, capture_output=True, text=True, timeout=timeout
        )

    def close(self) -> None:
        for socket_ in self.sockets:
            socket_.close()
        for instance in self.obs:
            instance.stop()
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.close()
        self.namespace.close()
