"""Media I/O for kinema: MP4 (H.264 + AAC) writing/reading, probing, and images.

Everything is numpy in / numpy out:

* video frames: ``np.uint8`` ``[T, H, W, 3]`` RGB
* audio: ``np.float32`` ``[C, N]`` in ``[-1, 1]`` (C = 1 or 2 when writing)
* frame rates: exact :class:`fractions.Fraction` (``24``, ``30000/1001``, ...)

Design notes (the "why"):

* :func:`write_mp4` is atomic. It encodes into a hidden temp file next to the
  destination, fsyncs it, then ``os.replace``-s it into place, so a crash,
  Ctrl-C or full disk never leaves a half-written clip at ``path`` (and an
  existing file there survives a failed write untouched). The temp is claimed
  (:mod:`kinema.media.temps`): one left by ``kill -9`` is swept by the next write
  into that folder.
* Colour: frames are converted RGB -> YUV with the BT.709 matrix (limited
  range) and the stream is tagged BT.709, so players do not guess (most guess
  709 for HD and 601 for SD, which would shift colours on one of the two).
* Metadata: ffmpeg's MP4 muxer silently drops keys it does not know. We set
  ``movflags=use_metadata_tags`` so *every* key (``"kinema:seed"``, ...) is
  stored as a QuickTime ``mdta`` key/value pair, which ffmpeg, exiftool and
  Apple tools read back. This includes ``title``/``comment``.
* Audio length: the MP4 edit list is written in the *movie* timescale, which
  ffmpeg defaults to 1000 Hz, so an AAC track of exactly 25000 samples at
  24 kHz would read back as 25008. We set ``movie_timescale`` to the audio
  sample rate so the audio duration is stored sample-exact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import numbers
import os
import pathlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from kinema.media import temps

__all__ = [
    "MediaError",
    "MediaReadError",
    "MediaWriteError",
    "MediaInfo",
    "write_mp4",
    "read_mp4",
    "probe",
    "read_image",
    "encode_png",
    "encode_jpeg",
    "AAC_SAMPLE_RATES",
]

PathLike = str | os.PathLike[str]

# Sample rates the MPEG-4 AAC spec (and ffmpeg's native encoder) accept.
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)

# Tags the MP4 muxer writes by itself; they describe the file, not the clip,
# so they are hidden on read and refused on write (the muxer would overwrite
# "encoder" anyway).
_MUXER_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder"})

# Common "NTSC" rates: a float like 29.97 almost always means 30000/1001.
_NTSC_TOLERANCE = 5e-3


# --------------------------------------------------------------------------- errors


class MediaError(Exception):
    """Base class for media I/O failures; the message says what to do."""


class MediaWriteError(MediaError):
    """Invalid input for, or failure while, writing media."""


class MediaReadError(MediaError):
    """A media file could not be read or decoded."""


# --------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class MediaInfo:
    """Container and stream facts about a video file (see :func:`probe`)."""

    width: int
    height: int
    fps: Fraction
    frame_count: int
    video_duration: float
    has_audio: bool
    sample_rate: int | None
    audio_channels: int | None
    audio_duration: float | None
    video_codec: str
    audio_codec: str | None
    metadata: dict[str, str]


# --------------------------------------------------------------------------- writing


def write_mp4(
    path: PathLike,
    frames: np.ndarray,
    fps: int | float | Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    metadata: Mapping[str, str] | None = None,
    *,
    crf: int = 18,
) -> pathlib.Path:
    """Write ``frames`` (and optional ``audio``) to an H.264/AAC MP4, atomically.

    ``frames`` is ``uint8 [T, H, W, 3]`` RGB. H.264 in yuv420p needs even
    sizes, so an odd height/width is padded by one row/column that repeats the
    last one (the file is then ``H+1``/``W+1``; crop on read if it matters).
    ``fps`` is stored exactly (floats near an NTSC rate such as 29.97 become
    ``30000/1001``). ``audio`` is ``float32 [C, N]`` with C = 1 or 2, values in
    ``[-1, 1]`` (anything outside is clipped); it should span the same time as
    the video. ``metadata`` keys/values are stored verbatim (see module doc).
    ``crf`` is the x264 quality (0 = lossless, 18 = visually lossless, 51 = worst).

    The file appears at ``path`` only once complete; on any failure nothing is
    left behind and an existing file at ``path`` is untouched.
    Raises :class:`MediaWriteError` for bad input or I/O failure.
    """
    dest = _check_destination(path)
    frames = _check_frames(frames)
    rate = _check_fps(fps)
    if audio is not None:
        audio = _check_audio(audio, sample_rate)
    tags = _check_metadata(metadata)
    _check_crf(crf)

    temps.sweep(dest.parent)  # what killed writers left here
    tmp, claim = _create_temp_beside(dest, path)
    try:
        _encode_mp4(tmp, frames, rate, audio, sample_rate, tags, crf)
        _fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException as exc:  # incl. KeyboardInterrupt: never leave the temp behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, av.error.FFmpegError)):
            raise MediaWriteError(_write_failure_message(path, exc)) from exc
        raise
    finally:
        os.close(claim)  # held until the rename: a sweep never takes a temp still being written
    _fsync_dir(dest.parent)
    return dest


def _encode_mp4(
    tmp: pathlib.Path,
    frames: np.ndarray,
    fps: Fraction,
    audio: np.ndarray | None,
    sample_rate: int | None,
    tags: dict[str, str],
    crf: int,
) -> None:
    options = {"movflags": "+faststart+use_metadata_tags"}
    if audio is not None:
        assert sample_rate is not None  # write_mp4 refuses sound without its rate
        options["movie_timescale"] = str(sample_rate)  # sample-exact audio edit list
    container = av.open(str(tmp), mode="w", format="mp4", options=options)
    try:
        container.metadata.update(tags)
        height, width = _even(frames.shape[1]), _even(frames.shape[2])
        vstream = _add_video_stream(container, fps, width, height, crf)
        astream = (
            _add_audio_stream(container, sample_rate, audio.shape[0])
            if audio is not None and sample_rate is not None
            else None
        )
        _mux_interleaved(container, vstream, astream, frames, fps, audio, sample_rate)
    except BaseException:
        # The original error matters, not a follow-up failure writing the trailer.
        with contextlib.suppress(Exception):
            container.close()
        raise
    container.close()  # writes the trailer / moves moov to the front; may raise (disk full)


def _add_video_stream(container: Any, fps: Fraction, width: int, height: int, crf: int) -> Any:
    stream = container.add_stream("libx264", rate=fps, options={"crf": str(crf)})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # Tag BT.709 limited range; _video_frame converts with exactly that matrix.
    cc = stream.codec_context
    cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_*_BT709
    cc.color_range = 1  # AVCOL_RANGE_MPEG (limited)
    return stream


def _add_audio_stream(container: Any, sample_rate: int, channels: int) -> Any:
    return container.add_stream("aac", rate=sample_rate, layout="mono" if channels == 1 else "stereo")


def _mux_interleaved(container, vstream, astream, frames, fps, audio, sample_rate) -> None:
    """Encode video frame by frame, each followed by the audio up to its end time.

    Interleaving keeps audio and video chunks near each other in the file
    (good for streaming/seeking) instead of all video followed by all audio.
    Timestamps are exact: video pts counts frames in a 1/fps time base, audio
    pts counts samples in a 1/sample_rate time base.
    """
    reformatter = VideoReformatter()  # reused: caches the swscale context
    n_frames = frames.shape[0]
    n_samples = audio.shape[1] if audio is not None else 0
    audio_pos = 0
    for i in range(n_frames):
        container.mux(vstream.encode(_video_frame(frames[i], i, fps, reformatter)))
        if astream is not None:
            last = i == n_frames - 1
            stop = n_samples if last else min(n_samples, int(Fraction(i + 1) * sample_rate / fps))
            if stop > audio_pos:
                container.mux(astream.encode(_audio_frame(audio, audio_pos, stop, sample_rate)))
                audio_pos = stop
    # Flush: x264 holds back lookahead frames and the AAC encoder holds a
    # partial frame plus its delay; without encode(None) the tail is lost.
    container.mux(vstream.encode(None))
    if astream is not None:
        container.mux(astream.encode(None))


def _video_frame(rgb: np.ndarray, index: int, fps: Fraction, reformatter: VideoReformatter) -> av.VideoFrame:
    rgb = _pad_to_even(rgb)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = reformatter.reformat(
        # PyAV takes colourspace names too, though its stubs list only the integer constants.
        frame,
        format="yuv420p",
        src_colorspace="ITU709",  # type: ignore[arg-type]
        dst_colorspace="ITU709",  # type: ignore[arg-type]
        dst_color_range="MPEG",
    )
    frame.pts, frame.time_base = index, 1 / fps
    return frame


def _audio_frame(audio: np.ndarray, start: int, stop: int, sample_rate: int) -> av.AudioFrame:
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    # fltp wants one contiguous row per channel; a column slice is strided.
    chunk = np.ascontiguousarray(audio[:, start:stop])
    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
    return frame


def _even(n: int) -> int:
    return n + (n % 2)


def _pad_to_even(rgb: np.ndarray) -> np.ndarray:
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# --------------------------------------------------------------------------- write: files


def _create_temp_beside(dest: pathlib.Path, shown: PathLike) -> tuple[pathlib.Path, int]:
    """Create an empty, uniquely named hidden temp file in dest's directory, claimed (``kinema.media.temps``).

    Same directory => same filesystem => ``os.replace`` is an atomic rename.
    Returns the path and the claim's fd, which the caller closes once the temp
    is renamed or removed; a killed writer's temp is swept by the next write.
    """
    try:
        return temps.claim(dest.parent, dest.name)
    except FileExistsError:
        raise MediaWriteError(f"could not create a temporary file in {dest.parent} — choose another -o path") from None
    except OSError as exc:
        raise MediaWriteError(_write_failure_message(shown, exc)) from exc


def _fsync_file(path: pathlib.Path) -> None:
    # The data must be on disk *before* the rename, or a power cut could
    # leave a complete-looking but empty/corrupt file at the destination.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: pathlib.Path) -> None:
    # Persist the rename itself. Best effort: not every filesystem allows it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_ERRNO_ADVICE: dict[Any, tuple[str | None, str]] = {
    errno.ENOSPC: ("disk full?", "free space or choose another -o path"),
    errno.EDQUOT: ("disk quota exceeded?", "free space or choose another -o path"),
    errno.EFBIG: ("file size limit reached?", "free space, raise the limit, or choose another -o path"),
    errno.EACCES: ("no permission?", "check permissions or choose another -o path"),
    errno.EPERM: ("no permission?", "check permissions or choose another -o path"),
    errno.EROFS: ("read-only filesystem", "choose another -o path"),
}


def _write_failure_message(path: PathLike, exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or (os.strerror(code) if isinstance(code, int) else str(exc))
    hint, action = _ERRNO_ADVICE.get(code, (None, "choose another -o path"))
    if isinstance(exc, av.error.FFmpegError) and not isinstance(exc, OSError):
        hint, action = "encoder error", "check the frames/audio passed in, or report a bug"
    hint_text = f" ({hint})" if hint else ""
    return f"could not write {os.fspath(path)}: {reason}{hint_text} — {action}"


# --------------------------------------------------------------------------- write: validation


def _check_destination(path: PathLike) -> pathlib.Path:
    dest = pathlib.Path(path)
    if dest.is_dir():
        raise MediaWriteError(f"{dest} is a directory — give a file name, e.g. {dest / 'clip.mp4'}")
    parent = dest.parent
    if not parent.exists():
        raise MediaWriteError(f"directory {parent} does not exist — create it first")
    if not parent.is_dir():
        raise MediaWriteError(f"{parent} is not a directory — choose another -o path")
    return dest


def _check_frames(frames: Any) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaWriteError(f"frames must have shape [T, H, W, 3] (RGB), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise MediaWriteError(
            f"frames must be uint8 (0..255), got {frames.dtype} — "
            "convert with (x * 255).round().clip(0, 255).astype(np.uint8)"
        )
    t, h, w, _ = frames.shape
    if t < 1:
        raise MediaWriteError(f"frames must contain at least 1 frame, got shape {frames.shape}")
    if h < 1 or w < 1:
        raise MediaWriteError(f"frames must be at least 1x1 pixels, got shape {frames.shape}")
    return frames


def _check_fps(fps: Any) -> Fraction:
    rate = _as_fraction(fps)
    if rate is None or rate <= 0:
        raise MediaWriteError(f"fps must be a positive number (e.g. 24 or Fraction(30000, 1001)), got {fps!r}")
    return rate


def _as_fraction(value: Any) -> Fraction | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            return None
        if value.is_integer():
            return Fraction(int(value))
        ntsc = round(value * 1.001)
        if ntsc and abs(value * 1.001 - ntsc) < _NTSC_TOLERANCE:
            return Fraction(ntsc * 1000, 1001)  # 23.976 -> 24000/1001
        return Fraction(value).limit_denominator(1_000_000)
    return None


def _check_audio(audio: Any, sample_rate: Any) -> np.ndarray:
    if not isinstance(audio, np.ndarray):
        raise MediaWriteError(f"audio must be a numpy float32 array [C, N], got {type(audio).__name__}")
    if audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] < 1:
        raise MediaWriteError(
            f"audio must have shape [C, N] with C = 1 or 2 channels and N >= 1 samples, got shape {audio.shape}"
        )
    if audio.dtype != np.float32:
        raise MediaWriteError(f"audio must be float32 in [-1, 1], got {audio.dtype} — convert with .astype(np.float32)")
    if not np.isfinite(audio).all():
        raise MediaWriteError("audio contains NaN or infinite samples")
    _check_sample_rate(sample_rate)
    return np.clip(audio, -1.0, 1.0)  # AAC of out-of-range floats distorts badly


def _check_sample_rate(sample_rate: Any) -> None:
    if sample_rate is None:
        raise MediaWriteError("sample_rate is required when audio is given (e.g. 48000)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise MediaWriteError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if sample_rate not in AAC_SAMPLE_RATES:
        raise MediaWriteError(
            f"sample_rate {sample_rate} is not supported by AAC — resample to one of "
            + ", ".join(map(str, AAC_SAMPLE_RATES))
        )


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise MediaWriteError(f"metadata must be a dict of str -> str, got {type(metadata).__name__}")
    tags: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise MediaWriteError(f"metadata must map non-empty str to str, got {key!r}: {value!r}")
        if "\0" in key or "\0" in value:  # ffmpeg tags are C strings
            raise MediaWriteError(f"metadata {key!r} contains a NUL character")
        if key in _MUXER_TAGS:
            raise MediaWriteError(f"metadata key {key!r} is reserved by the MP4 muxer — use another name")
        tags[key] = value
    return tags


def _check_crf(crf: Any) -> None:
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= int(crf) <= 51:
        raise MediaWriteError(f"crf must be an integer from 0 (lossless) to 51, got {crf!r}")


# --------------------------------------------------------------------------- reading


def read_mp4(path: PathLike) -> tuple[np.ndarray, Fraction, np.ndarray | None, int | None, dict[str, str]]:
    """Decode a video file fully.

    Returns ``(frames uint8 [T,H,W,3], fps, audio float32 [C,N] or None,
    sample_rate or None, metadata)``. Raises :class:`MediaReadError`.
    """
    with _open_for_reading(path) as container:
        vstream = _video_stream(container, path)
        astream = container.streams.audio[0] if container.streams.audio else None
        try:
            frames, chunks = _decode_all(container, vstream, astream)
        except (av.error.FFmpegError, OSError) as exc:
            advice = "the file is truncated or corrupt"
            raise MediaReadError(_read_failure_message(path, exc, advice)) from exc
        _check_complete(path, vstream, len(frames))
        video = np.stack(frames)
        fps = _stream_fps(vstream)
        if astream is None:
            return video, fps, None, None, _public_tags(container)
        audio = _join_audio(chunks, astream)
        return video, fps, audio, astream.codec_context.sample_rate, _public_tags(container)


def _decode_all(container: Any, vstream: Any, astream: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    vstream.thread_type = "AUTO"  # frame + slice threads: much faster decode
    streams = [vstream] if astream is None else [vstream, astream]
    reformatter = VideoReformatter()
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    for frame in container.decode(*streams):
        if isinstance(frame, av.VideoFrame):
            frames.append(_to_rgb(frame, reformatter))
        else:
            chunks.append(_to_planar_float(frame))
    return frames, chunks


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    # The source matrix defaults to the frame's tag (601 when untagged); the
    # range must be passed explicitly or full-range video comes out washed out.
    rgb = reformatter.reformat(frame, format="rgb24", src_color_range=frame.color_range or None)
    return rgb.to_ndarray()


def _to_planar_float(frame: av.AudioFrame) -> np.ndarray:
    if frame.format.name != "fltp":  # e.g. s16 from other encoders
        frame = _resample_to_fltp(frame)
    return frame.to_ndarray()


def _resample_to_fltp(frame: av.AudioFrame) -> av.AudioFrame:
    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=frame.sample_rate)
    converted = resampler.resample(frame)  # same rate => no buffering, one frame out
    return converted[0]


def _join_audio(chunks: list[np.ndarray], astream: Any) -> np.ndarray:
    channels = astream.codec_context.channels
    if not chunks:
        return np.zeros((channels, 0), np.float32)
    audio = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    # The decoder drops the AAC priming samples (edit list) but still emits the
    # zero padding of the last 1024-sample frame; trim to the stored duration.
    n = _duration_in_samples(astream)
    return audio[:, :n] if n is not None else audio


def _duration_in_samples(astream: Any) -> int | None:
    if not astream.duration or astream.time_base is None:
        return None
    return round(astream.duration * astream.time_base * astream.codec_context.sample_rate)


def _check_complete(path: PathLike, vstream: Any, decoded: int) -> None:
    # A truncated file whose index (moov) survived demuxes "fine" and just
    # stops early — compare against the frame count the index promises.
    if decoded == 0:
        raise MediaReadError(f"cannot read {os.fspath(path)}: no video frames could be decoded — is it a video file?")
    if vstream.frames and decoded < vstream.frames:
        raise MediaReadError(
            f"cannot read {os.fspath(path)}: only {decoded} of {vstream.frames} frames could be decoded "
            "— the file is truncated or corrupt"
        )


def probe(path: PathLike) -> MediaInfo:
    """Read container/stream facts without decoding the video.

    ``frame_count`` comes from the container index; if the container has none,
    packets are counted (demux only, still no decoding).
    """
    with _open_for_reading(path) as container:
        vstream = _video_stream(container, path)
        astream = container.streams.audio[0] if container.streams.audio else None
        fps = _stream_fps(vstream)
        frame_count = vstream.frames or _count_packets(container, vstream, path)
        cc = vstream.codec_context
        return MediaInfo(
            width=cc.width,
            height=cc.height,
            fps=fps,
            frame_count=frame_count,
            video_duration=_stream_seconds(vstream) or (float(frame_count / fps) if fps else 0.0),
            has_audio=astream is not None,
            sample_rate=astream.codec_context.sample_rate if astream else None,
            audio_channels=astream.codec_context.channels if astream else None,
            audio_duration=_stream_seconds(astream) if astream else None,
            video_codec=cc.name,
            audio_codec=astream.codec_context.name if astream else None,
            metadata=_public_tags(container),
        )


def _count_packets(container: Any, vstream: Any, path: PathLike) -> int:
    try:
        return sum(1 for packet in container.demux(vstream) if packet.size)
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaReadError(_read_failure_message(path, exc)) from exc


def _stream_seconds(stream: Any) -> float | None:
    if stream is None or not stream.duration or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _stream_fps(vstream: Any) -> Fraction:
    rate = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    return Fraction(rate) if rate else Fraction(0)


def _public_tags(container: Any) -> dict[str, str]:
    return {k: v for k, v in container.metadata.items() if k not in _MUXER_TAGS}


@contextlib.contextmanager
def _open_for_reading(path: PathLike):
    try:
        # metadata_errors="replace": a non-UTF-8 tag must not make the file unreadable.
        container = av.open(os.fspath(path), mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaReadError(_read_failure_message(path, exc)) from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: Any, path: PathLike) -> Any:
    if not container.streams.video:
        raise MediaReadError(f"cannot read {os.fspath(path)}: it has no video stream — is it a video file?")
    return container.streams.video[0]


def _read_failure_message(path: PathLike, exc: BaseException, advice: str = "is it a video file?") -> str:
    shown = os.fspath(path)
    if isinstance(exc, FileNotFoundError):
        return f"cannot read {shown}: file does not exist — check the path"
    if isinstance(exc, IsADirectoryError):
        return f"cannot read {shown}: it is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"cannot read {shown}: permission denied — check the file's permissions"
    reason = getattr(exc, "strerror", None) or str(exc)
    return f"cannot read {shown}: {reason} — {advice}"


# --------------------------------------------------------------------------- images


UPLOAD_IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_UPLOAD_IMAGE_BYTES = 10 * 2**20
MAX_UPLOAD_IMAGE_SIDE = 4096
_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+)?(;[a-z0-9=.+-]+)*;base64,(?P<data>.*)", re.IGNORECASE | re.DOTALL)


def decode_image_bytes(data: bytes, *, what: str = "the image") -> np.ndarray:
    """Image bytes from someone else (an upload) as ``uint8 [H, W, 3]`` RGB.

    Only PNG, JPEG and WebP; size and side length are checked before any pixel
    is decoded. Raises :class:`MediaReadError` whose message starts with ``what``.
    """
    from PIL import Image, ImageOps

    if len(data) > MAX_UPLOAD_IMAGE_BYTES:
        raise MediaReadError(f"{what} is larger than {MAX_UPLOAD_IMAGE_BYTES // 2**20} MiB")
    try:
        with Image.open(io.BytesIO(data), formats=list(UPLOAD_IMAGE_FORMATS)) as image:
            width, height = image.size
            if max(width, height) > MAX_UPLOAD_IMAGE_SIDE:
                raise MediaReadError(f"{what} is {width}x{height}; keep each side at most {MAX_UPLOAD_IMAGE_SIDE} px")
            image.load()
            image = ImageOps.exif_transpose(image)
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except MediaReadError:
        raise
    except Exception as error:  # Pillow raises many kinds for hostile files
        raise MediaReadError(f"{what} is not a readable PNG, JPEG or WebP image ({type(error).__name__})") from None
    return np.ascontiguousarray(_flatten_alpha(pixels), dtype=np.uint8)


def is_data_url(text: str) -> bool:
    return text[:5].lower() == "data:"


def data_url_bytes(url: str, *, what: str = "the image") -> bytes:
    """The bytes a ``data:image/…;base64,…`` URL carries; :class:`MediaReadError` says what is wrong with it."""
    import base64
    import binascii

    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise MediaReadError(
            f"{what} must be a base64 data URL (data:image/png;base64,...); kinema does not fetch remote URLs"
        )
    try:
        return base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        raise MediaReadError(f"{what} is not valid base64") from None


def decode_data_url(url: str, *, what: str = "the image") -> np.ndarray:
    """A data URL's picture, checked like :func:`decode_image_bytes`."""
    return decode_image_bytes(data_url_bytes(url, what=what), what=what)


