"""kinema's invisible watermark: a 40-bit clip id hidden in the low frequencies of every frame.

How it works (and why):

* The mark lives in the first 49x49 cosine frequencies of the *whole* frame
  (a ring 4 <= sqrt(u^2 + v^2) <= 48, counted in cycles per frame, not per
  pixel), in luma and both chroma planes (BT.709 Y, Cb, Cr). Frequencies
  relative to the frame make it survive resizing: a 0.75x frame holds the same
  pattern. Low frequencies survive H.264, whose quantiser removes fine detail.
* 64 bits are spread over ~5500 coefficients (~86 each), each coefficient with a
  keyed random sign (spread spectrum). The bits are the 40-bit clip id and a
  CRC-24 (OpenPGP polynomial) of it.
* The picture itself is the main noise for such a mark. Each frame's own
  projection onto each bit's pattern is subtracted while embedding, capped so
  that busy frames are not visibly changed ("improved spread spectrum",
  Malvar & Florencio 2003): then a static scene does not drown the mark.
* Reading sums the projections over all frames and normalises each bit by the
  energy it saw, so under "no watermark" each soft bit is ~N(0, 1) whatever the
  picture. The id is accepted only when its CRC-24 matches, after trying the
  64 flips of the 6 least reliable bits (Chase decoding): a clip without the mark
  passes by chance with probability ~64 / 2**24 ~ 4e-6.
* The key is public and fixed (kinema is open source): this mark says "made by
  kinema, clip id X" to anyone; like every open watermark, whoever reads this
  file can also try to remove or forge it. The C2PA manifest is the signed part.

Frames 64 to 127 px on a side (the embedded models' 64x64 clips) carry the
same 64 bits in a *small* layout of its own key: the ring 3 <= r <= 14 of the
first 15x15 frequencies, which a 0.5x copy (32 px, chroma 16 px) still mostly
holds, at twice the strength and with the host cancelled up to 10x the mark,
since there are ~450 coefficients to spread over rather than ~5500 (26-29 dB
PSNR on the demo world's clips; read back after crf 30 from 32 of 32, after 0.5x
from 26 of 32). A reader tries both layouts; each has the same ~4e-6 chance of a
false match. Smaller frames are not marked; see ``MIN_SIDE``. Only numpy; no
model, no download.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_SIDE = 64  # smallest frame side that is marked (the small layout below 128)
MIN_READ_SIDE = 32  # smallest side that can be read (e.g. 64 px scaled by 0.5)
ID_BITS = 40
_CRC_BITS = 24
_BITS = ID_BITS + _CRC_BITS
_CHASE_BITS = 6
_KEY = b"kinema watermark v1"


@dataclass(frozen=True)
class _Profile:
    """Where and how strongly the 64 bits go: frequencies (a ring of radius r_min..r_max), strength, sizes."""

    name: str
    r_min: float
    r_max: float
    strength: float  # RMS change per plane, in 8-bit levels, before host cancellation
    cap: float  # host cancellation per bit, in units of the mark's own amplitude
    min_side: int  # smallest frame side marked with it
    min_read_side: int  # smallest side it can be read from
    key: bytes

    @property
    def k(self) -> int:
        return int(self.r_max) + 1


STANDARD = _Profile("standard", 4.0, 48.0, 1.5, 3.0, 128, 64, _KEY)
SMALL = _Profile("small", 3.0, 14.0, 3.0, 10.0, 64, 32, _KEY + b" small")
# For backwards reading: the standard layout's constants as they were.
_R_MIN, _R_MAX, _K, _STRENGTH, _CAP = STANDARD.r_min, STANDARD.r_max, STANDARD.k, STANDARD.strength, STANDARD.cap


def _profile_for(width: int, height: int) -> _Profile:
    return STANDARD if min(width, height) >= STANDARD.min_side else SMALL


# BT.709 RGB -> (Y, Cb, Cr), and its inverse: the RGB change that moves one of them alone.
_RGB_TO_YCC = np.array([[0.2126, 0.7152, 0.0722], [-0.114572, -0.385428, 0.5], [0.5, -0.454153, -0.045847]], np.float32)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC).astype(np.float32)


@dataclass(frozen=True)
class WatermarkReading:
    """What :func:`read` found: ``clip_id`` is set only when the mark was detected."""

    detected: bool
    clip_id: str | None
    bits_corrected: int  # bits Chase decoding had to flip (0-6) to match the CRC
    agreement: float  # fraction of the 64 soft bits that agree with the decoded word
    strength: float  # mean soft value along the decoded word; ~0.8 for noise, >2 for a clear mark
    frames_read: int
    reason: str = ""  # why nothing could be read (frames too small, no frames)

    def to_dict(self) -> dict:
        return {
            "detected": self.detected,
            "clip_id": self.clip_id,
            "bits_corrected": self.bits_corrected,
            "agreement": round(self.agreement, 4),
            "strength": round(self.strength, 3),
            "frames_read": self.frames_read,
            **({"reason": self.reason} if self.reason else {}),
        }


def new_clip_id() -> str:
    """A random 40-bit clip id as 10 hex digits: what the watermark carries."""
    import secrets

    return secrets.token_hex(ID_BITS // 8)


def can_mark(width: int, height: int) -> bool:
    return min(width, height) >= MIN_SIDE


def embed(frames: np.ndarray, clip_id: str) -> np.ndarray:
    """A marked copy of ``frames`` (uint8 [T, H, W, 3] RGB) carrying ``clip_id`` (10 hex digits)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    _, height, width, _ = frames.shape
    if not can_mark(width, height):
        raise ValueError(f"frames of {width}x{height} are too small to mark; the minimum side is {MIN_SIDE} px")
    profile = _profile_for(width, height)
    layout = _layout(profile)
    signs = 2.0 * _codeword(clip_id).astype(np.float32) - 1.0
    amplitude = 2.0 * profile.strength / np.sqrt(len(layout.index))  # one cosine product has RMS 1/2
    mark = amplitude * layout.chip * signs[layout.bit_of]
    rows, cols = _basis(height, profile.k), _basis(width, profile.k)
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):
        rgb = frame.astype(np.float32)
        seen = _coefficients(rgb, rows, cols, layout)
        host = np.bincount(layout.bit_of, layout.chip * seen, _BITS) / layout.count
        cancel = np.clip(host, -profile.cap * amplitude, profile.cap * amplitude)
        change = _pattern(mark - cancel[layout.bit_of] * layout.chip, rows, cols, layout)
        out[t] = np.clip(np.rint(rgb + change), 0, 255).astype(np.uint8)
    return out


