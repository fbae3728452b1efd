"""Step caching on small random LTX-2 and Wan: how much block compute runs, how much faster, how close.

Small = the tiny offline models with an 8-layer, wider transformer
(``kinema.backends.tiny_parts.small_*_components``), 20 steps, so the transformer dominates
a run. Per configuration it prints the fraction of transformer-block forwards
that really ran, the wall-time ratio vs uncached (median of ``--runs`` runs,
configurations interleaved so machine load hits all alike), frame PSNR and
audio SNR vs the uncached output of the same seed, and whether the draft
tier meets its goal. Random weights say what is skipped and how faithfully
the skipped work is replaced; real checkpoints have their own dynamics.
The CPU-time ratio (this process's CPU seconds) is printed beside the wall
ratio because it drifts less when other programs share the cores.

    python benchmarks/cache.py [--runs 3] [--steps 20] [--only ltx2|wan]

``--world N`` measures the trained demo world instead, through ``kinema.generate`` and its tiers (draft:
half the steps and the first-block cache; standard; final), on the evaluation's first N seen cases: seconds
per clip, the blocks that ran, frame PSNR against ``standard`` with the same seed, and what each tier costs
on the evaluation's own metrics (colour, size, wall, floor, physics, sound in sync). There the cache acts on
weights that learned something, so this says what ``draft`` really skips and what it costs.

    python benchmarks/cache.py --world 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kinema.backends.step_cache import CacheConfig, calibrate_mag, step_cache
from kinema.backends.tiny_parts import small_ltx2_components, small_wan_components
from kinema.tiers import TIERS

PROMPT = "a red fox running through snow, wind howling"
SEED = 11
# LTX-2's extra guidance passes need its 48-block checkpoint; one CFG pass, as kinema's tiny backend runs.
LTX2_ONE_PASS = dict(
    stg_scale=0.0,
    audio_stg_scale=0.0,
    modality_scale=1.0,
    audio_modality_scale=1.0,
    spatio_temporal_guidance_blocks=None,
)
GOALS = {"ltx2": dict(reduction=2.5, psnr=35.0, snr=60.0), "wan": dict(reduction=2.0, psnr=35.0, snr=None)}


def build(family: str):
    from diffusers import LTX2Pipeline, WanPipeline

    if family == "ltx2":
        pipe = LTX2Pipeline(**small_ltx2_components())
        kwargs = dict(
            width=64,
            height=64,
            num_frames=9,
            frame_rate=24.0,
            guidance_scale=3.0,
            max_sequence_length=128,
            **LTX2_ONE_PASS,
        )
    else:
        pipe = WanPipeline(**small_wan_components())
        kwargs = dict(width=64, height=64, num_frames=9, guidance_scale=5.0, max_sequence_length=64)
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def run(pipe, kwargs: dict, steps: int):
    out = pipe(
        prompt=PROMPT,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(SEED),
        output_type="np",
        **kwargs,
    )
    frames = (np.clip(np.asarray(out.frames[0]), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    audio = out.audio[0].float().numpy() if getattr(out, "audio", None) is not None else None
    return frames, audio


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def snr(reference: np.ndarray, other: np.ndarray) -> float:
    noise = np.sum((reference.astype(np.float64) - other) ** 2)
    return float("inf") if noise == 0 else 10.0 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise)


def configurations(family: str, mag_ratios) -> list[tuple[str, CacheConfig | None]]:
    draft = TIERS["draft"]["cache"][family]
    return [
        ("uncached (standard, final)", None),
        (f"draft: first-block {draft['threshold']:g}", CacheConfig.from_dict(draft)),
        ("first-block 0.1", CacheConfig("first-block", threshold=0.1)),
        (
            "mag 0.1 (calibrated)",
            CacheConfig("mag", threshold=0.1, max_skip_steps=3, retention_ratio=0.2, mag_ratios=mag_ratios),
        ),
        ("taylorseer every 5th", CacheConfig("taylorseer", cache_interval=5, warmup_steps=3)),
    ]


def measure(family: str, runs: int, steps: int) -> list[dict]:
    pipe, kwargs = build(family)
    run(pipe, kwargs, steps)  # warm up allocators and kernels once
    mag_ratios = calibrate_mag(lambda: run(pipe, kwargs, steps), pipe.transformer, steps=steps)
    configs = configurations(family, mag_ratios)
    times: dict[str, list[float]] = {name: [] for name, _ in configs}
    cpu: dict[str, list[float]] = {name: [] for name, _ in configs}
    results: dict[str, dict] = {}
    for _ in range(runs):
        for name, config in configs:
            start, start_cpu = time.perf_counter(), time.process_time()
            with step_cache(pipe.transformer, config, steps=steps) as stats:
                frames, audio = run(pipe, kwargs, steps)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            results[name] = dict(frames=frames, audio=audio, fraction=stats.fraction)
    reference = results[configs[0][0]]
    base = statistics.median(times[configs[0][0]])
    base_cpu = statistics.median(cpu[configs[0][0]])
    rows = []
    for name, _ in configs:
        result = results[name]
        rows.append(
            dict(
                family=family,
                config=name,
                draft=name.startswith("draft"),
                fraction=result["fraction"],
                ratio=base / statistics.median(times[name]),
                cpu_ratio=base_cpu / statistics.median(cpu[name]),
                psnr=psnr(reference["frames"], result["frames"]),
                snr=snr(reference["audio"], result["audio"]) if result["audio"] is not None else None,
            )
        )
    return rows


def verdict(row: dict) -> str:
    goal = GOALS[row["family"]]
    met = 1.0 / row["fraction"] >= goal["reduction"] and row["psnr"] >= goal["psnr"]
    if goal["snr"] is not None:
        met = met and row["snr"] is not None and row["snr"] >= goal["snr"]
    wanted = f">= {goal['reduction']:g}x less compute, PSNR >= {goal['psnr']:g} dB"
    if goal["snr"] is not None:
        wanted += f", audio SNR >= {goal['snr']:g} dB"
    return f"{'MET' if met else 'NOT MET'} ({wanted})"


def measure_world(count: int) -> list[dict]:
    from kinema import generate
    from kinema.backends.world import WorldBackend
    from kinema.request import GenerationRequest
    from kinema.world import evaluate as E

    backend = WorldBackend()
    cases = E.cases(count, 0)
    generate(GenerationRequest(cases[0].prompt, seed=cases[0].seed, backend=backend.name), backend=backend)  # load
    rows = []
    made: dict[str, list] = {}
    for tier in ("standard", "draft", "final"):
        seconds, fractions, scores, clips = [], [], [], []
        for case in cases:
            request = GenerationRequest(case.prompt, seed=case.seed, tier=tier, backend=backend.name)
            start = time.process_time()
            clip = generate(request, backend=backend)
            seconds.append(time.process_time() - start)
            cache = clip.metadata.get("cache") or {}
            fractions.append(float(cache.get("blocks_computed", 1.0)))
            clips.append(clip.frames)
            scores.append(E.score_text(case, E._made(clip, 0.0)))
        made[tier] = clips
        contacts = sum(r["contacts"] for r in scores)
        onsets = sum(r["onsets"] for r in scores)
        rows.append(
            dict(
                tier=tier,
                cpu_s=statistics.median(seconds),
                fraction=statistics.mean(fractions),
                psnr=statistics.median(psnr(a, b) for a, b in zip(made["standard"], clips, strict=True)),
                **{
                    k: sum(bool(r[k]) for r in scores) / len(scores)
                    for k in ("colour", "size", "wall", "floor", "physics")
                },
                in_sync=sum(r["contacts_in_sync"] for r in scores) / max(contacts, 1),
                lonely=sum(r["lonely_onsets"] for r in scores) / max(onsets, 1),
            )
        )
    return rows


def print_world(rows: list[dict], count: int) -> None:
    print(
        f"step caching on the trained demo world: {count} seen cases of the evaluation, torch {torch.__version__},"
        f" {torch.get_num_threads()} threads (CPU seconds per clip, median)"
    )
    head = (
        "tier",
        "CPU s/clip",
        "ratio",
        "blocks run",
        "PSNR vs std",
        "colour",
        "size",
        "wall",
        "floor",
        "physics",
        "onset ±1f",
        "lonely",
    )
    print(" | ".join(head))
    base = rows[0]["cpu_s"]
    for r in rows:
        shown_psnr = "-" if r["tier"] == "standard" else f"{r['psnr']:.1f} dB"
        print(
            " | ".join(
                [
                    r["tier"],
                    f"{r['cpu_s']:.2f}",
                    f"{base / r['cpu_s']:.2f}x",
                    f"{r['fraction']:.0%}",
                    shown_psnr,
                    *(f"{r[k]:.0%}" for k in ("colour", "size", "wall", "floor", "physics", "in_sync", "lonely")),
                ]
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per configuration (median)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", choices=sorted(GOALS), help="one model family")
    parser.add_argument("--world", type=int, metavar="N", help="the trained demo world's tiers on N evaluation cases")
    args = parser.parse_args()
    if args.world:
        print_world(measure_world(args.world), args.world)
        return
    families = [args.only] if args.only else ["ltx2", "wan"]
    rows = [row for family in families for row in measure(family, args.runs, args.steps)]
    print(
        f"step caching: small random models (8 layers), 64x64, 9 frames, {args.steps} steps, median of"
        f" {args.runs} runs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"{'model':<6} {'configuration':<28} {'blocks run':>10} {'less compute':>12} {'wall ratio':>10}"
        f" {'CPU ratio':>9} {'frame PSNR':>10} {'audio SNR':>10}"
    )
    for row in rows:
        shown_snr = "-" if row["snr"] is None else f"{row['snr']:.1f} dB"
        print(
            f"{row['family']:<6} {row['config']:<28} {row['fraction']:>10.1%} {1 / row['fraction']:>11.2f}x"
            f" {row['ratio']:>9.2f}x {row['cpu_ratio']:>8.2f}x {row['psnr']:>7.1f} dB {shown_snr:>10}"
        )
    for row in rows:
        if row["draft"]:
            print(f"goal {row['family']} draft: {verdict(row)}")


if __name__ == "__main__":
    main()
