"""Measuring instruments for the demo world: read a clip back from its pixels and samples alone.

A model's clip has no ground truth, so everything the evaluation says about it -- which colour, size,
wall and floor it shows, whether the ball falls under the world's gravity, whether each bounce is heard
-- has to come from what it looks and sounds like. These detectors are the same for rendered and
generated clips; they never read a `Truth`, and they are judged on the world's own renders (where the
truth is known) before any model figure is trusted.

They are built to survive a model's blurry, slightly off-colour output rather than to exploit the
renderer's exact pixels: room colours are medians over large regions matched to the nearest named
prototype; the ball is found as the part of each frame that differs from the (estimated) empty room in
the direction of the ball's own colour, with its area as a mass (blur spreads it but keeps it); ball
colours are told apart by hue; contact times come from parabolas fitted to the track, not from
single frames; audio onsets are sharp rises in short-time energy above the room tone.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from kinema.world.physics import GRAVITY, max_speed
from kinema.world.render import BALL_RGB, Ball, Camera, _room_image
from kinema.world.scene import FLOOR_TOP, FLOORS, RADII, REF_HEIGHT, WALLS

SIZE_THRESHOLD_REF = math.sqrt(RADII["small"] * RADII["large"])  # radius (reference px) between the sizes


# --- colour ------------------------------------------------------------------------------------------
def srgb_to_lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB values in 0..255, any shape [..., 3]."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = (c @ m.T) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack(
        [116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], axis=-1
    )


def _chroma_dist(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """Lab distance with lightness at half weight: shadows and floor lines count less than colour."""
    d = lab1 - lab2
    return np.sqrt((0.5 * d[..., 0]) ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2)


def _hue(lab: np.ndarray) -> float:
    return math.degrees(math.atan2(lab[2], lab[1]))


def _room_masks(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows safely inside the wall and safely inside the floor (a margin around the edge between them)."""
    y_ref = (np.arange(height) + 0.5) * REF_HEIGHT / height
    return y_ref < FLOOR_TOP - 1.5, y_ref > FLOOR_TOP + 1.5


@lru_cache(maxsize=16)
def _room_prototypes(height: int, width: int) -> tuple[dict, dict]:
    """Median Lab of each wall and each floor, as the world renders them at this size."""
    wall_rows, floor_rows = _room_masks(height, width)
    walls = {
        w: np.median(srgb_to_lab(_room_image(w, "wood", width, height)[wall_rows]).reshape(-1, 3), axis=0)
        for w in WALLS
    }
    floors = {
        f: np.median(srgb_to_lab(_room_image("white", f, width, height)[floor_rows]).reshape(-1, 3), axis=0)
        for f in FLOORS
    }
    return walls, floors


@lru_cache(maxsize=1)
def _ball_prototypes() -> dict:
    """Lab of the mean colour of each ball's fully covered pixels, shading included."""
    camera = Camera(64, 64)
    out = {}
    for name, rgb in BALL_RGB.items():
        canvas = np.zeros((64, 64, 3))
        Ball(x=32.0, y=32.0, radius=RADII["large"], rgb=rgb).draw(canvas, camera)
        yy, xx = np.mgrid[0:64, 0:64] + 0.5
        inside = np.hypot(xx - 32.0, yy - 32.0) < RADII["large"] - 0.5
        out[name] = srgb_to_lab(canvas[inside].mean(axis=0))
    return out


def classify_ball_colour(lab) -> tuple[str, dict]:
    """Nearest ball colour by hue (mostly) and lightness; returns (name, distance per name)."""
    lab = np.asarray(lab, dtype=np.float64)
    h = _hue(lab)
    dists = {}
    for name, proto in _ball_prototypes().items():
        dh = (h - _hue(proto) + 180.0) % 360.0 - 180.0
        dists[name] = math.hypot(dh / 20.0, (lab[0] - proto[0]) / 30.0)
    return min(dists, key=dists.__getitem__), dists


def _nearest(lab: np.ndarray, prototypes: dict) -> tuple[str, dict]:
    dists = {k: float(np.linalg.norm(lab - v)) for k, v in prototypes.items()}
    return min(dists, key=dists.__getitem__), dists


