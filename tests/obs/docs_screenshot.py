"""Make docs/images/obs-script.png: the kinema script's properties in a real OBS, mid-generation.

    python tests/obs/docs_screenshot.py docs/images/obs-script.png

Runs the same headless rig as tests/test_obs.py (root, obs, Xvfb), plus xdotool
(apt install xdotool) to open Tools → Scripts. The picture is Xvfb's framebuffer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import obs_harness  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--prompt", default="fireworks over a lake at night, crackling and booming")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kinema-obs-shot-") as temp:
        work = Path(temp)
        home = work / "kinema-home"
        home.mkdir()
        from kinema.backends.tiny_parts import build_tiny

        build_tiny("ltx2", home / "models" / "kinema--tiny-ltx2")
        rig = obs_harness.Rig(work, home)
        try:
            settings = rig.script_settings(
                prompt=args.prompt, seconds=4.0, size="", steps=0, style="cinematic", backend="", start_local=True
            )
            instance = rig.start_obs("obs", settings=settings, screen=(1280, 1280))
            ws = rig.connect(instance)
            ws.call("TriggerHotkeyByName", {"hotkeyName": "kinema.generate"})
            wait_for_progress(rig, steps=2)
            window = open_scripts_dialog(rig, instance)
            time.sleep(1.5)  # let Qt paint
            x, y, width, height = window
            image = instance.display.screenshot().crop((x, y, x + width, y + height))
            args.output.parent.mkdir(parents=True, exist_ok=True)
            image.save(args.output, optimize=True)
            print(f"wrote {args.output} ({width}x{height})")
        finally:
            rig.close()


def wait_for_progress(rig: obs_harness.Rig, steps: int, timeout: float = 300.0) -> None:
    """Until the server's newest job has done ``steps`` denoising steps."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def step() -> int:
        with opener.open(f"{rig.server.url}/v1/videos?limit=1", timeout=10) as response:
            jobs = json.load(response)["data"]
        return (jobs[0].get("kinema") or {}).get("step", 0) if jobs else 0

    deadline = time.monotonic() + timeout
    while rig.loop.call(step) < steps:
        if time.monotonic() > deadline:
            raise TimeoutError("the generation made no progress")
        time.sleep(0.2)


def open_scripts_dialog(rig: obs_harness.Rig, instance: obs_harness.Obs) -> tuple[int, int, int, int]:
    """Tools → Scripts by mouse (OBS 29's layout at 1280x800), then make the dialog big; returns x, y, w, h."""

    def xdotool(*args: str) -> str:
        done = rig.namespace.run(
            ["xdotool", *args], env={"DISPLAY": instance.display.name}, capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()

    xdotool("mousemove", "378", "12", "click", "1")  # the Tools menu
    time.sleep(1.0)
    xdotool("mousemove", "389", "146", "click", "1")  # its Scripts item
    deadline = time.monotonic() + 15
    while not (found := xdotool("search", "--onlyvisible", "--name", "^Scripts$")):
        if time.monotonic() > deadline:
            raise RuntimeError("the Scripts dialog did not open (has OBS's menu layout changed?)")
        time.sleep(0.2)
    window = found.split()[0]
    width, height = 1100, 1250
    xdotool("windowmove", window, "0", "0")
    xdotool("windowsize", window, str(width), str(height))
    xdotool("mousemove", "1270", "1270")  # out of the picture
    return 0, 0, width, height


if __name__ == "__main__":
    main()
