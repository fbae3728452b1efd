"""Faces: find them, align them, and (when a face model is installed) tell who they are.

Detection works offline out of the box with the Haar cascades that ship inside
``opencv-python-headless`` 4.x. A better detector (YuNet, 5 landmarks) and an
identity embedder (SFace, or any ArcFace-style ONNX model) are used when their
ONNX files are installed: ``kinema models pull opencv/face_detection_yunet`` and
``kinema models pull opencv/face_recognition_sface``, or point
``KINEMA_FACE_DETECTOR`` / ``KINEMA_FACE_EMBEDDER`` at an ``.onnx`` file.
Embeddings run through onnxruntime (CUDA when present, CPU otherwise).

Images are uint8 RGB [H, W, 3] throughout; boxes are (x, y, w, h) in pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinema.errors import KinemaError, MissingWeightsError
from kinema.home import models_dir
from kinema.models import local_dir_for

# ArcFace's five-point template for a 112x112 crop: right eye, left eye (as seen), nose tip, mouth corners.
# SFace and the insightface recognisers were all trained on crops warped onto it.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
EMBED_SIZE = 112
# Faces are searched in a frame scaled down to this short side: Haar's cost grows with the pixel count and its
# window is 24 px, so 240 finds faces from a tenth of the frame height up (a cameo needs them bigger anyway).
DETECT_SHORT_SIDE = 240


class FaceModelError(KinemaError):
    """A face model is installed but cannot be used (wrong file, missing runtime)."""


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x, y, w, h
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)  # [5, 2] ARCFACE_TEMPLATE order
    eyes: np.ndarray | None = field(default=None, compare=False)  # [2, 2]: eye on the image's left, then right

    @property
    def size(self) -> float:
        return float(min(self.box[2], self.box[3]))

    @property
    def center(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2


# --------------------------------------------------------------------------- face models on disk


@dataclass(frozen=True)
class FaceModelSpec:
    """How to feed an ONNX face model. ``mean``/``std`` apply to 0..255 pixel values."""

    role: str  # "detector" or "embedder"
    file: str
    license: str = ""
    size: int = EMBED_SIZE
    mean: float = 0.0
    std: float = 1.0
    channels: str = "rgb"


KNOWN_FACE_MODELS: dict[str, FaceModelSpec] = {
    # OpenCV model zoo, Apache-2.0. FaceRecognizerSF feeds it RGB 0..255 (blobFromImage with swapRB).
    "opencv/face_recognition_sface": FaceModelSpec("embedder", "face_recognition_sface_2021dec.onnx", "Apache-2.0"),
    # OpenCV model zoo, MIT. Run through cv2.FaceDetectorYN, which owns its output decoding.
    "opencv/face_detection_yunet": FaceModelSpec("detector", "face_detection_yunet_2023mar.onnx", "MIT"),
}
ENV_VARS = {"detector": "KINEMA_FACE_DETECTOR", "embedder": "KINEMA_FACE_EMBEDDER"}


@dataclass(frozen=True)
class InstalledFaceModel:
    name: str
    path: Path
    spec: FaceModelSpec


def _spec_beside(path: Path, role: str) -> FaceModelSpec:
    """A custom model may carry ``<model>.json`` with size/mean/std/channels; SFace's conventions otherwise."""
    sidecar = path.with_suffix(".json")
    values: dict[str, Any] = {}
    if sidecar.is_file():
        try:
            values = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise FaceModelError(f"{sidecar} is not readable JSON ({error}); fix or delete it") from None
    allowed = {"size", "mean", "std", "channels", "license"}
    return FaceModelSpec(role, path.name, **{k: v for k, v in values.items() if k in allowed})


