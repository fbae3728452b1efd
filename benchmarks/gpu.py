"""Seconds of wall time per second of 768x512 video with sound, per tier, vs plain diffusers in the same run.

For a machine with a GPU and real weights already pulled (`kinema models pull
Lightricks/LTX-2`). For each tier it times ``kinema.generate`` and then the
same pipeline class through plain diffusers with the same settings (size,
frames, steps, guidance, seed; on the GPU whole, or with diffusers' model
offload and VAE tiling when kinema's memory policy offloaded or tiled). Plain diffusers gets the
tier's step cache only where diffusers itself can apply it (FirstBlockCache
on Wan); on LTX-2 its hooks refuse the audio stream, so it runs uncached.
Each side is warmed up once (2 steps) before timing; pipelines are released
between sides so both have the whole GPU.

    python benchmarks/gpu.py [--backend ltx2|wan] [--model ID] [--seconds 5] [--tiers draft standard final]
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

import kinema
from kinema import GenerationRequest
from kinema.backends import loading

PROMPT = "waves breaking on a rocky shore at dawn, gulls crying, wind"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free() -> None:
    loading.release_all()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_kinema(request: GenerationRequest, backend) -> tuple[float, dict]:
    kinema.generate(request.with_(steps=2), backend=backend)  # load and warm up
    sync()
    start = time.perf_counter()
    clip = kinema.generate(request, backend=backend)
    sync()
    return time.perf_counter() - start, clip.metadata


def time_diffusers(backend, plan, metadata: dict, device: str) -> float:
    from diffusers import LTX2Pipeline, WanPipeline
    from diffusers.hooks import FirstBlockCacheConfig

    family = backend.family
    cls = LTX2Pipeline if family == "ltx2" else WanPipeline
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        path = backend._model_path()  # LTX-2 family
    except TypeError:
        path = backend._model_path(backend.model_id)  # Wan family: one path per model
    pipe = cls.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    policy = metadata.get("memory_policy") or "full"
    if policy in ("full", "vae-tiling"):
        pipe.to(device)
    else:
        pipe.enable_model_cpu_offload(device=device)  # diffusers' own lighter placement
    if policy != "full":
        pipe.vae.enable_tiling()
    cache = metadata.get("cache")
    if cache and family == "wan" and cache.get("method") == "first-block":
        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=cache["threshold"]))
    kwargs = dict(
        prompt=PROMPT,
        width=plan.width,
        height=plan.height,
        num_frames=plan.num_frames,
        guidance_scale=plan.guidance,
        output_type="np",
    )
    if family == "ltx2":
        kwargs.update(frame_rate=float(plan.fps), **backend.pipeline_kwargs)

    sound = None
    if family == "wan":  # kinema's Wan clips get their sound from a Stable Audio pass: time it here too
        from diffusers import StableAudioPipeline

        sound = StableAudioPipeline.from_pretrained(
            backend._model_path(backend.audio_model_id), dtype=dtype, use_safetensors=True, local_files_only=True
        )
        sound.set_progress_bar_config(disable=True)
        sound.to(device) if policy in ("full", "vae-tiling") else sound.enable_model_cpu_offload(device=device)

    def run(steps: int) -> None:
        pipe(num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(plan.seed), **kwargs)
        if sound is not None:
            sound(
                prompt=PROMPT,
                audio_end_in_s=plan.seconds,
                num_inference_steps=steps,
                guidance_scale=backend.audio_guidance,
                generator=torch.Generator("cpu").manual_seed(plan.seed),
            )

    run(2)
    sync()
    start = time.perf_counter()
    run(plan.steps)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        default="ltx2",
        choices=["ltx2", "wan", "tiny", "tiny-wan"],
        help="tiny/tiny-wan: a dry run of this script on the embedded demo models",
    )
    parser.add_argument("--model", help="model id or folder (default: the backend's)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", default="768x512")
    parser.add_argument("--tiers", nargs="+", default=["draft", "standard", "final"])
    args = parser.parse_args()

    from kinema.backends.device import pick_device

    device = pick_device()
    backend = kinema.get_backend(args.backend)
    if args.model:
        backend = backend.for_model(args.model)
    status = backend.status()
    if not status.ready:
        raise SystemExit(status.detail)
    rows = []
    for tier in args.tiers:
        width, height = (int(v) for v in args.size.split("x"))
        request = GenerationRequest(
            PROMPT,
            width=width,
            height=height,
            seconds=args.seconds,
            seed=7,
            tier=tier,
            backend=args.backend,
            model=args.model,
        )
        plan = backend.plan(request)
        ours, metadata = time_kinema(request, backend)
        free()
        theirs = time_diffusers(backend, plan, metadata, device)
        free()
        rows.append(
            dict(
                tier=tier,
                steps=plan.steps,
                video=plan.seconds,
                ours=ours,
                theirs=theirs,
                cache=metadata.get("cache"),
                memory=metadata.get("memory_policy"),
            )
        )
    name = torch.cuda.get_device_name() if device.startswith("cuda") else device
    print(f"{backend.model_id} on {name}: {args.size}, {args.seconds:g} s requested, torch {torch.__version__}")
    print(
        f"{'tier':<9} {'steps':>5} {'video s':>7} {'kinema s/s':>10} {'diffusers s/s':>13} {'speed-up':>8}"
        f"  memory / cache"
    )
    for row in rows:
        cache = row["cache"] or {}
        shown = (
            f"{cache.get('method')} {cache.get('threshold', '')}, {cache.get('blocks_computed', 1):.0%} of blocks"
            if cache
            else "no cache"
        )
        print(
            f"{row['tier']:<9} {row['steps']:>5} {row['video']:>7.2f} {row['ours'] / row['video']:>10.1f}"
            f" {row['theirs'] / row['video']:>13.1f} {row['theirs'] / row['ours']:>7.2f}x  {row['memory']} / {shown}"
        )


if __name__ == "__main__":
    main()
