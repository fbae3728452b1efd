"""Waiting on the job server from tests: poll a video until it is final."""

from __future__ import annotations

import time


def wait_final(client, video_id: str, timeout: float = 180.0, headers: dict | None = None) -> dict:
    """``client`` is an httpx-style client of the server (TestClient or httpx.Client); ``headers`` carry a key."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = client.get(f"/v1/videos/{video_id}", headers=headers).json()
        if video["status"] in ("completed", "failed"):
            return video
        time.sleep(0.05)
    raise AssertionError(f"{video_id} did not finish: {video}")
