"""kinema reads the files ComfyUI's own classes hold: a Wan 2.2 VAE (comfy.ldm.wan.vae2_2) and a UMT5 text encoder
(comfy.text_encoders.t5), built at toy size by ComfyUI's code in ComfyUI's Python, saved, loaded back through
kinema (kinema.backends.single_file_parts), must compute what ComfyUI computes.

Runs only when KINEMA_COMFYUI_DIR points to a ComfyUI checkout (KINEMA_COMFYUI_PYTHON: its Python, by default
this one); CI has no ComfyUI, so there it skips.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kinema.backends import single_file_parts
from kinema.backends.tiny import tiny_model_path

COMFY_DIR = os.environ.get("KINEMA_COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFY_DIR, reason="set KINEMA_COMFYUI_DIR to a ComfyUI checkout to run these")

# Wider than kinema's tiny VAE so that blocks change width (the residual shortcuts appear), as in the real one.
VAE = {"dim": 8, "dec_dim": 12, "z_dim": 48, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1}

SCRIPT = r"""
import json, os, sys
sys.argv[1:] = ["--cpu"]  # ComfyUI parses the command line: its own flags only
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
import torch
from safetensors.torch import save_file
import comfy.ops
import comfy.ldm.wan.vae2_2
from comfy.text_encoders.t5 import T5

out, vae_dims, t5_config = os.environ["OUT"], json.loads(os.environ["VAE"]), json.loads(os.environ["T5"])
torch.manual_seed(0)
vae = comfy.ldm.wan.vae2_2.WanVAE(attn_scales=[], temperal_downsample=[False, True, True], **vae_dims).eval()
t5 = T5(t5_config, torch.float32, "cpu", comfy.ops.manual_cast).eval()
with torch.no_grad():
    for parameter in [*vae.parameters(), *t5.parameters()]:
        parameter.normal_(0, 0.2)
save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, out + "/wan2.2_vae.safetensors")
save_file({k: v.contiguous() for k, v in t5.state_dict().items()}, out + "/umt5.safetensors")
z = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(1))
x = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
ids = torch.tensor([[5, 17, 3, 42, 1]])
with torch.no_grad():
    io = {"z": z, "decoded": vae.decode(z).clamp(-1, 1), "x": x, "encoded": vae.encode(x), "ids": ids}
    io["hidden"] = t5(ids, None)[0]
save_file({k: v.contiguous() for k, v in io.items()}, out + "/io.safetensors")
"""


@pytest.fixture(scope="module")
def comfy_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("comfy-files")
    t5 = json.loads((tiny_model_path("wan") / "text_encoder" / "config.json").read_text())
    t5["dense_act_fn"] = "gelu_pytorch_tanh"  # ComfyUI's name for the tanh GELU that transformers calls gelu_new
    t5 |= {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128}  # fixed in ComfyUI's T5
    python = os.environ.get("KINEMA_COMFYUI_PYTHON", sys.executable)
    done = subprocess.run(
        [python, "-c", SCRIPT],
        cwd=COMFY_DIR,
        env={**os.environ, "OUT": str(out), "VAE": json.dumps(VAE), "T5": json.dumps(t5)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def configs(tmp_path: Path, component: str, config: dict) -> Path:
    (tmp_path / component).mkdir(parents=True)
    (tmp_path / component / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_comfyuis_wan22_vae_decodes_and_encodes_the_same_through_kinema(comfy_files, tmp_path):
    config = json.loads((tiny_model_path("wan") / "vae" / "config.json").read_text())
    config.update(base_dim=VAE["dim"], decoder_base_dim=VAE["dec_dim"], dim_mult=VAE["dim_mult"], num_res_blocks=1)
    vae = single_file_parts.load_wan_vae(
        comfy_files / "wan2.2_vae.safetensors", configs(tmp_path, "vae", config), torch.float32
    )
    io = load_file(str(comfy_files / "io.safetensors"))
    with torch.no_grad():
        decoded = vae.decode(io["z"]).sample
        encoded = vae.encode(io["x"]).latent_dist.mean
    assert torch.allclose(decoded, io["decoded"], atol=1e-5)
    assert torch.allclose(encoded, io["encoded"], atol=1e-5)


def test_comfyuis_umt5_encodes_the_same_through_kinema(comfy_files, tmp_path):
    config = json.loads((tiny_model_path("wan") / "text_encoder" / "config.json").read_text())
    config |= {"relative_attention_num_buckets": 32, "relative_attention_max_distance": 128}  # as UMT5-XXL's
    encoder, tokenizer = single_file_parts.load_text_encoder(
        comfy_files / "umt5.safetensors", "wan", configs(tmp_path, "text_encoder", config), torch.float32
    )
    io = load_file(str(comfy_files / "io.safetensors"))
    with torch.no_grad():
        hidden = encoder(io["ids"]).last_hidden_state
    assert tokenizer is None  # ComfyUI's class holds no tokenizer; Comfy-Org's files add it as spiece_model
    assert torch.allclose(hidden, io["hidden"], atol=1e-4)


CONFIG_SCRIPT = r"""
import dataclasses, json, sys
sys.argv[1:] = ["--cpu"]
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
from comfy.text_encoders.llama import Gemma3_12B_Config
gemma = {k: getattr(Gemma3_12B_Config, k) for k in dir(Gemma3_12B_Config) if not k.startswith("_")}
umt5 = json.load(open("comfy/text_encoders/umt5_config_xxl.json"))
print(json.dumps({"gemma": gemma, "umt5": umt5}, default=str))
"""


def test_the_shipped_text_encoder_configs_are_the_models_comfyui_builds():
    """kinema's configs for LTX-2's Gemma 3 12B and Wan's UMT5-XXL say what ComfyUI's own definitions say."""
    from kinema.backends.single_file import CONFIGS

    python = os.environ.get("KINEMA_COMFYUI_PYTHON", sys.executable)
    done = subprocess.run([python, "-c", CONFIG_SCRIPT], cwd=COMFY_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    gemma, umt5 = theirs["gemma"], theirs["umt5"]
    ours = json.loads((CONFIGS / "ltx-2-19b" / "text_encoder" / "config.json").read_text())["text_config"]
    for mine, comfy in (
        ("vocab_size", "vocab_size"),
        ("hidden_size", "hidden_size"),
        ("intermediate_size", "intermediate_size"),
        ("num_hidden_layers", "num_hidden_layers"),
        ("num_attention_heads", "num_attention_heads"),
        ("num_key_value_heads", "num_key_value_heads"),
        ("head_dim", "head_dim"),
        ("rms_norm_eps", "rms_norm_eps"),
        ("hidden_activation", "mlp_activation"),
    ):
        assert ours[mine] == gemma[comfy], mine
    # ComfyUI: [global, local] rope thetas and scales, and a sliding window on 5 layers of every 6.
    rope = ours["rope_parameters"]
    assert [rope["full_attention"]["rope_theta"], rope["sliding_attention"]["rope_theta"]] == gemma["rope_theta"]
    assert [rope["full_attention"]["factor"], 1.0] == gemma["rope_scale"]
    windows = gemma["sliding_attention"]
    expected = ["sliding_attention" if windows[i % len(windows)] else "full_attention" for i in range(48)]
    assert ours["layer_types"] == expected and ours["sliding_window"] == windows[0]

    ours = json.loads((CONFIGS / "wan2.2-ti2v-5b" / "text_encoder" / "config.json").read_text())
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers", "relative_attention_num_buckets"):
        assert ours[key] == umt5[key], key
    assert ours["is_gated_act"] and umt5["is_gated_act"]
