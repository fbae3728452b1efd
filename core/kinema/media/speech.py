"""Speech audio: decode, resample, find the speech, normalise loudness, WAV files, and LTX-2's log-mel input.

All signals are float32 in [-1, 1]; mono is [N], multichannel [C, N].
Decoding and resampling go through PyAV (ffmpeg's libswresample), so any file
ffmpeg reads works and no extra audio library is needed.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

VOICE_RATE = 24000  # stored voice samples: plenty for speech, and LTX-2.0's output rate
TARGET_LUFS = -20.0
PEAK_CEILING_DB = -1.0
MIN_SPEECH_SECONDS = 3.0
MAX_VOICE_SECONDS = 30.0


class AudioReadError(Exception):
    """A file has no audio stream ffmpeg can decode."""


# --------------------------------------------------------------------------- decode / resample


def decode_audio(
    path: str | os.PathLike[str], rate: int | None = None, *, mono: bool = True, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """The first audio stream of any file ffmpeg reads, as float32 ([N] if ``mono`` else [C, N]) and its rate."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise AudioReadError(f"cannot open {path}: {error}") from None
    with container:
        if not container.streams.audio:
            raise AudioReadError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        out_rate = rate or stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else "stereo", rate=out_rate)
        chunks: list[np.ndarray] = []
        limit = None if max_seconds is None else int(max_seconds * out_rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples; odd timestamps make it drop or pad
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray())
                if limit is not None and sum(c.shape[1] for c in chunks) >= limit:
                    break
            for converted in resampler.resample(None):
                chunks.append(converted.to_ndarray())
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise AudioReadError(f"cannot decode the audio of {path}: {error}") from None
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((1 if mono else 2, 0), np.float32)
    if limit is not None:
        audio = audio[:, :limit]
    audio = audio.astype(np.float32, copy=False)
    return (audio[0] if mono else audio), out_rate


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of [N] or [C, N] float32 (libswresample)."""
    if from_rate == to_rate or audio.shape[-1] == 0:
        return audio.astype(np.float32, copy=True)
    planar = np.atleast_2d(audio).astype(np.float32)
    layout = {1: "mono", 2: "stereo"}.get(planar.shape[0])
    if layout is None:
        return np.stack([resample(channel, from_rate, to_rate) for channel in planar])
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to_rate)
    out: list[np.ndarray] = []
    step = 1 << 15
    for start in range(0, planar.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planar[:, start : start + step]), format="fltp", layout=layout
        )
        frame.sample_rate = from_rate
        out.extend(f.to_ndarray() for f in resampler.resample(frame))
    out.extend(f.to_ndarray() for f in resampler.resample(None))
    result = np.concatenate(out, axis=1).astype(np.float32)
    expected = round(planar.shape[1] * to_rate / from_rate)
    result = (
        result[:, :expected]
        if result.shape[1] >= expected
        else np.pad(result, ((0, 0), (0, expected - result.shape[1])))
    )
    return result[0] if audio.ndim == 1 else result


# --------------------------------------------------------------------------- finding speech


@dataclass(frozen=True)
class SpeechReport:
    segments: tuple[tuple[float, float], ...]  # (start, end) seconds
    speech_seconds: float
    peak_dbfs: float
    noise_floor_dbfs: float


def _frame_stats(
    mono: np.ndarray, rate: int, frame_s: float = 0.03, hop_s: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    frame, hop = int(rate * frame_s), int(rate * hop_s)
    if mono.shape[0] < frame:
        return np.full(1, -120.0), np.ones(1)
    count = 1 + (mono.shape[0] - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    frames = mono[index] * np.hanning(frame)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(frame, 1 / rate)
    band = (freqs >= 80) & (freqs <= 4000)
    energy_db = 10 * np.log10(np.mean(mono[index] ** 2, axis=1) + 1e-12)
    # Spectral flatness in the speech band: voiced speech is harmonic (low), hiss and hum-free noise are flat (high).
    flatness = np.exp(np.mean(np.log(power[:, band]), axis=1)) / np.mean(power[:, band], axis=1)
    return energy_db, flatness


def find_speech(mono: np.ndarray, rate: int) -> SpeechReport:
    """Energy-gated voice activity with a harmonicity check, in 10 ms steps.

    A frame is speech when it is well above the recording's own noise floor
    and clearly not flat noise; short gaps are bridged and blips dropped.
    """
    energy, flatness = _frame_stats(mono, rate)
    peak = float(energy.max())
    floor = float(np.percentile(energy, 10))
    # Speech comes and goes: a steady hum or hiss never rises 10 dB over its own floor.
    threshold = max(-50.0, floor + 10.0)
    active = (energy > threshold) & (flatness < 0.45)
    segments: list[list[float]] = []
    hop = 0.01
    for i in np.flatnonzero(active):
        start, end = i * hop, i * hop + 0.03
        if segments and start - segments[-1][1] <= 0.3:  # a pause between words is still speech
            segments[-1][1] = end
        else:
            segments.append([start, end])
    duration = mono.shape[0] / rate
    kept = tuple((max(0.0, s - 0.1), min(duration, e + 0.1)) for s, e in segments if e - s >= 0.15)
    return SpeechReport(kept, float(sum(e - s for s, e in kept)), peak, floor)


# --------------------------------------------------------------------------- loudness (ITU-R BS.1770-4)


def _biquad_response(b: np.ndarray, a: np.ndarray, freqs: np.ndarray, rate: int) -> np.ndarray:
    z = np.exp(-2j * np.pi * freqs / rate)
    return (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)


def _k_weighting(freqs: np.ndarray, rate: int) -> np.ndarray:
    """BS.1770's K filter (head-related high shelf, then RLB high-pass), designed for any sample rate."""
    # Stage 1: +4 dB shelf above ~1.7 kHz.
    gain_db, q, fc = 3.99984385397, 0.7071752369554193, 1681.9744509555319
    k = np.tan(np.pi * fc / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # Stage 2: high-pass at ~38 Hz.
    q, fc = 0.5003270373253953, 38.13547087613982
    k = np.tan(np.pi * fc / rate)
    a0 = 1 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return _biquad_response(shelf_b, shelf_a, freqs, rate) * _biquad_response(hp_b, hp_a, freqs, rate)


def integrated_loudness(mono: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS, gated as BS.1770-4 says (-70 LUFS absolute, -10 LU relative)."""
    n = mono.shape[0]
    block, step = int(0.4 * rate), int(0.1 * rate)
    if n < block:
        return -np.inf
    size = 1 << int(np.ceil(np.log2(n + rate)))
    weighted = np.fft.irfft(np.fft.rfft(mono, size) * _k_weighting(np.fft.rfftfreq(size, 1 / rate), rate), size)[:n]
    squares = np.concatenate([[0.0], np.cumsum(weighted.astype(np.float64) ** 2)])
    starts = np.arange(0, n - block + 1, step)
    z = (squares[starts + block] - squares[starts]) / block
    loud = -0.691 + 10 * np.log10(z + 1e-20)
    z = z[loud > -70.0]
    if z.size == 0:
        return -np.inf
    relative = -0.691 + 10 * np.log10(z.mean()) - 10.0
    z = z[-0.691 + 10 * np.log10(z) > relative]
    return float(-0.691 + 10 * np.log10(z.mean()))


def normalise_loudness(
    mono: np.ndarray, rate: int, target_lufs: float = TARGET_LUFS, peak_db: float = PEAK_CEILING_DB
) -> tuple[np.ndarray, float]:
    """Scale to ``target_lufs`` without letting a sample peak above ``peak_db``; returns (audio, LUFS reached)."""
    loudness = integrated_loudness(mono, rate)
    if not np.isfinite(loudness):
        return mono.astype(np.float32), loudness
    gain = 10 ** ((target_lufs - loudness) / 20)
    peak = float(np.abs(mono).max()) * gain
    ceiling = 10 ** (peak_db / 20)
    if peak > ceiling:
        gain *= ceiling / peak
    out = (mono * gain).astype(np.float32)
    return out, loudness + 20 * np.log10(gain)


def keep_speech(
    mono: np.ndarray, rate: int, report: SpeechReport, *, gap_s: float = 0.15, max_seconds: float = MAX_VOICE_SECONDS
) -> np.ndarray:
    """The speech segments end to end with short pauses, faded at the edges so the cuts do not click."""
    fade = int(0.01 * rate)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    pieces: list[np.ndarray] = []
    total = 0
    for start, end in report.segments:
        piece = mono[int(start * rate) : int(end * rate)].astype(np.float32).copy()
        if piece.shape[0] > 2 * fade:
            piece[:fade] *= ramp
            piece[-fade:] *= ramp[::-1]
        pieces += [piece, np.zeros(int(gap_s * rate), np.float32)]
        total += piece.shape[0]
        if total >= max_seconds * rate:
            break
    joined = np.concatenate(pieces[:-1]) if pieces else np.zeros(0, np.float32)
    return joined[: int(max_seconds * rate)]


# --------------------------------------------------------------------------- WAV files


def write_wav(path: Path, mono: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV, written to a temp name and renamed so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).round().astype("<i2")
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as source:
        if source.getsampwidth() != 2:
            raise AudioReadError(f"{path} is not 16-bit PCM")
        data = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(np.float32) / 32767.0
        channels = source.getnchannels()
        return (data.reshape(-1, channels).mean(1) if channels > 1 else data), source.getframerate()


def load_speech(source: Any) -> tuple[np.ndarray, int]:
    """Mono speech from a file path (any format ffmpeg reads) or a ``(array, rate)`` pair."""
    if isinstance(source, tuple) and len(source) == 2:
        audio, rate = source
        audio = np.asarray(audio, np.float32)
        return (audio.mean(0) if audio.ndim == 2 else audio), int(rate)
    path = Path(source)
    if path.suffix.lower() == ".wav":
        try:
            return read_wav(path)
        except (AudioReadError, wave.Error, EOFError):
            pass  # not 16-bit PCM: let ffmpeg read it
    return decode_audio(path)


# --------------------------------------------------------------------------- LTX-2 audio-VAE input


def _hz_to_mel(freq: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa and torchaudio's 'slaney')."""
    freq = np.asarray(freq, np.float64)
    mel = freq / (200.0 / 3)
    log_region = freq >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters, Slaney-normalised (equal area)."""
    f_max = rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, rate // 2, n_fft // 2 + 1)
    points = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(points)
    slopes = points[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    bank *= 2.0 / (points[2 : n_mels + 2] - points[:n_mels])
    return bank.T.astype(np.float32)


def log_mel(audio: np.ndarray, rate: int, *, n_mels: int, hop: int, n_fft: int = 1024) -> Any:
    """LTX-2's audio-VAE input: log-magnitude mel of [C, N] audio at ``rate``, as a torch tensor [1, C, T, n_mels].

    Matches the reference AudioProcessor: Hann window of n_fft, centred
    reflect-padded frames, magnitude (power 1), Slaney mel, log(max(mel, 1e-5)).
    """
    import torch

    wave_ = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(audio), dtype=np.float32))
    spec = torch.stft(
        wave_,
        n_fft=n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=torch.hann_window(n_fft),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    bank = torch.from_numpy(mel_filterbank(rate, n_fft, n_mels))
    mel = torch.einsum("mf,cft->ctm", bank, spec)
    return torch.log(torch.clamp(mel, min=1e-5)).unsqueeze(0)
