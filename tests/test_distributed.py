"""Data parallelism (aigc_course.distributed): runs of two processes under torchrun, on the CPU
with gloo, against the same run in one process.

Each two-process run is ``python -m torch.distributed.run --nproc_per_node=2 -m tests.ddp_worker
MODE OUT`` (tests/ddp_worker.py says what each mode does); the one-process reference calls the
same worker functions in this process, where the course sees no torchrun and runs as one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

from aigc_course import checkpoints, cli, distributed, runtime, training
from aigc_course.errors import SettingError
from aigc_course.runtime import RuntimeConfigError
from tests import ddp_worker
from tests.helpers import ROOT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def launch(
    mode: str, out: Path, *options: str, timeout: float = 180, processes: int = 2, **env: str
):
    """Run tests/ddp_worker.py in ``processes`` processes; returns the finished process (output
    captured)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    command = [*TORCHRUN[:-1], f"--nproc_per_node={processes}", "-m", "tests.ddp_worker"]
    command += [mode, str(out), *options]
    return run_torchrun(command, environment, timeout)


def run_torchrun(
    command: list[str], environment: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """Run a torchrun command, its temporary files (torchrun's own ``torchelastic_*`` folder,
    which it leaves behind) in a folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="aigc-torchrun-") as scratch:
        return subprocess.run(
            command,
            cwd=ROOT,
            env={**environment, "TMPDIR": scratch},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def finished(process) -> None:
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def suite_launch(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    """The runs that end well, then rank 1's crash, in one launch of two processes
    (``ddp_worker.SUITE``): each launch costs every process its start-up (Python, torch), several
    seconds on a small machine. Returns the output folder, the finished launch and when it ended
    (``time.time()``)."""
    out = tmp_path_factory.mktemp("ddp_suite")
    process = launch("suite", out)
    return out, process, time.time()


@pytest.fixture(scope="module")
def suite(suite_launch) -> Path:
    """The folder of the suite's runs, once the launch has reached its last run, the crash: the
    runs before it, one after another in each process, all ended well."""
    out, process, _ = suite_launch
    assert ddp_worker.CRASH_MESSAGE in process.stderr, (
        process.stdout[-3000:] + process.stderr[-3000:]
    )
    return out


@pytest.fixture(scope="module", params=[1, 2], ids=["whole-slices", "two-micro-batches"])
def two_process_gpt(request, suite):
    """The small GPT trained by two processes, each on its whole slice of every batch, or on it in
    two micro-batches (gradient accumulation with no_sync)."""
    out = suite / f"gpt-{request.param}"
    return [torch.load(out / f"rank{rank}.pt") for rank in (0, 1)] + [request.param]


@pytest.fixture(scope="module")
def one_process_gpt():
    model, history, seen = ddp_worker.train_small_gpt()
    return model, history, seen


def test_two_processes_train_the_same_gpt_as_one_with_the_same_global_batch(
    two_process_gpt, one_process_gpt
):
    model, history, _ = one_process_gpt
    for rank in (0, 1):
        assert max_difference(two_process_gpt[rank]["weights"], model.state_dict()) < 1e-5
    # ... and it did train: the weights moved from their initial values
    torch.manual_seed(0)
    initial = ddp_worker.GPT(ddp_worker.CONFIG).state_dict()
    assert max_difference(initial, model.state_dict()) > 1e-3


def test_the_evaluation_is_averaged_over_the_ranks(two_process_gpt, one_process_gpt):
    """Each rank scores a share of the evaluation batches (2 and 1 of 3); the weighted mean is the
    one-process figure, on both ranks."""
    _, history, _ = one_process_gpt
    for rank in (0, 1):
        assert two_process_gpt[rank]["val_loss"] == pytest.approx(
            history.eval_metrics["val_loss"], abs=1e-5
        )


def test_one_process_under_torchrun_runs_the_data_parallel_code_and_trains_the_same(
    tmp_path, one_process_gpt
):
    """torchrun with one process (one GPU, say) takes the same path as N: DDP of a world of one."""
    finished(launch("gpt", tmp_path, processes=1))
    model, _, _ = one_process_gpt
    assert max_difference(torch.load(tmp_path / "rank0.pt")["weights"], model.state_dict()) < 1e-5


def test_each_rank_trains_on_its_own_slice_of_the_global_batch(two_process_gpt, one_process_gpt):
    _, _, seen = one_process_gpt
    global_batch = seen[0]  # (8, T): one process, no accumulation
    rank0, rank1 = (two_process_gpt[rank]["first_batch"] for rank in (0, 1))
    micro = ddp_worker.GLOBAL_BATCH // 2 // two_process_gpt[2]  # 8 / 2 ranks / micro-batches
    assert rank0.shape == rank1.shape == (micro, ddp_worker.CONFIG.block_size)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(rank0, global_batch[0:micro]) and torch.equal(
        rank1, global_batch[4 : 4 + micro]
    )


def test_gradient_accumulation_takes_the_same_step_as_the_whole_batch(one_process_gpt):
    model, _, _ = one_process_gpt
    accumulated, _, seen = ddp_worker.train_small_gpt(accumulation=4)
    assert seen[0].shape[0] == ddp_worker.GLOBAL_BATCH // 4
    assert max_difference(accumulated.state_dict(), model.state_dict()) < 1e-5


def test_a_timed_run_stops_every_rank_on_the_same_step(suite):
    """Rank 1 is slower per step; rank 0's clock decides for both, so they take the same steps with
    the same learning rates (their weights stay equal)."""
    assert ddp_worker.SUITE["timed"] == ("gpt", {"minutes": 0.05, "slow_rank": 1})
    rank0, rank1 = (torch.load(suite / "timed" / f"rank{rank}.pt") for rank in (0, 1))
    assert rank0["steps"] == rank1["steps"] > 1
    assert max_difference(rank0["weights"], rank1["weights"]) == 0.0


def test_only_rank_0_writes_the_checkpoint_and_it_loads_in_one_process(suite):
    out = suite / "save"
    assert sorted(path.name for path in out.iterdir()) == ["model.safetensors", "text.txt"]
    model, _ = checkpoints.load_model(
        lambda config: ddp_worker.GPT(ddp_worker.GPTConfig(**config)),
        "unused",
        out / "model.safetensors",
    )
    tokens = (out / "text.txt").read_text().split()
    assert ddp_worker.greedy_text(model) == [int(t) for t in tokens]


def test_the_command_line_trains_under_torchrun_and_prints_once(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*TORCHRUN, "-m", "aigc_course.cli", "train", "gpt", "--profile", "smoke"]
    command += ["--steps", "3", "--quiet", "--out", str(tmp_path)]
    process = run_torchrun(command, environment, timeout=180)
    finished(process)
    assert process.stdout.count("GPT trained:") == 1
    assert [path.name for path in tmp_path.iterdir()] == ["gpt.safetensors"]
    assert "Warning" not in process.stderr, process.stderr  # e.g. DDP's deprecation notices


def test_the_vae_evaluations_are_split_over_the_ranks_and_combined(suite):
    """Each rank scores its share of the images (4 and 3 of 7) for the test -ELBO and the IWAE
    bound; the ranks combine their means weighted by their shares, so both get what one process
    gets scoring the two shares in turn. The VAE trainer's own final figures, split the same way,
    are the same on both ranks."""
    ranks = [torch.load(suite / "vae" / f"vae_rank{rank}.pt") for rank in (0, 1)]
    _, images = ddp_worker.small_vae_and_images()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same sums in the same order
    try:
        shares = [(len(images[r::2]), ddp_worker.vae_figures(images[r::2])) for r in (0, 1)]
    finally:
        torch.set_num_threads(threads)
    assert [size for size, _ in shares] == [4, 3]
    (n0, first), (n1, second) = shares
    for name in ("neg_elbo", "reconstruction", "kl", "iwae"):
        expected = (n0 * first[name] + n1 * second[name]) / (n0 + n1)
        if name in ("neg_elbo", "iwae"):  # hundreds of nats: the weights show (the KL is ~0.04)
            plain_mean = (first[name] + second[name]) / 2
            assert abs(plain_mean - expected) > 3e-6 * abs(expected), name  # 3x the tolerance
        for figures in ranks:
            assert figures["evaluations"][name] == pytest.approx(expected, rel=1e-6), name
    tested = [name for name in ranks[0]["run"] if name.startswith("test_")]
    assert {"test_neg_elbo", "test_iwae_nll"} <= set(tested)
    assert [ranks[0]["run"][name] for name in tested] == [ranks[1]["run"][name] for name in tested]


def test_the_gan_loop_runs_data_parallel(suite):
    """Both networks' gradients are averaged: the ranks end with the same weights. BatchNorm
    normalises with each rank's own slice (PyTorch's SyncBatchNorm runs on GPUs only), so the run
    is close to, not equal to, one process's (docs/SCALING.md): each network's update points the
    same way as that run's (cosine above 0.8; measured 0.90 for G and 0.99 for D)."""
    rank0, rank1 = (torch.load(suite / "gan" / f"weights_rank{rank}.pt") for rank in (0, 1))
    parameters = [k for k in rank0 if not ("running_" in k or "num_batches" in k)]
    assert max((rank0[k] - rank1[k]).abs().max().item() for k in parameters) == 0.0
    one, initial = ddp_worker.gan_weights(), ddp_worker.gan_weights(steps=0)
    for network in ("g.", "d."):
        names = [k for k in parameters if k.startswith(network)]
        update_one = torch.cat([(one[k] - initial[k]).flatten() for k in names])
        update_two = torch.cat([(rank0[k] - initial[k]).flatten() for k in names])
        assert torch.cosine_similarity(update_one, update_two, dim=0) > 0.8, network


