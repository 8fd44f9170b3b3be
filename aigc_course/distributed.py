"""Data parallelism: the same training run on one process or on N under ``torchrun``.

``torchrun --nproc_per_node=N`` starts N copies of a program and tells each, through environment
variables, who it is (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) and where to meet the others
(``MASTER_ADDR``, ``MASTER_PORT``). The course reads those: under torchrun (even with N = 1, so one
GPU runs the very code N GPUs run), :func:`world` joins the process group (``nccl`` on CUDA GPUs,
``gloo`` on CPUs) the first time it is asked, and the training loop then

- wraps the model in PyTorch's ``DistributedDataParallel`` (DDP), which averages the gradients of
  the ranks during ``backward``;
- gives each rank its own slice of every global batch (:func:`shard`), so N processes run the same
  optimisation as one process with the same global batch;
- agrees on the step to stop at and the learning rate's position under a time budget
  (:func:`broadcast_floats` from rank 0), averages evaluations over the ranks
  (:func:`average`), and lets only rank 0 print, show progress and write checkpoints.

Without ``torchrun`` (no ``RANK`` and ``WORLD_SIZE`` in the environment) every function here is a
no-op and the course runs as one process, exactly as before. ``docs/SCALING.md`` has the commands and the arithmetic.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from aigc_course import settings
from aigc_course.errors import CourseError
from aigc_course.i18n import _
from aigc_course.settings import RuntimeConfigError

T = TypeVar("T")

#: Seconds a collective's caller waits, at most, for the backend to let go of its tensor (see
#: :func:`_collective_on`); it normally has within a millisecond.
RELEASE_WAIT_SECONDS = 1.0

#: Seconds a rank waits for the others at a collective before it gives up with an error
#: (``AIGC_DIST_TIMEOUT`` changes it, at most a week): a crashed or stuck rank ends the run, not
#: hangs it.
DEFAULT_TIMEOUT_SECONDS = settings.DEFAULT_TIMEOUT_SECONDS
MAX_TIMEOUT_SECONDS = settings.MAX_TIMEOUT_SECONDS


class RankFailedError(CourseError, RuntimeError):
    """Another process of a data-parallel run stopped answering (it crashed, was killed or hangs)."""


@dataclass(frozen=True)
class World:
    """Who this process is in a data-parallel run: ``rank`` of ``size`` processes (``local_rank``
    on this machine; ``launched``: started by torchrun). One process alone is ``World(0, 1, 0)``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True under torchrun: DDP, slices of the batch, agreement between the ranks."""
        return self.launched or self.size > 1


def _environment_world() -> World:
    """The world ``torchrun`` describes in the environment (one process when it describes none)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    try:
        size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as error:
        raise RuntimeConfigError(
            _(
                "WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (torchrun sets them): {error}"
            ).format(error=error)
        ) from None
    if size < 1 or not 0 <= rank < size:
        raise RuntimeConfigError(
            _(
                "RANK={rank} does not fit WORLD_SIZE={size}; start the run with torchrun, which "
                "sets both"
            ).format(rank=rank, size=size)
        )
    return World(rank, size, local_rank, launched=True)


def timeout_seconds() -> float:
    """How long a collective waits for the other ranks (``AIGC_DIST_TIMEOUT``, seconds)."""
    return settings.dist_timeout()


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA GPUs, ``gloo`` for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def world(device: torch.device | None = None) -> World:
    """This process's :class:`World`; under ``torchrun`` it joins the process group first if it has
    not yet, with the backend for ``device`` (default: CUDA if present)."""
    found = _environment_world()
    if found.distributed and not dist.is_initialized():
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(found.local_rank)
        join(found, backend_for(device))
    return found


