"""Style presets: built-ins, user JSON/YAML files, and LoRA weights loaded for one clip and removed after."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner

import kinema
from kinema import GenerationRequest
from kinema.cli import cli
from kinema.styles import get_style, list_styles

SMALL = dict(width=32, height=32, seconds=0.375, fps=24, steps=2, seed=1, backend="tiny-ltx2")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_lora(path, rank=4, scale=0.5):
    """A LoRA for the tiny LTX-2's attention projections, in diffusers' safetensors layout."""
    import torch
    from safetensors.torch import save_file

    transformer = kinema.get_backend("tiny-ltx2").pipeline().transformer
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, module in transformer.named_modules():
        if name.endswith(("attn1.to_q", "attn1.to_v")):
            tensors[f"transformer.{name}.lora_A.weight"] = (
                torch.randn(rank, module.in_features, generator=generator) * scale
            )
            tensors[f"transformer.{name}.lora_B.weight"] = (
                torch.randn(module.out_features, rank, generator=generator) * scale
            )
    save_file(tensors, str(path))
    return path


def test_builtins_and_a_user_yaml_style_are_listed(kinema_env):
    (kinema_env / "styles").mkdir()
    (kinema_env / "styles" / "pastel.yaml").write_text(
        "name: pastel\ndescription: Soft pastel colours\nprompt: pastel colors\nsteps: 3\n"
        "loras:\n  - path: pastel.safetensors\n    weight: 0.7\n    backends: [ltx2]\n"
    )
    assert {"realistic", "cinematic", "anime", "documentary", "claymation", "noir", "watercolor"} <= set(list_styles())
    result = CliRunner().invoke(cli, ["styles"])
    assert result.exit_code == 0
    assert "pastel: Soft pastel colours" in result.output
    assert f"+ LoRA {kinema_env / 'loras' / 'pastel.safetensors'} (weight 0.7, ltx2 only)" in result.output
    assert get_style("pastel").steps == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"name": "x", "loras": [{"path": "x.bin"}]}', "must be a .safetensors file"),
        ('{"name": "x", "loras": [{"path": "x.safetensors", "weight": 9}]}', "weight must be a number from -4 to 4"),
        ('{"name": "x", "steps": "many"}', "steps must be a whole number"),
        ('{"name": "x", "colour": "red"}', "only ['description'"),
        ('{"name": "x",', "not valid JSON"),
    ],
)
def test_bad_style_files_say_what_is_wrong(kinema_env, text, message):
    (kinema_env / "styles").mkdir()
    (kinema_env / "styles" / "x.json").write_text(text)
    with pytest.raises(kinema.InvalidRequestError, match=message.replace("[", r"\[")):
        list_styles()


def test_a_style_lora_changes_the_clip_and_is_gone_afterwards(kinema_env):
    pytest.importorskip("peft")
    styles = kinema_env / "styles"
    styles.mkdir()
    make_lora(styles / "grain.safetensors")
    (styles / "grain.yaml").write_text("name: grain\nloras:\n  - path: grain.safetensors\n    backends: [ltx2]\n")

    plain = kinema.generate(GenerationRequest("a lighthouse", **SMALL))
    styled = kinema.generate(GenerationRequest("a lighthouse", style="grain", **SMALL))
    again = kinema.generate(GenerationRequest("a lighthouse", **SMALL))
    assert not np.array_equal(plain.frames, styled.frames)
    assert np.array_equal(plain.frames, again.frames)  # unloaded: the next clip is untouched

    # The LoRA is for LTX-2 only: on Wan the style applies without it.
    wan = dict(SMALL, backend="tiny-wan", audio=False)
    assert np.array_equal(
        kinema.generate(GenerationRequest("a lighthouse", **wan)).frames,
        kinema.generate(GenerationRequest("a lighthouse", style="grain", **wan)).frames,
    )


def test_a_missing_lora_or_missing_peft_is_refused_clearly(kinema_env, monkeypatch):
    (kinema_env / "styles").mkdir()
    (kinema_env / "styles" / "gone.json").write_text('{"name": "gone", "loras": ["nowhere.safetensors"]}')
    request = GenerationRequest("a lighthouse", style="gone", **SMALL)
    if "peft" in sys.modules or _has_peft():
        with pytest.raises(kinema.MissingWeightsError, match="nowhere.safetensors does not exist"):
            kinema.generate(request)
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(kinema.InvalidRequestError, match=r"pip install 'kinema\[lora\]'"):
        kinema.generate(request)


def _has_peft():
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_server_lists_styles_with_the_users_own_and_no_paths(kinema_env):
    """GET /v1/styles: what hosts' Style menus offer (built-ins and the server's user styles), never a path."""
    from fastapi.testclient import TestClient

    from kinema.server.app import create_app

    (kinema_env / "styles").mkdir()
    (kinema_env / "styles" / "pastel.yaml").write_text("name: pastel\ndescription: Soft pastel colours\n")
    with TestClient(create_app(api_key=None), base_url="http://127.0.0.1:8765") as client:
        listed = client.get("/v1/styles")
        assert listed.status_code == 200
        rows = {row["id"]: row for row in listed.json()["data"]}
        assert rows["pastel"] == {
            "id": "pastel",
            "object": "style",
            "description": "Soft pastel colours",
            "source": "user",
        }
        assert rows["cinematic"]["source"] == "built-in" and str(kinema_env) not in listed.text

        (kinema_env / "styles" / "broken.json").write_text('{"name": "x",')
        broken = client.get("/v1/styles")
        assert broken.status_code == 500 and broken.json()["error"]["code"] == "broken_style"
        message = broken.json()["error"]["message"]
        assert "broken.json" in message and "not valid JSON" in message and str(kinema_env) not in message
