"""Training the demo world's model, stage by stage, resumably and deterministically.

Stages, in order (each freezes what the earlier ones made):

1. ``video_vae``: the video autoencoder on rendered frames (weighted MSE: the
   moving ball and its shadow count ten times a still pixel, so a small ball is
   not averaged away; a tiny KL keeps the latent smooth).
2. ``audio_vae``: the audio autoencoder on log-mel spectrograms of the world's sound.
3. ``vocoder``: mel to waveform, on the *audio VAE's reconstructions* (what it
   hears at generation time), with a multi-resolution spectral loss plus L1.
4. ``latents``: a fixed set of training clips encoded once (video and audio
   latent means, with the scenes), and per-channel latent statistics.
5. ``transformer``: the joint audio+video transformer and the text connectors
   by flow matching on the cached latents, with an EMA copy that is shipped.

Determinism: every random choice of step ``k`` (scenes, crops, noise, noise
levels, captions) comes from generators seeded by ``(seed, stage, k)``, and a
checkpoint holds weights, optimizer and EMA state, so a run of N steps and a
run of N/2 steps resumed for N/2 more give identical weights on one machine
(CPU, a fixed thread count). Checkpoints are safetensors, written atomically.

Run it with ``python -m kinema.world.train --dir DIR --stage all`` (see ``--help``);
``kinema.world.assemble`` turns the finished stages into the shipped pipeline folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kinema.media.speech import log_mel
from kinema.world import model as M
from kinema.world.captions import VOCABULARY, caption
from kinema.world.paths import WEIGHTS
from kinema.world.render import render
from kinema.world.scene import Scene, sample_scene

if TYPE_CHECKING:
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video

_Module = TypeVar("_Module", bound=torch.nn.Module)

STAGES = ("video_vae", "audio_vae", "vocoder", "latents", "transformer")
CLIP_SECONDS = M.NUM_FRAMES / M.FPS

# Shares of transformer samples by what is given clean (the rest is text-to-video+audio). Each trains a path
# users take: first frame clean = image->video; 2-3 latent frames clean = extend; clean audio = sound drives
# the picture (speech lines); independent noise levels per stream = the streams need not move together.
CONDITION_SHARES = {"text": 0.55, "first_frame": 0.20, "extend": 0.10, "audio": 0.10, "streams_apart": 0.05}
CAPTION_DROP = 0.10  # empty prompt, so classifier-free guidance has an unconditional model to push from
# Share of samples whose noise level is drawn evenly from [HIGH_NOISE_FLOOR, 1]: the sampler's first steps
# (1, 0.97, 0.94 at 16 steps), where only the prompt can decide colours. The shifted logit-normal alone gives
# them about 3 % of samples, and through step 13,250 the walls' hue went unlearned (docs/world_model.md).
HIGH_NOISE_SHARE, HIGH_NOISE_FLOOR = 0.3, 0.9
# The frozen, randomly initialised text encoder happened to put "white" near "pink" and "grey" near "mint"
# (the whole prompt moves 0.17 and 0.26 between them, against 0.34-0.38 across the pairs), and the model
# painted exactly those pairs alike. So from step 15,500 its word embeddings train too (the layers above stay
# frozen): a real LTX-2's Gemma arrives with words already apart, this one has to move them. Through step
# 18,250 they trained at a tenth of the learning rate and the white/pink distance did not move, so from
# there they train at the full rate.
TEXT_EMBEDDING_LR_SCALE = 1.0
# transformers saves Gemma 3's language model under either name, depending on its version.
TEXT_EMBEDDING_KEYS = ("language_model.model.embed_tokens.weight", "model.language_model.embed_tokens.weight")


@dataclass
class StageConfig:
    batch: int
    lr: float
    warmup: int = 100
    checkpoint_every: int = 250
    log_every: int = 25


CONFIGS = {
    "video_vae": StageConfig(batch=8, lr=1e-3),
    "audio_vae": StageConfig(batch=8, lr=1e-3),
    "vocoder": StageConfig(batch=8, lr=5e-4),
    "transformer": StageConfig(batch=16, lr=3e-4, warmup=200),
}
DEFAULT_STEPS = {"video_vae": 2500, "audio_vae": 1200, "vocoder": 2000, "latents": 16384, "transformer": 20000}
EMA_DECAY = 0.999


def generator(seed: int, stage: str, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """The numpy and torch generators for one step of one stage: the only randomness a step uses."""
    key = [seed, STAGES.index(stage), step]
    rng = np.random.default_rng(key)
    gen = torch.Generator().manual_seed(int(np.random.default_rng(key + [1]).integers(2**62)))
    return rng, gen


# --------------------------------------------------------------------------------------------- data


def render_batch(rng: np.random.Generator, n: int) -> tuple[list[Scene], np.ndarray, np.ndarray]:
    """``n`` training scenes (held-out pairs excluded) rendered: frames [n,T,H,W,3] uint8, audio [n,S] float32."""
    scenes = [sample_scene(rng, split="train") for _ in range(n)]
    clips = [
        render(s, width=M.WIDTH, height=M.HEIGHT, fps=M.FPS, seconds=CLIP_SECONDS, sample_rate=M.SAMPLE_RATE)
        for s in scenes
    ]
    return scenes, np.stack([c.frames for c in clips]), np.stack([c.audio for c in clips])


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B,T,H,W,3] -> float [B,3,T,H,W] in [-1, 1], as LTX-2's video processor gives the VAE."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def log_mel_batch(audio: np.ndarray) -> torch.Tensor:
    """Mono [B,S] -> the audio VAE's input [B,2,T,mel]: the same log-mel the speech path computes."""
    return torch.cat([log_mel(np.stack([a, a]), M.SAMPLE_RATE, n_mels=M.MEL_BINS, hop=M.HOP) for a in audio])


