"""Pictures and sound of the demo world, with the ground truth that produced them.

The renderer is deliberately structured like a tiny scene graph -- a `Room` (background), a list of
drawables painted in order (shadow, then ball), seen through a `Camera` -- so that later versions can
add more balls, characters, styles or camera moves without rewriting it. Version 1 uses one fixed,
wide camera.

Ball edges are anti-aliased by pixel coverage, so sub-pixel motion shows in the pixels, and the sound of
each contact starts on its exact sample (with a sub-sample phase), so that detectors and models can be
held to frame- and millisecond-level timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from kinema.world.physics import GRAVITY, Trajectory, simulate
from kinema.world.scene import CONTACT_Y, FLOOR_TOP, REF_HEIGHT, REF_WIDTH, Scene

# --- palette (sRGB, 0..255) ----------------------------------------------------------------------------
BALL_RGB = {
    "red": (215, 35, 40),
    "orange": (250, 140, 25),
    "yellow": (245, 215, 35),
    "green": (45, 165, 65),
    "blue": (40, 120, 230),
    "purple": (160, 40, 170),
}
WALL_RGB = {
    "white": (236, 236, 230),
    "grey": (150, 150, 155),
    "pink": (245, 168, 190),
    "mint": (162, 226, 196),
}
FLOOR_RGB = {  # (main colour, line colour): planks and the gaps between them; tiles and grout
    "wood": ((150, 98, 58), (100, 62, 34)),
    "tiles": ((212, 212, 206), (150, 150, 148)),
}
SHADOW_STRENGTH = 0.45  # darkening of the floor right under a ball that touches it

# --- sound -------------------------------------------------------------------------------------------
PITCH_HZ = {"small": 1000.0, "large": 520.0}
ROOM_TONE_RMS = 0.003
SOUND_SECONDS = 0.35  # length of one impact's tail (tiles ring longest)
LOUD_SPEED = 165.0  # px/s: impacts this fast (or faster) play at full loudness
MAX_AMPLITUDE = 0.7


# --- camera and room ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Camera:
    """Maps reference pixels (64-high room) to image pixels. v1: fixed, the whole room, centred."""

    width: int = 64
    height: int = 64

    @property
    def scale(self) -> float:
        return self.height / REF_HEIGHT

    @property
    def offset_x(self) -> float:
        return (self.width - REF_WIDTH * self.scale) / 2.0

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.scale + self.offset_x, xy[..., 1] * self.scale], axis=-1)

    def to_ref(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] - self.offset_x) / self.scale, xy[..., 1] / self.scale], axis=-1)


@dataclass(frozen=True)
class Room:
    wall: str
    floor: str

    def draw(self, camera: Camera) -> np.ndarray:
        return _room_image(self.wall, self.floor, camera.width, camera.height).copy()


VANISH_Y = 16.0  # reference-px row of the floor's vanishing point (perspective of planks and tiles)


def _floor_pattern(floor: str, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """1 where a plank gap / grout line is, 0 elsewhere (reference coordinates, floor pixels only)."""
    d = np.maximum(Y - VANISH_Y, 1e-3)
    fx = (X - REF_WIDTH / 2) * 32.0 / d  # floor coordinates: across ...
    fz = 32.0 * 32.0 / d  # ... and depth (32 at the back edge, ~21 at the picture's bottom)
    if floor == "wood":
        board = 3.2
        row = np.floor(fz / board)
        line_z = np.abs(fz / board - np.round(fz / board)) * board < 0.16 * (32.0 / d) ** -1 * 0.5
        joint_x = (fx + row * 11.0) % 24.0
        line_x = np.minimum(joint_x, 24.0 - joint_x) < 0.45 * 32.0 / d
        return (line_z | line_x).astype(np.float64)
    tile = 7.0
    gx = np.abs(fx / tile - np.round(fx / tile)) * tile < 0.4 * 32.0 / d
    gz = np.abs((fz - 0.5) / (tile * 0.5) - np.round((fz - 0.5) / (tile * 0.5))) * tile * 0.5 < 0.22
    return (gx | gz).astype(np.float64)


@lru_cache(maxsize=64)
def _room_image(wall: str, floor: str, width: int, height: int) -> np.ndarray:
    camera = Camera(width, height)
    ss = 4  # supersampling for the floor lines
    ys = (np.arange(height * ss) + 0.5) / ss
    xs = (np.arange(width * ss) + 0.5) / ss
    ref = camera.to_ref(np.stack(np.meshgrid(xs, ys), axis=-1))
    X, Y = ref[..., 0], ref[..., 1]
    wall_rgb = np.array(WALL_RGB[wall], dtype=np.float64)
    main, line = (np.array(c, dtype=np.float64) for c in FLOOR_RGB[floor])
    # wall: slightly darker towards the ceiling; floor: slightly darker at the back
    wall_img = wall_rgb * (0.94 + 0.06 * np.clip(Y / FLOOR_TOP, 0, 1))[..., None]
    lines = _floor_pattern(floor, X, Y)[..., None]
    depth = np.clip((Y - FLOOR_TOP) / (REF_HEIGHT - FLOOR_TOP), 0, 1)[..., None]
    floor_img = (main * (1 - lines) + line * lines) * (0.9 + 0.1 * depth)
    img = np.where((Y >= FLOOR_TOP)[..., None], floor_img, wall_img)
    img = img.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    img.setflags(write=False)
    return img


# --- drawables -----------------------------------------------------------------------------------------
@dataclass
class Shadow:
    """A soft elliptical shadow on the floor under a ball, darker the closer the ball is."""

    x: float  # reference px
    radius: float
    height: float  # of the ball's bottom above the floor, reference px

    def draw(self, canvas: np.ndarray, camera: Camera) -> None:
        h, w = canvas.shape[:2]
        cx, cy = camera.to_image(np.array([self.x, CONTACT_Y]))
        a = 1.15 * self.radius * camera.scale
        b = 0.38 * self.radius * camera.scale
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        q = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
        strength = SHADOW_STRENGTH * math.exp(-self.height / 18.0)
        dark = strength * np.clip(1.0 - q, 0.0, 1.0) ** 0.6
        canvas *= (1.0 - dark)[..., None]


@dataclass
class Ball:
    """A shaded ball with coverage-based (anti-aliased) edges: sub-pixel motion is visible."""

    x: float  # centre, reference px
    y: float
    radius: float
    rgb: tuple

    def draw(self, canvas: np.ndarray, camera: Camera) -> None:
        h, w = canvas.shape[:2]
        cx, cy = camera.to_image(np.array([self.x, self.y]))
        R = self.radius * camera.scale
        x0, x1 = max(int(cx - R - 2), 0), min(int(cx + R + 3), w)
        y0, y1 = max(int(cy - R - 2), 0), min(int(cy + R + 3), h)
        if x0 >= x1 or y0 >= y1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        dx, dy = xx - cx, yy - cy
        dist = np.sqrt(dx * dx + dy * dy)
        cover = np.clip(R + 0.5 - dist, 0.0, 1.0)
        # shading: light from the upper left, a soft highlight; mean colour stays close to the base colour
        rr = np.clip(dist / R, 0.0, 1.0)
        nz = np.sqrt(1.0 - rr * rr)
        nx, ny = (
            np.where(dist > 0, dx / np.maximum(dist, 1e-9), 0) * rr,
            np.where(dist > 0, dy / np.maximum(dist, 1e-9), 0) * rr,
        )
        light = np.array([-0.45, -0.6, 0.66])
        light /= np.linalg.norm(light)
        lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
        shade = 0.78 + 0.32 * lam
        spec = np.clip(lam, 0, 1) ** 24 * 0.35
        base = np.array(self.rgb, dtype=np.float64)
        col = base * shade[..., None]
        col = col + spec[..., None] * (255.0 - col)
        region = canvas[y0:y1, x0:x1]
        region += cover[..., None] * (np.clip(col, 0, 255) - region)


# --- the clip ------------------------------------------------------------------------------------------
@dataclass
class Truth:
    """What was rendered. Times are seconds from the clip's first frame; frames are clip frame indices."""

    scene: Scene
    centers: np.ndarray  # [T, 2] ball centre per frame, image px (x, y)
    radius_px: float
    contacts: list  # (time_s, frame_float, sample_index, impact_speed) per contact in the clip
    resting_from_frame: float | None  # frame (float, may be < 0) from which the ball rests; None: never
    start_time: float = 0.0  # the clip's first frame is the scene's time start_time
    floor_y_px: float = 0.0  # image row of the ball's centre when it touches the floor
    px_per_ref: float = 1.0  # image px per reference px (gravity in image px/s^2 = GRAVITY * px_per_ref)

    @property
    def gravity_px(self) -> float:
        return GRAVITY * self.px_per_ref


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    audio: np.ndarray  # float32 [S], mono, in [-1, 1]
    fps: float
    sample_rate: int
    truth: Truth = field(repr=False)