def test_a_crashed_rank_ends_the_run_with_its_error(suite_launch):
    """The suite's last run: rank 1 raises at step 3, and the launch ends (rank 0 too, which was
    waiting for it) with rank 1's error, long before a collective's timeout."""
    out, process, ended = suite_launch
    assert process.returncode != 0
    assert ddp_worker.CRASH_MESSAGE in process.stderr
    began = float((out / "crash" / "began").read_text())  # written by rank 0 as the run began
    assert 0 < ended - began < 100


def test_a_vanished_rank_ends_the_run_with_a_clear_error(tmp_path):
    """Rank 1 exits without a word (as a killed process would); rank 0 says what happened."""
    process = launch("vanish", tmp_path, timeout=120)
    assert process.returncode != 0
    assert "RankFailedError: rank 0: another process of this data-parallel run" in process.stderr


def test_a_stuck_rank_ends_the_run_after_the_timeout_with_a_clear_error(tmp_path):
    started = time.monotonic()
    process = launch("stuck", tmp_path, timeout=120, AIGC_DIST_TIMEOUT="5")
    assert process.returncode != 0
    assert "RankFailedError: rank 0: another process of this data-parallel run" in process.stderr
    assert "AIGC_DIST_TIMEOUT" in process.stderr
    assert time.monotonic() - started < 100


