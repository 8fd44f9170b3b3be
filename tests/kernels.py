"""The test run's Jupyter kernels: on Unix sockets, forked from a process that has imported torch.

nbval starts a fresh kernel for every notebook, about seventy in a run, and each notebook's
first cell imports torch: 3 s of CPU here, the largest fixed cost of the suite. On Linux,
:func:`kernel_manager`'s kernels start as forks of a *kernel parent* that imported torch,
``torch._dynamo`` and ipykernel once (:data:`PRELOADED`) and then only waits: one for the whole
test run, shared by its workers and the JupyterLab servers they start (:func:`share_kernel_parent`;
each of those imports costs 1.9 s of CPU here). A fork is still a new process: its
own namespace, its own random state (reseeded, as a new process draws its seeds), the notebook's
folder, the environment and ``sys.path`` the kernel would have had. What it gets for free is the
modules' import, nothing that a notebook does. What it shares with the parent: the settings read
when Python or torch start (``PYTHONHASHSEED``'s hash seed, ``PYTHONPATH``, the thread counts:
those of the test process that started it, which every worker shares) and ``sys.modules``
holding torch and this module. Elsewhere
(macOS, where fork without exec after loading torch is unsafe; Windows, which has neither fork nor
Unix sockets) the kernels start as usual.

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
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from functools import cache

#: Whether kernels are forked (Linux) or started as usual (elsewhere).
FORKS = sys.platform.startswith("linux")

#: What the kernel parent imports before it forks: torch (and numpy with it), ``torch._dynamo``
#: (PyTorch imports it when the first optimizer is made: 1 s of CPU a kernel here, in every lesson
#: that trains) and the kernel itself. Nothing of the course or matplotlib, which read settings
#: from the environment when imported: the kernel reads them from its own.
PRELOADED = ("torch", "torch._dynamo", "ipykernel.kernelapp")

#: The command of this Python's ipykernel; any other kernel's command is started as usual.
KERNEL_MODULE = "ipykernel_launcher"

#: What a forking provisioner logs for each kernel it forks (JupyterLab's log shows it:
#: tests/test_browser.py looks for it there).
FORKED = "kernel forked from the kernel parent"

#: Seconds to wait for the kernel parent: its imports, then each fork.
PARENT_START_TIMEOUT, FORK_TIMEOUT = 120.0, 30.0

#: Where the run's kernel parent listens (a Unix socket), and the process whose end ends it: set
#: by :func:`share_kernel_parent` in pytest's main process; its workers, and the JupyterLab servers
#: they start, inherit them.
ADDRESS_VARIABLE, OWNER_VARIABLE = "AIGC_TEST_KERNEL_PARENT", "AIGC_TEST_KERNEL_PARENT_OWNER"


@cache
def socket_folder() -> str:
    """A private folder for this process's kernels' sockets, removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="aigc-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


# --------------------------------------------------------------------------------------------
# The kernel parent: a process that imported the heavy modules and forks kernels on request
# --------------------------------------------------------------------------------------------


def share_kernel_parent() -> None:
    """Make this process (pytest's main one) the owner of one kernel parent for the whole run,
    which its workers and the JupyterLab servers they start share instead of starting one each.
    Nothing starts here: the first process that needs a kernel starts the parent, and it ends when
    this process ends."""
    if FORKS and not os.environ.get(ADDRESS_VARIABLE):
        os.environ[ADDRESS_VARIABLE] = os.path.join(socket_folder(), "parent")
        os.environ[OWNER_VARIABLE] = str(os.getpid())


def serve(address: str, owner: int) -> None:
    """Import :data:`PRELOADED`, listen on the Unix socket ``address`` and say ``{"ready": true}``
    on stdout (or ``{"error": ...}``); then greet each connection with ``{"pid": <this process>}``
    and answer each of its requests (``{"argv", "cwd", "env", "quiet"}``, with the requester's
    stderr as an attached file descriptor) by forking a kernel: ``{"pid": ...}``, or
    ``{"error": ...}``. The kernels a connection asked for end with it (SIGTERM when it closes:
    its process has gone, as a kernel ends with the process that started it). Ends when the process
    ``owner`` ends. Anything printed goes to stderr; children are reaped by the system."""
    import importlib

    announce = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray print must not break the protocol
    for name in PRELOADED:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for pytest
    try:
        owner_ended = os.pidfd_open(owner)  # readable once the owner has ended
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message a request
        listener.bind(address)
        listener.listen()
    except OSError as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), file=announce, flush=True)
        os._exit(1)
    print(json.dumps({"ready": True}), file=announce, flush=True)
    announce.close()
    kernels: dict[socket.socket, list[int]] = {}  # each connection's kernels, as pidfds
    while True:
        readable, _, _ = select.select([owner_ended, listener, *kernels], [], [])
        if owner_ended in readable:
            os._exit(0)  # nothing to flush, no teardown of torch's modules
        if listener in readable:
            connection, _ = listener.accept()
            kernels[connection] = []
            _send(connection, {"pid": os.getpid()})
        for connection in [c for c in kernels if c in readable]:
            try:
                message, descriptors, _, _ = socket.recv_fds(connection, 1 << 20, 1)
            except OSError:
                message, descriptors = b"", []
            if not message:  # the requester has gone: so do the kernels it started
                for kernel in kernels.pop(connection):
                    _end_kernel(kernel)
                connection.close()
                continue
            try:
                pid = os.fork()
            except OSError as error:
                answer = {"error": f"fork failed: {error}"}
            else:
                if pid == 0:  # the kernel: none of the parent's descriptors
                    listener.close()
                    os.close(owner_ended)
                    for other, pidfds in kernels.items():
                        other.close()
                        for kernel in pidfds:
                            os.close(kernel)
                    run_kernel(json.loads(message), stderr=descriptors[0] if descriptors else None)
                answer = {"pid": pid}
                running = [k for k in kernels[connection] if not select.select([k], [], [], 0)[0]]
                for ended in set(kernels[connection]) - set(running):
                    os.close(ended)
                kernels[connection] = [*running, os.pidfd_open(pid)]
            for descriptor in descriptors:
                os.close(descriptor)
            _send(connection, answer)


