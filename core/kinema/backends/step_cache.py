"""Step caching for diffusion transformers, joint audio+video ones (LTX-2) included.

Adjacent denoising steps change a transformer's hidden states very little, so
most of the block stack can be skipped on many steps by reusing what the
skipped blocks added last time. diffusers ships such caches, but its hooks
assume one optional second stream called ``encoder_hidden_states``: on LTX-2
that name is the *text* embedding, while the second stream the blocks
transform is ``audio_hidden_states`` — so diffusers' FirstBlockCache and
MagCache either refuse LTX-2 or pass text through where audio belongs.

Here every block class declares its streams as (argument name, output index)
pairs, and the hooks carry *all* streams: the first block's change is measured
on video and audio, and a skipped step adds the cached residual to both.

Methods (``CacheConfig.method``):

* ``first-block`` — FirstBlockCache: run the first block; if its residual moved
  less than ``threshold`` (relative L1) on every stream since the last full
  step, skip the rest and add their cached residuals.
* ``mag`` — MagCache: skip whole steps while the accumulated error predicted
  from per-step residual magnitude ratios stays under ``threshold``. The
  ratios are checkpoint-specific: measure them with :func:`calibrate_mag`.
* ``taylorseer`` — TaylorSeer through diffusers' own hook, with module
  identifiers that exist in Wan and LTX-2 (diffusers' defaults match none
  there): the output projections of both streams are extrapolated with a
  Taylor series while the blocks are skipped between full steps.

Use :func:`step_cache` around a pipeline call; it installs the hooks, counts
how many block forwards really ran, and removes everything afterwards so a
cached pipeline can serve the next uncached job.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = ("first-block", "mag", "taylorseer")

_FBC_HEAD = "kinema_fbc_head"
_FBC_BLOCK = "kinema_fbc_block"
_MAG_HEAD = "kinema_mag_head"
_MAG_BLOCK = "kinema_mag_block"
_COUNTER = "kinema_block_counter"
_TAYLORSEER = "taylorseer_cache"  # diffusers' hook name

_BLOCK_LIST_NAMES = ("transformer_blocks", "blocks", "single_transformer_blocks", "layers")

# (argument name, index in the block's output tuple or None when the block returns one tensor).
# The second LTX-2 stream is the audio, not `encoder_hidden_states` (the text): that mix-up is
# exactly what makes diffusers' own hooks wrong on LTX-2.
BLOCK_STREAMS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "LTX2VideoTransformerBlock": (("hidden_states", 0), ("audio_hidden_states", 1)),
    "WanTransformerBlock": (("hidden_states", None),),
}

# TaylorSeer identifiers per transformer class: extrapolate each stream's output projection,
# skip the blocks in between (the memory-light "lite" form; block outputs would cost a copy per block).
TAYLORSEER_IDENTIFIERS: dict[str, dict[str, list[str]]] = {
    "LTX2VideoTransformer3DModel": {
        "cache": [r"^proj_out$", r"^audio_proj_out$"],
        "skip": [r"^transformer_blocks\.\d+$"],
    },
    "WanTransformer3DModel": {"cache": [r"^proj_out$"], "skip": [r"^blocks\.\d+$"]},
}


@dataclass(frozen=True)
class CacheConfig:
    """One step-cache setting; ``as_dict()`` is what clip metadata records."""

    method: str = "first-block"
    threshold: float = 0.1  # first-block: relative residual change; mag: accumulated error
    max_skip_steps: int = 3  # mag: consecutive skipped steps at most
    retention_ratio: float = 0.2  # mag: fraction of first steps never skipped
    mag_ratios: tuple[tuple[float, ...], ...] | None = None  # mag: one sequence per stream
    cache_interval: int = 5  # taylorseer: full step every this many steps
    warmup_steps: int = 3  # taylorseer: full steps before predicting
    max_order: int = 1  # taylorseer: Taylor order

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown cache method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "mag" and not self.mag_ratios:
            raise ValueError("MagCache needs mag_ratios for this checkpoint: measure them with calibrate_mag()")

    def as_dict(self) -> dict[str, Any]:
        keys = {
            "first-block": ("method", "threshold"),
            "mag": ("method", "threshold", "max_skip_steps", "retention_ratio"),
            "taylorseer": ("method", "cache_interval", "warmup_steps", "max_order"),
        }[self.method]
        values = asdict(self)
        return {key: values[key] for key in keys}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheConfig:
        data = dict(data)
        if data.get("mag_ratios") is not None:
            data["mag_ratios"] = tuple(tuple(float(r) for r in stream) for stream in data["mag_ratios"])
        return cls(**data)


@dataclass
class CacheStats:
    """How many transformer block forwards ran, of how many the uncached model would have run."""

    blocks_run: int = 0
    blocks_total: int = 0
    mag_ratios: list[list[float]] = field(default_factory=list)  # filled by calibrate_mag

    @property
    def fraction(self) -> float:
        return self.blocks_run / self.blocks_total if self.blocks_total else 1.0


# --------------------------------------------------------------------------- block discovery


def transformer_blocks(transformer: Any) -> list[Any]:
    """The repeated blocks of a diffusers transformer, in call order."""
    import torch

    for name in _BLOCK_LIST_NAMES:
        blocks = getattr(transformer, name, None)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
            return list(blocks)
    raise ValueError(
        f"{type(transformer).__name__} has no transformer block list kinema knows ({', '.join(_BLOCK_LIST_NAMES)})"
    )


def block_streams(block: Any) -> tuple[tuple[str, int | None], ...]:
    """The hidden-state streams a block transforms, as (argument name, output index) pairs."""
    name = type(block).__name__
    if name in BLOCK_STREAMS:
        return BLOCK_STREAMS[name]
    from diffusers.hooks._helpers import TransformerBlockRegistry

    try:
        meta = TransformerBlockRegistry.get(type(block))
    except ValueError:
        raise ValueError(
            f"step caching does not know the streams of {name}; add it to kinema.backends.step_cache.BLOCK_STREAMS"
        ) from None
    streams = [(meta.hidden_states_argument_name, meta.return_hidden_states_index)]
    if meta.return_encoder_hidden_states_index is not None:
        streams.append((meta.encoder_hidden_states_argument_name, meta.return_encoder_hidden_states_index))
    return tuple(streams)


def supported(transformer: Any) -> bool:
    """Whether :func:`apply` knows ``transformer``'s blocks (and so can cache it)."""
    if hasattr(transformer, "vace_blocks"):
        # VACE adds control hints between blocks, outside them: cached residuals would count them twice.
        return False
    try:
        block_streams(transformer_blocks(transformer)[0])
    except ValueError:
        return False
    return True


