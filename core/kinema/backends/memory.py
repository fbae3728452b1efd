"""Memory policies: where a pipeline's weights live while it runs, chosen from free memory.

``POLICIES`` is ordered from fastest (needs the most memory) to lightest. For
each device only the policies that run there are considered: offloading to
the CPU needs an accelerator (diffusers raises without one), so a CPU run
never calls those paths; its lighter policies store weights in fp8 or read
transformer blocks from disk instead.

``choose`` picks the first policy whose estimated need fits in free memory;
``KINEMA_MEMORY`` (or a backend's ``memory`` option) forces one. When a
generation still runs out of memory, :func:`retry_lighter_on_oom` steps down
to the next lighter policy once and says so in the clip's notes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kinema.backends.device import release
from kinema.backends.step_cache import transformer_blocks
from kinema.errors import InvalidRequestError, KinemaError, OutOfMemoryError
from kinema.home import kinema_home, models_dir

logger = logging.getLogger("kinema")

T = TypeVar("T")


@dataclass(frozen=True)
class MemoryPolicy:
    name: str
    summary: str
    devices: tuple[str, ...]  # device kinds it runs on
    offload: str = "none"  # none | model | group | disk
    vae_tiling: bool = False
    fp8: bool = False  # transformer weights stored in float8, cast up per layer

    def runs_on(self, device: str) -> bool:
        return device.split(":")[0] in self.devices


_ACCELERATORS = ("cuda", "mps", "xpu")
_ANY = ("cpu", *_ACCELERATORS)

POLICIES: tuple[MemoryPolicy, ...] = (
    MemoryPolicy("full", "every component on the device", _ANY),
    MemoryPolicy("vae-tiling", "every component on the device; the VAE decodes in tiles", _ANY, vae_tiling=True),
    MemoryPolicy(
        "model-offload",
        "each component moves to the GPU only while it runs; VAE tiling",
        _ACCELERATORS,
        offload="model",
        vae_tiling=True,
    ),
    MemoryPolicy(
        "group-offload",
        "transformer blocks stream to the GPU one at a time, overlapped with compute on CUDA; VAE tiling",
        _ACCELERATORS,
        offload="group",
        vae_tiling=True,
    ),
    MemoryPolicy(
        "group-offload-fp8",
        "group offload with the transformer stored in fp8",
        ("cuda",),
        offload="group",
        vae_tiling=True,
        fp8=True,
    ),
    MemoryPolicy(
        "fp8",
        "transformer weights stored in fp8 and cast up layer by layer; VAE tiling",
        ("cpu",),
        vae_tiling=True,
        fp8=True,
    ),
    MemoryPolicy(
        "disk-offload",
        "transformer blocks read from disk one at a time; VAE tiling",
        ("cpu",),
        offload="disk",
        vae_tiling=True,
    ),
)
_BY_NAME = {policy.name: policy for policy in POLICIES}
# Names the first placement option used; kept so hosts' saved settings still work.
ALIASES = {"gpu": "full", "offload": "model-offload"}
CHOICES = ("auto", *ALIASES, *_BY_NAME)

ENV = "KINEMA_MEMORY"


def policies_for(device: str) -> list[MemoryPolicy]:
    """The policies that run on ``device``, fastest first."""
    return [policy for policy in POLICIES if policy.runs_on(device)]


def get_policy(name: str, device: str) -> MemoryPolicy:
    """The policy called ``name`` (or an alias) as it applies on ``device``.

    An accelerator-only policy asked for on a CPU is run as ``full``: on a CPU
    there is nowhere to offload to, and diffusers' offload paths raise there.
    """
    policy = _BY_NAME.get(ALIASES.get(name, name))
    if policy is None:
        raise InvalidRequestError(f"memory policy must be one of {', '.join(CHOICES)}; got {name!r}")
    if not policy.runs_on(device):
        if device.startswith("cpu") and policy.offload in ("model", "group"):
            return _BY_NAME["full"]
        raise InvalidRequestError(
            f"memory policy {policy.name!r} does not run on {device}; choose one of"
            f" {', '.join(p.name for p in policies_for(device))}"
        )
    return policy


def lighter(policy: MemoryPolicy, device: str) -> MemoryPolicy | None:
    """The next policy on ``device`` that needs less memory than ``policy``, or None."""
    names = [p.name for p in policies_for(device)]
    index = names.index(policy.name) if policy.name in names else -1
    return _BY_NAME[names[index + 1]] if index + 1 < len(names) else None


# --------------------------------------------------------------------------- sizes and free memory


@dataclass(frozen=True)
class ModelSizes:
    """A pipeline's weights in bytes at the dtype it runs in."""

    components: dict[str, int]
    transformer: int  # all denoiser transformers together
    largest_block: int  # the biggest repeated transformer block
    element_size: int  # bytes per weight of the run dtype

    @property
    def total(self) -> int:
        return sum(self.components.values())