def installed_model(role: str) -> InstalledFaceModel | None:
    """The face model used for ``role`` ('detector' or 'embedder'), or None when none is installed."""
    env = os.environ.get(ENV_VARS[role])
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FaceModelError(f"{ENV_VARS[role]}={env} is not a file; point it at an .onnx model or unset it")
        return InstalledFaceModel(path.name, path, _spec_beside(path, role))
    for hub_id, spec in KNOWN_FACE_MODELS.items():
        path = models_dir() / hub_id.replace("/", "--") / spec.file
        if spec.role == role and path.is_file():
            return InstalledFaceModel(hub_id, path, spec)
    return None


def pull_face_model(hub_id: str, *, revision: str | None = None) -> Path:
    """Download one known face model's ONNX file (and licence) into kinema's model folder."""
    from huggingface_hub import snapshot_download

    spec = KNOWN_FACE_MODELS[hub_id]
    target = local_dir_for(hub_id)
    snapshot_download(hub_id, revision=revision, local_dir=target, allow_patterns=[spec.file, "LICENSE", "README.md"])
    if not (target / spec.file).is_file():
        raise MissingWeightsError(f"{hub_id} has no {spec.file}; nothing was installed")
    return target / spec.file


def describe_models() -> dict[str, str | None]:
    """Which face models are in use, for status lines."""
    out: dict[str, str | None] = {}
    for role in ("detector", "embedder"):
        try:
            model = installed_model(role)
        except FaceModelError as error:
            out[role] = f"unusable: {error}"
            continue
        out[role] = model.name if model else None
    if out["detector"] is None:
        out["detector"] = "opencv-haar (built in)"
    return out


# --------------------------------------------------------------------------- detection


def _cv2() -> Any:
    import cv2

    return cv2