class _Streams:
    """Reads a block's streams from its call arguments and output, and builds outputs from streams."""

    def __init__(self, block: Any):
        self.streams = block_streams(block)
        names = list(inspect.signature(type(block).forward).parameters)[1:]  # without self
        self.positions = {name: names.index(name) for name, _ in self.streams}

    def inputs(self, args: tuple, kwargs: dict) -> list[Any]:
        values = []
        for name, _ in self.streams:
            values.append(kwargs[name] if name in kwargs else args[self.positions[name]])
        return values

    def outputs(self, output: Any) -> list[Any]:
        return [output if index is None else output[index] for _, index in self.streams]

    def pack(self, values: Sequence[Any]) -> Any:
        if self.streams[0][1] is None:
            return values[0]
        places = [index for _, index in self.streams if index is not None]
        assert len(places) == len(self.streams)  # a block returning a tuple names every stream's place in it
        packed: list[Any] = [None] * (max(places) + 1)
        for place, value in zip(places, values, strict=True):
            packed[place] = value
        return tuple(packed)


def _relative_change(current: Any, previous: Any) -> float:
    change = float(((current - previous).abs().mean() / previous.abs().mean().clamp_min(1e-12)).item())
    return change if change == change else float("inf")  # NaN: never reuse a cache on it


# --------------------------------------------------------------------------- hooks


