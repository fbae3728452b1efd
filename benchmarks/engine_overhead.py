"""kinema.generate vs calling the same diffusers pipeline directly: time and identical output.

Runs the embedded tiny LTX-2 and Wan on CPU with the same seed, steps and
size; interleaves the two ways so drift in machine load hits both alike.

    python benchmarks/engine_overhead.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import kinema
from kinema import GenerationRequest
from kinema.clip import fit_audio

REQUEST = dict(prompt="a red fox running through snow", width=64, height=64, seconds=1.0, fps=24, steps=8, seed=11)


def to_uint8(frames) -> np.ndarray:
    return (np.clip(frames[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def direct_ltx2(backend, plan):
    pipe = backend.pipeline()
    out = pipe(
        prompt=REQUEST["prompt"],
        width=plan.width,
        height=plan.height,
        num_frames=plan.num_frames,
        frame_rate=float(plan.fps),
        num_inference_steps=plan.steps,
        guidance_scale=plan.guidance,
        generator=torch.Generator("cpu").manual_seed(plan.seed),
        output_type="np",
        **backend.pipeline_kwargs,
    )
    rate = pipe.vocoder.config.output_sampling_rate
    audio = fit_audio(out.audio[0].float().numpy(), rate, plan.num_frames, plan.fps)
    return to_uint8(out.frames), audio


def direct_wan(backend, plan):
    video, sound = backend._pipeline("video"), backend._pipeline("audio")
    out = video(
        prompt=REQUEST["prompt"],
        width=plan.width,
        height=plan.height,
        num_frames=plan.num_frames,
        num_inference_steps=plan.steps,
        guidance_scale=plan.guidance,
        generator=torch.Generator("cpu").manual_seed(plan.seed),
        output_type="np",
    )
    audio = sound(
        prompt=REQUEST["prompt"],
        audio_end_in_s=plan.seconds,
        num_inference_steps=plan.steps,
        guidance_scale=backend.audio_guidance,
        generator=torch.Generator("cpu").manual_seed(plan.seed),
    )
    rate = sound.vae.sampling_rate
    return to_uint8(out.frames), fit_audio(audio.audios[0].float().numpy(), rate, plan.num_frames, plan.fps)


def measure(backend_name: str, direct, runs: int) -> dict:
    request = GenerationRequest(backend=backend_name, **REQUEST)
    backend = kinema.get_backend(backend_name)
    plan = backend.plan(request)
    kinema.generate(request, backend=backend)  # load weights and warm up both paths once
    direct(backend, plan)
    ours, theirs = [], []
    identical = True
    for _ in range(runs):
        start = time.perf_counter()
        clip = kinema.generate(request, backend=backend)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        frames, audio = direct(backend, plan)
        theirs.append(time.perf_counter() - start)
        identical &= np.array_equal(clip.frames, frames) and np.array_equal(clip.audio, audio)
    return {
        "backend": backend_name,
        "diffusers": statistics.median(theirs),
        "kinema": statistics.median(ours),
        "identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    rows = [measure("tiny", direct_ltx2, runs), measure("tiny-wan", direct_wan, runs)]
    print(
        f"engine overhead: {REQUEST['width']}x{REQUEST['height']}, {REQUEST['seconds']:g} s, "
        f"{REQUEST['steps']} steps, median of {runs} runs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'backend':<10} {'diffusers s':>12} {'kinema s':>10} {'ratio':>7} {'identical':>10}")
    for row in rows:
        ratio = row["kinema"] / row["diffusers"]
        print(
            f"{row['backend']:<10} {row['diffusers']:>12.4f} {row['kinema']:>10.4f} {ratio:>7.3f} {str(row['identical']):>10}"
        )


if __name__ == "__main__":
    main()
