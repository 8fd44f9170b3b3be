"""The test run's Jupyter kernels: on Unix sockets, forked from a process that has imported torch.

nbval starts a fresh kernel for every notebook, about seventy in a run, and each notebook's
first cell imports torch: 3 s of CPU here, the largest fixed cost of the suite. On POSIX,
:func:`start_kernel` starts each kernel as a fork of a *kernel parent*, one per test worker, that
imported torch and ipykernel once and then only waits. A fork is still a new
process: its own namespace, its own random state (reseeded), the notebook's folder and the
environment the kernel would have had. What it gets for free is the modules' import, nothing that
a notebook does. Windows has neither fork nor Unix sockets: nbval's own kernels there.

The channels are Unix sockets in a private folder, not TCP ports. Over TCP the client picks five
free ports and the kernel binds them a moment later; in between another process (a parallel
worker's kernel, any outgoing connection) can take one. If it takes the heartbeat or IOPub port,
the kernel stays alive but never answers, and nbval fails every cell of the notebook after 60 s
("Kernel didn't respond in 60 seconds": seen once in .ci/run's widget stage with three workers).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from functools import cache

#: What the kernel parent imports before it forks: torch (and numpy with it) and the kernel itself.
#: Nothing of the course or matplotlib, which read settings from the environment when imported:
#: the kernel reads them from its own. (Torch reads only the thread counts, which conftest.py sets
#: before the parent starts.)
PRELOADED = ("torch", "ipykernel.kernelapp")

#: The command nbval's current-environment kernel runs; any other command is started as usual.
KERNEL_MODULE = "ipykernel_launcher"


@cache
def socket_folder() -> str:
    """A private folder for this process's kernels' sockets, removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="aigc-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


# --------------------------------------------------------------------------------------------
# The kernel parent: a process that imported the heavy modules and forks kernels on request
# --------------------------------------------------------------------------------------------


def serve() -> None:
    """Import :data:`PRELOADED`, then read one request a line from stdin (``{"argv", "cwd",
    "env"}``), fork a kernel for it and answer ``{"pid": ...}``. Ends when stdin closes (the
    test worker ended). Children are reaped by the system (SIGCHLD ignored), so a kernel that
    ended is gone from the process table, which is how :class:`ForkedKernel` sees it ended."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for pytest
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_kernel(request)  # never returns
        print(json.dumps({"pid": pid}), flush=True)


def run_kernel(request: dict) -> None:
    """In the forked child: become the kernel ``request`` describes, then exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # its own process group, as jupyter_client starts kernels: interrupts reach it
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the parent's stdin and stdout carry requests: not the kernel's
        os.dup2(null, fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the kernel ends if its parent does
    os.chdir(request["cwd"])
    import random

    import numpy
    import torch

    random.seed()
    numpy.random.seed()
    torch.seed()
    import ipykernel_launcher  # its body runs only as __main__; here it gives argv[0] its path
    from ipykernel import kernelapp

    sys.argv = [ipykernel_launcher.__file__, *request["argv"]]

    kernelapp.launch_new_instance()
    raise SystemExit(0)  # unwinds past the parent's loop: the child exits as a process does


class KernelParent:
    """The test worker's handle on its kernel parent (started on first use)."""

    def __init__(self) -> None:
        command = [sys.executable, "-c", "import tests.kernels as k; k.serve()"]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.process = subprocess.Popen(
            command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        atexit.register(self.stop)
        if json.loads(self.process.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError("the kernel parent did not start (tests/kernels.py)")

    def stop(self) -> None:
        """End the parent (its kernels notice within a second and end too: ipykernel's parent
        poller)."""
        self.process.kill()
        self.process.wait(timeout=10)

    def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        self.process.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())["pid"]


_parent: KernelParent | None = None


def kernel_parent() -> KernelParent:
    """This worker's kernel parent, started again if it is gone."""
    global _parent
    if _parent is None or _parent.process.poll() is not None:
        _parent = KernelParent()
    return _parent


class ForkedKernel:
    """What jupyter_client's local provisioner needs of a ``Popen`` (poll, wait, signals), for a
    kernel that is not this process's child: it ended when its process id is gone."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0  # the parent reaped it; its status is not ours to read
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# nbval's kernels
# --------------------------------------------------------------------------------------------


def _forking_provisioner_class():
    from jupyter_client.provisioning import LocalProvisioner

    class ForkingProvisioner(LocalProvisioner):
        """Jupyter's local provisioner, except that nbval's kernel is forked from the parent."""

        async def launch_kernel(self, cmd: list[str], **kwargs):
            if cmd[1:3] != ["-m", KERNEL_MODULE] or cmd[0] != sys.executable:
                return await super().launch_kernel(cmd, **kwargs)
            env = {str(k): str(v) for k, v in (kwargs.get("env") or os.environ).items()}
            cwd = str(kwargs.get("cwd") or os.getcwd())
            self.process = ForkedKernel(kernel_parent().fork(cmd[3:], cwd, env))
            self.pid = self.pgid = self.process.pid
            self.cwd = cwd
            return self.connection_info

    return ForkingProvisioner


def kernel_manager(kernel_name: str, kernel_spec_manager=None):
    """A kernel manager, not started, whose kernel will be on Unix sockets in a private folder
    and forked from the kernel parent (see above) when its command is this Python's ipykernel."""
    from jupyter_client import KernelManager

    manager = KernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=os.path.join(socket_folder(), uuid.uuid4().hex[:12]),
        **({"kernel_spec_manager": kernel_spec_manager} if kernel_spec_manager else {}),
    )
    manager.kernel_id = str(uuid.uuid4())
    manager.provisioner = _forking_provisioner_class()(
        kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec, parent=manager
    )
    return manager


def start_kernel(startup_timeout: float = 60, kernel_name: str = "python", **kwargs):
    """nbval's ``start_new_kernel`` (the same arguments and result: a started manager and a
    ready client), with :func:`kernel_manager`'s kernel."""
    from nbval.kernel import NbvalKernelspecManager

    manager = kernel_manager(kernel_name, NbvalKernelspecManager())
    manager.start_kernel(**kwargs)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=startup_timeout)
    except RuntimeError:
        client.stop_channels()
        manager.shutdown_kernel()
        raise
    return manager, client
