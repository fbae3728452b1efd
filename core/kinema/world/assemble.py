"""Turning finished training stages into the pipeline folder kinema ships and loads.

The folder is what ``LTX2Pipeline.save_pretrained`` writes (safetensors only),
plus ``kinema_world.json``: what it was trained from and for how long. The
latent statistics of the training set go into the VAEs' own ``latents_mean`` /
``latents_std`` buffers, where ``LTX2Pipeline`` reads them, so generation
normalises latents exactly as training did.

``python -m kinema.world.assemble --dir TRAIN_DIR --out core/kinema/world/weights``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from kinema.world import model as M
from kinema.world.captions import VOCABULARY
from kinema.world.train import final_weights, latest

CARD_FILE = "kinema_world.json"


def _clips(latents: Path) -> int:
    """How many training clips the cached latents hold (each shard lists its scenes)."""
    total = 0
    for path in latents.glob("shard-*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            total += len(json.loads(handle.metadata()["scenes"]))
    return total


def assemble(train_dir: Path, out: Path) -> Path:
    """Build ``out`` from the stages in ``train_dir`` (replacing it atomically); returns ``out``."""
    from diffusers import LTX2Pipeline

    parts = M.components(tuple(sorted(VOCABULARY)))
    parts["vae"].load_state_dict(final_weights(train_dir, "video_vae", "vae"))
    parts["audio_vae"].load_state_dict(final_weights(train_dir, "audio_vae", "audio_vae"))
    parts["vocoder"].load_state_dict(final_weights(train_dir, "vocoder", "vocoder"))
    parts["transformer"].load_state_dict(final_weights(train_dir, "transformer", "transformer", ema=True))
    parts["connectors"].load_state_dict(final_weights(train_dir, "transformer", "connectors", ema=True))
    embedding = final_weights(train_dir, "transformer", "text_embedding", ema=True)
    if embedding:  # trained since step 15,500; before that the text encoder stayed at its seeded initialisation
        parts["text_encoder"].get_input_embeddings().load_state_dict(embedding)
    stats = load_file(str(train_dir / "latents" / "stats.safetensors"))
    parts["vae"].latents_mean.copy_(stats["video_mean"])
    parts["vae"].latents_std.copy_(stats["video_std"])
    parts["audio_vae"].latents_mean.copy_(stats["audio_mean"])
    parts["audio_vae"].latents_std.copy_(stats["audio_std"])
    steps = {stage: latest(train_dir / stage)[0] for stage in ("video_vae", "audio_vae", "vocoder", "transformer")}
    card = {
        "kind": "kinema-world",
        "version": 1,
        "steps": steps,
        "clips": _clips(train_dir / "latents"),
        "width": M.WIDTH,
        "height": M.HEIGHT,
        "fps": M.FPS,
        "num_frames": M.NUM_FRAMES,
        "sample_rate": M.SAMPLE_RATE,
    }

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        LTX2Pipeline(**parts).save_pretrained(tmp, safe_serialization=True)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kinema.world.assemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the training folder (kinema.world.train --dir)")
    parser.add_argument("--out", type=Path, required=True, help="the pipeline folder to write")
    args = parser.parse_args(argv)
    path = assemble(args.dir, args.out)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    print(f"{path}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