def rendezvous_address() -> tuple[str, int]:
    """Where the processes of a run meet (``MASTER_ADDR``, ``MASTER_PORT``, which torchrun sets),
    checked before anything waits on it: both present, the port a number from 1 to 65535, the
    host a name or address this machine can resolve."""
    missing = [
        name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name, "").strip()
    ]
    if len(missing) == 1:
        raise RuntimeConfigError(
            _(
                "{name} is not set: the processes of a data-parallel run meet at "
                "MASTER_ADDR:MASTER_PORT (rank 0's machine and a free port). Start the run with "
                "torchrun, which sets both"
            ).format(name=missing[0])
        )
    if missing:
        raise RuntimeConfigError(
            _(
                "MASTER_ADDR and MASTER_PORT are not set: the processes of a data-parallel run "
                "meet at MASTER_ADDR:MASTER_PORT (rank 0's machine and a free port). Start the run "
                "with torchrun, which sets both"
            )
        )
    host, text = os.environ["MASTER_ADDR"].strip(), os.environ["MASTER_PORT"].strip()
    port = int(text) if text.isdigit() else -1
    if not 1 <= port <= 65535:
        raise RuntimeConfigError(
            _(
                "MASTER_PORT={port} is not a port: give a whole number from 1 to 65535 (torchrun "
                "sets it; --master-port changes it)"
            ).format(port=repr(text))
        )
    try:
        socket.getaddrinfo(host, port)
    except (socket.gaierror, UnicodeError) as error:
        raise RuntimeConfigError(
            _(
                "MASTER_ADDR={host} is not a host this machine can find ({error}): give the name "
                "or IP address of rank 0's machine (torchrun --master-addr)"
            ).format(host=repr(host), error=error)
        ) from None
    return host, port


def join(found: World, backend: str) -> None:
    """Join the process group of a torchrun-launched run, or stop with one line that says why the
    processes did not meet (rank 0 not there, a peer missing, the port taken) and what to check."""
    host, port = rendezvous_address()
    seconds = timeout_seconds()
    problem = _(
        "rank {rank} of {size}: the processes of this run did not all meet at "
        "{host}:{port} (MASTER_ADDR:MASTER_PORT) within {seconds} s (AIGC_DIST_TIMEOUT): start "
        "all of them with the same torchrun command, and check that rank 0 runs and its port is "
        "free and reachable"
    ).format(rank=found.rank, size=found.size, host=host, port=port, seconds=f"{seconds:g}")
    if found.rank != 0 and not _reachable(host, port, seconds):
        # Found here rather than by the store's client, whose C++ log of the failure fills the
        # screen with stack frames before the error arrives.
        raise RankFailedError(
            _("{problem}. (Nothing answers at {host}:{port}.)").format(
                problem=problem, host=host, port=port
            )
        )
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    except (RuntimeError, ValueError) as error:  # DistNetworkError, DistStoreError, gloo's own
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RankFailedError(f"{problem}. ({type(error).__name__}: {first_line})") from error