def read_image(path: PathLike) -> np.ndarray:
    """Load a PNG/JPEG/WebP (anything Pillow or ffmpeg reads) as ``uint8 [H, W, 3]`` RGB.

    Transparency is flattened onto white (so a transparent logo keeps its
    look rather than revealing arbitrary hidden colours); greyscale/palette
    images are expanded to RGB; JPEG EXIF orientation is applied (Pillow path).
    Raises :class:`MediaReadError` naming the file.
    """
    shown = os.fspath(path)
    if not os.path.exists(shown):
        raise MediaReadError(f"cannot read image {shown}: file does not exist — check the path")
    if os.path.isdir(shown):
        raise MediaReadError(f"cannot read image {shown}: it is a directory, not an image file")
    pil = _pillow()
    # Pillow's UnidentifiedImageError and truncated-file errors are OSErrors;
    # its DecompressionBombError (absurd pixel counts) is not.
    failures = (OSError, ValueError, av.error.FFmpegError) + ((pil.Image.DecompressionBombError,) if pil else ())
    try:
        pixels = _read_pillow(pil, shown) if pil else _read_pyav(shown)
    except failures as exc:
        raise MediaReadError(f"cannot read image {shown}: {exc} — is it a PNG, JPEG or WebP file?") from exc
    if pixels is None:
        raise MediaReadError(f"cannot read image {shown}: no image data found — is it a PNG, JPEG or WebP file?")
    return _flatten_alpha(pixels)