# Activations, the VAE decode and the CUDA context on top of the weights: the first
# placement code's 30% headroom, less where the VAE decodes in tiles.
HEADROOM = 1.3
TILED_HEADROOM = 1.15


def need_bytes(policy: MemoryPolicy, sizes: ModelSizes) -> int:
    """Estimated peak device memory of ``sizes`` run under ``policy``."""
    transformer = sizes.transformer // sizes.element_size if policy.fp8 else sizes.transformer
    block = sizes.largest_block // sizes.element_size if policy.fp8 else sizes.largest_block
    others = sizes.total - sizes.transformer
    headroom = TILED_HEADROOM if policy.vae_tiling else HEADROOM
    if policy.offload == "none":
        resident = others + transformer
    elif policy.offload == "model":
        resident = max([transformer, *(v for k, v in sizes.components.items() if not k.startswith("transformer"))])
    elif policy.offload == "group":
        # Two groups in flight (one computing, one prefetched) plus activations ~ a tenth of the model.
        resident = 2 * block + sizes.total // 10
    else:  # disk: the other components stay in RAM
        resident = others + 2 * block
    return int(resident * headroom)


def choose(device: str, sizes: ModelSizes, free: int | None) -> MemoryPolicy:
    """The fastest policy on ``device`` whose estimated need fits in ``free`` bytes (the lightest if none does)."""
    candidates = policies_for(device)
    if free is None:
        return candidates[0]
    for policy in candidates:
        if need_bytes(policy, sizes) <= free:
            return policy
    return candidates[-1]


def free_memory_bytes(device: str) -> int | None:
    """Free memory where ``device`` keeps its tensors; None when it cannot be known."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if device == "mps":
        import torch

        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    if device.startswith("cpu"):
        return available_ram_bytes()
    return None


def total_memory_bytes(device: str) -> int | None:
    """All the memory where ``device`` keeps its tensors (what job size limits are measured against); None if unknown."""
    if device.startswith("cuda"):
        import torch

        _free, total = torch.cuda.mem_get_info(torch.device(device))
        return int(total)
    if device == "mps":
        import torch

        return int(torch.mps.recommended_max_memory())
    if device.startswith("cpu"):
        return total_ram_bytes()
    return None


def total_ram_bytes() -> int | None:
    """This machine's RAM, or the container's memory limit when that is smaller (cgroup v2)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def available_ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_BLOCK_KEY = re.compile(r"^(?:transformer_blocks|blocks|single_transformer_blocks|layers)\.(\d+)\.")