# --------------------------------------------------------------------------------------------- checkpoints


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    state = opt.state_dict()
    out = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            out[f"opt.{index}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return out


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state = opt.state_dict()
    entries: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            entries.setdefault(int(index), {})[name] = value
    state["state"] = entries
    opt.load_state_dict(state)


@dataclass
class Trainee:
    """What a stage trains: named modules, their optimizer, and (for the transformer) an EMA copy."""

    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    ema: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"model.{m}.{k}": v for m, module in self.modules.items() for k, v in module.state_dict().items()}
        out.update({f"ema.{m}.{k}": v for m, state in self.ema.items() for k, v in state.items()})
        out.update(_optimizer_tensors(self.optimizer))
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore from a checkpoint; a module it does not hold (one that started training later) keeps its weights."""
        for m, module in self.modules.items():
            prefix = f"model.{m}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not state:
                continue
            module.load_state_dict(state)
            if self.ema:
                prefix = f"ema.{m}."
                self.ema[m] = {k[len(prefix) :]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}
        _load_optimizer(self.optimizer, tensors)

    @torch.no_grad()
    def update_ema(self) -> None:
        for m, state in self.ema.items():
            for k, v in self.modules[m].state_dict().items():
                if v.dtype.is_floating_point:
                    state[k].mul_(EMA_DECAY).add_(v, alpha=1 - EMA_DECAY)
                else:
                    state[k].copy_(v)


def latest(stage_dir: Path) -> tuple[int, Path | None]:
    try:
        info = json.loads((stage_dir / "latest.json").read_text())
        return int(info["step"]), stage_dir / info["file"]
    except (OSError, ValueError, KeyError):
        return 0, None


def save_checkpoint(
    stage_dir: Path,
    step: int,
    trainee: Trainee | None,
    log: list[dict],
    *,
    warm_start: int = 0,
    tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}.safetensors"
    weights = tensors if trainee is None else trainee.tensors()
    if weights is None:
        raise ValueError("save_checkpoint needs a trainee or the tensors to save")
    _atomic_save(
        weights,
        stage_dir / name,
        {"step": str(step), "warm_start": str(warm_start)},
    )
    tmp = stage_dir / ".latest.json.tmp"
    tmp.write_text(json.dumps({"step": step, "file": name}))
    os.replace(tmp, stage_dir / "latest.json")
    with open(stage_dir / "log.jsonl", "a") as handle:
        for row in log:
            handle.write(json.dumps(row) + "\n")
    log.clear()
    for old in sorted(stage_dir.glob("step-*.safetensors"))[:-2]:  # keep the last two
        old.unlink()


# The finished, frozen parts kept in the package (a pipeline folder's subfolders): a training folder that was
# lost starts again from them instead of retraining the autoencoders.
SHIPPED_PARTS = {"video_vae": "vae", "audio_vae": "audio_vae", "vocoder": "vocoder"}


def shipped_part(stage: str) -> Path | None:
    folder = WEIGHTS / SHIPPED_PARTS.get(stage, "-")
    return folder if (folder / "diffusion_pytorch_model.safetensors").is_file() else None


def final_weights(train_dir: Path, stage: str, module: str, *, ema: bool = False) -> dict[str, torch.Tensor]:
    """One module's weights from a stage's latest checkpoint (its EMA copy if asked and kept), else the shipped part."""
    step, path = latest(train_dir / stage)
    shipped = shipped_part(stage)
    if path is None and shipped is not None:
        return load_file(str(shipped / "diffusion_pytorch_model.safetensors"))
    if path is None:
        raise FileNotFoundError(f"stage {stage!r} has no checkpoint in {train_dir}; train it first")
    tensors = load_file(str(path))
    prefix = f"{'ema' if ema else 'model'}.{module}."
    found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not found and ema:
        return final_weights(train_dir, stage, module)
    return found


def _lr(config: StageConfig, step: int, warm_start: int = 0) -> float:
    return config.lr * min(1.0, (step - warm_start + 1) / config.warmup)


def seed_from_shipped(train_dir: Path, say: Callable[[str], None] = print) -> bool:
    """Start a training folder's transformer stage from the shipped transformer and connectors.

    A lost training folder then goes on from the shipped step instead of from scratch. The optimizer's moments
    are not shipped, so the learning rate warms up again from that step (recorded in the checkpoint).
    """
    stage_dir = train_dir / "transformer"
    card = WEIGHTS / "kinema_world.json"
    if latest(stage_dir)[1] is not None or not card.is_file():
        return False
    step = int(json.loads(card.read_text()).get("steps", {}).get("transformer", 0))
    parts = {m: WEIGHTS / m / "diffusion_pytorch_model.safetensors" for m in ("transformer", "connectors")}
    if not step or not all(p.is_file() for p in parts.values()):
        return False
    shipped = {m: load_file(str(path)) for m, path in parts.items()}
    text_encoder = WEIGHTS / "text_encoder" / "model.safetensors"
    if text_encoder.is_file():
        state = load_file(str(text_encoder))
        key = next((k for k in TEXT_EMBEDDING_KEYS if k in state), None)
        if key is not None:
            shipped["text_embedding"] = {"weight": state[key]}
    tensors = {}
    for m, state in shipped.items():
        for k, v in state.items():
            tensors[f"model.{m}.{k}"] = v
            tensors[f"ema.{m}.{k}"] = v.clone()
    save_checkpoint(stage_dir, step, None, [], warm_start=step, tensors=tensors)
    say(f"transformer: starting from the shipped weights at step {step}")
    return True


def run_stage(
    stage: str,
    train_dir: Path,
    steps: int,
    *,
    seed: int,
    trainee: Trainee,
    loss_fn: Callable[[int], dict[str, torch.Tensor]],
    config: StageConfig,
    say: Callable[[str], None] = print,
) -> None:
    """Train ``trainee`` with ``loss_fn(step)`` until ``steps``, resuming from the stage's latest checkpoint."""
    stage_dir = train_dir / stage
    start, path = latest(stage_dir)
    warm_start = 0
    if path is not None:
        trainee.load(load_file(str(path)))
        with safe_open(str(path), "pt") as handle:
            warm_start = int((handle.metadata() or {}).get("warm_start", 0))
        say(f"{stage}: resuming at step {start}")
    params = [p for m in trainee.modules.values() for p in m.parameters() if p.requires_grad]
    for m in trainee.modules.values():
        m.train()
    log: list[dict] = []
    started, running = time.monotonic(), dict[str, float]()
    for step in range(start, steps):
        for group in trainee.optimizer.param_groups:
            group["lr"] = _lr(config, step, warm_start) * group.get("lr_scale", 1.0)
        losses = loss_fn(step)
        total = sum(losses.values())
        assert isinstance(total, torch.Tensor)  # loss_fn returns at least one loss
        trainee.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        trainee.optimizer.step()
        if trainee.ema:
            trainee.update_ema()
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        done = step + 1
        if done % config.log_every == 0 or done == steps:
            n = config.log_every if done % config.log_every == 0 else (done - start) % config.log_every or 1
            row = {
                "step": done,
                **{k: round(v / n, 5) for k, v in running.items()},
                "s_per_step": round((time.monotonic() - started) / max(1, done - start), 3),
            }
            log.append(row)
            say(f"{stage} {json.dumps(row)}")
            running = {}
        if done % config.checkpoint_every == 0 or done == steps:
            save_checkpoint(stage_dir, done, trainee, log, warm_start=warm_start)
    for m in trainee.modules.values():
        m.eval()


