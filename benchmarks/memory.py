"""Peak memory per memory policy, with the output compared to the fastest policy's.

A small random LTX-2 (8 layers) is saved to a folder once per scenario; then
each policy that runs on this machine's device loads it in a fresh process,
as kinema does (``from_pretrained``, then the policy), and generates one clip
with sound. Two scenarios: weight-bound (a 512-wide transformer, ~0.2 GB in
fp32, at 256x256) and decode-bound (a narrow transformer at 1024x1024, where
the VAE decode dominates). Reported per policy: peak RSS while generating
(Linux: the peak is reset after loading via /proc/self/clear_refs; weights
are memory-mapped, so they count once a run touches them), peak GPU memory
on CUDA, seconds, and frame PSNR / audio SNR against the first policy ("full").

    python benchmarks/memory.py [--steps 2] [--scenario HEADSxWIDTHxHEIGHT ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPT = "a red fox running through snow, wind howling"
SEED = 3
# Weight-bound: a wide transformer at a small size; decode-bound: a narrow one at a size the VAE tiles.
SCENARIOS = ("32x256x256", "4x1024x1024")
LTX2_ONE_PASS = dict(
    stg_scale=0.0,
    audio_stg_scale=0.0,
    modality_scale=1.0,
    audio_modality_scale=1.0,
    spatio_temporal_guidance_blocks=None,
)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def child(policy: str, folder: str, out: str, size: str, steps: int) -> None:
    import torch
    from diffusers import LTX2Pipeline

    from kinema.backends import memory
    from kinema.backends.device import pick_device

    device = pick_device()
    width, height = (int(v) for v in size.split("x"))
    pipe = LTX2Pipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    memory.apply(pipe, memory.get_policy(policy, device), device)
    load_rss = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = pipe(
        prompt=PROMPT,
        width=width,
        height=height,
        num_frames=9,
        frame_rate=24.0,
        num_inference_steps=steps,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(SEED),
        output_type="np",
        max_sequence_length=128,
        **LTX2_ONE_PASS,
    )
    seconds = time.perf_counter() - start
    peak_rss = _status_kib("VmHWM")
    frames = (np.clip(np.asarray(result.frames[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    np.savez(out, frames=frames, audio=result.audio[0].float().cpu().numpy())
    print(
        json.dumps(
            {
                "policy": policy,
                "load_rss": load_rss * 1024,
                "peak_rss": peak_rss * 1024,
                "peak_reset": reset,
                "peak_gpu": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
                "seconds": seconds,
                "device": device,
            }
        )
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def snr(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - other) ** 2)
    return float("inf") if noise == 0 else 10.0 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="HEADSxWIDTHxHEIGHT",
        help=f"transformer width in 16-wide heads and clip size; repeatable (default: {' and '.join(SCENARIOS)})",
    )
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", default="256x256", help=argparse.SUPPRESS)  # the child's clip size
    parser.add_argument("--child", nargs=3, metavar=("POLICY", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, size=args.size, steps=args.steps)
        return

    from kinema.backends.device import pick_device

    device = pick_device()
    for scenario in args.scenario or SCENARIOS:
        heads, width, height = (int(v) for v in scenario.split("x"))
        report(device, heads, f"{width}x{height}", args.steps)


def report(device: str, heads: int, size: str, steps: int) -> None:
    from diffusers import LTX2Pipeline

    from kinema.backends import memory
    from kinema.backends.tiny_parts import small_ltx2_components

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "small-ltx2"
        pipe = LTX2Pipeline(**small_ltx2_components(heads=heads))
        pipe.save_pretrained(folder, safe_serialization=True)
        weights = memory.sizes_of_pipeline(pipe)
        del pipe
        rows = []
        for policy in memory.policies_for(device):
            out = Path(work) / f"{policy.name}.npz"
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    policy.name,
                    str(folder),
                    str(out),
                    "--size",
                    size,
                    "--steps",
                    str(steps),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(f"{policy.name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            with np.load(out) as data:
                row["frames"], row["audio"] = data["frames"], data["audio"]
            rows.append(row)
    if not rows:
        sys.exit("no policy ran")
    reference = rows[0]
    mib = 2**20
    print(
        f"\nmemory policies on {device}: small LTX-2 ({weights.transformer / mib:.0f} MiB transformer,"
        f" {weights.total / mib:.0f} MiB in all), {size}, 9 frames, {steps} steps, a fresh process per policy"
    )
    gpu = device.startswith("cuda")
    print(
        f"{'policy':<18} {'peak RSS':>9} {'vs full':>8}"
        + (f" {'peak GPU':>9}" if gpu else "")
        + f" {'seconds':>8} {'frame PSNR':>10} {'audio SNR':>10}"
    )
    for row in rows:
        ratio = row["peak_rss"] / reference["peak_rss"]
        line = (
            f"{row['policy']:<18} {row['peak_rss'] / mib:>7.0f}Mi {ratio:>7.2f}x"
            + (f" {row['peak_gpu'] / mib:>7.0f}Mi" if gpu else "")
            + f" {row['seconds']:>8.1f} {psnr(reference['frames'], row['frames']):>7.1f} dB"
            f" {snr(reference['audio'], row['audio']):>7.1f} dB"
        )
        print(line)
    if not reference["peak_reset"]:
        print("(peak RSS could not be reset after loading on this OS: peaks include loading)")
    lighter = [row["policy"] for row in rows[1:] if row["peak_rss"] < reference["peak_rss"]]
    print(f"lower peak than full: {', '.join(lighter) or 'none'}")


if __name__ == "__main__":
    main()
