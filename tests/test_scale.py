"""benchmarks/scale.py: its reduced form runs end to end, and its FLOP count for one block matches a hand count.

No timings are asserted: what the benchmark measures is for its tables, not for pass or fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kinema  # noqa: F401 - the real package first: scale.py then uses it instead of loading its leaves alone

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("kinema_benchmark_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_wan_block_flops_match_a_hand_count(scale):
    config = {**scale.WAN_5B, "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64}
    work = scale.Workload(width=128, height=64, frames=9, fps=24, text_tokens=7)
    spec = scale.SPECS["wan-5b"]
    # 16x VAE, 4x in time, 2x2 patches: 3 latent frames of 4x8 latents = 3 x 2 x 4 tokens.
    n, d, t, f = 24, 32, 7, 64
    assert scale.tokens(spec, config, work) == (n, 0)
    self_attention = 4 * 2 * n * d * d + 2 * 2 * n * n * d  # q, k, v, out; q·k and attention·v
    cross_attention = 2 * 2 * n * d * d + 2 * 2 * t * d * d + 2 * 2 * n * t * d  # q, out; k, v of the text; products
    feed_forward = 2 * 2 * n * d * f
    assert scale.block_flops(spec, config, work) == self_attention + cross_attention + feed_forward


def test_ltx2_block_flops_match_a_hand_count(scale):
    config = {
        **scale.LTX2_0,
        "num_layers": 1,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "cross_attention_dim": 32,
        "audio_num_attention_heads": 2,
        "audio_attention_head_dim": 8,
        "audio_cross_attention_dim": 16,
        "caption_channels": 24,
    }
    work = scale.Workload(width=64, height=64, frames=9, fps=24, text_tokens=5)
    spec = scale.SPECS["ltx2"]
    # 32x VAE, 8x in time: 2 latent frames of 2x2; audio at 25 latents a second: round(9 / 24 * 25) = 9.
    nv, na, dv, da, t = 8, 9, 32, 16, 5
    assert scale.tokens(spec, config, work) == (nv, na)

    def stream(n: int, d: int) -> int:  # self-attention, text cross-attention, 4x feed-forward
        return (8 * n * d * d + 4 * n * n * d) + (4 * n * d * d + 4 * t * d * d + 4 * n * t * d) + 16 * n * d * d

    # Audio-to-video: video queries, audio keys and values, attention as wide as the audio; video-to-audio mirrored.
    a2v = 2 * nv * dv * da + 4 * na * da * da + 2 * nv * da * dv + 4 * nv * na * da
    v2a = 2 * na * da * da + 4 * nv * dv * da + 2 * na * da * da + 4 * na * nv * da
    assert scale.block_flops(spec, config, work) == stream(nv, dv) + stream(na, da) + a2v + v2a


def run_reduced(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KINEMA_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT / "core")}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--layers", "2", "--narrow", "16", "--size", "64x64"]
    command += ["--seconds", "0.4", "--text-tokens", "16", "--steps-timed", "1", "--threads", "1"]
    command += ["--out", str(tmp_path / "out")]
    return subprocess.run([*command, *extra], capture_output=True, text=True, env=env, timeout=600, check=False)


def test_reduced_form_runs_and_writes_its_tables(tmp_path):
    done = run_reduced(tmp_path, "--models", "ltx2", "wan-5b", "--policies", "full", "fp8", "disk-offload")
    assert done.returncode == 0, done.stderr[-2000:]
    table = (tmp_path / "out" / "scale.md").read_text()
    assert table.strip() in done.stdout
    data = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert data["header"]["heavy_imports"] == []  # no PyAV, c2pa, engine: the GPU form runs on a bare machine
    assert not data["header"]["stopped"]
    for name in ("ltx2", "wan-5b"):
        row = data["models"][name]
        assert row["flops_step"] > 0 and row["flops_block_step"] > 0
        assert len(row["direct_s"]) == len(row["hooked_s"]) == 1
        assert f"| {row['title']} | draft |" in table and f"| {row['title']} | final |" in table
    blocks = [entry["blocks"] for entry in data["cached"].values()]
    assert len(blocks) == 2 and all(0.5 <= b <= 1.0 for b in blocks)  # the first of 2 blocks always runs
    assert [p["policy"] for p in data["policies"]] == ["full", "fp8", "disk-offload"]
    assert all(p["peak"] and len(p["step_s"]) == 1 for p in data["policies"])
    fp8, full = data["policies"][1]["weights"], data["policies"][0]["weights"]
    assert fp8 < full  # the blocks' matrices stored in one byte instead of two
    assert [(a["backend"], len(a["step_s"])) for a in data["attention"]] == [("auto", 1), ("native", 1)]
    assert "| LTX-2 | auto |" in table


def test_compile_is_measured_and_recorded_for_the_engine(tmp_path):
    # aot_eager: the engine's regional compile path (dynamo, fullgraph) without generating C++ on a busy CPU.
    done = run_reduced(
        tmp_path, "--models", "wan-5b", "--no-policies", "--compile", "--compile-backend", "aot_eager", "--record"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((tmp_path / "out" / "scale.json").read_text())
    (entry,) = data["compile"]
    assert len(entry["first_s"]) == 1 and len(entry["step_s"]) == 1
    assert set(entry["pays_back"]) == {"draft", "standard", "final"}
    recorded = json.loads((tmp_path / "home" / "compile_times.json").read_text())[entry["recorded"]]
    assert entry["recorded"].startswith("WanTransformer3DModel/") and entry["recorded"].endswith("/cpu")
    steps = {"draft": 25, "standard": 50, "final": 75}  # TI2V-5B's 50 steps by tier
    for tier, pays in entry["pays_back"].items():  # what the engine will decide, from the measured numbers
        cost = recorded["compile_s"] + steps[tier] * recorded["compiled_step_s"]
        assert pays == (cost < steps[tier] * recorded["eager_step_s"])
    assert "| Wan 2.2 TI2V-5B | " in (tmp_path / "out" / "scale.md").read_text().split("pays back after")[1]


def test_budget_stops_cleanly_with_what_was_measured(scale, capsys, tmp_path):
    scale.main(["--device", "cpu", "--models", "wan-5b", "--budget-s", "0", "--out", str(tmp_path)])
    shown = capsys.readouterr().out
    assert "stopped at the budget (0 s) before: wan-5b: materialising" in shown
    data = json.loads((tmp_path / "scale.json").read_text())
    assert data["models"]["wan-5b"]["flops_step"] > 0  # counted on the meta device, which costs no budget
    assert "| Wan 2.2 TI2V-5B | standard | 50 | none | not measured |" in shown