# One process: what can be checked without a launch.


def test_a_collective_returns_once_the_backend_has_let_go_of_its_tensor(monkeypatch):
    """gloo's worker thread drops its reference to a finished collective's tensor a moment after
    the caller has the result; after a run's last collective the interpreter could be shutting down
    by then, and the process abort. A thread stands for the backend here: it holds the tensor for
    50 ms after the operation returned. A backend that never lets go delays the caller by at most
    RELEASE_WAIT_SECONDS."""
    released = threading.Event()

    def operation(tensor: torch.Tensor) -> None:
        def hold_then_let_go(held: list[torch.Tensor]) -> None:
            time.sleep(0.05)
            released.set()  # before letting go: the caller may return the moment it does
            held.clear()

        threading.Thread(target=hold_then_let_go, args=([tensor],)).start()

    distributed._collective_on(torch.zeros(2), operation, "a test")
    assert released.is_set()

    kept = []
    monkeypatch.setattr(distributed, "RELEASE_WAIT_SECONDS", 0.05)
    started = time.monotonic()
    distributed._collective_on(torch.zeros(2), kept.append, "a test")
    assert len(kept) == 1 and time.monotonic() - started < 1.0


def test_one_process_is_a_world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    world = distributed.world()
    assert world == distributed.World(0, 1, 0) and world.is_main and not world.distributed
    batch = (torch.arange(6), torch.arange(6))
    assert distributed.shard(batch, world) is batch
    assert distributed.average({"loss": 2.0}, 3, torch.device("cpu"), world) == {"loss": 2.0}


