"""Put a clip on air in a running OBS over obs-websocket 5 (``kinema obs play`` / ``kinema obs generate --play``).

One Media Source per target scene, "Kinema Clip (<scene>)", created in that
scene if missing and fitted to the canvas; playing a clip switches its file,
which OBS shows about 0.15 s later. A source of its own per scene means a clip
sent to one scene never shows in another, and each scene keeps where the
streamer put it; the OBS script (plugins/obs/kinema_obs.py) names and finds
its sources the same way, so the two share them. The client is ``simpleobsws``
(MIT), an optional dependency: ``pip install 'kinema[obs]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from kinema.errors import KinemaError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4455
INPUT_NAME = "Kinema Clip"  # the per-scene sources are "Kinema Clip (<scene>)": see input_for_scene
INPUT_KIND = "ffmpeg_source"
SUBSCRIBE_MEDIA_INPUTS = 1 << 8  # obs-websocket EventSubscription.MediaInputs
CLOSE_AUTHENTICATION_FAILED = 4009
RESOURCE_NOT_FOUND = 600  # obs-websocket RequestStatus
CONNECT_HELP = "OBS: Tools → WebSocket Server Settings → Show Connect Info"


class ObsError(KinemaError):
    """Talking to OBS failed; the message says what to do."""


class ObsNotRunning(ObsError):
    """Nothing (or no obs-websocket) answers at the address."""


class ObsAuthError(ObsError):
    """obs-websocket refused the password (or wanted one)."""


class ObsSceneMissing(ObsError):
    """The scene named does not exist."""


@dataclass
class PlayResult:
    path: str
    scene: str
    input_name: str
    created: bool  # the media source was made now
    on_air: bool  # the scene is live, so the clip plays now (else when the scene is shown)
    started_after: float | None  # seconds from switching the file to OBS's "playback started"


def input_for_scene(scene: str) -> str:
    """The name of the media source kinema plays clips through in ``scene`` (the OBS script uses the same)."""
    return f"{INPUT_NAME} ({scene})"


def play(
    path: str | os.PathLike,
    *,
    scene: str | None = None,
    input_name: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    password: str | None = None,
    wait: bool = True,
    timeout: float = 10.0,
) -> PlayResult:
    """Show ``path`` in OBS: create or reuse the scene's media source (default: ``input_for_scene(scene)``)
    in ``scene`` (default: the live scene) and play it.

    With ``wait``, returns once OBS reports playback started (if the scene is live).
    Raises ObsNotRunning, ObsAuthError, ObsSceneMissing or ObsError.
    """
    clip = Path(path).expanduser().resolve()
    if not clip.is_file():
        raise ObsError(f"{clip} does not exist")
    return asyncio.run(_play(str(clip), scene, input_name, host, port, password, wait, timeout))


class _Session:
    """A connected, identified obs-websocket session."""

    def __init__(self, client: Any, simpleobsws: Any) -> None:
        self.client = client
        self.simpleobsws = simpleobsws

    @overload
    async def call(
        self, request_type: str, data: dict | None = None, *, allow_missing: Literal[False] = False
    ) -> dict: ...

    @overload
    async def call(self, request_type: str, data: dict | None = None, *, allow_missing: bool) -> dict | None: ...

    async def call(self, request_type: str, data: dict | None = None, *, allow_missing: bool = False) -> dict | None:
        """The request's response data; None only where ``allow_missing`` and OBS has no such resource."""
        try:
            response = await self.client.call(self.simpleobsws.Request(request_type, data), timeout=10)
        except self.simpleobsws.MessageTimeout:
            raise ObsError(f"OBS did not answer {request_type} within 10 s; is it frozen?") from None
        if response.ok():
            return response.responseData or {}
        status = response.requestStatus
        if allow_missing and status.code == RESOURCE_NOT_FOUND:
            return None
        comment = f": {status.comment}" if status.comment else ""
        raise ObsError(f"OBS refused {request_type} (code {status.code}){comment}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the connection may already be gone; nothing to report
            await self.client.disconnect()


async def connect(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    password: str | None = None,
    *,
    subscriptions: int = 0,
    timeout: float = 5.0,
) -> _Session:
    """Open and identify a session; turn every way that can fail into one clear ObsError."""
    try:
        import simpleobsws
        import websockets
    except ImportError:
        raise ObsError("`kinema obs` needs the obs-websocket client: pip install 'kinema[obs]'") from None
    url = f"ws://{_url_host(host)}:{port}"
    client = simpleobsws.WebSocketClient(
        url=url,
        password=password or "",
        identification_parameters=simpleobsws.IdentificationParameters(eventSubscriptions=subscriptions),
    )
    not_running = (
        f"OBS is not running at {url}, or its WebSocket server is off: start OBS and tick"
        " Tools → WebSocket Server Settings → Enable WebSocket server (the port must match --port)"
    )
    try:
        await asyncio.wait_for(client.connect(), timeout)
    except (OSError, asyncio.TimeoutError):
        raise ObsNotRunning(not_running) from None
    except websockets.exceptions.InvalidHandshake as error:
        raise ObsNotRunning(
            f"something answers at {url}, but it is not obs-websocket 5 ({error}): check --port"
            " against OBS: Tools → WebSocket Server Settings"
        ) from None
    deadline = time.monotonic() + timeout
    while not client.identified:
        if not client.ws_open or time.monotonic() > deadline:
            code = getattr(client.ws, "close_code", None) if client.ws is not None else None
            wants_password = bool((client.hello_message or {}).get("authentication"))
            await _drop(client)
            if code == CLOSE_AUTHENTICATION_FAILED or (wants_password and not client.ws_open):
                if not password:
                    raise ObsAuthError(
                        f"OBS at {url} wants a password: pass --password or set OBS_WEBSOCKET_PASSWORD ({CONNECT_HELP})"
                    )
                raise ObsAuthError(f"OBS at {url} refused the password: copy the right one from {CONNECT_HELP}")
            if code is not None:
                raise ObsError(f"OBS at {url} closed the connection (code {code})")
            raise ObsNotRunning(f"obs-websocket at {url} did not finish the handshake within {timeout:g} s")
        await asyncio.sleep(0.01)
    return _Session(client, simpleobsws)


async def _drop(client: Any) -> None:
    with contextlib.suppress(Exception):  # already closed by the server
        await client.disconnect()


async def _play(
    path: str,
    scene: str | None,
    input_name: str | None,
    host: str,
    port: int,
    password: str | None,
    wait: bool,
    timeout: float,
) -> PlayResult:
    session = await connect(host, port, password, subscriptions=SUBSCRIBE_MEDIA_INPUTS)
    started = asyncio.Event()

    async def on_started(data: dict | None) -> None:
        if (data or {}).get("inputName") == input_name:
            started.set()

    session.client.register_event_callback(on_started, "MediaInputPlaybackStarted")
    try:
        scene = await _target_scene(session, scene)
        if input_name is None:
            input_name = input_for_scene(scene)
            await _adopt_renamed(session, scene, input_name)
        existing = await session.call("GetInputSettings", {"inputName": input_name}, allow_missing=True)
        if existing is not None and existing.get("inputKind") != INPUT_KIND:
            raise ObsError(
                f"OBS has an input named {input_name!r} that is a {existing.get('inputKind')}, not a"
                " Media Source: rename it, or pass --input with another name"
            )
        settings = {"local_file": path, "is_local_file": True, "looping": False}
        switched = time.monotonic()
        if existing is None:
            created = await session.call(
                "CreateInput",
                {
                    "sceneName": scene,
                    "inputName": input_name,
                    "inputKind": INPUT_KIND,
                    "sceneItemEnabled": True,
                    "inputSettings": {
                        **settings,
                        "restart_on_activate": True,
                        "clear_on_media_end": True,
                        "close_when_inactive": False,
                    },
                },
            )
            await _fit_to_canvas(session, scene, created["sceneItemId"])
        else:
            item = await session.call(
                "GetSceneItemId", {"sceneName": scene, "sourceName": input_name}, allow_missing=True
            )
            if item is None:
                item = await session.call(
                    "CreateSceneItem", {"sceneName": scene, "sourceName": input_name, "sceneItemEnabled": True}
                )
                await _fit_to_canvas(session, scene, item["sceneItemId"])
            switched = time.monotonic()
            await session.call(
                "SetInputSettings", {"inputName": input_name, "inputSettings": settings, "overlay": True}
            )
        active = (await session.call("GetSourceActive", {"sourceName": input_name})).get("videoActive", False)
        started_after = None
        if wait and active:
            try:
                await asyncio.wait_for(started.wait(), timeout)
            except asyncio.TimeoutError:
                status = await session.call("GetMediaInputStatus", {"inputName": input_name})
                raise ObsError(
                    f"OBS did not start playing {path} within {timeout:g} s (media state"
                    f" {status.get('mediaState')}); check that OBS can read the file"
                ) from None
            started_after = time.monotonic() - switched
        return PlayResult(path, scene, input_name, existing is None, bool(active), started_after)
    finally:
        await session.close()


async def _adopt_renamed(session: _Session, scene: str, input_name: str) -> None:
    """After a scene was renamed, its "Kinema Clip (<old name>)" takes the new name instead of gaining a twin."""
    if await session.call("GetInputSettings", {"inputName": input_name}, allow_missing=True) is not None:
        return
    items = (await session.call("GetSceneItemList", {"sceneName": scene})).get("sceneItems", [])
    for item in items:
        name = item.get("sourceName", "")
        if item.get("inputKind") == INPUT_KIND and name.startswith(f"{INPUT_NAME} (") and name.endswith(")"):
            await session.call("SetInputName", {"inputName": name, "newInputName": input_name})
            return


async def _target_scene(session: _Session, scene: str | None) -> str:
    listing = await session.call("GetSceneList")
    names = [entry["sceneName"] for entry in listing.get("scenes", [])]
    if scene is None:
        return listing["currentProgramSceneName"]
    if scene not in names:
        known = ", ".join(repr(n) for n in reversed(names)) or "none"
        raise ObsSceneMissing(f"OBS has no scene {scene!r} (its scenes: {known}); pass --scene with one of them")
    return scene


async def _fit_to_canvas(session: _Session, scene: str, item_id: int) -> None:
    """Scale the clip to fit the canvas, centred, whatever its size."""
    video = await session.call("GetVideoSettings")
    await session.call(
        "SetSceneItemTransform",
        {
            "sceneName": scene,
            "sceneItemId": item_id,
            "sceneItemTransform": {
                "positionX": 0.0,
                "positionY": 0.0,
                "alignment": 5,
                "boundsType": "OBS_BOUNDS_SCALE_INNER",
                "boundsAlignment": 0,
                "boundsWidth": float(video["baseWidth"]),
                "boundsHeight": float(video["baseHeight"]),
            },
        },
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