def _end_kernel(pidfd: int) -> None:
    """SIGTERM to a kernel unless it has ended."""
    try:
        if not select.select([pidfd], [], [], 0)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def _send(connection: socket.socket, answer: dict) -> None:
    """One answer of the kernel parent; a requester that has gone is noticed at its next read."""
    try:
        connection.send(json.dumps(answer).encode())
    except OSError:
        pass


def run_kernel(request: dict, stderr: int | None) -> None:
    """In the forked child: become the kernel ``request`` describes, its stderr the requester's
    (``stderr``, a file descriptor) unless the request is quiet, then exit as a kernel started
    as usual does, its ``atexit`` handlers run and its output flushed, except for Python's teardown
    of every loaded module: with torch's, about 0.6 s of CPU, in every kernel of the run, and
    nothing a test can see (the process's memory goes with it)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setsid()  # its own process group, as jupyter_client starts kernels: interrupts reach it
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    os.dup2(null if request["quiet"] or stderr is None else stderr, 2)
    for descriptor in {null, stderr} - {None, 0, 1, 2}:
        os.close(descriptor)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the kernel ends if its parent does
    os.chdir(request["cwd"])
    # `python -c` put "" first; `python -m ipykernel_launcher` leaves it out, and ipykernel puts
    # it back before site-packages.
    sys.path[:] = [entry for entry in sys.path if entry != ""]
    import random

    import numpy
    import torch

    random.seed()
    numpy.random.seed()
    torch.seed()
    import ipykernel_launcher  # its body runs only as __main__; here it gives argv[0] its path
    from ipykernel import kernelapp

    sys.argv = [ipykernel_launcher.__file__, *request["argv"]]
    status = 1
    try:
        kernelapp.launch_new_instance()
        status = 0
    except SystemExit as exit_request:  # what Python would make of it at its exit
        code = exit_request.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        status = code if isinstance(code, int) else int(code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            from aigc_course.cli import leave  # Python's exit less its teardown, as the program's

            leave(status)
        finally:
            os._exit(
                status
            )  # never back into serve() (leave can end in sys.exit): the forked child


class ParentGone(RuntimeError):
    """The kernel parent closed the connection (it ended)."""


class KernelParent:
    """A connection to the kernel parent at ``address``, which this process starts if none is
    listening there (one process at a time: a lock beside the socket); it ends when the process
    ``owner`` ends. Its stderr goes to ``address.log``."""

    def __init__(self, address: str, owner: int) -> None:
        import fcntl  # Unix only, as forking is

        self.log = f"{address}.log"
        with open(f"{address}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                self.connection = self._connect(address)
            except OSError:  # none there yet (or one that ended): start it
                try:
                    self._start(address, owner)
                except RuntimeError as error:  # unless one started meanwhile (by a process
                    try:  # that died holding the lock) listens there
                        self.connection = self._connect(address)
                    except OSError:
                        raise error from None
                else:
                    self.connection = self._connect(address)
        self.pid = self._answer(FORK_TIMEOUT)["pid"]  # the greeting

    @staticmethod
    def _connect(address: str) -> socket.socket:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            connection.connect(address)
        except OSError:
            connection.close()
            raise
        return connection

    def _start(self, address: str, owner: int) -> None:
        if os.path.exists(address):
            os.unlink(address)  # left by a parent that ended
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        command = [
            sys.executable,
            "-c",
            f"import tests.kernels as k; k.serve({address!r}, {owner})",
        ]
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                text=True, start_new_session=True,  # not in the starter's group: it outlives it
            )  # fmt: skip
        _STARTED.append(process)  # kept: a Popen dropped while its process runs warns
        readable, _, _ = select.select([process.stdout], [], [], PARENT_START_TIMEOUT)
        ready = process.stdout.readline() if readable else ""
        process.stdout.close()
        if not ready or json.loads(ready).get("ready") is not True:
            process.kill()
            problem = (
                json.loads(ready).get("error")
                if ready
                else f"no answer in {PARENT_START_TIMEOUT:.0f} s"
            )
            raise RuntimeError(
                f"the kernel parent (tests/kernels.py) did not start: {problem}; see {self.log}"
            )

    def _answer(self, timeout: float) -> dict:
        readable, _, _ = select.select([self.connection], [], [], timeout)
        if not readable:
            raise RuntimeError(
                f"the kernel parent (tests/kernels.py) did not answer within {timeout:.0f} s;"
                f" see {self.log}"
            )
        message = self.connection.recv(1 << 16)
        if not message:
            self.connection.close()
            raise ParentGone(f"the kernel parent (tests/kernels.py) has ended; see {self.log}")
        return json.loads(message)

    def fork(self, argv: list[str], cwd: str, env: dict[str, str], quiet: bool) -> int:
        request = {"argv": argv, "cwd": cwd, "env": env, "quiet": quiet}
        try:  # with this process's stderr (fd 2), which a kernel started as usual would inherit
            socket.send_fds(self.connection, [json.dumps(request).encode()], [2])
        except OSError as error:
            self.connection.close()
            raise ParentGone(f"the kernel parent (tests/kernels.py) has ended: {error}") from None
        answer = self._answer(FORK_TIMEOUT)
        if "pid" not in answer:
            raise RuntimeError(f"the kernel parent could not start a kernel: {answer['error']}")
        return answer["pid"]


_parent: KernelParent | None = None
_STARTED: list[subprocess.Popen] = []


def kernel_parent() -> KernelParent:
    """The run's kernel parent (:func:`share_kernel_parent`), or where no run shares one (or its
    owner has ended), this process's own, which ends with it; connected on first use, and again
    if it has gone."""
    global _parent
    if _parent is None or _parent.connection.fileno() == -1:
        # Imported here: the kernel parent imports this module, and its kernels import the course
        # themselves, from their own environment.
        from aigc_course.files import process_is_running

        address, owner = os.environ.get(ADDRESS_VARIABLE), os.environ.get(OWNER_VARIABLE)
        if not (address and owner and process_is_running(int(owner))):
            address, owner = os.path.join(socket_folder(), "parent"), str(os.getpid())
        _parent = KernelParent(address, int(owner))
    return _parent


def fork_kernel(argv: list[str], cwd: str, env: dict[str, str], quiet: bool) -> int:
    """A kernel forked by the kernel parent; once more with a new parent if it had ended."""
    try:
        return kernel_parent().fork(argv, cwd, env, quiet)
    except ParentGone:
        return kernel_parent().fork(argv, cwd, env, quiet)


class ForkedKernel:
    """What jupyter_client's local provisioner needs of a ``Popen`` (poll, wait, signals), for a
    kernel that is not this process's child. It is watched and signalled through a pidfd, which
    names the process itself, not a number another process may take after it ended."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # ended already (a kernel that failed at once)
            self.returncode, self._pidfd = 0, None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self.returncode = 0  # ended; its parent reaped it, so its status is not ours to read
            os.close(self._pidfd)
            self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# Kernel managers for nbval and nbclient (and JupyterLab's provisioner: tests/lab_server.py)