class HaarDetector:
    """OpenCV's frontal-face Haar cascade plus its eye cascade (for the eye line, used to level crops)."""

    name = "opencv-haar"

    def __init__(self) -> None:
        cv2 = _cv2()
        root = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if not root or not Path(root, "haarcascade_frontalface_default.xml").is_file():
            raise FaceModelError(
                "this OpenCV ships no Haar cascades (OpenCV 5 dropped them):"
                " pip install 'opencv-python-headless>=4.8,<5'"
            )
        self._faces = cv2.CascadeClassifier(str(Path(root, "haarcascade_frontalface_default.xml")))
        self._eyes = cv2.CascadeClassifier(str(Path(root, "haarcascade_eye.xml")))

    def detect(self, image: np.ndarray, min_size: int = 24, short_side: int = DETECT_SHORT_SIDE) -> list[Face]:
        """Faces at least ``min_size`` px (and a 24 px window at ``short_side``) tall, with their eye line."""
        cv2 = _cv2()
        full = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, short_side / min(full.shape[:2]))
        small = full if scale == 1.0 else cv2.resize(full, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        window = max(24, int(min_size * scale))
        boxes, _levels, weights = self._faces.detectMultiScale3(
            cv2.equalizeHist(small),
            scaleFactor=1.15,
            minNeighbors=5,
            minSize=(window, window),
            outputRejectLevels=True,
        )
        faces = []
        for box, weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1), strict=True):
            x, y, w, h = (float(v) / scale for v in box)
            faces.append(
                Face(
                    box=(x, y, w, h),
                    # Haar's level weight grows with confidence without bound; squash it into 0..1.
                    score=float(1.0 - np.exp(-max(float(weight), 0.0) / 2.0)),
                    # Eyes are small: look for them at up to 2x the detection resolution, in the face only.
                    eyes=self._find_eyes(full, (x, y, w, h), min(1.0, 2 * scale)),
                )
            )
        return faces

    def _find_eyes(self, gray: np.ndarray, box: Sequence[float], scale: float) -> np.ndarray | None:
        cv2 = _cv2()
        x0, y0, w0, h0 = box
        region = gray[max(0, int(y0)) : int(y0 + h0 * 0.6), max(0, int(x0)) : int(x0 + w0)]
        if region.size == 0 or min(region.shape) < 12:
            return None
        if scale < 1.0:
            region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        w, h = w0 * scale, h0 * scale
        found = self._eyes.detectMultiScale(
            cv2.equalizeHist(region),
            scaleFactor=1.1,
            minNeighbors=4,
            minSize=(max(6, int(w) // 8),) * 2,
            maxSize=(max(7, int(w) // 2),) * 2,
        )
        centers = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in np.asarray(found).reshape(-1, 4)]
        left = [c for c in centers if c[0] < w * 0.5 and 0.15 * h < c[1] < 0.55 * h]
        right = [c for c in centers if c[0] >= w * 0.5 and 0.15 * h < c[1] < 0.55 * h]
        if not left or not right:
            return None
        # The pair closest to level and to a plausible spacing: eyebrows and nostrils fool the cascade too.
        best = min(
            ((a, b) for a in left for b in right),
            key=lambda p: abs(p[0][1] - p[1][1]) + abs((p[1][0] - p[0][0]) - 0.4 * w),
        )
        (ax, ay), (bx, by) = best
        if not 0.25 * w <= bx - ax <= 0.65 * w or abs(ay - by) > 0.15 * h:
            return None
        return np.array([[x0 + ax / scale, y0 + ay / scale], [x0 + bx / scale, y0 + by / scale]], dtype=np.float32)


class YuNetDetector:
    """YuNet through OpenCV's FaceDetectorYN: boxes, scores and five landmarks."""

    name = "yunet"

    def __init__(self, model: InstalledFaceModel, score_threshold: float = 0.8) -> None:
        cv2 = _cv2()
        try:
            self._net = cv2.FaceDetectorYN.create(str(model.path), "", (320, 320), score_threshold, 0.3, 50)
        except cv2.error as error:
            raise FaceModelError(f"{model.path} is not a YuNet face detector OpenCV can load: {error}") from None
        self.name = f"yunet ({model.name})"

    def detect(self, image: np.ndarray, min_size: int = 24, short_side: int = 2 * DETECT_SHORT_SIDE) -> list[Face]:
        cv2 = _cv2()
        scale = min(1.0, short_side / min(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._net.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            x, y, w, h = (float(v) / scale for v in row[:4])
            if min(w, h) < min_size:
                continue
            points = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2) / scale
            eyes = points[:2][np.argsort(points[:2, 0])]
            faces.append(Face(box=(x, y, w, h), score=float(row[14]), landmarks=points, eyes=eyes))
        return faces


def get_detector() -> Any:
    """YuNet when its model is installed, else the built-in Haar cascade."""
    model = installed_model("detector")
    if model is not None:
        return YuNetDetector(model)
    return HaarDetector()


# --------------------------------------------------------------------------- alignment


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation+scale+shift that best maps points ``src`` onto ``dst`` (Umeyama, least squares)."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / max(s.var(0).sum(), 1e-9))
    matrix = np.zeros((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def _box_points(face: Face) -> np.ndarray:
    """Where ARCFACE_TEMPLATE's eyes usually sit in a frontal-face box, for faces found without landmarks."""
    x, y, w, h = face.box
    return np.array([[x + 0.32 * w, y + 0.40 * h], [x + 0.68 * w, y + 0.40 * h]], dtype=np.float32)


def alignment(face: Face, size: int = EMBED_SIZE) -> np.ndarray:
    """The 2x3 warp from the image onto a ``size``-pixel ArcFace-aligned crop."""
    template = ARCFACE_TEMPLATE * (size / EMBED_SIZE)
    if face.landmarks is not None:
        return _similarity(face.landmarks.astype(np.float64), template.astype(np.float64))
    eyes = face.eyes if face.eyes is not None else _box_points(face)
    return _similarity(eyes.astype(np.float64), template[:2].astype(np.float64))


def aligned_crop(image: np.ndarray, face: Face, size: int = EMBED_SIZE) -> np.ndarray:
    """The face warped onto the ArcFace template: what embedders expect."""
    cv2 = _cv2()
    return cv2.warpAffine(
        image, alignment(face, size), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def portrait_crop(image: np.ndarray, face: Face, size: int = 512, zoom: float = 0.4) -> np.ndarray:
    """A levelled head-and-shoulders square around the face: the reference picture a video model sees.

    ``zoom`` is the face's share of the crop's width.
    """
    cv2 = _cv2()
    # In ARCFACE_TEMPLATE coordinates the face spans about 72 px and centres near (56, 70).
    scale = zoom * size / 72.0
    matrix = alignment(face, EMBED_SIZE) * scale
    matrix[:, 2] += np.array([size / 2, size * 0.42]) - scale * np.array([56.0, 70.0])
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian: higher is sharper (motion blur and defocus flatten it)."""
    cv2 = _cv2()
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def frontality(crop: np.ndarray, face: Face) -> float:
    """0..1: how squarely the face looks at the camera.

    With landmarks, the nose's offset from the eyes' midline; without, how well
    the aligned crop matches its own mirror image.
    """
    if face.landmarks is not None:
        (rx, _), (lx, _), (nx, _) = face.landmarks[:3]
        eye_span = max(abs(lx - rx), 1e-6)
        return float(np.clip(1.0 - 2.0 * abs(nx - (lx + rx) / 2) / eye_span, 0.0, 1.0))
    gray = crop.astype(np.float32).mean(-1)
    inner = gray[16:-8, 16:-16]
    mirror_error = np.abs(inner - inner[:, ::-1]).mean() / 128.0
    level = 1.0 if face.eyes is not None else 0.7
    return float(np.clip(1.0 - mirror_error, 0.0, 1.0) * level)


# --------------------------------------------------------------------------- identity embedding


def _providers() -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    wanted = [p for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider") if p in available]
    return wanted + ["CPUExecutionProvider"]


class FaceEmbedder:
    """An ONNX face-recognition model run by onnxruntime: aligned 112x112 RGB crops in, unit vectors out."""

    def __init__(self, model: InstalledFaceModel) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise FaceModelError(
                f"face model {model.name} needs onnxruntime: pip install onnxruntime"
                " (or onnxruntime-gpu on CUDA machines)"
            ) from None
        self.model = model
        self.name = model.name
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(model.path), options, providers=_providers())
        except Exception as error:  # onnxruntime raises its own untyped errors for bad files
            raise FaceModelError(f"{model.path} is not an ONNX model onnxruntime can load: {error}") from None
        spec = self._session.get_inputs()[0]
        self._input = spec.name
        shape = list(spec.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise FaceModelError(f"{model.path} takes {shape}; a face embedder takes [N, 3, H, W] or [N, H, W, 3]")
        self._nchw = shape[1] == 3
        self._fixed_batch = isinstance(shape[0], int) and shape[0] == 1
        self.providers = self._session.get_providers()

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-length embeddings [N, D] of aligned uint8 RGB crops."""
        cv2 = _cv2()
        spec = self.model.spec
        batch = []
        for crop in crops:
            if crop.shape[:2] != (spec.size, spec.size):
                crop = cv2.resize(crop, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
            pixels = crop[..., ::-1] if spec.channels.lower() == "bgr" else crop
            batch.append((pixels.astype(np.float32) - spec.mean) / spec.std)
        array = np.stack(batch)
        if self._nchw:
            array = array.transpose(0, 3, 1, 2)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self._fixed_batch:
            out = np.concatenate(
                [self._session.run(None, {self._input: array[i : i + 1]})[0] for i in range(len(array))]
            )
        else:
            out = self._session.run(None, {self._input: array})[0]
        out = out.reshape(len(array), -1).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


_embedders: dict[tuple, FaceEmbedder] = {}


def get_embedder() -> FaceEmbedder | None:
    """The installed identity embedder, or None (identity scores are then skipped, not guessed).

    Sessions are kept per file and modification time: every clip made with a cameo is scored.
    """
    model = installed_model("embedder")
    if model is None:
        return None
    key = (str(model.path), model.path.stat().st_mtime, model.spec)
    if key not in _embedders:
        _embedders.clear()
        _embedders[key] = FaceEmbedder(model)
    return _embedders[key]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