def _adam(
    modules: dict[str, torch.nn.Module], lr: float, lr_scale: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    """One AdamW over the modules; those in ``lr_scale`` get their own group (appended, so a checkpoint taken
    before they trained still lines its moments up with the other parameters)."""
    lr_scale = lr_scale or {}
    groups: list[dict[str, Any]] = [
        {"params": [p for m, mod in modules.items() if m not in lr_scale for p in mod.parameters()]}
    ]
    groups += [{"params": list(modules[m].parameters()), "lr_scale": scale} for m, scale in lr_scale.items()]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=0.0, betas=(0.9, 0.99))


# --------------------------------------------------------------------------------------------- stages


def train_video_vae(train_dir: Path, steps: int, seed: int, say=print, config: StageConfig | None = None) -> None:
    config = config or CONFIGS["video_vae"]
    vae = M.video_vae()
    trainee = Trainee({"vae": vae}, _adam({"vae": vae}, config.lr))

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng, gen = generator(seed, "video_vae", step)
        _, frames, _ = render_batch(rng, config.batch)
        # 13-frame windows (1 + 4x3: a causal first frame and three latent frames) cost half the full clip;
        # half of them start at frame 0, as generated clips do.
        start = 0 if rng.random() < 0.5 else int(rng.integers(0, M.NUM_FRAMES - 13 + 1))
        x = frames_to_tensor(frames[:, start : start + 13])
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        y = vae.decode(z).sample
        moving = (x - x.median(dim=2, keepdim=True).values).abs().amax(dim=1, keepdim=True) > 0.05
        weight = 1.0 + 9.0 * moving.float()
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return {"mse": (weight * (y - x) ** 2).mean(), "kl": 1e-4 * kl}

    run_stage("video_vae", train_dir, steps, seed=seed, trainee=trainee, loss_fn=loss_fn, config=config, say=say)


