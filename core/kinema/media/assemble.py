"""Join clips into one: picture cuts on frame boundaries, equal-power audio crossfades at each cut.

Each piece brings the frames it keeps plus *all* the audio its generation made,
including sound from frames that were generated but not kept (a dropped first
frame, a trimmed tail). That spare sound is what a crossfade overlaps, so a cut
never needs to invent audio, shift a shot out of sync, or leave a gap.

Backends pad audio that comes out a few milliseconds short with exact zeros
(``clip.fit_audio``); trailing zeros are treated as "no sound here" so a cut
never crossfades into padding (which would be a dip, i.e. a click).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

CROSSFADE_SECONDS = 0.02  # long enough to hide a discontinuity, short enough to stay inside one frame


@dataclass
class Piece:
    frames: np.ndarray  # uint8 [T, H, W, 3]: the frames this piece contributes
    audio: np.ndarray | None = None  # float32 [C, N]: the sound of its whole generation
    audio_offset: int = 0  # samples of ``audio`` that come before the first kept frame


def join(
    pieces: Sequence[Piece], fps: Fraction, sample_rate: int | None, crossfade: float = CROSSFADE_SECONDS
) -> tuple[np.ndarray, np.ndarray | None]:
    """Concatenate ``pieces``: frames exactly, audio crossfaded around every cut.

    The audio is exactly as long as the frames at ``sample_rate`` (sample-exact
    A/V sync, like a single clip). Returns ``(frames, audio or None)``.
    """
    if not pieces:
        raise ValueError("nothing to join")
    shapes = {p.frames.shape[1:] for p in pieces}
    if len(shapes) != 1:
        raise ValueError(f"pieces differ in size: {sorted(shapes)}")
    frames = np.concatenate([p.frames for p in pieces])
    if sample_rate is None or all(p.audio is None for p in pieces):
        return frames, None
    fps = Fraction(fps)
    channels = max(p.audio.shape[0] for p in pieces if p.audio is not None)
    starts = np.cumsum([0] + [p.frames.shape[0] for p in pieces])
    cuts = [round(Fraction(int(s)) * sample_rate / fps) for s in starts]  # film sample of each piece's first frame
    total = cuts[-1]
    fade = max(1, round(crossfade * sample_rate))

    sources = []  # per piece: (audio, film sample where audio[0] sits, film sample where its sound ends)
    for piece, cut in zip(pieces, cuts[:-1], strict=True):  # cuts ends with the total
        audio = piece.audio if piece.audio is not None else np.zeros((channels, 0), np.float32)
        if audio.shape[0] != channels:  # mono next to stereo: play the mono in both ears
            audio = np.repeat(audio[:1], channels, axis=0)
        origin = cut - piece.audio_offset
        sources.append((audio, origin, origin + sounding_length(audio)))

    # Each cut gets one window [s, e): the outgoing piece fades out and the incoming fades in over it.
    windows = [_window(cut, sources[i][2], sources[i + 1][1], fade) for i, cut in enumerate(cuts[1:-1])]

    out = np.zeros((channels, total), np.float32)
    for i, (audio, origin, _) in enumerate(sources):
        fade_in = windows[i - 1][1] if i > 0 else None  # the incoming side of the cut before this piece
        fade_out = windows[i][0] if i < len(windows) else None
        begin = fade_in[0] if fade_in else 0
        end = fade_out[1] if fade_out else total
        if end <= begin:
            continue
        segment = _slice(audio, begin - origin, end - origin)
        gain = np.ones(end - begin, np.float32)
        if fade_in:
            _apply_ramp(gain, begin, fade_in, rising=True)
        if fade_out:
            _apply_ramp(gain, begin, fade_out, rising=False)
            gain[max(fade_out[1] - begin, 0) :] = 0.0
        out[:, begin:end] += segment * gain
    return frames, np.clip(out, -1.0, 1.0)


def _window(cut: int, out_stops: int, in_starts: int, fade: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where the outgoing piece fades out and the incoming one fades in around ``cut``.

    Ideally one ``fade``-long window centred on the cut. It is shifted (or
    shortened) so the outgoing piece never plays past the end of its sound and
    the incoming one never starts before its sound begins.
    """
    start = max(cut - fade // 2, in_starts)
    stop = min(start + fade, out_stops)
    start = max(min(start, stop - fade), in_starts)
    if stop - start >= 1:
        return (start, stop), (start, stop)
    # No overlapping sound at all (a piece with no spare audio next to one with a gap):
    # fade each side on its own so neither ends in a step; the few samples between stay silent.
    return (out_stops - fade, out_stops), (in_starts, in_starts + fade)


def _apply_ramp(gain: np.ndarray, begin: int, window: tuple[int, int], *, rising: bool) -> None:
    """Multiply ``gain`` (which starts at film sample ``begin``) by a fade over ``window``, clipped to it."""
    s, e = window
    ramp = _ramp(e - s, rising=rising)
    lo, hi = max(s, begin), min(e, begin + gain.shape[0])
    if hi > lo:
        gain[lo - begin : hi - begin] *= ramp[lo - s : hi - s]


def _ramp(length: int, *, rising: bool) -> np.ndarray:
    # Equal power: sin^2 + cos^2 = 1, so uncorrelated sounds keep their loudness through the fade.
    t = (np.arange(length, dtype=np.float64) + 0.5) / length * (np.pi / 2)
    return (np.sin(t) if rising else np.cos(t)).astype(np.float32)


def _slice(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``audio[:, start:stop]`` where samples outside the array are silence."""
    out = np.zeros((audio.shape[0], stop - start), np.float32)
    lo, hi = max(start, 0), min(stop, audio.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = audio[:, lo:hi]
    return out


def sounding_length(audio: np.ndarray) -> int:
    """Samples up to the last non-zero one: trailing exact zeros are padding, not sound."""
    nonzero = np.flatnonzero(np.any(audio != 0, axis=0))
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def resample(audio: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Resample float32 [C, N] audio with ffmpeg's resampler (for joining clips made at different rates)."""
    if rate == to_rate:
        return audio
    import av

    layout = "mono" if audio.shape[0] == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:2], dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate = rate
    chunks = [f.to_ndarray() for f in resampler.resample(frame)] + [f.to_ndarray() for f in resampler.resample(None)]
    out = np.concatenate(chunks, axis=1) if chunks else np.zeros((audio.shape[0], 0), np.float32)
    return out[:, : round(audio.shape[1] * to_rate / rate)].astype(np.float32)
