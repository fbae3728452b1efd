"""Cameos and speech for LTX-2: the cameo's portrait as the conditioning image, a recorded line as the sound.

A speech line drives the picture the way LTX-2's DFR pipeline does with
``freeze_audio``: the line is encoded by the audio VAE, and at every step the
transformer sees that clean audio at noise level 0 instead of the audio it is
denoising, so lips and motion follow the voice through audio-to-video
cross-attention. The clip's sound is then the recording itself (resampled),
not a re-synthesis of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kinema.backends.base import Plan
from kinema.errors import InvalidRequestError
from kinema.media.speech import log_mel, resample


def speech_latents(pipe: Any, speech: tuple[np.ndarray, int], plan: Plan) -> Any:
    """The speech line as packed, normalised audio latents [1, tokens, channels], as long as the clip's audio."""
    import torch

    vae = pipe.audio_vae
    rate = int(vae.config.sample_rate)
    mono = resample(np.asarray(speech[0], np.float32), int(speech[1]), rate)
    duration = plan.num_frames / plan.fps
    wanted = round(duration * rate)
    mono = mono[:wanted] if mono.shape[0] >= wanted else np.pad(mono, (0, wanted - mono.shape[0]))
    channels = np.repeat(mono[None], int(vae.config.in_channels), axis=0)
    mel = log_mel(channels, rate, n_mels=int(vae.config.mel_bins), hop=int(vae.config.mel_hop_length))
    device = next(vae.parameters()).device
    with torch.no_grad():
        latents = vae.encode(mel.to(device=device, dtype=vae.dtype)).latent_dist.mode()
    # The pipeline sizes its audio stream from the clip's duration; match it exactly.
    length = round(
        float(duration)
        * pipe.audio_sampling_rate
        / pipe.audio_hop_length
        / float(pipe.audio_vae_temporal_compression_ratio)
    )
    if latents.shape[2] >= length:
        latents = latents[:, :, :length]
    else:
        latents = torch.cat([latents, latents[:, :, -1:].expand(-1, -1, length - latents.shape[2], -1)], dim=2)
    packed = pipe._pack_audio_latents(latents.float())
    return pipe._normalize_audio_latents(packed, vae.latents_mean.to(packed), vae.latents_std.to(packed))


class SpeechDriven:
    """An LTX-2 pipeline whose transformer hears a fixed, clean speech track, and whose sound is that track."""

    def __init__(self, pipe: Any, latents: Any, speech: tuple[np.ndarray, int]):
        self._pipe = pipe
        self.latents = latents
        self._speech = speech

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def _freeze(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        import torch

        current = kwargs["audio_hidden_states"]
        batch = current.shape[0]
        if current.shape[1:] != self.latents.shape[1:]:
            raise RuntimeError(
                f"speech latents {list(self.latents.shape)} do not fit the audio stream {list(current.shape)}"
            )
        kwargs["audio_hidden_states"] = self.latents.to(current).expand(batch, -1, -1)
        zero = torch.zeros(batch, device=current.device, dtype=torch.float32)
        kwargs["audio_timestep"] = zero
        kwargs["audio_sigma"] = zero
        return args, kwargs

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        handle = self._pipe.transformer.register_forward_pre_hook(self._freeze, with_kwargs=True)
        try:
            output = self._pipe(**kwargs)
        finally:
            handle.remove()  # the transformer is shared by every later job
        rate = int(self._pipe.vocoder.config.output_sampling_rate)
        voice = resample(np.asarray(self._speech[0], np.float32), int(self._speech[1]), rate)
        channels = int(output.audio.shape[1]) if hasattr(output.audio, "shape") and output.audio.ndim == 3 else 2
        output.audio = torch.from_numpy(np.repeat(voice[None, None], channels, axis=1))
        return output


def condition(pipe: Any, request: Any, plan: Plan, conditioning: Any, kwargs: dict) -> Any:
    """Apply cameos and speech to an LTX-2 pipeline call: returns the pipeline to call; fills ``kwargs``."""
    from PIL import Image

    if conditioning.cameos:
        if any(getattr(request, name, None) is not None for name in ("image", "last_image", "video", "start_frames")):
            raise InvalidRequestError(
                "ltx2 puts a cameo in through the first frame, so it cannot also take a first or last"
                " image, a remix video or an extend; use wan-vace for that"
            )
        from diffusers import LTX2ImageToVideoPipeline

        if not isinstance(pipe, LTX2ImageToVideoPipeline):
            pipe = LTX2ImageToVideoPipeline(**pipe.components)
            pipe.set_progress_bar_config(disable=True)
        kwargs["image"] = Image.fromarray(conditioning.cameos[0].reference_images()[0])
    if conditioning.speech is not None:
        pipe = SpeechDriven(pipe, speech_latents(pipe, conditioning.speech, plan), conditioning.speech)
    return pipe