@functools.cache
def _hook_classes():
    """Hook classes are built on first use so importing kinema never imports diffusers."""
    from diffusers.hooks.hooks import CacheContext, ModelHook

    class _StatefulHook(ModelHook):
        _is_stateful = True

        def __init__(self, state_manager, streams: _Streams, stats: CacheStats):
            super().__init__()
            self.state_manager = state_manager
            self.streams = streams
            self.stats = stats

        def state(self):
            # Pipelines without cache_context() (Stable Audio) still get one shared state.
            if self.state_manager._context is None:
                self.state_manager.set_context(CacheContext(name="default"))
            return self.state_manager.get_state()

        def reset_state(self, module):
            self.state_manager.reset()
            return module

    class FirstBlockHead(_StatefulHook):
        def __init__(self, state_manager, streams, stats, threshold: float):
            super().__init__(state_manager, streams, stats)
            self.threshold = threshold

        def new_forward(self, module, *args, **kwargs):
            inputs = self.streams.inputs(args, kwargs)
            output = self.fn_ref.original_forward(*args, **kwargs)
            outputs = self.streams.outputs(output)
            residuals = [o - i for o, i in zip(outputs, inputs, strict=True)]
            state = self.state()
            skip = (
                state.head_residuals is not None
                and state.tail_residuals is not None
                and all(
                    _relative_change(r, p) < self.threshold
                    for r, p in zip(residuals, state.head_residuals, strict=True)
                )
            )
            state.should_compute = not skip
            if skip:
                return self.streams.pack([o + r for o, r in zip(outputs, state.tail_residuals, strict=True)])
            # Compare against the last *computed* step, so slow drift still forces a full step.
            state.head_residuals = residuals
            state.head_outputs = outputs
            return output

    class FirstBlockRest(_StatefulHook):
        _is_stateful = False  # shares the head's state manager; the head resets it

        def __init__(self, state_manager, streams, stats, is_tail: bool):
            super().__init__(state_manager, streams, stats)
            self.is_tail = is_tail

        def new_forward(self, module, *args, **kwargs):
            state = self.state()
            if not state.should_compute:
                return self.streams.pack(self.streams.inputs(args, kwargs))
            output = self.fn_ref.original_forward(*args, **kwargs)
            if self.is_tail:
                state.tail_residuals = [
                    o - h for o, h in zip(self.streams.outputs(output), state.head_outputs, strict=True)
                ]
            return output

    class MagHead(_StatefulHook):
        def __init__(self, state_manager, streams, stats, config: CacheConfig, steps: int, calibrate: bool):
            super().__init__(state_manager, streams, stats)
            self.config = config
            self.steps = steps
            self.calibrate = calibrate
            self.ratios = (
                None
                if calibrate
                else [_resample(r, steps) for r in _per_stream(config.mag_ratios, len(streams.streams))]
            )

        def new_forward(self, module, *args, **kwargs):
            inputs = self.streams.inputs(args, kwargs)
            state = self.state()
            if not state.accumulated_ratio:
                n = len(inputs)
                state.accumulated_ratio, state.accumulated_err = [1.0] * n, [0.0] * n
            state.head_inputs = inputs
            compute = True
            if not self.calibrate and state.step_index >= int(self.config.retention_ratio * self.steps + 0.5):
                step = min(state.step_index, self.steps - 1)
                assert self.ratios is not None  # None only while calibrating
                for k, ratios in enumerate(self.ratios):
                    state.accumulated_ratio[k] *= ratios[step]
                    state.accumulated_err[k] += abs(1.0 - state.accumulated_ratio[k])
                state.accumulated_steps += 1
                if (
                    state.previous_residuals is not None
                    and state.accumulated_steps <= self.config.max_skip_steps
                    and max(state.accumulated_err) <= self.config.threshold
                ):
                    compute = False
                else:
                    n = len(inputs)
                    state.accumulated_ratio, state.accumulated_err, state.accumulated_steps = [1.0] * n, [0.0] * n, 0
            state.should_compute = compute
            if compute:
                return self.fn_ref.original_forward(*args, **kwargs)
            return self.streams.pack([i + r for i, r in zip(inputs, state.previous_residuals, strict=True)])

    class MagRest(_StatefulHook):
        _is_stateful = False

        def __init__(self, state_manager, streams, stats, is_tail: bool, calibrate: bool, steps: int):
            super().__init__(state_manager, streams, stats)
            self.is_tail = is_tail
            self.calibrate = calibrate
            self.steps = steps

        def new_forward(self, module, *args, **kwargs):
            state = self.state()
            if not state.should_compute:
                output = self.streams.pack(self.streams.inputs(args, kwargs))
            else:
                output = self.fn_ref.original_forward(*args, **kwargs)
                if self.is_tail:
                    residuals = [o - i for o, i in zip(self.streams.outputs(output), state.head_inputs, strict=True)]
                    if self.calibrate:
                        state.calibration.append(_magnitude_ratios(residuals, state.previous_residuals))
                        if len(state.calibration) == self.steps and not self.stats.mag_ratios:
                            self.stats.mag_ratios = [list(r) for r in zip(*state.calibration, strict=True)]
                    state.previous_residuals = residuals
            if self.is_tail:
                state.step_index += 1
            return output

    class BlockCounter(ModelHook):
        """Innermost hook on every block: it runs only when the block's own forward really does."""

        def __init__(self, stats: CacheStats):
            super().__init__()
            self.stats = stats

        def new_forward(self, module, *args, **kwargs):
            self.stats.blocks_run += 1
            return self.fn_ref.original_forward(*args, **kwargs)

    return FirstBlockHead, FirstBlockRest, MagHead, MagRest, BlockCounter