# --- small numpy helpers -------------------------------------------------------------------------------
def _box(img: np.ndarray, k: int) -> np.ndarray:
    """Box filter (k odd) over the last two axes, zero padded."""
    if k <= 1:
        return img
    p = k // 2
    a = np.pad(img, [(0, 0)] * (img.ndim - 2) + [(p + 1, p), (p + 1, p)])
    s = a.cumsum(-1).cumsum(-2)
    return (s[..., k:, k:] - s[..., :-k, k:] - s[..., k:, :-k] + s[..., :-k, :-k]) / (k * k)


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    return _box(mask.astype(np.float64), k) > 1e-9


# --- the measurement -----------------------------------------------------------------------------------
@dataclass
class Measurement:
    """What a clip shows and sounds like, measured. Pixel quantities are image px of the measured clip;
    `*_ref` ones are in the world's reference px (64-px-high room)."""

    colour: str | None
    size: str | None
    wall: str | None
    floor: str | None
    track: list  # per frame: (x, y) ball centre in image px, or None where no ball was found
    radii: list  # per frame: radius estimate (image px) or None
    frame_colours: list  # per frame: ball colour name or None
    radius_px: float | None  # median radius over the frames
    contacts: list  # frame floats (frame i is at time i/fps) where the ball meets the floor
    onsets: list  # audio onset times, seconds
    fps: float
    sample_rate: int
    width: int
    height: int
    floor_y_px: float | None = None  # the ball centre's row at contact, as measured
    gravity_px_frame: float | None = None  # curvature used to time contacts, px/frame^2
    extrapolated: list = field(default_factory=list)  # contact frames predicted past the last frame
    resting_from: int | None = None  # first frame of the final rest (index into track), if any
    details: dict = field(default_factory=dict, repr=False)  # distances to prototypes etc.

    @property
    def px_per_ref(self) -> float:
        return self.height / REF_HEIGHT

    @property
    def radius_ref(self) -> float | None:
        return None if self.radius_px is None else self.radius_px / self.px_per_ref

    @property
    def centers(self) -> np.ndarray:
        """[T, 2] ball centres, NaN where not found."""
        return np.array([c if c is not None else (np.nan, np.nan) for c in self.track], dtype=np.float64).reshape(-1, 2)

    @property
    def contact_times(self) -> list:
        return [f / self.fps for f in self.contacts]


def _background(rgb: np.ndarray) -> np.ndarray:
    """The empty room: the per-pixel median over time, except where something (a ball resting most of
    the clip) differs in colour from its row's median; there the row's median (walls are flat, floor
    rows are mostly one material)."""
    med = np.median(rgb, axis=0)
    row = np.median(med, axis=1, keepdims=True) * np.ones_like(med)
    odd = _chroma_dist(srgb_to_lab(med), srgb_to_lab(row)) > 15.0
    k = max(int(round(3 * rgb.shape[1] / 64)) | 1, 3)
    odd = _dilate(odd, k)
    return np.where(odd[..., None], row, med)


def _find_ball(alpha: np.ndarray, r_big: float, r_small: float):
    """Centre (x, y), area of the ball in one frame's alpha map (how far each pixel has moved from the
    background towards the ball colour), or None."""
    h, w = alpha.shape
    k = max(int(round(2 * r_small)) | 1, 3)
    sm = _box(np.clip(alpha, 0, 1)[None], k)[0]
    j = int(np.argmax(sm))
    if sm.flat[j] < 0.25:
        return None
    cy, cx = divmod(j, w)
    cx, cy = cx + 0.5, cy + 0.5
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    reach = 1.6 * r_big + 2.0
    for _ in range(4):
        near = (xx - cx) ** 2 + (yy - cy) ** 2 <= reach * reach
        wgt = np.where(near & (alpha > 0.25), np.clip(alpha, 0, 1), 0.0)
        area = float(wgt.sum())
        if area < 0.25 * math.pi * r_small * r_small:
            return None
        cx, cy = float((wgt * xx).sum() / area), float((wgt * yy).sum() / area)
        reach = max(1.4 * math.sqrt(area / math.pi) + 1.5, r_small + 1.0)  # shrink the window to the ball
    return cx, cy, area, wgt