def train_audio_vae(train_dir: Path, steps: int, seed: int, say=print, config: StageConfig | None = None) -> None:
    config = config or CONFIGS["audio_vae"]
    vae = M.audio_vae()
    trainee = Trainee({"audio_vae": vae}, _adam({"audio_vae": vae}, config.lr))

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng, gen = generator(seed, "audio_vae", step)
        _, _, audio = render_batch(rng, config.batch)
        mel = log_mel_batch(audio)
        posterior = vae.encode(mel).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        target = mel[:, :, : recon.shape[2]]
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        return {"mse": F.mse_loss(recon, target), "kl": 1e-4 * kl}

    run_stage("audio_vae", train_dir, steps, seed=seed, trainee=trainee, loss_fn=loss_fn, config=config, say=say)


def spectral_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log magnitude), as vocoders are trained without a GAN."""
    total = y.new_zeros(())
    for n_fft in (256, 512, 1024):
        window = torch.hann_window(n_fft)
        sy = torch.stft(y.flatten(0, 1), n_fft, n_fft // 4, window=window, return_complex=True).abs() + 1e-5
        sx = torch.stft(x.flatten(0, 1), n_fft, n_fft // 4, window=window, return_complex=True).abs() + 1e-5
        total = total + torch.linalg.norm(sx - sy) / torch.linalg.norm(sx) + (sx.log() - sy.log()).abs().mean()
    return total / 3


def frozen(module: _Module) -> _Module:
    module.eval()
    module.requires_grad_(False)
    return module


def trained_audio_vae(train_dir: Path) -> AutoencoderKLLTX2Audio:
    vae = M.audio_vae()
    vae.load_state_dict(final_weights(train_dir, "audio_vae", "audio_vae"))
    return frozen(vae)


def trained_video_vae(train_dir: Path) -> AutoencoderKLLTX2Video:
    vae = M.video_vae()
    vae.load_state_dict(final_weights(train_dir, "video_vae", "vae"))
    return frozen(vae)


VOCODER_FRAMES = 64


def train_vocoder(train_dir: Path, steps: int, seed: int, say=print, config: StageConfig | None = None) -> None:
    config = config or CONFIGS["vocoder"]
    audio_vae = trained_audio_vae(train_dir)
    vocoder = M.vocoder()
    trainee = Trainee({"vocoder": vocoder}, _adam({"vocoder": vocoder}, config.lr))

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng, _ = generator(seed, "vocoder", step)
        _, _, audio = render_batch(rng, config.batch)
        with torch.no_grad():
            mel = audio_vae.decode(audio_vae.encode(log_mel_batch(audio)).latent_dist.mode()).sample
        # A window of VOCODER_FRAMES mel frames and the samples they cover: the vocoder is convolutional, and a
        # window costs a third of the clip. Most windows hold an impact (the first ones come early in a clip).
        start = int(rng.integers(0, mel.shape[2] - VOCODER_FRAMES + 1))
        wave = vocoder(mel[:, :, start : start + VOCODER_FRAMES])
        target = torch.from_numpy(audio[:, start * M.HOP : start * M.HOP + wave.shape[-1]])[:, None]
        target = target.expand(-1, wave.shape[1], -1)
        n = min(wave.shape[-1], target.shape[-1])
        wave, target = wave[..., :n], target[..., :n]
        return {"spectral": spectral_loss(wave, target), "l1": 10.0 * F.l1_loss(wave, target)}

    run_stage("vocoder", train_dir, steps, seed=seed, trainee=trainee, loss_fn=loss_fn, config=config, say=say)


def audio_latent_frames() -> int:
    """How many audio latents ``LTX2Pipeline`` makes for the trained clip length (25 per second)."""
    return round(CLIP_SECONDS * M.SAMPLE_RATE / M.HOP / 4)


def build_latents(train_dir: Path, count: int, seed: int, say=print, chunk: int = 32) -> None:
    """Encode ``count`` training clips once; resumable by chunk. Writes latents/shard-*.safetensors + stats."""
    out = train_dir / "latents"
    out.mkdir(parents=True, exist_ok=True)
    vae, audio_vae = trained_video_vae(train_dir), trained_audio_vae(train_dir)
    length = audio_latent_frames()
    for first in range(0, count, chunk):
        path = out / f"shard-{first // chunk:05d}.safetensors"
        if path.exists():
            continue
        rng, _ = generator(seed, "latents", first // chunk)
        scenes, frames, audio = render_batch(rng, min(chunk, count - first))
        with torch.no_grad():
            video = vae.encode(frames_to_tensor(frames)).latent_dist.mode()
            sound = audio_vae.encode(log_mel_batch(audio)).latent_dist.mode()
        sound = (
            sound[:, :, :length]
            if sound.shape[2] >= length
            else torch.cat([sound, sound[:, :, -1:].expand(-1, -1, length - sound.shape[2], -1)], dim=2)
        )
        _atomic_save({"video": video, "audio": sound}, path, {"scenes": json.dumps([s.to_dict() for s in scenes])})
        if (first // chunk) % 20 == 0:
            say(f"latents: {first + len(scenes)}/{count}")
    video_sum: torch.Tensor | None = None
    video_sq: torch.Tensor | None = None
    audio_sum: torch.Tensor | None = None
    audio_sq: torch.Tensor | None = None
    n_video = n_audio = 0
    for path in sorted(out.glob("shard-*.safetensors")):
        t = load_file(str(path))
        v = t["video"].double()
        a = pack_audio(t["audio"]).double()
        video_sum = v.sum((0, 2, 3, 4)) + (0 if video_sum is None else video_sum)
        video_sq = v.pow(2).sum((0, 2, 3, 4)) + (0 if video_sq is None else video_sq)
        audio_sum = a.sum((0, 1)) + (0 if audio_sum is None else audio_sum)
        audio_sq = a.pow(2).sum((0, 1)) + (0 if audio_sq is None else audio_sq)
        n_video += v.numel() // v.shape[1]
        n_audio += a.shape[0] * a.shape[1]
    if video_sum is None or video_sq is None or audio_sum is None or audio_sq is None:
        raise FileNotFoundError(f"no latent shards in {out}")
    stats = {}
    for name, s, sq, n in (("video", video_sum, video_sq, n_video), ("audio", audio_sum, audio_sq, n_audio)):
        mean = s / n
        stats[f"{name}_mean"] = mean.float()
        stats[f"{name}_std"] = (sq / n - mean.pow(2)).clamp_min(1e-8).sqrt().float()
    _atomic_save(stats, out / "stats.safetensors", {})
    say(f"latents: {count} clips; stats written")


def pack_audio(latents: torch.Tensor) -> torch.Tensor:
    """[B,C,L,M] -> [B,L,C*M], as ``LTX2Pipeline._pack_audio_latents``."""
    return latents.transpose(1, 2).flatten(2, 3)


class LatentSet:
    """The cached training latents, normalised and packed as the transformer sees them."""

    def __init__(self, train_dir: Path):
        out = train_dir / "latents"
        stats = load_file(str(out / "stats.safetensors"))
        videos, audios, self.scenes = [], [], []
        for path in sorted(out.glob("shard-*.safetensors")):
            with safe_open(str(path), "pt") as handle:  # tensors and the scenes' metadata in one read
                videos.append(handle.get_tensor("video"))
                audios.append(handle.get_tensor("audio"))
                self.scenes += [Scene(**d) for d in json.loads(handle.metadata()["scenes"])]
        if not videos:
            raise FileNotFoundError(f"no cached latents in {out}; run the latents stage first")
        video = torch.cat(videos)
        self.latent_shape = video.shape[2:]
        video = (video - stats["video_mean"].view(1, -1, 1, 1, 1)) / stats["video_std"].view(1, -1, 1, 1, 1)
        self.video = video.flatten(2).transpose(1, 2).contiguous()  # [N, F*H*W, C]: patch size 1
        self.audio = ((pack_audio(torch.cat(audios)) - stats["audio_mean"]) / stats["audio_std"]).contiguous()

    def __len__(self) -> int:
        return len(self.scenes)


def sample_sigmas(gen: torch.Generator, n: int, mu: float) -> torch.Tensor:
    """Noise levels as the sampler visits them: logit-normal, shifted by the pipeline's ``mu`` for this size."""
    u = torch.sigmoid(torch.randn(n, generator=gen))
    return math.exp(mu) / (math.exp(mu) + (1 / u - 1))