def sizes_of_pipeline(pipe: Any) -> ModelSizes:
    import torch

    components: dict[str, int] = {}
    transformer = largest_block = 0
    element_size = 4
    for name, module in pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        tensors = [*module.parameters(), *module.buffers()]
        components[name] = sum(t.numel() * t.element_size() for t in tensors)
        if name.startswith("transformer"):
            transformer += components[name]
            element_size = next((p.element_size() for p in module.parameters() if p.is_floating_point()), 4)
            blocks: dict[str, int] = {}
            for key, tensor in module.state_dict().items():
                if match := _BLOCK_KEY.match(key):
                    blocks[match.group(1)] = blocks.get(match.group(1), 0) + tensor.numel() * tensor.element_size()
            largest_block = max([largest_block, *blocks.values()])
    return ModelSizes(components, transformer, largest_block, element_size)


_SAFETENSORS_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def sizes_of_folder(path: Path, element_size: int) -> ModelSizes:
    """Sizes of a diffusers folder from its safetensors headers alone (nothing is loaded).

    Floating-point weights are counted at ``element_size`` bytes, the dtype they will run in.
    """
    index = json.loads((path / "model_index.json").read_text())
    components: dict[str, int] = {}
    transformer = largest_block = 0
    for name in index:
        folder = path / name
        if name.startswith("_") or not folder.is_dir():
            continue
        total = 0
        blocks: dict[str, int] = {}
        for file in sorted(folder.glob("*.safetensors")):
            for key, dtype, numel in _safetensors_header(file):
                size = numel * (element_size if dtype.startswith(("F", "BF")) else _SAFETENSORS_SIZES.get(dtype, 4))
                total += size
                if match := _BLOCK_KEY.match(key):
                    blocks[match.group(1)] = blocks.get(match.group(1), 0) + size
        if total:
            components[name] = total
            if name.startswith("transformer"):
                transformer += total
                largest_block = max([largest_block, *blocks.values()])
    return ModelSizes(components, transformer, largest_block, element_size)


def _safetensors_header(file: Path) -> list[tuple[str, str, int]]:
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    entries = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        numel = 1
        for dim in info["shape"]:
            numel *= dim
        entries.append((key, info["dtype"], numel))
    return entries


# --------------------------------------------------------------------------- placing a pipeline


def requested(policy: str = "auto") -> str:
    """``policy`` unless it is "auto" and ``KINEMA_MEMORY`` names one."""
    if policy in (None, "auto"):
        return os.environ.get(ENV) or "auto"
    return policy


def place(pipe: Any, device: str, policy: str = "auto") -> str:
    """Put a freshly loaded (hook-free) ``pipe`` on ``device`` under ``policy``; return the policy's name."""
    policy = requested(policy)
    if policy == "auto":
        sizes = sizes_of_pipeline(pipe)
        free = free_memory_bytes(device)
        if free is not None and device.startswith("cpu"):
            free += sizes.total  # the weights being placed already sit in that RAM
        chosen = choose(device, sizes, free)
    else:
        chosen = get_policy(policy, device)
    apply(pipe, chosen, device)
    return chosen.name


def current(pipe: Any) -> tuple[str, str | None]:
    """(policy name, device) a pipeline was placed with; a pipeline placed by hand counts as "full"."""
    return getattr(pipe, "_kinema_memory", ("full", None))


def has_hooks(policy_name: str) -> bool:
    policy = _BY_NAME[policy_name]
    return policy.offload != "none" or policy.fp8