def _per_stream(ratios, streams: int) -> list[tuple[float, ...]]:
    ratios = list(ratios)
    if len(ratios) == 1 and streams > 1:
        ratios = ratios * streams
    if len(ratios) != streams:
        raise ValueError(f"mag_ratios has {len(ratios)} sequences; this transformer has {streams} streams")
    return ratios


def _resample(ratios: Sequence[float], steps: int) -> list[float]:
    """Nearest-neighbour resampling of calibrated ratios to another step count (as MagCache does)."""
    n = len(ratios)
    if n == steps:
        return list(ratios)
    if steps == 1:
        return [ratios[-1]]
    return [ratios[round(i * (n - 1) / (steps - 1))] for i in range(steps)]


def _magnitude_ratios(current: list, previous: list | None) -> list[float]:
    import torch

    if previous is None:
        return [1.0] * len(current)
    return [
        float((torch.linalg.norm(c.float(), dim=-1) / (torch.linalg.norm(p.float(), dim=-1) + 1e-8)).mean().item())
        for c, p in zip(current, previous, strict=True)
    ]


# --------------------------------------------------------------------------- install / remove


def _registry(module: Any):
    from diffusers.hooks import HookRegistry

    return HookRegistry.check_if_exists_or_initialize(module)


def apply(transformer: Any, config: CacheConfig | None, *, steps: int, calibrate: bool = False) -> CacheStats:
    """Install ``config``'s hooks (or only the block counter when ``config`` is None) on ``transformer``."""
    if hasattr(transformer, "_kinema_step_cache"):
        raise RuntimeError("step caching is already applied to this transformer; remove() it first")
    blocks = transformer_blocks(transformer)
    stats = CacheStats()
    transformer._kinema_step_cache = (stats, None)
    try:
        _install(transformer, blocks, stats, config, steps, calibrate)
    except BaseException:
        remove(transformer)
        raise
    return stats


def _install(
    transformer: Any, blocks: list, stats: CacheStats, config: CacheConfig | None, steps: int, calibrate: bool
) -> None:
    from diffusers.hooks.hooks import StateManager

    FirstBlockHead, FirstBlockRest, MagHead, MagRest, BlockCounter = _hook_classes()
    root = _registry(transformer)
    for block in blocks:
        _registry(block).register_hook(BlockCounter(stats), _COUNTER)  # first = innermost
    method = "mag" if calibrate else (config.method if config else None)
    if method in ("first-block", "mag"):
        streams = _Streams(blocks[0])
        shared = StateManager(_hook_classes_state())
        last = len(blocks) - 1
        for index, block in enumerate(blocks):
            if method == "first-block":
                assert config is not None  # "first-block" comes from a config
                hook = (
                    FirstBlockHead(shared, streams, stats, config.threshold)
                    if index == 0
                    else FirstBlockRest(shared, streams, stats, is_tail=index == last)
                )
                name = _FBC_HEAD if index == 0 else _FBC_BLOCK
                _registry(block).register_hook(hook, name)
            else:
                # A one-block model is its own head and tail: the tail hook goes on first (inner).
                if index == last:
                    _registry(block).register_hook(MagRest(shared, streams, stats, True, calibrate, steps), _MAG_BLOCK)
                elif index > 0:
                    _registry(block).register_hook(MagRest(shared, streams, stats, False, calibrate, steps), _MAG_BLOCK)
                if index == 0:
                    mag_config = config or CacheConfig(method="mag", mag_ratios=((1.0,),))
                    _registry(block).register_hook(
                        MagHead(shared, streams, stats, mag_config, steps, calibrate), _MAG_HEAD
                    )
    elif method == "taylorseer":
        import torch
        from diffusers.hooks import TaylorSeerCacheConfig, apply_taylorseer_cache

        assert config is not None  # "taylorseer" comes from a config
        identifiers = TAYLORSEER_IDENTIFIERS.get(type(transformer).__name__)
        if identifiers is None:
            raise ValueError(f"no TaylorSeer module identifiers for {type(transformer).__name__}")
        dtype = next(transformer.parameters()).dtype
        apply_taylorseer_cache(
            transformer,
            TaylorSeerCacheConfig(
                cache_interval=config.cache_interval,
                disable_cache_before_step=config.warmup_steps,
                max_order=config.max_order,
                taylor_factors_dtype=dtype if dtype != torch.float16 else torch.float32,
                cache_identifiers=identifiers["cache"],
                skip_predict_identifiers=identifiers["skip"],
            ),
        )
    # The total counts calls of the whole stack: one per transformer forward, whatever was skipped.
    handle = transformer.register_forward_pre_hook(lambda module, args: _add_total(stats, len(blocks)))
    transformer._kinema_step_cache = (stats, handle)
    root.invalidate_child_registries_cache()
    root.reset_stateful_hooks()


