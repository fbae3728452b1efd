"""Turn a short recording of one person into cameo material: reference crops, an identity embedding, a voice sample.

``capture(video, audio=None)`` samples frames (PyAV), finds and tracks the
faces, refuses recordings that are not one clearly visible person, picks a few
sharp, large, frontal and mutually different views, and extracts a clean,
loudness-normalised voice sample. It returns data; ``kinema.cameo.store`` stores it
with its owner's consent record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from kinema.cameo import face as facelib
from kinema.errors import InvalidRequestError
from kinema.media import speech

MIN_VIDEO_SECONDS = 1.0
MAX_VIDEO_SECONDS = 120.0
SAMPLED_FRAMES = 24
MIN_FACE_PX = 64  # a reference crop upscaled from less than this is mush
MIN_PRESENCE = 0.3  # the face must be in at least this share of sampled frames
OTHER_PERSON_PRESENCE = 0.25
REFERENCE_COUNT = 4
REFERENCE_SIZE = 512

# Why a capture was refused: stable codes for hosts and the server, with a sentence for people.
REASONS = ("unreadable", "too_short", "no_face", "several_people", "face_too_small", "no_speech")


class CaptureError(InvalidRequestError):
    """The recording cannot become a cameo; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str, *, source: str = "video"):
        super().__init__(message)
        self.reason = reason
        self.source = source  # which input is at fault: "video" or "audio"


@dataclass
class CaptureResult:
    references: list[np.ndarray]  # uint8 [REFERENCE_SIZE, REFERENCE_SIZE, 3] portraits, best first
    faces: list[np.ndarray]  # uint8 [112, 112, 3] ArcFace-aligned crops of the same views
    embedding: np.ndarray | None = None  # unit vector, mean over many views
    embedding_model: str | None = None
    voice: np.ndarray | None = None  # mono float32 at voice_rate
    voice_rate: int = speech.VOICE_RATE
    report: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Every face track seen, the portraits' first: (time, centre x, centre y, size) in the video's pixels, for
    # kinema.cameo.verify to check that the face that speaks is the face kept.
    tracks: list[list[tuple[float, float, float, float]]] = field(default_factory=list)


# --------------------------------------------------------------------------- frames