def training_sigmas(gen: torch.Generator, n: int, mu: float) -> torch.Tensor:
    """The sampler's noise levels (``sample_sigmas``), with ``HIGH_NOISE_SHARE`` of them moved to the top."""
    sigma = sample_sigmas(gen, n, mu)
    high = torch.rand(n, generator=gen) < HIGH_NOISE_SHARE
    top = HIGH_NOISE_FLOOR + (1 - HIGH_NOISE_FLOOR) * torch.rand(n, generator=gen)
    return torch.where(high, top, sigma)


def train_transformer(train_dir: Path, steps: int, seed: int, say=print, config: StageConfig | None = None) -> None:
    from diffusers import LTX2Pipeline
    from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift

    config = config or CONFIGS["transformer"]
    data = LatentSet(train_dir)
    parts = M.components(tuple(sorted(VOCABULARY)))
    pipe = LTX2Pipeline(**parts)
    frozen(parts["text_encoder"])
    embedding = parts["text_encoder"].get_input_embeddings().requires_grad_(True)
    transformer, connectors = parts["transformer"], parts["connectors"]
    modules = {"transformer": transformer, "connectors": connectors, "text_embedding": embedding}
    trainee = Trainee(
        modules,
        _adam(modules, config.lr, {"text_embedding": TEXT_EMBEDDING_LR_SCALE}),
        ema={m: {k: v.detach().clone() for k, v in mod.state_dict().items()} for m, mod in modules.items()},
    )
    frames, height, width = data.latent_shape
    tokens_per_frame = height * width
    video_tokens, audio_tokens = data.video.shape[1], data.audio.shape[1]
    mu = calculate_shift(video_tokens, 1024, 4096, 0.95, 2.05)
    video_coords = transformer.rope.prepare_video_coords(config.batch, frames, height, width, "cpu", fps=M.FPS)
    audio_coords = transformer.audio_rope.prepare_audio_coords(config.batch, audio_tokens, "cpu")
    modes, shares = zip(*CONDITION_SHARES.items(), strict=True)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng, gen = generator(seed, "transformer", step)
        index = rng.integers(0, len(data), config.batch)
        x0, a0 = data.video[index], data.audio[index]
        prompts = ["" if rng.random() < CAPTION_DROP else caption(data.scenes[i], rng) for i in index]
        embeds, mask, _, _ = pipe.encode_prompt(
            prompts, do_classifier_free_guidance=False, max_sequence_length=64, device="cpu"
        )
        text, audio_text, text_mask = connectors(embeds, mask, padding_side=pipe.tokenizer.padding_side)
        sigma = training_sigmas(gen, config.batch, mu)
        sigma_audio = sigma.clone()
        clean_frames = torch.zeros(config.batch, dtype=torch.long)
        for b, mode in enumerate(rng.choice(len(modes), size=config.batch, p=shares)):
            mode = modes[mode]
            if mode == "first_frame":
                clean_frames[b] = 1
            elif mode == "extend":
                clean_frames[b] = int(rng.integers(2, 4))
            elif mode == "audio":
                sigma_audio[b] = 0.0
            elif mode == "streams_apart":
                sigma_audio[b] = sample_sigmas(gen, 1, mu)[0]
        token_frame = torch.arange(video_tokens) // tokens_per_frame
        clean = token_frame[None, :] < clean_frames[:, None]  # [B, tokens]
        sigma_tokens = torch.where(clean, 0.0, sigma[:, None])
        noise, audio_noise = torch.randn(x0.shape, generator=gen), torch.randn(a0.shape, generator=gen)
        xt = (1 - sigma_tokens[..., None]) * x0 + sigma_tokens[..., None] * noise
        at = (1 - sigma_audio[:, None, None]) * a0 + sigma_audio[:, None, None] * audio_noise
        video_v, audio_v = transformer(
            hidden_states=xt,
            audio_hidden_states=at,
            encoder_hidden_states=text,
            audio_encoder_hidden_states=audio_text,
            timestep=sigma_tokens * 1000,
            audio_timestep=sigma_audio * 1000,
            sigma=sigma * 1000,
            audio_sigma=sigma_audio * 1000,
            encoder_attention_mask=text_mask,
            audio_encoder_attention_mask=text_mask,
            num_frames=frames,
            height=height,
            width=width,
            fps=float(M.FPS),
            audio_num_frames=audio_tokens,
            video_coords=video_coords,
            audio_coords=audio_coords,
            use_cross_timestep=True,
            return_dict=False,
        )
        noisy = (~clean).float()[..., None]
        video_loss = ((video_v - (noise - x0)) ** 2 * noisy).sum() / (noisy.sum() * x0.shape[-1])
        audio_weight = (sigma_audio > 0).float()[:, None, None]
        audio_loss = ((audio_v - (audio_noise - a0)) ** 2 * audio_weight).sum() / (
            audio_weight.sum() * a0.shape[1] * a0.shape[2]
        ).clamp_min(1)
        return {"video": video_loss, "audio": audio_loss}

    run_stage("transformer", train_dir, steps, seed=seed, trainee=trainee, loss_fn=loss_fn, config=config, say=say)