def apply(pipe: Any, policy: MemoryPolicy, device: str) -> None:
    """Apply ``policy`` to ``pipe``, which must be hook-free (fresh from loading, or placed "full")."""
    import torch

    transformers: list[Any] = [  # diffusers models (enable_layerwise_casting...)
        module
        for name, module in pipe.components.items()
        if name.startswith("transformer") and isinstance(module, torch.nn.Module)
    ]
    if policy.fp8:
        for transformer in transformers:
            # Norms and embeddings stay in the run dtype (diffusers' default skip list).
            transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=transformer.dtype)
    if policy.offload == "none":
        pipe.to(device)
    elif policy.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif policy.offload == "group":
        pipe.to("cpu")
        pipe.enable_group_offload(
            onload_device=torch.device(device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.startswith("cuda"),
        )
    elif policy.offload == "disk":
        from diffusers.hooks import apply_group_offloading

        pipe.to("cpu")
        for transformer in transformers:
            apply_group_offloading(
                transformer,
                onload_device=torch.device("cpu"),
                offload_device=torch.device("cpu"),
                offload_type="block_level",
                num_blocks_per_group=1,
                offload_to_disk_path=str(_offload_dir()),
            )
    vae = getattr(pipe, "vae", None)  # the picture VAE: audio VAEs have no tiled decode (and need none)
    if policy.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    pipe._kinema_memory = (policy.name, device)
    if device.startswith("cpu") and (policy.fp8 or policy.offload == "disk"):
        for transformer in transformers:
            _detach_from_file(transformer, policy)
        release_host_memory()


def _detach_from_file(transformer: Any, policy: MemoryPolicy) -> None:
    """Copy the weights that stayed as loaded out of the memory-mapped checkpoint file.

    safetensors loads a file as one mapping that every tensor views; while a
    single norm weight still views it, the whole file stays mapped and counted
    in the process, so storing blocks in fp8 or on disk would save nothing.
    """
    import torch

    moved = (
        {id(p) for block in transformer_blocks(transformer) for p in block.parameters()}
        if policy.offload == "disk"
        else set()
    )
    for tensor in [*transformer.parameters(), *transformer.buffers()]:
        if id(tensor) in moved or tensor.dtype == torch.float8_e4m3fn:
            continue  # already copies: written to disk, or cast to fp8
        tensor.data = tensor.data.clone()


def release_host_memory() -> None:
    """Hand freed host memory back to the OS.

    Weights replaced by fp8 copies or moved to disk are freed, but glibc keeps
    freed blocks of this size in its heap, so the process would not shrink.
    """
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim this way
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _offload_dir() -> Path:
    """A fresh folder per pipeline: diffusers reuses group files it finds, so a shared one could mix models."""
    import atexit
    import shutil
    import tempfile

    root = kinema_home() / "offload"
    root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="groups-", dir=root))
    atexit.register(shutil.rmtree, path, True)
    return path


# --------------------------------------------------------------------------- out of memory


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, KinemaError):  # kinema's own OutOfMemoryError was already handled once
        return False
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def retry_lighter_on_oom(run: Callable[[], T], lighten: Callable[[], str | None] | None, notes: list[str]) -> T:
    """``run()``; if it runs out of memory, ``lighten()`` (steps the policy down, returns what it did) and retry once.

    The retry is written to ``notes`` and the log. Out of memory with nothing
    lighter left, or a second time, raises :class:`kinema.errors.OutOfMemoryError`.
    """
    advice = "make a shorter or smaller clip (--seconds, --size) or use --tier draft"
    try:
        return run()
    except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled; the rest re-raise
        if not is_out_of_memory(error):
            raise
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
    # Outside the except block, so the failed attempt's frames (and their tensors) are gone.
    release()
    note = lighten() if lighten is not None else None
    if note is None:
        raise OutOfMemoryError(f"out of memory ({first}) and no lighter memory policy is left: {advice}")
    logger.warning("kinema: %s", note)
    notes.append(note)
    try:
        return run()
    except Exception as error:  # noqa: BLE001
        if not is_out_of_memory(error):
            raise
    release()
    raise OutOfMemoryError(f"out of memory again after {note}: {advice}")


def step_down_note(old: str, new: MemoryPolicy) -> str:
    return f"out of memory with memory policy {old}; retried with {new.name} ({new.summary})"