# --------------------------------------------------------------------------------------------


def forking_provisioner_class():
    from jupyter_client.provisioning import LocalProvisioner

    class ForkingProvisioner(LocalProvisioner):
        """Jupyter's local provisioner, except that this Python's ipykernel is forked from the
        kernel parent."""

        forked = False

        async def launch_kernel(self, cmd: list[str], **kwargs):
            if cmd[0] != sys.executable or cmd[1:3] != ["-m", KERNEL_MODULE]:
                return await super().launch_kernel(cmd, **kwargs)
            env = {str(k): str(v) for k, v in (kwargs.get("env") or os.environ).items()}
            cwd = str(kwargs.get("cwd") or os.getcwd())
            quiet = kwargs.get("stderr") is not None  # nbval sends its kernels' stderr to null
            self.process = ForkedKernel(fork_kernel(cmd[3:], cwd, env, quiet))
            self.pid = self.pgid = self.process.pid
            self.cwd = cwd
            self.forked = True
            self.log.info(f"{FORKED}: pid {self.pid}")
            return self.connection_info

    return ForkingProvisioner


def kernel_manager(kernel_name: str, manager_class=None, **traits):
    """A kernel manager of ``manager_class`` (jupyter_client's ``KernelManager`` by default), not
    started, whose kernel will talk over Unix sockets in a private folder and, on Linux, be forked
    from the kernel parent when its command is this Python's ipykernel. Called as
    ``KernelManager(kernel_name=..., kernel_spec_manager=...)`` it stands in for the class in
    nbval's ``start_new_kernel`` (conftest.py), which starts it and waits for it as usual."""
    if manager_class is None:
        from jupyter_client import KernelManager as manager_class

    socket_prefix = os.path.join(socket_folder(), uuid.uuid4().hex[:12])
    manager = manager_class(kernel_name=kernel_name, transport="ipc", ip=socket_prefix, **traits)
    if FORKS:
        manager.kernel_id = str(uuid.uuid4())
        manager.provisioner = forking_provisioner_class()(
            kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec, parent=manager
        )
    return manager