def _sample_frames(path: Path, count: int) -> tuple[list[tuple[float, np.ndarray]], float]:
    """About ``count`` RGB frames spread evenly over the video, with their times, and the video's duration."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise CaptureError("unreadable", f"cannot read {path.name} as a video: {error}") from None
    with container:
        if not container.streams.video:
            raise CaptureError("unreadable", f"{path.name} has no video track; record the person on video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        if duration is not None and duration < MIN_VIDEO_SECONDS:
            raise CaptureError(
                "too_short",
                f"{path.name} is {duration:.2f} s long; record at least {MIN_VIDEO_SECONDS:g} s (3-10 s works best)",
            )
        span = min(duration or MAX_VIDEO_SECONDS, MAX_VIDEO_SECONDS)
        interval = span / count
        picked: list[tuple[float, np.ndarray]] = []
        next_time = 0.0
        last_time = 0.0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                last_time = float(frame.time)
                if last_time > MAX_VIDEO_SECONDS:
                    break
                if last_time + 1e-6 >= next_time:
                    picked.append((last_time, frame.to_ndarray(format="rgb24")))
                    next_time = last_time + interval
        except (av.error.FFmpegError, OSError, ValueError) as error:
            if not picked:
                raise CaptureError("unreadable", f"cannot decode {path.name}: {error}") from None
    if duration is None:
        duration = last_time
    if duration < MIN_VIDEO_SECONDS or len(picked) < 4:
        raise CaptureError(
            "too_short",
            f"{path.name} gives only {len(picked)} frames over {duration:.2f} s;"
            f" record at least {MIN_VIDEO_SECONDS:g} s (3-10 s works best)",
        )
    return picked, duration


# --------------------------------------------------------------------------- tracking


@dataclass
class _Track:
    detections: list[tuple[int, facelib.Face]] = field(default_factory=list)

    @property
    def last(self) -> facelib.Face:
        return self.detections[-1][1]

    @property
    def median_size(self) -> float:
        return float(np.median([f.size for _, f in self.detections]))


def _same_person(a: facelib.Face, b: facelib.Face) -> bool:
    """Consecutive samples of one face overlap or sit close, at a similar size."""
    (ax, ay), (bx, by) = a.center, b.center
    scale = max(a.size, b.size)
    return np.hypot(ax - bx, ay - by) < 0.75 * scale and 0.5 < a.size / max(b.size, 1e-6) < 2.0


def _track(per_frame: list[list[facelib.Face]]) -> list[_Track]:
    tracks: list[_Track] = []
    for index, faces in enumerate(per_frame):
        taken: set[int] = set()
        for face in sorted(faces, key=lambda f: -f.size):
            candidates = [
                t
                for i, t in enumerate(tracks)
                if i not in taken and _same_person(t.last, face) and t.detections[-1][0] < index
            ]
            if candidates:
                best = min(
                    candidates,
                    key=lambda t: np.hypot(t.last.center[0] - face.center[0], t.last.center[1] - face.center[1]),
                )
                best.detections.append((index, face))
                taken.add(tracks.index(best))
            else:
                tracks.append(_Track([(index, face)]))
                taken.add(len(tracks) - 1)
    return sorted(tracks, key=lambda t: (-len(t.detections), -t.median_size))


# --------------------------------------------------------------------------- choosing views


def _choose(candidates: list[dict], count: int) -> list[dict]:
    """Greedy: the best view first, then views that are good *and* unlike the ones already chosen."""
    if not candidates:
        return []
    sharp = np.array([c["sharpness"] for c in candidates])
    size = np.array([c["size"] for c in candidates])
    front = np.array([c["frontality"] for c in candidates])
    quality = 0.45 * sharp / max(sharp.max(), 1e-9) + 0.35 * front + 0.2 * size / max(size.max(), 1e-9)
    thumbs = np.stack([c["thumb"] for c in candidates])
    times = np.array([c["time"] for c in candidates])
    span = max(float(times.max() - times.min()), 1e-6)
    chosen = [int(np.argmax(quality))]
    while len(chosen) < min(count, len(candidates)):
        appearance = np.min([np.abs(thumbs - thumbs[i]).mean(axis=(1, 2)) for i in chosen], axis=0)
        spread = np.min([np.abs(times - times[i]) for i in chosen], axis=0) / span
        novelty = appearance / max(float(appearance.max()), 1e-9) + 0.3 * spread
        gain = quality * (0.4 + 0.6 * novelty / max(float(novelty.max()), 1e-9))
        gain[chosen] = -1.0
        if gain.max() <= 0:
            break
        chosen.append(int(np.argmax(gain)))
    return [candidates[i] for i in chosen]


# --------------------------------------------------------------------------- voice


def _voice(path: Path, explicit: bool, result: CaptureResult) -> None:
    try:
        mono, rate = speech.decode_audio(path, speech.VOICE_RATE, max_seconds=MAX_VIDEO_SECONDS)
    except speech.AudioReadError as error:
        if explicit:
            raise CaptureError("unreadable", f"cannot read the voice recording: {error}", source="audio") from None
        result.notes.append("the video has no readable sound; add --audio to give the cameo a voice")
        return
    report = speech.find_speech(mono, rate)
    result.report["speech_seconds"] = round(report.speech_seconds, 2)
    if report.speech_seconds < speech.MIN_SPEECH_SECONDS:
        found = "no speech" if report.speech_seconds == 0 else f"only {report.speech_seconds:.1f} s of speech"
        message = (
            f"{found} in {path.name} (loudest moment {report.peak_dbfs:.0f} dBFS); record the person"
            f" talking for at least {speech.MIN_SPEECH_SECONDS:g} s"
        )
        if explicit:
            raise CaptureError("no_speech", message, source="audio")
        result.notes.append(f"no voice sample: {message}, or pass --audio")
        return
    voice = speech.keep_speech(mono, rate, report)
    voice, loudness = speech.normalise_loudness(voice, rate)
    result.voice, result.voice_rate = voice, rate
    result.report["voice_seconds"] = round(voice.shape[0] / rate, 2)
    result.report["voice_lufs"] = round(float(loudness), 1)


# --------------------------------------------------------------------------- capture


def capture(
    video: str | os.PathLike[str],
    audio: str | os.PathLike[str] | None = None,
    *,
    references: int = REFERENCE_COUNT,
    detector: Any = None,
    embedder: Any = "installed",
) -> CaptureResult:
    """Cameo material from ``video`` (and a separate ``audio`` voice recording, if given).

    Raises ``CaptureError`` with a ``reason`` when the recording is not one
    clearly visible person (or, with ``audio``, has no speech).
    """
    path = Path(video).expanduser()
    if not path.is_file():
        raise CaptureError("unreadable", f"{path} does not exist or is not a file")
    audio_path = Path(audio).expanduser() if audio is not None else None
    if audio_path is not None and not audio_path.is_file():
        raise CaptureError("unreadable", f"{audio_path} does not exist or is not a file", source="audio")
    detector = detector or facelib.get_detector()
    if embedder == "installed":
        embedder = facelib.get_embedder()

    frames, duration = _sample_frames(path, SAMPLED_FRAMES)
    per_frame = [detector.detect(image) for _, image in frames]
    tracks = _track(per_frame)
    sampled = len(frames)
    if not tracks:
        raise CaptureError(
            "no_face",
            f"no face found in {path.name}; film the person facing the camera,"
            " well lit, the face filling at least a tenth of the frame's height",
        )
    main = tracks[0]
    presence = len(main.detections) / sampled
    if presence < MIN_PRESENCE:
        raise CaptureError(
            "no_face",
            f"a face shows in only {len(main.detections)} of {sampled} sampled frames of"
            f" {path.name}; keep the person's face in view for the whole recording",
        )
    for other in tracks[1:]:
        if (
            len(other.detections) >= max(2, OTHER_PERSON_PRESENCE * sampled)
            and other.median_size >= 0.5 * main.median_size
        ):
            raise CaptureError(
                "several_people", f"{path.name} shows more than one person; a cameo is one person alone in the frame"
            )
    if main.median_size < MIN_FACE_PX:
        raise CaptureError(
            "face_too_small",
            f"the face in {path.name} is about {main.median_size:.0f} px tall;"
            f" it needs at least {MIN_FACE_PX} px: move closer or record at a"
            " higher resolution",
        )

    cv2 = facelib._cv2()
    candidates = []
    for index, found in main.detections:
        if found.size < MIN_FACE_PX * 0.8:
            continue
        image = frames[index][1]
        aligned = facelib.aligned_crop(image, found)
        gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
        candidates.append(
            {
                "index": index,
                "time": frames[index][0],
                "face": found,
                "aligned": aligned,
                "sharpness": facelib.sharpness(aligned),
                "frontality": facelib.frontality(aligned, found),
                "size": found.size,
                "thumb": cv2.resize(gray, (24, 24), interpolation=cv2.INTER_AREA) / 255.0,
            }
        )
    chosen = _choose(candidates, references)
    result = CaptureResult(
        references=[facelib.portrait_crop(frames[c["index"]][1], c["face"], REFERENCE_SIZE) for c in chosen],
        faces=[c["aligned"] for c in chosen],
    )
    result.tracks = [
        [(frames[i][0], *face.center, face.size) for i, face in track.detections]
        for track in tracks
        if track is main or len(track.detections) >= 2
    ]
    result.report.update(
        {
            "video_seconds": round(duration, 2),
            "frames_sampled": sampled,
            "frames_with_face": len(main.detections),
            "face_px": round(main.median_size),
            "detector": detector.name,
            "reference_times": [round(c["time"], 2) for c in chosen],
        }
    )
    if embedder is not None:
        best = sorted(candidates, key=lambda c: -c["sharpness"])[:16]
        vectors = embedder.embed([c["aligned"] for c in best])
        mean = vectors.mean(0)
        result.embedding = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
        result.embedding_model = embedder.name
        result.report["embedding_consistency"] = round(float(np.min(vectors @ result.embedding)), 3)
    else:
        result.notes.append(
            "no identity embedding (no face model installed): clips will carry no identity score;"
            " `kinema models pull opencv/face_recognition_sface` adds one"
        )
    if audio_path is not None:
        _voice(audio_path, True, result)
    else:
        _voice(path, False, result)
    return result