def run(
    stage: str,
    train_dir: Path,
    steps: int | None,
    seed: int,
    say=print,
    batch: int | None = None,
    from_shipped: bool = False,
) -> None:
    """Run one stage (or all, in order) to ``steps``; ``batch`` overrides the batch size (tests use tiny ones).

    ``from_shipped``: a transformer stage with no checkpoint starts from the shipped weights (see seed_from_shipped).
    """
    from dataclasses import replace

    train_dir.mkdir(parents=True, exist_ok=True)
    if from_shipped and stage in ("transformer", "all"):
        seed_from_shipped(train_dir, say=say)
    todo = STAGES if stage == "all" else (stage,)
    for name in todo:
        n = steps if (steps is not None and stage != "all") else DEFAULT_STEPS[name]
        if stage == "all" and name in SHIPPED_PARTS and shipped_part(name) and latest(train_dir / name)[1] is None:
            say(f"{name}: using the shipped, frozen part in {shipped_part(name)}")
            continue
        if name == "latents":
            build_latents(train_dir, n, seed, say=say, chunk=batch or 32)
            continue
        config = CONFIGS[name] if batch is None else replace(CONFIGS[name], batch=batch)
        {
            "video_vae": train_video_vae,
            "audio_vae": train_audio_vae,
            "vocoder": train_vocoder,
            "transformer": train_transformer,
        }[name](train_dir, n, seed, say=say, config=config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kinema.world.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="checkpoints and cached latents go here")
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train the stage until this many steps (latents: clips); default per stage",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--from-shipped",
        action="store_true",
        help="a transformer with no checkpoint here starts from the shipped weights, not from scratch",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (leave a core for other work)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run(args.stage, args.dir, args.steps, args.seed, say=lambda s: print(s, flush=True), from_shipped=args.from_shipped)


if __name__ == "__main__":
    main()