def read(frames: Iterable[np.ndarray]) -> WatermarkReading:
    """Look for the mark in RGB frames (uint8 [H, W, 3] each, any size the clip was scaled to)."""
    readers = _Readers()
    for frame in frames:
        frame = np.asarray(frame)
        if min(frame.shape[:2]) < MIN_READ_SIDE:
            return _unreadable(f"frames of {frame.shape[1]}x{frame.shape[0]} are too small to carry a watermark")
        readers.add_rgb(frame)
    return readers.result()


def read_file(path, max_frames: int = 240) -> WatermarkReading:
    """Look for the mark in a video file's first ``max_frames`` frames, straight from its Y, Cb, Cr planes.

    Reading the planes the codec stores skips colour conversion; limited-range
    levels only scale the coefficients, which the per-bit normalisation ignores.
    """
    import av

    readers = _Readers()
    with av.open(str(path)) as container:
        if not container.streams.video:
            return _unreadable("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if min(stream.codec_context.width, stream.codec_context.height) < MIN_READ_SIDE:
            return _unreadable(
                f"frames of {stream.codec_context.width}x{stream.codec_context.height}"
                " are too small to carry a watermark"
            )
        for frame in container.decode(stream):
            if frame.format.name not in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
                frame = frame.reformat(format="yuv420p")
            readers.add([_plane(frame, i) for i in range(3)])
            if readers.frames >= max_frames:
                break
    return readers.result()


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Layout:
    index: np.ndarray  # flat indices into the K x K frequency grid that carry the mark
    bit_of: np.ndarray  # which bit each (plane, frequency) coefficient carries
    chip: np.ndarray  # its keyed sign
    count: np.ndarray  # coefficients per bit
    k: int  # frequencies per axis in the grid


@functools.lru_cache(maxsize=2)
def _layout(profile: _Profile = STANDARD) -> _Layout:
    k = profile.k
    u, v = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    radius = np.hypot(u, v).ravel()
    index = np.flatnonzero((radius >= profile.r_min) & (radius <= profile.r_max))
    n = 3 * len(index)
    # The key stream comes from SHA-256, not numpy's generators, whose streams may change between releases.
    order = np.argsort(_key_stream(b"order", n, profile.key), kind="stable")
    bit_of = np.empty(n, np.int64)
    bit_of[order] = np.arange(n) % _BITS
    chip = np.where(_key_stream(b"chip", n, profile.key) & 1, 1.0, -1.0).astype(np.float32)
    return _Layout(index, bit_of, chip, np.bincount(bit_of, minlength=_BITS).astype(np.float32), k)


def _key_stream(label: bytes, n: int, key: bytes = _KEY) -> np.ndarray:
    blocks = (hashlib.sha256(key + label + i.to_bytes(4, "big")).digest() for i in range((4 * n + 31) // 32))
    return np.frombuffer(b"".join(blocks), dtype=">u4")[:n].astype(np.uint32)


@functools.lru_cache(maxsize=32)
def _basis(n: int, k: int = _K) -> np.ndarray:
    """Cosines of the first k frequencies sampled at n pixel centres: the same function at any size."""
    x = (np.arange(n) + 0.5) / n
    return np.cos(np.pi * np.outer(x, np.arange(k))).astype(np.float32)


def _plane_coefficients(plane: np.ndarray, rows: np.ndarray, cols: np.ndarray, layout: _Layout) -> np.ndarray:
    height, width = plane.shape
    return (rows.T @ plane @ cols).ravel()[layout.index] * (4.0 / (height * width))


def _coefficients(rgb: np.ndarray, rows: np.ndarray, cols: np.ndarray, layout: _Layout) -> np.ndarray:
    """The marked Y, Cb, Cr coefficients of one RGB frame; the colour matrix is applied to the small grids."""
    height, width, _ = rgb.shape
    k = layout.k
    half = (rows.T @ rgb.reshape(height, width * 3)).reshape(k, width, 3)  # one large BLAS call
    grids = np.einsum("kwc,wv->ckv", half, cols).reshape(3, -1) * (4.0 / (height * width))
    return (_RGB_TO_YCC @ grids)[:, layout.index].ravel()


def _pattern(coefficients: np.ndarray, rows: np.ndarray, cols: np.ndarray, layout: _Layout) -> np.ndarray:
    """The RGB change [H, W, 3] that adds ``coefficients`` (Y, Cb, Cr) to a frame."""
    k = layout.k
    grids = np.zeros((3, k * k), np.float32)
    grids[:, layout.index] = coefficients.reshape(3, len(layout.index))
    rgb_grids = (_YCC_TO_RGB @ grids).reshape(3, k, k)
    half = np.einsum("cku,wu->kwc", rgb_grids, cols).reshape(k, -1)  # [K, W*3]
    return (rows @ half).reshape(rows.shape[0], cols.shape[0], 3)


def _plane(frame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    height, width = plane.height, plane.width
    data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]
    return data.astype(np.float32)


class _Accumulator:
    """Sums each plane's coefficients over frames for one layout; planes may differ in size (4:2:0 chroma)."""

    def __init__(self, profile: _Profile) -> None:
        self.profile = profile
        self.layout = _layout(profile)
        self.total: np.ndarray | None = None
        self.frames = 0

    def add(self, planes: list[np.ndarray]) -> None:
        k = self.profile.k
        coefficients = np.concatenate(
            [_plane_coefficients(p, _basis(p.shape[0], k), _basis(p.shape[1], k), self.layout) for p in planes]
        )
        self._sum(coefficients)

    def add_rgb(self, frame: np.ndarray) -> None:
        k = self.profile.k
        self._sum(
            _coefficients(frame.astype(np.float32), _basis(frame.shape[0], k), _basis(frame.shape[1], k), self.layout)
        )

    def _sum(self, coefficients: np.ndarray) -> None:
        self.total = coefficients if self.total is None else self.total + coefficients
        self.frames += 1

    def result(self) -> WatermarkReading:
        if self.total is None:
            return _unreadable("no frames to read")
        layout = self.layout
        correlation = np.bincount(layout.bit_of, layout.chip * self.total, _BITS)
        energy = np.bincount(layout.bit_of, self.total * self.total, _BITS)
        return _decode(correlation / np.sqrt(energy + 1e-12), self.frames)


class _Readers:
    """Both layouts read at once: the standard one where the frames are big enough, the small one always."""

    def __init__(self) -> None:
        self.accumulators: list[_Accumulator] | None = None
        self.frames = 0

    def _start(self, height: int, width: int) -> list[_Accumulator]:
        if self.accumulators is None:
            side = min(height, width)
            self.accumulators = [_Accumulator(p) for p in (STANDARD, SMALL) if side >= p.min_read_side]
        return self.accumulators

    def add(self, planes: list[np.ndarray]) -> None:
        for accumulator in self._start(*planes[0].shape):
            accumulator.add(planes)
        self.frames += 1

    def add_rgb(self, frame: np.ndarray) -> None:
        for accumulator in self._start(*frame.shape[:2]):
            accumulator.add_rgb(frame)
        self.frames += 1

    def result(self) -> WatermarkReading:
        readings = [a.result() for a in self.accumulators or []]
        if not readings:
            return _unreadable("no frames to read")
        return next((r for r in readings if r.detected), readings[0])


def _unreadable(reason: str) -> WatermarkReading:
    return WatermarkReading(False, None, 0, 0.0, 0.0, 0, reason)


def _decode(soft: np.ndarray, frames: int) -> WatermarkReading:
    hard = (soft > 0).astype(np.uint8)
    weakest = np.argsort(np.abs(soft))[:_CHASE_BITS]
    # Fewest and least reliable flips first, so the most likely codeword wins.
    flips = sorted(
        (subset for k in range(_CHASE_BITS + 1) for subset in itertools.combinations(weakest, k)),
        key=lambda s: float(np.abs(soft[list(s)]).sum()) if s else 0.0,
    )
    for subset in flips:
        word = hard.copy()
        word[list(subset)] ^= 1
        clip_id = _check(word)
        if clip_id is not None:
            signs = 2.0 * word - 1.0
            return WatermarkReading(
                True, clip_id, len(subset), float(np.mean(signs * soft > 0)), float(np.mean(signs * soft)), frames
            )
    return WatermarkReading(False, None, 0, 0.0, float(np.mean(np.abs(soft))), frames)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _codeword(clip_id: str) -> np.ndarray:
    try:
        payload = bytes.fromhex(clip_id)
    except ValueError:
        payload = b""
    if len(payload) != ID_BITS // 8:
        raise ValueError(f"clip id must be {ID_BITS // 4} hex digits, got {clip_id!r}")
    data = payload + _crc24(payload).to_bytes(3, "big")
    return np.unpackbits(np.frombuffer(data, np.uint8))


def _check(word: np.ndarray) -> str | None:
    data = np.packbits(word).tobytes()
    payload, crc = data[: ID_BITS // 8], int.from_bytes(data[ID_BITS // 8 :], "big")
    return payload.hex() if _crc24(payload) == crc else None