def drawables(scene: Scene, center_ref: np.ndarray) -> list:
    """The things painted over the room for a ball at center_ref, in painting order."""
    r = scene.radius
    height = max(CONTACT_Y - (center_ref[1] + r), 0.0)
    return [
        Shadow(x=float(center_ref[0]), radius=r, height=height),
        Ball(x=float(center_ref[0]), y=float(center_ref[1]), radius=r, rgb=BALL_RGB[scene.colour]),
    ]


def render_frames(scene: Scene, centers_ref: np.ndarray, camera: Camera) -> np.ndarray:
    room = Room(scene.wall, scene.floor)
    out = np.empty((len(centers_ref), camera.height, camera.width, 3), dtype=np.uint8)
    bg = room.draw(camera)
    for i, c in enumerate(centers_ref):
        canvas = bg.copy()
        for item in drawables(scene, c):
            item.draw(canvas, camera)
        out[i] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return out


# --- sound ---------------------------------------------------------------------------------------------
def impact_sound(
    speed: float, size: str, floor: str, seed: int, index: int, n: int, sample_rate: int, delay: float = 0.0
) -> np.ndarray:
    """n samples of one impact. Sample 0 is the first sample at or after the contact; `delay` (0..1/sr s)
    is how long after the contact that sample lies, so the partials start with the exact phase."""
    t = np.arange(n, dtype=np.float64) / sample_rate + delay
    f0 = PITCH_HZ[size]
    rng = np.random.default_rng([int(seed) & 0x7FFFFFFF, int(index), 1])
    noise = rng.standard_normal(n)
    if floor == "wood":  # warm: a damped low body thump and two damped partials, a soft burst
        modes: tuple[tuple[float, float, float], ...] = (
            (0.30 * f0, 0.9, 0.032),
            (f0, 1.0, 0.024),
            (1.55 * f0, 0.45, 0.016),
        )
        k = max(int(sample_rate / 2000), 1)
        tri = np.convolve(np.ones(k), np.ones(k))  # a triangular low-pass: a soft, dull knock
        burst = np.convolve(noise, tri / tri.sum(), mode="full")[:n] * np.exp(-t / 0.004) * 0.8
    else:  # tiles: bright ringing partials and a sharp click
        f = 1.6 * f0
        modes = ((f, 1.0, 0.10), (2.76 * f, 0.6, 0.07), (5.40 * f, 0.4, 0.045), (8.93 * f, 0.25, 0.03))
        burst = np.diff(noise, prepend=0.0) * np.exp(-t / 0.0015) * 0.6
    nyquist = sample_rate / 2
    sig = burst
    for freq, amp, tau in modes:
        if freq < nyquist * 0.95:
            sig = sig + amp * np.sin(2 * np.pi * freq * t) * np.exp(-t / tau)
    sig *= 1.0 - np.exp(-t / 0.0004)  # a fast but not instantaneous attack
    sig /= max(np.max(np.abs(sig)), 1e-9)
    loud = min(speed / LOUD_SPEED, 1.0) ** 0.8
    return (MAX_AMPLITUDE * loud * sig).astype(np.float64)