def _pillow() -> Any:
    """The PIL package if installed, else None (then PyAV/ffmpeg is used)."""
    try:
        import PIL.Image
        import PIL.ImageOps
    except ImportError:
        return None
    return PIL


def _read_pillow(pil: Any, path: str) -> np.ndarray:
    with pil.Image.open(path) as im:
        im.load()  # force decoding now so truncated files fail here
        im = pil.ImageOps.exif_transpose(im)
        has_alpha = "A" in im.getbands() or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def _read_pyav(path: str) -> np.ndarray | None:
    # ffmpeg probes the content (png_pipe, jpeg_pipe, webp_pipe demuxers).
    with av.open(path, mode="r") as container:
        if not container.streams.video:
            return None
        frame = next(container.decode(video=0), None)
        # Always via RGBA: opaque formats just get alpha = 255, so one path
        # handles rgb, grey, palette (with tRNS) and alpha formats alike.
        return None if frame is None else frame.to_ndarray(format="rgba")


def _flatten_alpha(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[-1] == 3:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    rgb = pixels[..., :3].astype(np.uint16)
    alpha = pixels[..., 3:4].astype(np.uint16)
    # Composite over white with integer rounding: out = rgb*a + 255*(1-a).
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def encode_png(frame: np.ndarray) -> bytes:
    """Encode ``uint8 [H, W, 3]`` RGB as PNG bytes (lossless; thumbnails)."""
    frame = _check_image(frame)
    pil = _pillow()
    if pil:
        return _save_pillow(pil, frame, "PNG", compress_level=6)
    return _encode_pyav(frame, "png", "rgb24", {})


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """Encode ``uint8 [H, W, 3]`` RGB as JPEG bytes (``quality`` 1..100; previews)."""
    frame = _check_image(frame)
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 1 <= quality <= 100:
        raise MediaWriteError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    pil = _pillow()
    if pil:
        return _save_pillow(pil, frame, "JPEG", quality=int(quality))
    # ffmpeg's mjpeg has no 1..100 scale; map linearly onto its quantiser 2 (best)..31.
    q = str(round(2 + (100 - quality) * 29 / 99))
    return _encode_pyav(frame, "mjpeg", "yuvj420p", {"qmin": q, "qmax": q})


def _check_image(frame: Any) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise MediaWriteError(f"image must have shape [H, W, 3] (RGB), got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise MediaWriteError(f"image must be uint8 (0..255), got {frame.dtype}")
    return np.ascontiguousarray(frame)


def _save_pillow(pil: Any, frame: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    pil.Image.fromarray(frame, mode="RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_pyav(frame: np.ndarray, codec: str, pix_fmt: str, options: dict[str, str]) -> bytes:
    cc = av.CodecContext.create(codec, "w")
    assert isinstance(cc, av.VideoCodecContext)  # an image codec's context
    cc.width, cc.height, cc.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
    cc.time_base = Fraction(1, 25)  # required by the encoder API; irrelevant for a still
    cc.options = options
    image = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
    packets = cc.encode(image) + cc.encode(None)
    return b"".join(bytes(p) for p in packets)