def policy_report(device: str, dtype: Any) -> list[tuple[str, str]]:
    """For ``kinema doctor``: (model, the policy kinema would pick for it here and why) per installed model."""
    import torch

    element_size = torch.empty((), dtype=dtype).element_size()
    free = free_memory_bytes(device)
    forced = os.environ.get(ENV)
    report = []
    for folder in sorted(models_dir().iterdir()):
        if not (folder / "model_index.json").is_file():
            continue
        name = folder.name.replace("--", "/", 1)
        try:
            sizes = sizes_of_folder(folder, element_size)
        except (OSError, ValueError, KeyError) as error:
            report.append((name, f"cannot read its weights' sizes: {error}"))
            continue
        if forced:
            policy = get_policy(forced, device)
            why = f"forced by {ENV}"
        else:
            policy = choose(device, sizes, free)
            shown = f"{_human(free)} free" if free is not None else "free memory unknown"
            why = f"needs ~{_human(need_bytes(policy, sizes))} of {shown}"
        report.append((name, f"{policy.name} ({_human(sizes.total)} of weights; {why})"))
    return report


def _human(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- speed paths (opt-in)
#
# Beside where the weights live, a placement can take two speed paths; both are opt-in because neither has run at
# real size on a GPU yet (benchmarks/scale.py measures them there). fp8 storage with layerwise upcasting and group
# offload with CUDA streams are memory policies above.

# "1": regional torch.compile where it pays back within one clip; another value names torch.compile's backend
# (aot_eager checks the graphs without generating code).
COMPILE_ENV = "KINEMA_COMPILE"
ATTENTION_ENV = "KINEMA_ATTENTION"  # "auto": flash > cuDNN > efficient > math per call; or a diffusers backend name
COMPILE_TIERS = ("draft", "standard")  # final is the shot you keep: no compiler in its path
COMPILE_TIMES = "compile_times.json"  # in KINEMA_HOME, written by benchmarks/scale.py --compile --record


@dataclass(frozen=True)
class CompileTimes:
    """What regional compilation cost and bought for one transformer on one device, as measured."""

    compile_s: float  # the first compiled step's time beyond a compiled step's
    eager_step_s: float
    compiled_step_s: float

    @classmethod
    def from_steps(cls, first_s: float, compiled_s: list[float], eager_s: list[float]) -> CompileTimes:
        import statistics

        compiled, eager = statistics.median(compiled_s), statistics.median(eager_s)
        return cls(compile_s=max(0.0, first_s - compiled), eager_step_s=eager, compiled_step_s=compiled)

    def pays_back(self, steps: int) -> bool:
        """Whether ``steps`` compiled steps and the compile take less time than ``steps`` eager ones."""
        return self.compile_s + steps * self.compiled_step_s < steps * self.eager_step_s

    @property
    def break_even_steps(self) -> float | None:
        gain = self.eager_step_s - self.compiled_step_s
        return self.compile_s / gain if gain > 0 else None


def compile_key(transformer: Any, device: str) -> str:
    """Which measurement applies: the transformer's class and size, and the device's name."""
    count = sum(p.numel() for p in transformer.parameters())
    return f"{type(transformer).__name__}/{count}/{device_name(device)}"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    return device.split(":")[0]


def recorded_compile_times(key: str) -> CompileTimes | None:
    path = kinema_home() / COMPILE_TIMES
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    return CompileTimes(**entry) if entry else None


def record_compile_times(key: str, times: CompileTimes) -> None:
    """Keep ``times`` for ``key`` (written atomically; other keys are kept)."""
    import dataclasses
    import tempfile

    path = kinema_home() / COMPILE_TIMES
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    table[key] = dataclasses.asdict(times)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".part", delete=False) as handle:
        json.dump(table, handle, indent=1)
    os.replace(handle.name, path)


