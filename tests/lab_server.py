"""JupyterLab for the browser tests (tests/test_browser.py), its Python kernels forked from a
process that imported torch, as the rest of the test run's kernels are (tests/kernels.py).

    python -m tests.lab_server [JupyterLab's options]

A kernel JupyterLab starts for a lesson would otherwise import torch, ``torch._dynamo`` and
ipykernel itself, and tear them down at its end: about 3 s of CPU a kernel on a small machine, for
nothing the test looks at. The server, the browser and the kernel's messages are JupyterLab's own;
only the kernel's process starts as a fork (elsewhere than Linux: as usual).
"""

from __future__ import annotations

import sys

from tests import kernels


def _with_forked_kernels(create_provisioner_instance):
    """jupyter_client's factory of kernel provisioners, except that where it would make its local
    provisioner (a kernel started as a process of the server), it makes the forking one (which logs
    :data:`tests.kernels.FORKED` for each kernel it forks)."""
    from jupyter_client.provisioning import LocalProvisioner

    def create(self, kernel_id, kernel_spec, parent):
        provisioner = create_provisioner_instance(self, kernel_id, kernel_spec, parent)
        if type(provisioner) is not LocalProvisioner:
            return provisioner
        forking = kernels.forking_provisioner_class()
        return forking(kernel_id=kernel_id, kernel_spec=kernel_spec, parent=parent)

    return create


def main() -> None:
    if kernels.FORKS:
        from jupyter_client.provisioning import KernelProvisionerFactory

        factory = KernelProvisionerFactory
        factory.create_provisioner_instance = _with_forked_kernels(
            factory.create_provisioner_instance
        )
        # Before the server listens: started at the first kernel's launch, the parent's imports
        # (seconds on a busy machine) would hold up the server's event loop.
        kernels.kernel_parent()
    from jupyterlab.labapp import main as jupyterlab

    sys.exit(jupyterlab())


if __name__ == "__main__":
    main()