def test_a_batch_that_does_not_split_is_refused_with_the_fix():
    with pytest.raises(RuntimeConfigError, match="multiple of 3 \\(--batch-size\\)"):
        distributed.shard(torch.zeros(8, 2), distributed.World(1, 3, 1))
    config = training.TrainConfig(steps=1, accumulation_steps=3)
    with pytest.raises(RuntimeConfigError, match="3 micro-batches"):
        training.accumulate_gradients(
            *(torch.nn.Linear(2, 1),) * 2,
            lambda m, b: (m(b[0]).mean(), {}),
            (torch.zeros(8, 2),),
            config,
            1,
            torch.device("cpu"),
            runtime.choose_precision(torch.device("cpu")),
            None,
        )


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 does not fit WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "must be whole numbers"),
        ({"WORLD_SIZE": "1", "AIGC_DIST_TIMEOUT": "0"}, "AIGC_DIST_TIMEOUT='0'"),
        ({"WORLD_SIZE": "1", "AIGC_DIST_TIMEOUT": "inf"}, "AIGC_DIST_TIMEOUT='inf'.*at most"),
        ({"WORLD_SIZE": "1", "AIGC_DIST_TIMEOUT": "nan"}, "AIGC_DIST_TIMEOUT='nan'"),
    ],
)
def test_a_bad_torchrun_environment_is_refused_with_a_clear_error(
    monkeypatch, environment, message
):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeConfigError, match=message):
        distributed.world()
        distributed.timeout_seconds()


def test_accumulation_steps_must_be_a_whole_number_of_at_least_one():
    with pytest.raises(SettingError, match="accumulation_steps"):
        training.TrainConfig(accumulation_steps=0)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


RENDEZVOUS_CASES = {
    "no MASTER_ADDR": ({"MASTER_PORT": "29500"}, "MASTER_ADDR is not set"),
    "no MASTER_PORT": ({"MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not set"),
    "neither": ({}, "MASTER_ADDR and MASTER_PORT are not set"),
    "port not a number": (
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "http"},
        "'http' is not a port",
    ),
    "port too large": (
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"},
        "'70000' is not a port",
    ),
    "port zero": ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"}, "'0' is not a port"),
    "unknown host": (
        {"MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29500"},
        "'no-such-host.invalid' is not a host this machine can find",
    ),
    "a peer never comes": (
        {"RANK": "0", "WORLD_SIZE": "2"},
        "rank 0 of 2: the processes of this run did not all meet",
    ),
    "rank 0 is not there": (
        {"RANK": "1", "WORLD_SIZE": "2"},
        "rank 1 of 2: the processes of this run did not all meet",
    ),
}


#: The cases where processes are started and wait for each other (a real process group that never
#: forms, with a short timeout): run as commands. The others are refused before anything waits, so
#: they run in this process (each command would cost a start-up of Python and torch).
MEETINGS = ("a peer never comes", "rank 0 is not there")


@pytest.mark.parametrize("case", list(RENDEZVOUS_CASES))
def test_a_rendezvous_that_cannot_happen_is_one_line_naming_it(case, tmp_path, monkeypatch, capsys):
    """Missing or malformed torchrun variables, and processes that never meet (a short timeout):
    ``error: ...`` on one line, status 2, no traceback, no checkpoint."""
    variables, message = RENDEZVOUS_CASES[case]
    environment = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "AIGC_DIST_TIMEOUT": "2",
        "OMP_NUM_THREADS": "1",
        "AIGC_DATA_DIR": str(tmp_path / "cache"),
    }
    if case in MEETINGS:
        variables = {**variables, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    environment |= variables
    out = tmp_path / "out"
    command = ["train", "gpt", "--profile", "smoke", "--steps", "2", "--quiet", "--out", str(out)]
    if case in MEETINGS:
        kept = {k: v for k, v in os.environ.items() if k not in distributed_variables()}
        result = subprocess.run(
            [sys.executable, "-m", "aigc_course.cli", *command],
            env=kept | environment | {"PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
        status, stderr = result.returncode, result.stderr
    else:
        for name in distributed_variables():
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        status = cli.main(command)
        stderr = capsys.readouterr().err
        assert not torch.distributed.is_initialized()
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert message in lines[0]
    assert not out.exists() or not any(out.iterdir())


def distributed_variables() -> tuple[str, ...]:
    return ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