def detect_clip(frames, audio, fps: float, sample_rate: int) -> Measurement:
    """Measure a clip (uint8 [T,H,W,3] frames, mono audio) from its pixels and samples only."""
    frames = np.asarray(frames)
    rgb = frames.astype(np.float64)
    t_count, height, width = rgb.shape[:3]
    scale = height / REF_HEIGHT
    wall_rows, floor_rows = _room_masks(height, width)
    walls, floors = _room_prototypes(height, width)
    bg = _background(rgb)
    bg_lab = srgb_to_lab(bg)
    wall, wall_d = _nearest(np.median(bg_lab[wall_rows].reshape(-1, 3), axis=0), walls)
    floor, floor_d = _nearest(np.median(bg_lab[floor_rows].reshape(-1, 3), axis=0), floors)

    # the ball's colour: the pixels that differ most from the room, over the whole clip
    lab = srgb_to_lab(rgb)
    diff = _chroma_dist(lab, bg_lab[None])
    strong = []
    for t in range(t_count):
        d = diff[t]
        top = d.max()
        if top > 20.0:
            strong.append(rgb[t][d > 0.6 * top])
    r_small, r_big = RADII["small"] * scale, RADII["large"] * scale
    details = {"wall_distances": wall_d, "floor_distances": floor_d}
    if not strong:
        return Measurement(
            colour=None,
            size=None,
            wall=wall,
            floor=floor,
            track=[None] * t_count,
            radii=[None] * t_count,
            frame_colours=[None] * t_count,
            radius_px=None,
            contacts=[],
            onsets=detect_onsets(audio, sample_rate),
            fps=fps,
            sample_rate=sample_rate,
            width=width,
            height=height,
            details=details,
        )
    ball_rgb = np.concatenate(strong).mean(axis=0)
    colour, colour_d = classify_ball_colour(srgb_to_lab(ball_rgb))
    details["colour_distances"] = colour_d
    details["ball_rgb"] = ball_rgb

    # per frame: alpha = how far each pixel has moved from the background towards the ball's colour,
    # ignoring changes along the background's own colour (a shadow only scales it: alpha 0)
    unit = bg / np.maximum(np.linalg.norm(bg, axis=-1, keepdims=True), 1.0)
    direction = ball_rgb[None, None] - (ball_rgb[None, None] * unit).sum(-1, keepdims=True) * unit
    norm2 = np.maximum((direction**2).sum(-1), 1.0)
    track: list[tuple[float, float] | None] = []
    radii: list[float | None] = []
    frame_colours: list[str | None] = []
    core_rgb: list[np.ndarray] = []
    for t in range(t_count):
        alpha = ((rgb[t] - bg) * direction).sum(-1) / norm2
        found = _find_ball(alpha, r_big, r_small)
        if found is None:
            track.append(None)
            radii.append(None)
            frame_colours.append(None)
            continue
        cx, cy, area, wgt = found
        track.append((cx, cy))
        radii.append(math.sqrt(area / math.pi))
        core = wgt >= 0.85 * wgt.max()  # the purest ball pixels: blur mixes the edges with the room
        core_rgb.append(rgb[t][core])
        frame_colours.append(classify_ball_colour(srgb_to_lab(rgb[t][core].mean(axis=0)))[0])
    if core_rgb:  # the clip's colour again, from the purest pixels of every frame the ball was found in
        ball_rgb = np.concatenate(core_rgb).mean(axis=0)
        colour, colour_d = classify_ball_colour(srgb_to_lab(ball_rgb))
        details["colour_distances"] = colour_d
        details["ball_rgb"] = ball_rgb
    found_r = [r for r in radii if r is not None]
    radius_px = float(np.median(found_r)) if found_r else None
    size = None if radius_px is None else ("small" if radius_px / scale < SIZE_THRESHOLD_REF else "large")

    ys = np.array([c[1] if c is not None else np.nan for c in track])
    tc = contacts_from_track(ys, scale, fps)
    return Measurement(
        colour=colour,
        size=size,
        wall=wall,
        floor=floor,
        track=track,
        radii=radii,
        frame_colours=frame_colours,
        radius_px=radius_px,
        contacts=tc.contacts,
        onsets=detect_onsets(audio, sample_rate),
        fps=fps,
        sample_rate=sample_rate,
        width=width,
        height=height,
        floor_y_px=tc.floor_y,
        gravity_px_frame=tc.curvature,
        extrapolated=tc.extrapolated,
        resting_from=tc.resting_from,
        details=details,
    )


