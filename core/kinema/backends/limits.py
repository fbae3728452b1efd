"""How big one job may be, per backend, checked before any work: no job row is written and no model loads.

Two sources, and the smaller wins:

* The backend's own ``limits`` (a ``Limits`` class attribute; ``Backend`` carries kinema's defaults): the
  frames, pixels per frame, denoising steps and seconds its model was made for, with where the numbers
  come from. A request far outside them would run for hours and then fail or fall apart.
* Memory: one generation's decoded frames must fit in half of the memory of the device that makes them
  (RAM always; an accelerator's own memory too), leaving the rest to weights, activations and everything
  else. Total memory, not free memory, so a request is accepted or refused the same way whatever else runs
  at that moment; a passing shortage is the out-of-memory retry's job (``kinema.backends.memory``).

``check_plan`` runs at the end of every ``Backend.plan``, so generate, remix, extend and every storyboard
shot are checked where they are planned, in the CLI, the server and the hosts alike. ``check_frames_fit``
checks what is assembled beyond one generation: an extended clip, a whole film.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinema.backends.device import pick_device
from kinema.backends.memory import total_memory_bytes, total_ram_bytes
from kinema.errors import InvalidRequestError

if TYPE_CHECKING:
    from kinema.backends.base import Backend, Plan


@dataclass(frozen=True)
class Limits:
    """The largest single generation a backend takes. The defaults are for backends that declare none."""

    frames: int = 257  # 8k+1 and 4k+1 alike, so every frame grid can reach it exactly
    pixels: int = 1920 * 1088  # width x height of one frame, any shape: 1080p on a 32-pixel grid
    steps: int = 100  # flow-matching samplers are converged long before; final tier = 1.5x defaults of 40-50
    seconds: float = 20.0
    why: str = "kinema's defaults for a backend that declares no limits of its own"


class LimitError(InvalidRequestError):
    """A request beyond a limit; ``param`` is the request field to change."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


# Half for the frames; the other half for the weights, activations and whatever else runs there.
MEMORY_SHARE = 0.5
# Bytes one pixel of one decoded frame takes in RAM at the peak: RGB as the VAE's float32 output, a float32
# working copy while it becomes uint8 (kinema.backends.base.frames_to_uint8), and the uint8 frames kept.
RAM_BYTES_PER_PIXEL = 3 * (4 + 4 + 1)
# On an accelerator: the decoded video as the VAE writes it, at most float32.
DEVICE_BYTES_PER_PIXEL = 3 * 4


@dataclass(frozen=True)
class MemoryBound:
    """One memory decoded frames must fit in."""

    where: str  # "RAM", "cuda memory"
    total: int  # bytes
    bytes_per_pixel: int  # for one pixel of one frame

    @property
    def budget(self) -> int:
        return int(self.total * MEMORY_SHARE)

    def frames_at(self, pixels: int) -> int:
        """How many frames of ``pixels`` pixels fit."""
        return self.budget // (max(1, pixels) * self.bytes_per_pixel)


@functools.cache
def memory_bounds(device: str) -> tuple[MemoryBound, ...]:
    """The memories a generation on ``device`` decodes into (cached: a machine's total memory does not change)."""
    bounds = []
    ram = total_ram_bytes()
    if ram:
        bounds.append(MemoryBound("RAM", ram, RAM_BYTES_PER_PIXEL))
    if not device.startswith("cpu"):
        try:
            on_device = total_memory_bytes(device)
        except Exception:  # noqa: BLE001 - an accelerator that cannot say: RAM still bounds the job
            on_device = None
        if on_device:
            bounds.append(MemoryBound(f"{device.split(':')[0]} memory", on_device, DEVICE_BYTES_PER_PIXEL))
    return tuple(bounds)


# Set while requests are checked for other machines (a Ray cluster's workers): theirs, by backend name, not ours.
_ELSEWHERE: ContextVar[Mapping[str, tuple[Limits, Sequence[MemoryBound]]] | None] = ContextVar(
    "kinema_limits_elsewhere", default=None
)


@contextlib.contextmanager
def checked_elsewhere(reports: Mapping[str, tuple[Limits, Sequence[MemoryBound]]]) -> Iterator[None]:
    """Within this block, a plan for a backend named in ``reports`` is checked against that backend's (limits,
    memory bounds) there: what the machines that will run it reported (``kinema serve --ray``), not this one's."""
    token = _ELSEWHERE.set(reports)
    try:
        yield
    finally:
        _ELSEWHERE.reset(token)


# Set while a plan that is not itself generated is made: a task's base request (kinema.server.tasks).
_UNCHECKED: ContextVar[bool] = ContextVar("kinema_limits_unchecked", default=False)


