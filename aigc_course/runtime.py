"""Where the course runs: device, seeds, run profile, mixed precision, ``torch.compile``.

Every lesson starts from here, so that a learner never edits code to move between a laptop CPU,
Colab's T4 and a large GPU. Environment variables override the automatic choices:

- ``AIGC_DEVICE``  = ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``  (MPS only ever when asked for)
- ``AIGC_PROFILE`` = ``smoke`` | ``cpu`` | ``gpu``
- ``AIGC_COMPILE`` = ``0`` to switch ``torch.compile`` off
- ``AIGC_COMPILE_MODE``: ``torch.compile``'s mode (e.g. ``reduce-overhead``: CUDA graphs)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import random
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

import aigc_course
from aigc_course import settings
from aigc_course.errors import CourseError
from aigc_course.i18n import _
from aigc_course.settings import RuntimeConfigError

ProfileName = Literal["smoke", "cpu", "gpu"]
PROFILE_NAMES: tuple[ProfileName, ...] = aigc_course.PROFILE_NAMES
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------------------------


def get_device(name: str | None = None) -> torch.device:
    """The device to compute on: ``name``, else ``$AIGC_DEVICE``, else CUDA if present, else CPU.

    Apple's MPS is used only when asked for (``AIGC_DEVICE=mps``): on some PyTorch versions it
    silently gives wrong training results, and a course must not teach on wrong numbers.
    """
    requested = name if name is not None else (settings.raw("AIGC_DEVICE") or "")
    if not requested:
        return (
            _local_gpu(torch.device("cuda")) if torch.cuda.is_available() else torch.device("cpu")
        )
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise RuntimeConfigError(
            f"AIGC_DEVICE={requested!r} is not a device name. Use 'cpu', 'cuda', 'cuda:0' or 'mps', "
            "or unset AIGC_DEVICE to choose automatically."
        ) from error
    device = _local_gpu(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeConfigError(
                f"AIGC_DEVICE={requested!r} asks for CUDA, but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}). Unset AIGC_DEVICE to run on the CPU, or install a "
                "CUDA build of PyTorch (https://pytorch.org/get-started/locally/)."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeConfigError(
                f"AIGC_DEVICE={requested!r}, but only {torch.cuda.device_count()} CUDA device(s) "
                f"exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})."
            )
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RuntimeConfigError(
                "AIGC_DEVICE='mps' asks for Apple's GPU, but MPS is not available here. "
                "Unset AIGC_DEVICE to run on the CPU."
            )
    elif device.type != "cpu":
        raise RuntimeConfigError(
            f"AIGC_DEVICE={requested!r}: the course supports 'cpu', 'cuda[:N]' and 'mps'."
        )
    return device


def _local_gpu(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its local rank: ``cuda`` (no index) becomes
    ``cuda:LOCAL_RANK``; any other device is left as it is."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"] or 0))
    return device


def seed_everything(seed: int = 0) -> int:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device). Returns the seed."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


# --------------------------------------------------------------------------------------------
# Run profiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A run profile: how big and how long the lessons' runs are.

    - ``smoke``: CI and quick checks, the smallest run that exercises every code path (seconds).
    - ``cpu``: a real, recognisable result in a few minutes on a 2-core laptop.
    - ``gpu``: the full recipe (mixed precision, ``torch.compile``, larger models).

    A lesson states its sizes for all three with :meth:`select`, e.g.
    ``steps = profile.select(smoke=20, cpu=2_000, gpu=5_000)``, or keeps a dict of its own
    config dataclasses keyed by ``profile.name``.
    """

    name: ProfileName
    source: str = "default"

    def __post_init__(self) -> None:
        if self.name not in PROFILE_NAMES:
            raise RuntimeConfigError(
                f"unknown run profile {self.name!r}: choose one of {', '.join(PROFILE_NAMES)}"
            )

    def select(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """The value for this profile among the three given."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]

    @property
    def description(self) -> str:
        return {
            "smoke": _("smallest runs that exercise every code path (CI, quick checks)"),
            "cpu": _("real results in minutes on a laptop CPU"),
            "gpu": _("the full recipe on a CUDA GPU"),
        }[self.name]

    def __str__(self) -> str:
        return f"{self.name} ({self.source})"


def get_profile(name: str | None = None, device: torch.device | None = None) -> Profile:
    """The run profile: ``name``, else ``$AIGC_PROFILE``, else ``gpu`` on CUDA and ``cpu`` otherwise."""
    if name is not None:
        return Profile(name.strip().lower(), source="argument")  # type: ignore[arg-type]
    from_env = settings.choice("AIGC_PROFILE")
    if from_env:
        return Profile(from_env, source="AIGC_PROFILE")  # type: ignore[arg-type]
    device = device if device is not None else get_device()
    return Profile("gpu" if device.type == "cuda" else "cpu", source="automatic")


# --------------------------------------------------------------------------------------------
# Mixed precision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How a training step computes: ``fp32``, ``bf16`` autocast, or ``fp16`` autocast + scaler.

    bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does (small gradients
    underflow to zero), hence the gradient scaler.
    """

    name: Literal["fp32", "bf16", "fp16"]
    device_type: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    @property
    def needs_grad_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """A context for the forward pass: autocast to the chosen dtype, or nothing for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, active only for fp16 (a disabled scaler passes values through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_grad_scaler)


def precision_for(device_type: str, compute_capability: tuple[int, int] | None) -> Precision:
    """The precision rule itself, separate from the hardware query so that it can be tested.

    bf16 needs compute capability 8.0 (Ampere) or newer. Older GPUs such as Colab's T4 (7.5) get
    fp16 with a gradient scaler. (``torch.cuda.is_bf16_supported()`` is not used: by default it
    also counts bf16 *emulation*, which is slow, and says True on a T4.) CPU and MPS train in fp32.
    """
    if device_type == "cuda" and compute_capability is not None:
        return Precision("bf16" if compute_capability >= (8, 0) else "fp16", device_type)
    return Precision("fp32", device_type)


def choose_precision(device: torch.device | None = None) -> Precision:
    """The mixed-precision setting for ``device`` (default: :func:`get_device`)."""
    device = device if device is not None else get_device()
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return precision_for(device.type, capability)


# --------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------


def compile_support(
    device_type: str,
    system: str | None = None,
    triton_available: bool | None = None,
    env_value: str | None = None,
) -> tuple[bool, str]:
    """Whether ``torch.compile`` should be used, and why (pure logic; arguments default to here).

    The course compiles only on CUDA with Triton installed: that is where compiling pays off and
    is well supported. It never compiles on the CPU (slow to compile for short lessons), nor on
    Windows without Triton, and ``AIGC_COMPILE=0`` switches it off. Compiling is never required.
    """
    system = system if system is not None else platform.system()
    if triton_available is None:
        triton_available = importlib.util.find_spec("triton") is not None
    env_value = env_value if env_value is not None else settings.raw("AIGC_COMPILE")
    if env_value and not settings.parse_switch("AIGC_COMPILE", env_value):
        return False, _("switched off by AIGC_COMPILE")
    if device_type != "cuda":
        return False, _("not used on {device} (only worth it on a CUDA GPU)").format(
            device=device_type
        )
    if not hasattr(torch, "compile"):
        return False, _("torch {version} has no torch.compile").format(version=torch.__version__)
    if not triton_available:
        if system == "Windows":
            return False, _("Triton is not installed on Windows (torch.compile needs it for CUDA)")
        return False, _("Triton is not installed (torch.compile needs it for CUDA)")
    return True, _("CUDA with Triton")


def maybe_compile(
    model: torch.nn.Module,
    device: torch.device | None = None,
    enabled: bool | None = None,
    mode: str | None = None,
) -> torch.nn.Module:
    """``torch.compile(model)`` where :func:`compile_support` allows it (or where ``enabled`` says
    so, when given), in the mode ``AIGC_COMPILE_MODE`` names, else in ``mode`` (the caller's
    choice; PyTorch's default when None), else ``model`` unchanged. The compiled module shares
    ``model``'s parameters."""
    if enabled is None:
        device = device if device is not None else get_device()
        enabled = compile_support(device.type)[0]
    if not enabled:
        return model
    return torch.compile(model, mode=settings.choice("AIGC_COMPILE_MODE") or mode)


# --------------------------------------------------------------------------------------------
# One optimiser step
# --------------------------------------------------------------------------------------------


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    parameters: Iterable[torch.nn.Parameter] | None = None,
) -> torch.Tensor | None:
    """Clear the gradients, backpropagate ``loss``, clip, and step: the one update every loop uses.

    With an fp16 ``scaler`` the loss is scaled before backward and the gradients unscaled before
    clipping (a disabled scaler, or None, changes nothing). ``grad_clip`` clips the global L2 norm
    of the gradients of ``parameters`` (default: the optimiser's). Returns that norm before
    clipping (a 0-d tensor on the device: reading it is the caller's choice, a host sync on a
    GPU), or None without clipping.
    """
    optimizer.zero_grad(set_to_none=True)
    backward(loss, scaler)
    return clip_and_step(optimizer, scaler, grad_clip, parameters)


def backward(loss: torch.Tensor, scaler: torch.amp.GradScaler | None = None) -> None:
    """Backpropagate ``loss`` (scaled first by an fp16 ``scaler``), adding to the gradients: the
    first half of :func:`optimizer_step`, called once per micro-batch under gradient accumulation."""
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()


def clip_and_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    parameters: Iterable[torch.nn.Parameter] | None = None,
) -> torch.Tensor | None:
    """The second half of :func:`optimizer_step`: unscale, clip (returning the norm before
    clipping as a 0-d tensor, not read, or None without clipping) and step with the gradients
    gathered so far."""
    if scaler is None:
        scaler = torch.amp.GradScaler("cpu", enabled=False)
    norm = None
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        if parameters is None:
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip).detach()
    scaler.step(optimizer)
    scaler.update()
    return norm


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def describe_device(device: torch.device) -> str:
    """A short name for the device, with its memory for a GPU."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return _("{device} ({name}, {memory} GiB, compute capability {major}.{minor})").format(
            device=device,
            name=props.name,
            memory=f"{props.total_memory / 2**30:.1f}",
            major=props.major,
            minor=props.minor,
        )
    if device.type == "mps":
        return _("mps (Apple GPU; asked for with AIGC_DEVICE)")
    return _("cpu ({cores} logical cores, {threads} threads for torch)").format(
        cores=os.cpu_count(), threads=torch.get_num_threads()
    )


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


class OutOfMemoryError(CourseError, MemoryError):
    """A run asked for more memory than the device has: a batch, a model or a schedule too large."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator's refusal: CUDA's ``OutOfMemoryError``, the CPU
    allocator's "can't allocate memory", or Python's ``MemoryError``."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


def out_of_memory(
    error: BaseException, device: torch.device, sizes: dict[str, object]
) -> OutOfMemoryError:
    """The course's one-line error for an allocator's refusal: how much was asked for at once (when
    the allocator says), on which device, and which of the run's sizes to lower (``sizes``: the
    options given, e.g. ``{"--latent-dim": 10**9}``)."""
    asked = re.search(r"allocate (\d+) bytes", str(error)) or re.search(
        r"allocate ([\d.]+ [KMGT]iB)", str(error)
    )
    amount = ""
    if asked is not None:
        value = asked.group(1)
        amount = f" ({_bytes(int(value)) if value.isdigit() else value} at once)"
    lower = (
        "lower "
        + ", ".join(
            f"{flag} (now {value:,})" if isinstance(value, int) else f"{flag} (now {value})"
            for flag, value in sizes.items()
        )
        if sizes
        else "lower --batch-size, or use a smaller profile"
    )
    return OutOfMemoryError(
        f"not enough memory on {device.type}{amount}: the run's batch, model or schedule does not "
        f"fit; {lower}"
    )


def _bytes(count: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"