# --- contacts from the track -----------------------------------------------------------------------------
def _fit_fixed(t: np.ndarray, y: np.ndarray, a: float):
    """y = a t^2 + b t + c with a given: least squares (b, c), and the RMS residual."""
    A = np.stack([t, np.ones_like(t)], axis=1)
    (b, c), *_ = np.linalg.lstsq(A, y - a * t * t, rcond=None)
    res = y - (a * t * t + b * t + c)
    return float(b), float(c), float(np.sqrt(np.mean(res * res)))


def _roots(a: float, b: float, c: float, level: float):
    disc = b * b - 4 * a * (c - level)
    if disc < 0:
        return None
    s = math.sqrt(disc)
    return sorted(((-b - s) / (2 * a), (-b + s) / (2 * a)))


@dataclass
class TrackContacts:
    contacts: list  # frame floats, in order (extrapolated ones included, last)
    extrapolated: list  # those predicted after the last frame (heard, not yet seen)
    floor_y: float | None  # the ball centre's row on the floor
    curvature: float | None  # gravity in px/frame^2 used for the timing
    resting_from: int | None  # first frame of the final rest, if the ball comes to rest


def contacts_from_track(ys: np.ndarray, px_per_ref: float = 1.0, fps: float = 12.0) -> TrackContacts:
    """Contacts (frame floats) from the ball's image row per frame (NaN = not found; y grows downwards).

    A contact is where the track turns from falling to rising (a bounce) or stops on its lowest row (comes
    to rest). Its time is where the parabolas of the flights on either side meet (both with the track's
    own curvature); where one side has too few frames, or at rest, where the falling side reaches the
    floor row. A ball still falling at the last frame gets the contact its parabola predicts, if that is
    within one frame (the clip's sound runs that long)."""
    none = TrackContacts([], [], None, None, None)
    idx = np.flatnonzero(np.isfinite(ys))
    if len(idx) < 3:
        return none
    t_all = idx.astype(np.float64)
    y_all = ys[idx]
    n = len(idx)
    # Still / not still: the world's smallest bounce rises 3 reference px, so a tenth of a pixel of
    # tracking noise is nothing and half a pixel is the most that can be ignored.
    eps = 0.5 * px_per_ref
    span = float(y_all.max() - y_all.min())
    if span < 2 * eps:
        return none
    y_max = float(y_all.max())
    # rest: the longest run of frames at the end that stays within eps of its median, at the lowest rows
    rest_from = None
    for j in range(n - 2, -1, -1):
        tail = y_all[j:]
        if np.abs(tail - np.median(tail)).max() >= eps or idx[j + 1] - idx[j] > 2:
            break
        if np.median(tail) > y_max - 2 * eps:
            rest_from = j
    # bounces: falling, then rising (a local maximum of y, near the floor, with some prominence)
    stop = rest_from if rest_from is not None else n
    turns = [
        k
        for k in range(1, min(stop, n - 1))
        if y_all[k] >= y_all[k - 1]
        and y_all[k] > y_all[k + 1]
        and y_all[k] > y_max - 0.5 * span
        and y_all[k] - min(y_all[k - 1], y_all[k + 1]) > eps
    ]
    bounds = [-1] + turns + [stop]
    # the curvature: free parabola fits of flights of >= 4 frames between the turns
    curv = []
    for lo, hi in itertools.pairwise(bounds):
        if hi - lo - 1 >= 4:
            c2 = np.polyfit(t_all[lo + 1 : hi], y_all[lo + 1 : hi], 2)[0]
            if c2 > 0:
                curv.append(c2)
    a = float(np.median(curv)) if curv else 0.5 * GRAVITY * px_per_ref / (fps * fps)  # fallback: the world's

    def side(lo, hi):  # valid-track entries lo..hi-1, or None if fewer than two
        return (t_all[lo:hi], y_all[lo:hi]) if hi - lo >= 2 else None

    def root(part, level, which):
        if part is None:
            return None
        b, c, _ = _fit_fixed(part[0], part[1], a)
        r = _roots(a, b, c, level)
        return None if r is None else r[which]

    met = []  # per turn: (time, row) where the flights on either side meet, or None
    for i, k in enumerate(turns):
        lo, hi = bounds[i] + 1, bounds[i + 2]
        best = None
        for k_in_pre in (True, False):  # the turn's own frame belongs to one of the two flights
            pre = side(lo, k + 1 if k_in_pre else k)
            post = side(k + 1 if k_in_pre else k, hi)
            if pre is None or post is None:
                continue
            b1, c1, r1 = _fit_fixed(pre[0], pre[1], a)
            b2, c2, r2 = _fit_fixed(post[0], post[1], a)
            if abs(b1 - b2) < 1e-9:
                continue
            ts = (c2 - c1) / (b1 - b2)
            consistent = (ts >= t_all[k] - 1e-6) if k_in_pre else (ts <= t_all[k] + 1e-6)
            score = r1 + r2 + (0.0 if consistent else 1e3)
            if abs(ts - t_all[k]) <= 1.0 and (best is None or score < best[0]):
                best = (score, ts, a * ts * ts + b1 * ts + c1)
        met.append(None if best is None else best[1:])
    levels = [m[1] for m in met if m is not None]
    if rest_from is not None:
        levels.append(float(np.median(y_all[rest_from:])))
    y_floor = float(np.median(levels)) if levels else y_max

    contacts = []
    for i, k in enumerate(turns):
        meeting = met[i]
        if meeting is not None:
            contacts.append(float(meeting[0]))
            continue
        lo, hi = bounds[i] + 1, bounds[i + 2]  # one side too short: where the longer one reaches the floor
        pre, post = side(lo, k), side(k + 1, hi)
        ts = float(t_all[k])
        if pre is not None and (post is None or len(pre[0]) >= len(post[0])):
            r = root(pre, y_floor, 1)
        else:
            r = root(post, y_floor, 0)
        contacts.append(float(r) if r is not None and abs(r - ts) <= 1.0 else ts)

    # the first flight: if it starts rising, the clip may have begun just before a bounce (frame 0 still
    # falling): where the rising frames' parabola leaves the floor, if that is after frame 0
    first_hi = bounds[1] if len(bounds) > 1 else n
    if first_hi >= 3 and y_all[2] < y_all[1]:
        r = root(side(1, first_hi), y_floor, 0)
        if r is not None and t_all[0] - 0.1 <= r <= t_all[1] and y_all[0] > y_floor - 2.0 * span / 3.0:
            contacts.insert(0, max(float(r), float(t_all[0])))

    # the last flight: it ends on the floor (the ball comes to rest or has just landed), or is still falling
    lo = bounds[-2] + 1
    hi = n
    while hi - 1 > lo and y_all[hi - 1] >= y_floor - eps:
        hi -= 1  # frames already down on the floor row
    extrapolated = []
    falling = hi - lo >= 2 and y_all[hi - 1] > y_all[hi - 2]
    if falling:
        r = root(side(lo, hi), y_floor, 1)
        last_off = t_all[hi - 1]
        if hi < n:  # landed between the last frame off the floor and the first one on it
            first_on = t_all[hi]
            contacts.append(
                float(r) if r is not None and last_off < r <= first_on + 0.5 else 0.5 * (last_off + first_on)
            )
        elif r is not None and last_off < r <= len(ys):
            extrapolated.append(float(r))
    elif rest_from is not None and hi < n:  # too few frames to fit: halfway between off and on the floor
        contacts.append(
            float(0.5 * (t_all[hi - 1] + t_all[hi]))
            if hi - 1 >= lo and y_all[hi - 1] < y_floor - eps
            else float(t_all[hi])
        )
    return TrackContacts(contacts + extrapolated, extrapolated, y_floor, 2.0 * a, rest_from)


