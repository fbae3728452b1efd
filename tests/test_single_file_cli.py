"""kinema generate --model FILE --text-encoder FILE --vae FILE: a single file with the parts ComfyUI keeps beside it.

The files are written by the test from kinema's tiny Wan in ComfyUI's layout (tests/single_files.py), as in
tests/test_single_file_parts.py, which checks the loaded modules against the folder they came from.
"""

import pytest
from click.testing import CliRunner
from single_files import write_text_encoder, write_wan, write_wan_vae

from kinema import Clip
from kinema.backends.tiny import tiny_model_path
from kinema.cli import cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--backend", "wan", "--size", "32x32", "--seconds", "0.375", "--fps", "24", "--steps", "2", "--no-audio"]


@pytest.fixture
def wan_files(tmp_path):
    # Per test: kinema knows a tiny file by the tiny model in this test's own KINEMA_HOME.
    folder, root = tiny_model_path("wan"), tmp_path / "comfyui-models"
    return (
        write_wan(folder, root / "diffusion_models" / "wan-tiny.safetensors"),
        write_text_encoder(folder, root / "text_encoders" / "umt5-tiny.safetensors"),
        write_wan_vae(folder, root / "vae" / "wan2.2-vae-tiny.safetensors"),
    )


def generate(*args):
    return CliRunner().invoke(cli, ["generate", "a red ball drops", *args])


def test_a_wan_file_with_its_text_encoder_and_vae_makes_a_clip(wan_files, tmp_path):
    checkpoint, encoder, vae = wan_files
    out = tmp_path / "ball.mp4"
    result = generate(
        *FAST, "--model", str(checkpoint), "--text-encoder", str(encoder), "--vae", str(vae), "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "pull" not in result.output  # nothing left for a base folder to supply
    clip = Clip.load(out)
    assert (clip.width, clip.height) == (32, 32) and clip.frame_count > 1


def test_part_files_are_checked_before_anything_loads(wan_files, tmp_path):
    checkpoint, encoder, vae = wan_files
    out = ["-o", str(tmp_path / "x.mp4")]

    no_single_file = generate(*FAST, "--text-encoder", str(encoder), *out)
    assert no_single_file.exit_code == 2
    assert "--text-encoder goes with a single-file checkpoint: add --model PATH.safetensors" in no_single_file.output

    folder = generate(*FAST, "--model", str(tiny_model_path("wan")), "--vae", str(vae), *out)
    assert folder.exit_code == 2 and "--vae goes with a single-file checkpoint" in folder.output

    gone = tmp_path / "umt5-gone.safetensors"
    missing = generate(*FAST, "--model", str(checkpoint), "--text-encoder", str(gone), *out)
    assert missing.exit_code == 2 and f"{gone} does not exist" in missing.output

    pickle = tmp_path / "vae.pt"
    pickle.write_bytes(b"not loaded")
    pickled = generate(*FAST, "--model", str(checkpoint), "--vae", str(pickle), *out)
    assert pickled.exit_code == 2 and "vae.pt is not a .safetensors file" in pickled.output

    swapped = generate(*FAST, "--model", str(checkpoint), "--vae", str(encoder), *out)  # a file of the wrong part
    assert swapped.exit_code == 1 and "umt5-tiny.safetensors" in swapped.output
    assert not (tmp_path / "x.mp4").exists()