ROOM_TONE_BLOCK = 4096


def room_tone(seed: int, first_sample: int, n: int) -> np.ndarray:
    """Low-level soft noise, a function of the absolute sample index (so clips that continue each other
    join seamlessly)."""
    taps = 6
    lo = first_sample - taps + 1
    hi = first_sample + n
    b0, b1 = lo // ROOM_TONE_BLOCK, (hi - 1) // ROOM_TONE_BLOCK
    blocks = [
        np.random.default_rng([int(seed) & 0x7FFFFFFF, int(b) & 0x7FFFFFFF, 2]).standard_normal(ROOM_TONE_BLOCK)
        for b in range(b0, b1 + 1)
    ]
    raw = np.concatenate(blocks)[lo - b0 * ROOM_TONE_BLOCK : hi - b0 * ROOM_TONE_BLOCK]
    smooth = np.convolve(raw, np.ones(taps) / taps, mode="valid")
    return smooth * ROOM_TONE_RMS * math.sqrt(taps)


def contact_sample(time_s: float, sample_rate: int) -> int:
    """The absolute index of the first sample at or after a contact."""
    return int(math.ceil(time_s * sample_rate - 1e-9))


def render_audio(traj: Trajectory, start_time: float, seconds: float, sample_rate: int) -> np.ndarray:
    scene = traj.scene
    s0 = int(round(start_time * sample_rate))
    n = int(round(seconds * sample_rate))
    audio = room_tone(scene.seed, s0, n)
    tail = int(SOUND_SECONDS * sample_rate)
    for c in traj.all_contacts:
        a = contact_sample(c.time, sample_rate)
        if a + tail <= s0 or a >= s0 + n:
            continue
        snd = impact_sound(
            c.speed, scene.size, scene.floor, scene.seed, c.index, tail, sample_rate, delay=a / sample_rate - c.time
        )
        lo, hi = max(a, s0), min(a + tail, s0 + n)
        audio[lo - s0 : hi - s0] += snd[lo - a : hi - a]
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def render(
    scene: Scene,
    *,
    width: int = 64,
    height: int = 64,
    fps: float = 12.0,
    seconds: float = 25 / 12,
    sample_rate: int = 16000,
    start_time: float = 0.0,
) -> Clip:
    """Frames at start_time + i/fps and audio from sample round(start_time*sample_rate), with ground truth.
    render(scene, start_time=T) continues render(scene) (seconds=T) seamlessly, frames and sound."""
    camera = Camera(width, height)
    traj = simulate(scene, seconds, fps, start_time=start_time)
    frames = render_frames(scene, traj.centers, camera)
    audio = render_audio(traj, start_time, seconds, sample_rate)
    s0 = int(round(start_time * sample_rate))
    contacts = [
        (c.time - start_time, (c.time - start_time) * fps, contact_sample(c.time, sample_rate) - s0, float(c.speed))
        for c in traj.contacts
    ]
    resting = None if traj.rest_time is None else (traj.rest_time - start_time) * fps
    truth = Truth(
        scene=scene,
        centers=camera.to_image(traj.centers),
        radius_px=scene.radius * camera.scale,
        contacts=contacts,
        resting_from_frame=resting,
        start_time=start_time,
        floor_y_px=(CONTACT_Y - scene.radius) * camera.scale,
        px_per_ref=camera.scale,
    )
    return Clip(frames=frames, audio=audio, fps=fps, sample_rate=sample_rate, truth=truth)


def make_preview_strip(
    frames: np.ndarray, *, every: int = 1, scale: int = 2, columns: int | None = None, gap: int = 1
) -> bytes:
    """PNG bytes of frames side by side (every n-th, scaled up by pixel repetition), for looking at clips."""
    import io

    from PIL import Image

    frames = np.asarray(frames)[::every]
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    t, h, w = frames.shape[:3]
    columns = columns or t
    rows = -(-t // columns)
    hs, ws = h * scale, w * scale
    sheet = np.full((rows * (hs + gap) - gap, columns * (ws + gap) - gap, 3), 32, dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, columns)
        big = f.repeat(scale, axis=0).repeat(scale, axis=1)
        sheet[r * (hs + gap) : r * (hs + gap) + hs, c * (ws + gap) : c * (ws + gap) + ws] = big
    buf = io.BytesIO()
    Image.fromarray(sheet).save(buf, format="PNG")
    return buf.getvalue()
