"""The world's one law of motion, solved in closed form.

The ball's path is computed analytically (parabolic flights joined at exact contact times) rather than
stepped, so positions at any instant, contact times and impact speeds are exact and independent of the
frame rate: a clip rendered from `start_time` continues the same path bit for bit, the sound of a
contact can start on its exact sample, and the detectors have an exact reference to be judged against.

Units: reference pixels (64-px-high room, y down) and seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinema.world.scene import CONTACT_Y, DROP_HEIGHT, GRAVITY, REF_WIDTH, TOSS_VX, TOSS_VY, Scene

# GRAVITY (px/s^2) is set with the room's other numbers in kinema.world.scene, which samples tosses with it.
RESTITUTION = {"wood": 0.55, "tiles": 0.70}  # rebound speed / impact speed, by floor
REST_SPEED = 41.0  # px/s: a rebound slower than this (apex < 3 px) is absorbed and the ball rests
FRICTION = 0.8  # horizontal speed kept at each contact
ROLL_DECEL = 30.0  # px/s^2: a resting ball that still moves sideways rolls to a stop
MAX_CONTACTS = 64


@dataclass(frozen=True)
class Contact:
    time: float  # seconds from the scene's t = 0
    speed: float  # vertical impact speed, px/s (>0)
    index: int  # 0 for the first contact of the scene
    rests: bool  # the ball stays on the floor after this contact


@dataclass
class Trajectory:
    """Ball centres at the frame times, and every contact in the window [start_time, start_time+seconds)."""

    scene: Scene
    times: np.ndarray  # [T] seconds from the scene's t = 0
    centers: np.ndarray  # [T, 2] (x, y) reference px
    contacts: list[Contact]
    rest_time: float | None  # when the ball comes to rest (seconds from t = 0), None if never
    all_contacts: list[Contact] = field(repr=False, default_factory=list)
    plan: _Plan | None = field(repr=False, default=None)

    def position(self, t) -> np.ndarray:
        assert self.plan is not None, "a trajectory made by simulate() has a plan"
        return self.plan.position(np.asarray(t, dtype=np.float64))


class _Plan:
    """Piecewise motion: flights k = 0..n-1 on [start_k, end_k), then rest (rolling) from rest_time."""

    def __init__(self, scene: Scene):
        self.scene = scene
        r = scene.radius
        g = GRAVITY
        e = RESTITUTION[scene.floor]
        y_floor = CONTACT_Y - r
        self.y_floor = y_floor
        self.x_lo, self.x_hi = r, REF_WIDTH - r
        starts, ys, vys, us, vxs = [], [], [], [], []
        t, y, vy, u, vx = 0.0, float(scene.y0), float(scene.vy0), float(scene.x0), float(scene.vx0)
        if y > y_floor:
            y = y_floor
        contacts: list[Contact] = []
        rest_time = None
        while True:
            # time to reach the floor from (y, vy): y + vy s + g s^2 / 2 = y_floor
            disc = vy * vy + 2.0 * g * (y_floor - y)
            s = (-vy + np.sqrt(max(disc, 0.0))) / g
            starts.append(t)
            ys.append(y)
            vys.append(vy)
            us.append(u)
            vxs.append(vx)
            t_hit = t + s
            v_hit = vy + g * s
            u = u + vx * s
            rebound = e * v_hit
            rests = rebound < REST_SPEED or len(contacts) + 1 >= MAX_CONTACTS
            contacts.append(Contact(time=t_hit, speed=v_hit, index=len(contacts), rests=rests))
            vx *= FRICTION
            t, y, vy = t_hit, y_floor, -rebound
            if rests:
                rest_time = t_hit
                break
        self.starts = np.array(starts)
        self.ends = np.array([c.time for c in contacts])
        self.ys, self.vys = np.array(ys), np.array(vys)
        self.us, self.vxs = np.array(us), np.array(vxs)
        self.contacts = contacts
        self.rest_time = rest_time
        self.rest_u, self.rest_vx = u, vx

    def _fold(self, u: np.ndarray) -> np.ndarray:
        """Unfolded horizontal coordinate -> position between the side walls (mirror reflections)."""
        lo, hi = self.x_lo, self.x_hi
        span = hi - lo
        f = np.mod(u - lo, 2.0 * span)
        return lo + np.where(f <= span, f, 2.0 * span - f)

    def position(self, t: np.ndarray) -> np.ndarray:
        t = np.atleast_1d(t).astype(np.float64)
        k = np.clip(np.searchsorted(self.starts, t, side="right") - 1, 0, len(self.starts) - 1)
        s = np.maximum(t - self.starts[k], 0.0)
        y = self.ys[k] + self.vys[k] * s + 0.5 * GRAVITY * s * s
        u = self.us[k] + self.vxs[k] * s
        resting = t >= self.rest_time
        if resting.any():
            tau = t[resting] - self.rest_time
            v = self.rest_vx
            stop = abs(v) / ROLL_DECEL
            tau = np.minimum(tau, stop)
            u[resting] = self.rest_u + v * tau - np.sign(v) * 0.5 * ROLL_DECEL * tau * tau
            y[resting] = self.y_floor
        y = np.minimum(y, self.y_floor)
        return np.stack([self._fold(u), y], axis=-1)


def simulate(scene: Scene, seconds: float, fps: float, *, start_time: float = 0.0) -> Trajectory:
    """The ball's centre at the frames start_time + i/fps (i < round(seconds*fps)), with the exact contacts
    in [start_time, start_time + seconds)."""
    plan = _Plan(scene)
    n = int(round(seconds * fps))
    times = start_time + np.arange(n, dtype=np.float64) / fps
    centers = plan.position(times) if n else np.zeros((0, 2))
    end = start_time + seconds
    window = [c for c in plan.contacts if start_time <= c.time < end]
    return Trajectory(
        scene=scene,
        times=times,
        centers=centers,
        contacts=window,
        rest_time=plan.rest_time,
        all_contacts=list(plan.contacts),
        plan=plan,
    )


def max_speed() -> float:
    """The fastest the ball can move in this world (px/s): the longest fall plus the fastest toss."""
    fall = np.sqrt(2.0 * GRAVITY * (DROP_HEIGHT[1] + TOSS_VY[1] ** 2 / (2 * GRAVITY)))
    return float(np.hypot(fall, TOSS_VX[1]))