def _reachable(host: str, port: int, seconds: float) -> bool:
    """Whether something accepts connections at ``host:port`` within ``seconds`` (rank 0's store)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, seconds)):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def is_main() -> bool:
    """True in rank 0, and in a run of one process."""
    return _environment_world().is_main


def collective(action: Callable[[], T], what: str) -> T:
    """``action()`` (a collective operation), with a failure of another rank turned into a
    :class:`RankFailedError` that says what happened and where to look."""
    try:
        return action()
    except RuntimeError as error:  # dist.DistError is one; gloo raises plain RuntimeErrors
        if not is_communication_error(error):
            raise
        rank = _environment_world().rank
        raise RankFailedError(
            _(
                "rank {rank}: another process of this data-parallel run stopped answering during "
                "{what}: it crashed, was stopped, or did not answer within {seconds} s "
                "(AIGC_DIST_TIMEOUT). torchrun names the first rank that failed, with its error; "
                "this rank stops too. ({error_type}: {error})"
            ).format(
                rank=rank,
                what=what,
                seconds=f"{timeout_seconds():g}",
                error_type=type(error).__name__,
                error=str(error).splitlines()[0] if str(error) else "",
            )
        ) from error


def _collective_on(
    tensor: torch.Tensor, operation: Callable[[torch.Tensor], object], what: str
) -> None:
    """``operation(tensor)`` (a collective, see :func:`collective`), then a wait until the backend
    has let go of ``tensor`` (at most :data:`RELEASE_WAIT_SECONDS`).

    A backend's worker thread (gloo's) drops its reference to a finished collective's tensor a
    moment after the caller has the result, and dropping a reference to a tensor that Python knows
    needs Python's lock. After the last collective of a run the interpreter may be shutting down
    by then: the thread is stopped mid-way, the process aborts ("terminate called without an
    active exception", 1 two-process run in 10 on a loaded 2-core machine), and torchrun reports a
    finished run as failed. In PyTorch 2.13 a tensor that C++ code also holds counts one more in
    ``sys.getrefcount`` until C++ lets go (a version that does not count it ends the wait at once)."""
    held_here = sys.getrefcount(tensor)
    collective(lambda: operation(tensor), what)
    deadline = time.monotonic() + RELEASE_WAIT_SECONDS
    while sys.getrefcount(tensor) > held_here and time.monotonic() < deadline:
        time.sleep(0.001)


def is_communication_error(error: BaseException) -> bool:
    """True for an error of the communication between ranks (a peer gone, a timeout), as PyTorch's
    backends raise them: ``DistError`` and its kinds, or gloo's and NCCL's plain ``RuntimeError``."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return any(word in text for word in ("gloo", "NCCL", "Connection closed", "Connection reset"))


def shard(batch: T, current: World) -> T:
    """This rank's slice of a global batch (a tensor, or a tuple/list of tensors sharing their
    first dimension): rows ``[rank * n / size, (rank + 1) * n / size)``. The global batch size must
    divide by the number of processes."""
    if not current.distributed:
        return batch
    return slice_rows(batch, current.rank, current.size, _("processes"), "--batch-size")


def slice_rows(batch: T, index: int, parts: int, what: str, fix: str) -> T:
    """Part ``index`` of ``parts`` equal parts of ``batch`` along the first dimension (a tensor, or
    a tuple/list of them); ``what`` and ``fix`` name the parts and the option to change in the error
    when the rows do not divide."""
    if isinstance(batch, list | tuple):
        return type(batch)(slice_rows(item, index, parts, what, fix) for item in batch)
    if not isinstance(batch, torch.Tensor):
        return batch
    n = batch.shape[0]
    if n % parts:
        raise RuntimeConfigError(
            _(
                "a batch of {rows} does not split evenly into {parts} {what}; choose a batch size "
                "that is a multiple of {parts} ({fix})"
            ).format(rows=n, parts=parts, what=what, fix=fix)
        )
    size = n // parts
    return batch[index * size : (index + 1) * size]


def my_share(items: T, current: World) -> T:
    """This rank's share of an evaluation's items (every ``size``-th, from ``rank``): the ranks
    split the work, and :func:`average` puts the results together."""
    return items[current.rank :: current.size] if current.distributed else items


def broadcast_floats(values: list[float], device: torch.device, current: World) -> list[float]:
    """Rank 0's ``values`` on every rank (the others' are ignored): how ranks agree on a decision
    that depends on a clock, which each process reads for itself."""
    if not current.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    _collective_on(tensor, lambda t: dist.broadcast(t, src=0), _("the agreement on the clock"))
    return tensor.tolist()


def average(metrics: dict[str, float], weight: float, device: torch.device, current: World) -> dict:
    """The ``weight``-weighted mean of each metric over the ranks (``weight``: how many examples
    this rank's values average over), the same on every rank."""
    if not current.distributed:
        return metrics
    names = sorted(metrics)
    values = [metrics[name] * weight for name in names] + [weight]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    _collective_on(tensor, dist.all_reduce, _("an evaluation"))
    total = tensor[-1].item()
    return {name: tensor[i].item() / total for i, name in enumerate(names)}


def _device_ids(device: torch.device) -> list[int] | None:
    if device.type != "cuda":
        return None
    return [device.index if device.index is not None else torch.cuda.current_device()]


def wrap(
    model: torch.nn.Module,
    device: torch.device,
    current: World,
    broadcast_buffers: bool = True,
) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` (which copies rank 0's weights to every rank), or
    ``model`` itself for one process. ``broadcast_buffers=False`` leaves each rank its own buffers
    (BatchNorm's running statistics) instead of copying rank 0's before every forward."""
    if not current.distributed:
        return model
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    options = {} if broadcast_buffers else {"broadcast_buffers": False}

    def wrapped() -> torch.nn.Module:
        with warnings.catch_warnings():
            # Newer PyTorch calls the option deprecated, but its replacement still copies the
            # buffers once at the start; rank-local buffers need this one (PyTorch's own advice).
            warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
            return DistributedDataParallel(model, device_ids=_device_ids(device), **options)

    return collective(wrapped, _("the start (DDP's weight copy)"))


def close() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_initialized():
        dist.destroy_process_group()