@functools.cache
def _hook_classes_state():
    from diffusers.hooks.hooks import BaseState

    class _State(BaseState):
        def __init__(self) -> None:
            self.reset()

        def reset(self) -> None:
            self.should_compute = True
            self.head_residuals = self.head_outputs = self.tail_residuals = None
            self.head_inputs = self.previous_residuals = None
            self.accumulated_ratio: list[float] = []
            self.accumulated_err: list[float] = []
            self.accumulated_steps = 0
            self.step_index = 0
            self.calibration: list[list[float]] = []

    return _State


def _add_total(stats: CacheStats, blocks: int) -> None:
    stats.blocks_total += blocks


def remove(transformer: Any) -> None:
    """Take every hook :func:`apply` installed off ``transformer``."""
    installed = getattr(transformer, "_kinema_step_cache", None)
    if installed is None:
        return
    _stats, handle = installed
    if handle is not None:
        handle.remove()
    root = _registry(transformer)
    root.reset_stateful_hooks()
    for name in (_FBC_HEAD, _FBC_BLOCK, _MAG_HEAD, _MAG_BLOCK, _TAYLORSEER, _COUNTER):
        root.remove_hook(name, recurse=True)
    root.invalidate_child_registries_cache()
    del transformer._kinema_step_cache


@contextlib.contextmanager
def step_cache(transformers: Any, config: CacheConfig | None, *, steps: int) -> Iterator[CacheStats]:
    """Run the body with ``config`` on each transformer (one, or a list like Wan 2.2's two experts).

    Yields one :class:`CacheStats` summed over the transformers. With ``config=None``
    nothing is cached but block forwards are still counted.
    """
    if not isinstance(transformers, (list, tuple)):
        transformers = [transformers]
    transformers = [t for t in transformers if t is not None]
    total = CacheStats()
    installed = []
    try:
        for transformer in transformers:
            installed.append((transformer, apply(transformer, config, steps=steps)))
        yield total
    finally:
        for transformer, stats in installed:
            total.blocks_run += stats.blocks_run
            total.blocks_total += stats.blocks_total
            remove(transformer)


def calibrate_mag(run: Any, transformer: Any, *, steps: int) -> tuple[tuple[float, ...], ...]:
    """Measure MagCache ratios: ``run()`` must do one uncached generation of ``steps`` steps.

    Returns one ratio sequence per stream (video and audio on LTX-2), ready for
    ``CacheConfig(method="mag", mag_ratios=...)``.
    """
    stats = apply(transformer, None, steps=steps, calibrate=True)
    try:
        run()
    finally:
        remove(transformer)
    if not stats.mag_ratios:
        raise RuntimeError(f"calibration saw fewer than {steps} transformer steps; is steps right?")
    return tuple(tuple(round(r, 5) for r in stream) for stream in stats.mag_ratios)