@contextlib.contextmanager
def checked_per_generation() -> Iterator[None]:
    """Within this block, ``check_plan`` checks nothing: what is planned here is never generated as it stands (a
    storyboard's, remix's or extend's base request, whose length is not the film's or the clip's), and the caller
    checks each generation it will run instead. A film of 0.25 s shots is not refused for its unused 1 s default."""
    token = _UNCHECKED.set(True)
    try:
        yield
    finally:
        _UNCHECKED.reset(token)


def _elsewhere(backend: Backend) -> tuple[Limits, Sequence[MemoryBound]] | None:
    reports = _ELSEWHERE.get()
    return None if reports is None else reports.get(backend.name)


def _local_bounds(backend: Backend) -> Sequence[MemoryBound]:
    report = _elsewhere(backend)
    return report[1] if report is not None else memory_bounds(device_of(backend))


def job_limits(backend: Backend) -> Limits:
    """``backend``'s limits: its ``job_limits()`` (read from its checkpoint, for LTX-2.x), else its ``limits``."""
    report = _elsewhere(backend)
    if report is not None:
        return report[0]
    own = getattr(backend, "job_limits", None)
    return own() if callable(own) else getattr(backend, "limits", Limits())


def device_of(backend: Backend) -> str:
    """The device ``backend`` will run on: a host's (``configure(device=...)``), else kinema's pick."""
    return getattr(backend, "_device", None) or pick_device()


def check_plan(plan: Plan, backend: Backend, *, bounds: Sequence[MemoryBound] | None = None) -> None:
    """Raise ``LimitError`` if one generation planned as ``plan`` is beyond ``backend``'s limits.

    ``bounds`` defaults to the memory of the device the backend runs on.
    """
    if _UNCHECKED.get():
        return
    limits = job_limits(backend)
    name = backend.name
    if plan.steps > limits.steps:
        raise LimitError(f"steps {plan.steps} is over {name}'s limit of {limits.steps} steps; ask for fewer", "steps")
    pixels = plan.width * plan.height
    if pixels > limits.pixels:
        raise LimitError(
            f"size {plan.width}x{plan.height} is {pixels:,} pixels a frame, over {name}'s limit of"
            f" {limits.pixels:,}; ask for a smaller size",
            "size",
        )
    # What is made counts, not what was asked: an extend or a storyboard shot makes a few frames more than
    # it keeps. n frames span n - 1 frame intervals, so 20 s at 24 fps (481 frames on an 8k+1 grid) is 20 s.
    fps = float(plan.fps)
    if plan.num_frames > limits.frames:
        raise LimitError(
            f"frames: one generation of {plan.num_frames} frames ({plan.num_frames / fps:.2f} s at"
            f" {fps:g} fps) is over {name}'s limit of {limits.frames} frames; ask for fewer seconds or"
            " a lower fps",
            "seconds",
        )
    lasts = (plan.num_frames - 1) / fps
    if lasts > limits.seconds:
        raise LimitError(
            f"seconds: one generation of {lasts:.2f} s ({plan.num_frames} frames at {fps:g} fps) is over"
            f" {name}'s limit of {limits.seconds:g} s; make longer films with a storyboard or by"
            " extending a clip",
            "seconds",
        )
    check_frames_fit(plan.num_frames, plan.width, plan.height, backend, bounds=bounds)


def check_frames_fit(
    frames: int,
    width: int,
    height: int,
    backend: Backend,
    *,
    what: str = "the clip",
    bounds: Sequence[MemoryBound] | None = None,
) -> None:
    """Raise ``LimitError`` if ``frames`` decoded frames of ``width`` x ``height`` do not fit in memory."""
    for bound in _local_bounds(backend) if bounds is None else bounds:
        fit = bound.frames_at(width * height)
        if frames > fit:
            need = frames * width * height * bound.bytes_per_pixel
            raise LimitError(
                f"{what}'s {frames} frames of {width}x{height} need ~{_human(need)} of {bound.where} once"
                f" decoded; this machine allows {_human(bound.budget)} (half of its {_human(bound.total)}), which"
                f" holds at most {fit} frames at that size; ask for fewer seconds, a lower fps or a smaller size",
                "seconds",
            )


def describe(backend: Backend, bounds: Sequence[MemoryBound] | None = None) -> str:
    """One line for ``kinema doctor``: the backend's limits, what memory allows here, and why."""
    limits = job_limits(backend)
    text = (
        f"{limits.frames} frames, {limits.seconds:g} s, {limits.pixels:,} pixels a frame, {limits.steps} steps"
        f" ({limits.why})"
    )
    d = backend.defaults
    for bound in _local_bounds(backend) if bounds is None else bounds:
        fit = bound.frames_at(d.width * d.height)
        if fit < limits.frames:
            text += f"; {bound.where} holds {fit} frames at {d.width}x{d.height}"
    return text


def _human(size: Any) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