# --- audio onsets --------------------------------------------------------------------------------------
def detect_onsets(
    audio, sample_rate: int, *, min_gap_s: float = 0.06, rise_db: float = 9.0, above_floor_db: float = 15.0
) -> list:
    """Times (s) of sharp rises in short-time energy, well above the quiet room tone."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(sample_rate // 1000, 1)  # 1 ms
    m = len(x) // hop
    if m < 4:
        return []
    e = (x[: m * hop].reshape(m, hop) ** 2).mean(axis=1)
    level = 10.0 * np.log10(e + 1e-12)
    floor = float(np.percentile(level, 20))
    hist = 10  # ms of history the rise is measured against
    cs = np.concatenate([[0.0], np.cumsum(e)])
    onsets = []
    last = -1e9
    k = 1
    while k < m:
        lo = max(k - hist, 0)
        ref = 10.0 * math.log10((cs[k] - cs[lo]) / (k - lo) + 1e-12)
        if level[k] - ref > rise_db and level[k] > floor + above_floor_db:
            # the first sample of the rise: where |x| first exceeds a fraction of the next 5 ms peak
            a0 = max((k - 1) * hop, 0)
            seg = np.abs(x[a0 : (k + 5) * hop])
            noise = math.sqrt(max(10 ** (floor / 10.0), 1e-12))
            thr = max(0.1 * seg.max(), 4.0 * noise)
            first = a0 + int(np.argmax(seg > thr))
            ts = first / sample_rate
            if ts - last >= min_gap_s:
                onsets.append(ts)
                last = ts
            k += int(min_gap_s * 1000)
            continue
        k += 1
    return onsets


# --- reports -------------------------------------------------------------------------------------------
def _flights(m: Measurement):
    """Frames of each flight: found frames strictly between consecutive contacts (and the clip's ends)."""
    ys = m.centers[:, 1]
    edges = [-math.inf] + sorted(m.contacts) + [math.inf]
    out = []
    for lo, hi in itertools.pairwise(edges):
        fr = [i for i in range(len(ys)) if lo < i < hi and np.isfinite(ys[i])]
        if m.resting_from is not None:
            fr = [i for i in fr if i < m.resting_from]  # a resting ball is not in flight
        if m.contacts and hi == math.inf and m.floor_y_px is not None:
            fr = [i for i in fr if ys[i] < m.floor_y_px - 0.5 * m.px_per_ref]
        out.append(fr)
    return out


def physics_report(
    m: Measurement,
    fps: float | None = None,
    *,
    gravity_px: float | None = None,
    min_frames: int = 5,
    r2_min: float = 0.9,
    gravity_tol: float = 0.25,
    max_step_px: float | None = None,
    consistency: float = 0.9,
) -> dict:
    """Does the measured ball move as the world's ball does? Flights of >= min_frames frames are fitted
    with a parabola (R^2, gravity vs the world's, in image px/s^2); the heights of the apexes must
    decrease; the ball must never move farther between frames than the world allows; and it must keep
    its colour and size. `passed` needs at least one flight that fits, and all the rest."""
    fps = fps or m.fps
    scale = m.px_per_ref
    g_world = gravity_px if gravity_px is not None else GRAVITY * scale
    centers = m.centers
    ys = centers[:, 1]
    flights = []
    for fr in _flights(m):
        if len(fr) < min_frames:
            continue
        t = np.array(fr, dtype=np.float64) / fps
        y = ys[fr]
        coef = np.polyfit(t, y, 2)
        pred = np.polyval(coef, t)
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
        g = 2.0 * coef[0]
        ok = r2 >= r2_min and abs(g / g_world - 1.0) <= gravity_tol
        flights.append(
            {
                "first_frame": fr[0],
                "last_frame": fr[-1],
                "frames": len(fr),
                "r2": r2,
                "gravity": g,
                "gravity_ratio": g / g_world,
                "ok": bool(ok),
            }
        )
    # apex heights above the floor row, from each flight's parabola with the measured curvature
    apexes = []
    if m.floor_y_px is not None and m.gravity_px_frame:
        a = 0.5 * m.gravity_px_frame
        for fr in _flights(m):
            if len(fr) < 2:
                continue
            b, c, _ = _fit_fixed(np.array(fr, float), ys[fr], a)
            apexes.append(m.floor_y_px - (c - b * b / (4 * a)))
    tol = 0.5 * scale
    decreasing = all(later <= earlier * 1.05 + tol for earlier, later in itertools.pairwise(apexes))
    steps = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    steps = steps[np.isfinite(steps)]
    max_step = float(steps.max()) if len(steps) else 0.0
    allowed = max_step_px if max_step_px is not None else 1.3 * max_speed() * scale / fps + 1.0
    found = [i for i, c in enumerate(m.track) if c is not None]
    found_share = len(found) / max(len(m.track), 1)
    colours = [m.frame_colours[i] for i in found if m.frame_colours[i] is not None]
    colour_share = (sum(c == m.colour for c in colours) / len(colours)) if colours else 0.0
    radii = np.array([m.radii[i] for i in found], dtype=np.float64)
    if len(radii):
        med = float(np.median(radii))
        size_share = float(np.mean((radii > 0.7 * med) & (radii < 1.4 * med)))
    else:
        size_share = 0.0
    fit_ok = any(f["ok"] for f in flights)
    passed = (
        fit_ok
        and decreasing
        and max_step <= allowed
        and found_share >= 0.8
        and colour_share >= consistency
        and size_share >= consistency
    )
    return {
        "passed": bool(passed),
        "flight_fits": bool(fit_ok),
        "flights": flights,
        "apex_heights_px": apexes,
        "apexes_decrease": bool(decreasing),
        "max_step_px": max_step,
        "max_step_allowed_px": allowed,
        "found_share": found_share,
        "colour_share": colour_share,
        "size_share": size_share,
        "world_gravity_px": g_world,
    }


def sync_report(contact_times_s, onset_times_s, fps: float) -> dict:
    """Contacts (seen) against onsets (heard): per contact the nearest onset's offset (onset - contact);
    the median offset in ms, the share of contacts with an onset within +-1 frame, and the share of onsets
    with no contact within +-1 frame."""
    contacts = np.asarray(list(contact_times_s), dtype=np.float64)
    onsets = np.asarray(list(onset_times_s), dtype=np.float64)
    frame = 1.0 / fps
    offsets = []
    for c in contacts:
        if len(onsets):
            j = int(np.argmin(np.abs(onsets - c)))
            offsets.append(float(onsets[j] - c))
    offsets_a = np.asarray(offsets)
    within = (
        float(np.mean(np.abs(offsets_a) <= frame + 1e-9))
        if len(contacts) and len(onsets)
        else (1.0 if not len(contacts) else 0.0)
    )
    if len(onsets):
        lonely = [o for o in onsets if not len(contacts) or np.min(np.abs(contacts - o)) > frame + 1e-9]
        lonely_share = len(lonely) / len(onsets)
    else:
        lonely_share = 0.0
    return {
        "contacts": int(len(contacts)),
        "onsets": int(len(onsets)),
        "median_offset_ms": float(np.median(offsets_a) * 1000.0) if len(offsets_a) else None,
        "median_abs_offset_ms": float(np.median(np.abs(offsets_a)) * 1000.0) if len(offsets_a) else None,
        "offsets_ms": [o * 1000.0 for o in offsets],
        "contacts_with_onset": within,
        "onsets_without_contact": lonely_share,
    }


def frame_psnr(a, b, peak: float = 255.0) -> float:
    """PSNR (dB) between two frames (or stacks of frames) of the same shape; inf when identical."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