def compile_backend() -> str | None:
    """None: compilation is off; "": torch.compile's default backend; else the backend ``KINEMA_COMPILE`` names."""
    value = os.environ.get(COMPILE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return None
    return "" if value in ("1", "true", "yes", "on") else value


def compile_decision(tier: str, steps: int, times: CompileTimes | None) -> tuple[bool, str]:
    """Whether a clip of ``tier`` with ``steps`` steps should compile its transformer's blocks, and why."""
    if compile_backend() is None:
        return False, f"off ({COMPILE_ENV}=1 turns it on)"
    if tier not in COMPILE_TIERS:
        return False, f"the {tier} tier runs eager"
    if times is None:
        return False, "not measured on this device yet (benchmarks/scale.py --compile --record measures it)"
    if not times.pays_back(steps):
        even = times.break_even_steps
        after = f"pays back after {even:.0f} steps" if even is not None else "compiled steps are not faster"
        return False, f"{after}; this clip has {steps}"
    return True, f"pays back after {times.break_even_steps:.0f} of {steps} steps"


def compile_blocks(transformer: Any, **options: Any) -> bool:
    """Regional torch.compile of ``transformer``'s repeated blocks (diffusers' compile_repeated_blocks), once.

    Returns False, changing nothing, for a model that does not declare its repeated blocks.
    """
    if getattr(transformer, "_kinema_compiled", False):
        return True
    if not getattr(transformer, "_repeated_blocks", None) or not hasattr(transformer, "compile_repeated_blocks"):
        return False
    transformer.compile_repeated_blocks(fullgraph=True, **options)
    transformer._kinema_compiled = True
    return True


def attention_backends(device: str) -> list[Any]:
    """torch's SDPA backends in the order kinema prefers them on ``device`` (each call uses the first that fits)."""
    from torch.nn.attention import SDPBackend

    if device.startswith("cuda"):
        return [
            SDPBackend.FLASH_ATTENTION,
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.EFFICIENT_ATTENTION,
            SDPBackend.MATH,
        ]
    return [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]


@contextlib.contextmanager
def attention(transformers: list[Any], device: str, choice: str | None = None) -> Any:
    """Run the block with the attention ``choice`` (default: ``KINEMA_ATTENTION``; unset: torch's own pick).

    ``auto``: torch's SDPA tries flash, then cuDNN, then memory-efficient, then the plain kernel, per call, so a
    call flash cannot take (a mask, a dtype) falls back instead of failing. Any other value is a diffusers
    attention backend (``_native_cudnn``, ``flash``…), set on the transformers for the block and reset after.
    """
    choice = choice if choice is not None else os.environ.get(ATTENTION_ENV, "")
    if not choice:
        yield
        return
    if choice == "auto":
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(attention_backends(device), set_priority=True):
            yield
        return
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = [member.value for member in AttentionBackendName]
    if choice not in names:
        raise InvalidRequestError(f"{ATTENTION_ENV} must be auto or one of {', '.join(names)}; got {choice!r}")
    chosen = [t for t in transformers if hasattr(t, "set_attention_backend")]
    try:
        for transformer in chosen:
            transformer.set_attention_backend(choice)
        yield
    finally:
        for transformer in chosen:
            transformer.reset_attention_backend()


def compile_for_clip(pipe: Any, transformers: list[Any], tier: str, steps: int) -> dict[str, Any] | None:
    """Compile ``transformers``' repeated blocks for a clip of ``tier`` when it pays back; what was decided.

    None when compilation is off (nothing to record). Pipelines under offload or fp8 hooks stay eager: the
    hooks and a compiled graph together have not been measured.
    """
    backend = compile_backend()
    if backend is None or not transformers:
        return None
    name, device = current(pipe)
    device = device or str(getattr(pipe, "device", "cpu"))
    if all(getattr(transformer, "_kinema_compiled", False) for transformer in transformers):
        return {"compiled": True, "why": "compiled for an earlier clip of this loaded model"}
    if has_hooks(name):
        return {"compiled": False, "why": f"memory policy {name} runs eager"}
    times = recorded_compile_times(compile_key(transformers[0], device))
    decided, why = compile_decision(tier, steps, times)
    options = {"backend": backend} if backend else {}
    compiled = decided and all(compile_blocks(transformer, **options) for transformer in transformers)
    if decided and not compiled:
        why = "the model declares no repeated blocks"
    return {"compiled": compiled, "why": why}
