"""No server path reaches a client: a full run through the API, every response body and header scanned.

One video made on the tiny backend with a cameo from a real face recording (create, events, content, thumbnail,
spritesheet, provenance), the cameo's create, list, detail, reference and uses, and an error of each kind
(400, 401, 403, 404, 405, 409, 413, 415, a broken style's 500, failed cameo captures and uploads). No answer may
hold the data directory's path, the home directory's, the test's temporary folders or the code's.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cameo_helpers import mark_verified

import kinema

cv2 = pytest.importorskip("cv2")  # kinema's own dependencies (opencv) and the test extra scikit-image
skimage_data = pytest.importorskip("skimage.data")

SMALL = {"size": "32x32", "seconds": "0.4", "steps": 2, "seed": 1}


def recording(folder: Path) -> Path:
    """2 s of one face (scikit-image's astronaut, panned), as tests/test_cameos.py records it."""
    from kinema.media.files import write_mp4

    image = skimage_data.astronaut()
    frames = np.stack([cv2.resize(image[20 + i : 340 + i, 70 + i : 390 + i], (256, 256)) for i in range(0, 40, 2)])
    return Path(write_mp4(folder / "person.mp4", frames, Fraction(10)))


def voice(folder: Path) -> Path:
    """3.2 s of a speech-like voice (15 harmonics of a gliding pitch, ~5 syllables a second)."""
    from kinema.media import speech

    rate = 24000
    t = np.arange(int(3.2 * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    signal = 0.3 * voiced * np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None) ** 0.6 / np.abs(voiced).max()
    return Path(speech.write_wav(folder / "voice.wav", signal.astype(np.float32), rate))


def png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class Recorder:
    """Every answer the client got: (what was asked, status, headers, body)."""

    def __init__(self, client):
        self.client = client
        self.seen: list[tuple[str, int, list[tuple[str, str]], bytes]] = []

    def __call__(self, method: str, url: str, **kwargs):
        response = self.client.request(method, url, **kwargs)
        self.seen.append((f"{method} {url}", response.status_code, list(response.headers.items()), response.content))
        return response

    def events(self, url: str, **kwargs) -> list[str]:
        with self.client.stream("GET", url, **kwargs) as response:
            body = response.read()  # the job is finished: its stream ends with its last event
        self.seen.append((f"GET {url}", response.status_code, list(response.headers.items()), body))
        return [line for line in body.decode().splitlines() if line.startswith("event: ")]


def server_paths(home: Path, basetemp: Path) -> set[str]:
    """What must not leak: the data directory (as given and resolved, its models folder's target too), the test's
    temporary folders, the home directory, the code's and Python's folders, the temporary folder's uploads."""
    paths = {home, home.resolve(), (home / "models").resolve(), basetemp, basetemp.resolve(), Path.home()}
    paths |= {Path(kinema.__file__).parent.parent, Path(sys.prefix), Path(tempfile.gettempdir()) / "kinema-"}
    return {str(path) for path in paths if len(str(path)) > 4}  # not "/" or "/tmp" alone


def test_no_response_holds_a_server_path(kinema_env, tmp_path, tmp_path_factory):
    from fastapi.testclient import TestClient

    from kinema.backends.tiny_parts import build_tiny
    from kinema.server.app import create_app
    from kinema.server.users import add_key

    target = kinema_env / "models" / "kinema--tiny-ltx2"
    if not (target / "model_index.json").is_file():
        build_tiny("ltx2", target)
    alice = {"Authorization": f"Bearer {add_key('alice')}"}
    bob = {"Authorization": f"Bearer {add_key('bob')}"}
    person, speech = recording(tmp_path).read_bytes(), voice(tmp_path).read_bytes()

    def files(video: bytes = person, audio: bytes = speech) -> dict:
        return {"video": ("person.mp4", video, "video/mp4"), "audio": ("voice.wav", audio, "audio/wav")}

    app = create_app(api_key=None, max_body_bytes=2_000_000)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        call = Recorder(client)

        # A cameo from a real face recording, and its failures.
        made = call("POST", "/v1/cameos", headers=alice, data={"name": "astro"}, files=files())
        assert made.status_code == 201, made.text
        widened = call("POST", "/v1/cameos/astro/permissions", headers=alice, json={"permission": "everyone"})
        assert widened.status_code == 403, widened.text  # unverified: alice's alone
        mark_verified("astro")
        assert call("POST", "/v1/cameos/astro/permissions", headers=alice, json={"permission": "everyone"}).is_success
        for name, upload, code in [
            ("noise", files(video=b"\x00not a video" * 100), 400),
            ("still", files(video=png(256)), 400),
            ("mute", files(audio=b"RIFF\x00\x00\x00\x00WAVEjunk"), 400),
            ("astro", files(), 409),
        ]:
            refused = call("POST", "/v1/cameos", headers=alice, data={"name": name}, files=upload)
            assert refused.status_code == code, refused.text
        assert call("POST", "/v1/cameos", headers=alice, content=b"not a form").status_code == 400

        # A video with it, made on the tiny backend, and everything about it.
        job = call("POST", "/v1/videos", headers=bob, json={"prompt": "astro waves", "cameos": ["astro"], **SMALL})
        assert job.status_code == 200, job.text
        video_id = job.json()["id"]
        deadline = time.monotonic() + 300
        while (video := call("GET", f"/v1/videos/{video_id}", headers=bob).json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert video["status"] == "completed", video
        assert call.events(f"/v1/videos/{video_id}/events", headers=bob)[-1] == "event: completed"
        for variant in ("video", "thumbnail", "spritesheet"):
            assert call("GET", f"/v1/videos/{video_id}/content?variant={variant}", headers=bob).status_code == 200
        assert call("GET", f"/v1/videos/{video_id}/provenance", headers=bob).status_code == 200
        assert call("GET", "/v1/videos", headers=bob).status_code == 200
        for path in ("/v1/cameos", "/v1/cameos/astro", "/v1/cameos/astro/reference", "/v1/cameos/astro/uses"):
            assert call("GET", path, headers=alice).status_code == 200, path
        assert call("GET", "/v1/cameos/astro/uses", headers=alice).json()["data"]
        for path in ("/health", "/v1/models", "/v1/styles", "/openapi.json"):
            assert call("GET", path).status_code == 200, path

        # Remix and extend it, upload a video to edit that is no video, and other mistakes of each kind.
        assert call("POST", f"/v1/videos/{video_id}/remix", headers=bob, json={"prompt": "astro jumps"}).is_success
        assert call("POST", f"/v1/videos/{video_id}/extend", headers=bob, json={"seconds": "0.2"}).is_success
        broken_upload = {"video": ("clip.mp4", b"\x00\x00\x00\x18ftypmp42 broken", "video/mp4")}
        edit = call("POST", "/v1/videos/edits", headers=bob, data={"prompt": "x"}, files=broken_upload)
        assert edit.status_code == 400, edit.text
        first_frame = {"input_reference": ("frame.png", b"\x89PNG\r\n\x1a\n broken", "image/png")}
        assert call("POST", "/v1/videos", data={"prompt": "x"}, files=first_frame).status_code == 400
        for method, path, kwargs, status in [
            ("POST", "/v1/videos", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
            ("POST", "/v1/videos", {"json": {"prompt": "x", "steps": 0}}, 400),
            ("POST", "/v1/videos", {"json": {"prompt": "x", "model": "../../etc/passwd"}}, 404),
            ("POST", "/v1/videos", {"json": {"prompt": "x", "cameos": ["astro"], "speech": "/etc/passwd"}}, 400),
            ("POST", "/v1/videos", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
            ("POST", "/v1/videos", {"json": {"prompt": "x" * 3_000_000}}, 413),
            ("GET", "/v1/videos/video_" + "0" * 32, {}, 404),
            ("GET", "/v1/videos/../../etc/passwd", {}, 404),
            ("GET", f"/v1/videos/{video_id}", {"headers": alice}, 404),  # bob's
            ("POST", f"/v1/videos/{video_id}/cancel", {"headers": bob}, 409),
            ("PUT", f"/v1/videos/{video_id}", {"headers": bob}, 405),
            ("GET", "/v1/cameos/nobody", {"headers": alice}, 404),
            ("GET", "/v1/cameos/astro/uses", {"headers": bob}, 403),
            ("DELETE", "/v1/cameos/astro", {"headers": bob}, 403),
            ("POST", "/v1/videos", {"json": {"prompt": "x", "style": "no-such-style"}}, 404),
        ]:
            response = call(method, path, **kwargs)
            assert response.status_code == status, (method, path, response.text)

        # A broken style file of the server's own: a 500 that names the file, not where it lives.
        styles = kinema_env / "styles"
        styles.mkdir(exist_ok=True)
        (styles / "broken.json").write_text("{ not json")
        listed = call("GET", "/v1/styles")
        assert listed.status_code == 500 and "broken.json" in listed.json()["error"]["message"], listed.text
        assert call("POST", "/v1/videos", json={"prompt": "x", "style": "broken"}).status_code in (400, 404, 500)
        (styles / "broken.json").unlink()

        assert call("DELETE", "/v1/cameos/astro", headers=alice).json()["deleted"]
        assert call("DELETE", f"/v1/videos/{video_id}", headers=bob).json()["deleted"]

    with TestClient(create_app(api_key="kinema-test-key"), base_url="http://127.0.0.1") as client:
        call.client = client
        assert call("GET", "/v1/videos", headers={"Authorization": "Bearer kinema-wrong-key"}).status_code == 401

    needles = server_paths(kinema_env, tmp_path_factory.getbasetemp())
    leaks = []
    for asked, status, headers, body in call.seen:
        for needle in needles:
            where = [name for name, value in headers if needle in value]
            if needle.encode() in body or json.dumps(needle)[1:-1].encode() in body:
                where.append("body")
            if where:
                leaks.append(f"{asked} -> {status}: {needle} in {', '.join(where)}")
    assert len(call.seen) > 40
    assert not leaks, "\n".join(leaks)
