"""Bad input never gives a traceback, and nothing a user has is overwritten or lost.

Each bad input a user is likely to type goes through ``aigc_course.cli.main``, the command's whole
path from the argument list to the exit status, in a user's shell (an empty working folder, an empty
data cache, the environment variables set); in-process, to spare a 3-second ``import torch`` per
case. What only a real process shows runs as one: Ctrl-C, the ``--debug`` traceback, and that a bad
option stops before PyTorch is imported. Every numeric option of every command is also fed
out-of-range values (parse only: a bad value must stop there). The tests assert the one-line
``error:`` message, the exit status, and that nothing was written.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aigc_course import checkpoints, cli, errors, files, validators
from aigc_course.data import sources
from tests.helpers import (
    ROOT,
    execute_notebook,
    fixture_spec,
    make_idx_dataset,
    printed_text,
    require_data,
)

SHAKESPEARE = [
    folder / "tinyshakespeare" / "input.txt"
    for folder in sources.search_dirs() + [sources.cache_dir()]
    if (folder / "tinyshakespeare" / "input.txt").is_file()
]


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders``: (size, mtime), to show that nothing was written."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for folder in folders
        if folder.exists()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def user(tmp_path, monkeypatch, capsys):
    """A user's shell: an empty working folder and an empty data cache; returns a runner of
    ``aigc-course ARGV`` (in-process; ``run.process(...)`` starts a real process instead)."""
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    cache.mkdir()
    env = {"AIGC_DATA_DIR": str(cache)}

    def run(*argv: str, **extra_env: str) -> subprocess.CompletedProcess:
        before = snapshot(work, cache, checkpoints.PRETRAINED_DIR)
        with monkeypatch.context() as shell:
            shell.chdir(work)
            shell.delenv("AIGC_DEBUG", raising=False)
            for name, value in {**env, **extra_env}.items():
                shell.setenv(name, value)
            capsys.readouterr()
            try:
                status = cli.main(list(argv))
            except SystemExit as exit_:  # argparse's own exit (--help)
                status = exit_.code
            printed = capsys.readouterr()
        result = subprocess.CompletedProcess(argv, status, printed.out, printed.err)
        result.wrote = snapshot(work, cache, checkpoints.PRETRAINED_DIR) != before
        return result

    def process(*argv: str, **extra_env: str) -> subprocess.CompletedProcess:
        variables = {**os.environ, **env, "PYTHONPATH": str(ROOT), **extra_env}
        if "AIGC_DEBUG" not in extra_env:
            variables.pop("AIGC_DEBUG", None)
        return subprocess.run(
            [sys.executable, "-m", "aigc_course.cli", *argv],
            cwd=work, env=variables, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    run.work, run.cache, run.process = work, cache, process
    return run


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str, lines: int = 1):
    """Exit status 2, no traceback, ``error: ...`` on stderr naming ``fragments``, nothing written."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    if lines == 1:
        assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not result.wrote, "a failed command must write nothing"


# --------------------------------------------------------------------------------------------
# Bad options, as a user types them
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "gpt", "ROMEO:", "--top-p", "0"], "--top-p: expected a number in (0, 1]"),
        (["generate", "gpt", "ROMEO:", "--top-p", "-1"], "--top-p"),
        (["generate", "gpt", "ROMEO:", "--top-p", "2"], "--top-p"),
        (["generate", "gpt", "ROMEO:", "--top-k", "0"], "--top-k: expected a whole number"),
        (["generate", "gpt", "ROMEO:", "--top-k", "-3"], "--top-k"),
        (["generate", "gpt", "ROMEO:", "--temperature", "-1"], "--temperature"),
        (["generate", "gpt", "ROMEO:", "--tokens", "-5"], "--tokens"),
        (["generate", "gpt", "ROMEO:", "--seed", str(2**64)], "--seed: expected a whole number"),
        (["generate", "gpt", "ROMEO:", "--seed", "-1"], "--seed"),
        (["train", "gpt", "--steps", "0"], "--steps: expected a whole number of at least 1"),
        (["train", "gpt", "--steps", "-3"], "--steps"),
        (["train", "vae", "--steps", "-5"], "--steps"),
        (["train", "gpt", "--batch-size", "0"], "--batch-size"),
        (["train", "vae", "--latent-dim", "0"], "--latent-dim"),
        (["train", "vae", "--beta", "-1"], "--beta"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_an_out_of_range_option_is_one_line(user, argv, fragment):
    assert_clean_error(user(*argv), fragment, "--help")


@pytest.mark.parametrize("model", list(cli.TRAINERS))
def test_a_bad_profile_is_one_line(user, model):
    assert_clean_error(
        user("train", model, "--quiet", AIGC_PROFILE="bogus"), "AIGC_PROFILE='bogus'"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_one_line(user):
    assert_clean_error(
        user("generate", "gpt", "ROMEO:", "--tokens", "3", AIGC_DEVICE="cuda"),
        "AIGC_DEVICE='cuda' asks for CUDA",
    )


def test_training_without_data_offline_says_what_was_tried(user):
    result = user(
        "train", "classifier", "--quiet", AIGC_OFFLINE="1", AIGC_DATA_PATH="",
        AIGC_IGNORE_SYSTEM_DATA="1",
    )  # fmt: skip
    assert_clean_error(result, "Fashion-MNIST file", "Tried:", "Fix:", lines=0)


def test_an_unknown_data_set_is_one_line(user):
    assert_clean_error(user("data", "status", "cifar"), "unknown data set 'cifar'")
    assert_clean_error(user("workshop", "prepare", "--data", "cifar"), "unknown data set 'cifar'")


def test_a_prompt_the_model_cannot_read_is_one_line(user):
    assert_clean_error(user("generate", "gpt", ""), "the prompt is empty")
    assert_clean_error(user("generate", "gpt", "ROMEO€"), "not in this tokenizer's vocabulary")


def test_a_checkpoint_of_another_model_is_refused(user, tmp_path):
    vae = checkpoints.PRETRAINED_DIR / checkpoints.manifest()["vae_fashion_mnist"]["file"]
    assert_clean_error(
        user("generate", "gpt", "ROMEO:", "--checkpoint", str(vae)),
        str(vae),
        "give a checkpoint written by the matching `aigc-course train` command",
    )
    # A checkpoint written now records its model, and the error names both.
    from aigc_course.models.vae import VAE, VAEConfig

    model = VAE(VAEConfig())
    path = tmp_path / "vae.safetensors"
    checkpoints.save(path, model, model.config.to_dict())
    assert_clean_error(
        user("generate", "gpt", "ROMEO:", "--checkpoint", str(path)), "holds a VAE model, not a GPT"
    )


def test_a_checkpoint_with_damaged_weights_is_refused(user, tmp_path):
    """The file still parses (its header is intact), but a weight holds NaN."""
    source = checkpoints.PRETRAINED_DIR / checkpoints.manifest()["gpt_tiny_shakespeare"]["file"]
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(source))
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[:5] = float("nan")
    damaged = tmp_path / "damaged.safetensors"
    save_file(state, str(damaged), metadata=metadata)
    result = user("generate", "gpt", "ROMEO:", "--checkpoint", str(damaged), "--tokens", "5")
    assert_clean_error(result, f"weight {name!r} holds NaN or infinite values")
    assert result.stdout == "", "nothing is generated from a damaged model"


def test_debug_shows_the_traceback(user):
    result = user.process("--debug", "generate", "gpt", "")
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "SettingError: the prompt is empty" in result.stderr
    # AIGC_DEBUG=1 does what --debug does: the error leaves the command, for Python to show
    # (in this process: what the real one above prints, without starting another)
    with pytest.raises(errors.SettingError, match="the prompt is empty"):
        user("generate", "gpt", "", AIGC_DEBUG="1")
    assert "the prompt is empty" in user("generate", "gpt", "").stderr  # one line without it


# --------------------------------------------------------------------------------------------
# Every numeric option, fed values out of its range
# --------------------------------------------------------------------------------------------

VALIDATING_TYPES = {
    validators.count: ["0", "-1", "-3", "1.5", "nan", "x", ""],
    validators.seed: ["-1", "1.5", "nan", "x", "", str(2**64), "1" + "0" * 30],
    validators.non_negative_float: ["-1", "-0.001", "nan", "inf", "-inf", "1e400", "x", ""],
    validators.positive_float: ["0", "-1", "nan", "inf", "1e400", "x", ""],
    validators.probability_mass: ["0", "-0.5", "1.0001", "2", "nan", "inf", "x", ""],
    validators.speaker_name: ["", "  ", "ROMEO:", "1st Citizen", "A" * 41],
}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) of the CLI, sub-commands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def _numeric_options():
    for path, parser in _commands(cli.build_parser([], models=cli.TRAINERS)):
        positionals = [
            "x" for action in parser._actions if not action.option_strings and action.dest != "run"
            if not isinstance(action, argparse._SubParsersAction) and action.nargs != "*"
        ]  # fmt: skip
        for action in parser._actions:
            if action.option_strings and action.type is not None:
                yield path, positionals, action


def test_every_numeric_option_validates_its_range():
    """No option takes a bare ``int`` or ``float``: each has a type that checks its range."""
    options = list(_numeric_options())
    assert len(options) >= 12
    for path, _, action in options:
        assert action.type in VALIDATING_TYPES, (path, action.option_strings, action.type)


@pytest.mark.parametrize(
    ("path", "positionals", "action"),
    list(_numeric_options()),
    ids=lambda value: (
        " ".join(value)
        if isinstance(value, tuple)
        else (value.option_strings[0] if isinstance(value, argparse.Action) else None)
    ),
)
def test_out_of_range_values_never_reach_the_command(path, positionals, action, capsys):
    for value in VALIDATING_TYPES[action.type]:
        argv = [*path, *positionals, action.option_strings[0], value]
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        assert stopped.value.code == 2, argv
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: argument ") and len(message.splitlines()) == 1, message


def test_the_validating_types_accept_the_edges():
    assert validators.count("1") == 1 and validators.seed("0") == 0
    assert validators.non_negative_float("0") == 0.0 and validators.probability_mass("1") == 1.0
    assert validators.probability_mass("0.001") == 0.001


def test_the_library_refuses_what_the_cli_refuses():
    """Called from Python (a notebook), the same settings are refused with a SettingError."""
    from aigc_course.models.gpt import GPT, GPTConfig, sample_next
    from aigc_course.trainers import gpt as gpt_trainer
    from aigc_course.training import TrainConfig

    logits = torch.zeros(1, 5)
    for settings in [{"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}, {"temperature": -1.0}]:
        with pytest.raises(errors.SettingError):
            sample_next(logits, **{"temperature": 1.0, **settings})
    with pytest.raises(errors.SettingError, match="max_new_tokens"):
        GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)).generate(
            torch.zeros(1, 1, dtype=torch.long), -1
        )
    for settings in [{"steps": 0}, {"lr": 0.0}, {"eval_every": 0}, {"grad_clip": 0.0}]:
        with pytest.raises(errors.SettingError):
            TrainConfig(**settings)
    with pytest.raises(errors.SettingError, match="batch_size"):
        gpt_trainer.recipe_for(batch_size=0)
    with pytest.raises(errors.SettingError, match="no setting 'stepz'"):
        gpt_trainer.recipe_for(stepz=3)


# --------------------------------------------------------------------------------------------
# What the user has is not overwritten, hidden or lost
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "gpt", "--pretrained"], "name the profile it is made with (--profile cpu)"),
        (["train", "gpt", "--pretrained", "--profile", "smoke"], "made with --profile cpu, not smoke"),
        (["train", "vae", "--pretrained", "--profile", "cpu", "--steps", "3"], "--steps changes the recipe"),
        (["train", "gan", "--pretrained", "--out", "x"], "it takes no --out"),
        (["train", "gan", "--conditional", "--pretrained", "--profile", "smoke"], "'dcgan_fashion_mnist_conditional' is made with --profile cpu, not smoke"),
        (["train", "gan", "--conditional", "--pretrained", "--profile", "cpu", "--steps", "3"], "with --steps changes the recipe"),
    ],
    ids=["no profile", "another profile", "another recipe", "with --out", "the cGAN's profile", "the cGAN's recipe"],
)  # fmt: skip
def test_the_shipped_checkpoints_are_not_replaced_by_accident(user, argv, fragment):
    manifest = checkpoints.MANIFEST.read_bytes()
    assert_clean_error(user(*argv, "--quiet"), fragment)
    assert checkpoints.MANIFEST.read_bytes() == manifest


def test_force_replaces_a_shipped_checkpoint_and_records_profile_and_options(
    pretrained_copy, capsys
):
    require_data("tinyshakespeare")
    before = (pretrained_copy / "gpt_tiny_shakespeare.safetensors").read_bytes()
    argv = ["train", "gpt", "--pretrained", "--profile", "smoke", "--steps", "2", "--quiet"]
    assert cli.main([*argv, "--force"]) == 0
    entry = json.loads((pretrained_copy / "manifest.json").read_text())["gpt_tiny_shakespeare"]
    assert entry["profile"] == "smoke" and entry["options"] == {"steps": 2}
    assert (pretrained_copy / "gpt_tiny_shakespeare.safetensors").read_bytes() != before
    assert entry["sha256"] == checkpoints.sha256_file(
        pretrained_copy / "gpt_tiny_shakespeare.safetensors"
    )
    # The shipped manifest records the profile (and no options) of every checkpoint.
    shipped = json.loads((ROOT / "aigc_course" / "pretrained" / "manifest.json").read_text())
    for name, recorded in shipped.items():
        assert f"--profile {recorded['profile']}" in recorded["command"], name
        assert recorded["options"] == {}, name


def test_train_writes_into_the_cache_by_default_and_says_where(tmp_path, monkeypatch, capsys):
    require_data("tinyshakespeare")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "gpt", "--steps", "2", "--quiet"]) == 0
    path = tmp_path / "cache" / "checkpoints" / "gpt" / "gpt.safetensors"
    assert path.is_file() and str(path) in capsys.readouterr().out
    assert not (tmp_path / "data").exists(), "nothing is written relative to the current folder"
    (tmp_path / "afile").write_text("not a folder")
    assert (
        cli.main(["train", "gpt", "--steps", "2", "--quiet", "--out", str(tmp_path / "afile")]) == 2
    )
    assert "is a file, not a folder" in capsys.readouterr().err


def read_until(pipe, text: bytes, seconds: float = 120) -> bytes:
    """What a process's ``pipe`` (bytes) gives until ``text`` appears in it, read from its
    descriptor as ``communicate`` reads the rest."""
    seen, deadline = b"", time.monotonic() + seconds
    while text not in seen:
        ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(pipe.fileno(), 1 << 16) if ready else b""
        assert chunk, f"no {text!r} (the pipe ended, or {seconds} s passed): {seen[-500:]!r}"
        seen += chunk
    return seen


def test_ctrl_c_during_training_says_what_was_lost(user):
    """SIGINT mid-run: "interrupted", what was (not) saved, status 130, no traceback."""
    require_data("tinyshakespeare")
    out = user.work / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "aigc_course.cli", "train", "gpt", "--profile", "smoke"]
        + ["--steps", "1000000", "--out", str(out)],
        cwd=user.work,
        env={**os.environ, "AIGC_DATA_DIR": str(user.cache), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # bytes: stderr is read in two parts, decoded once
        # A shell's background job (or a pytest worker) inherits SIGINT ignored; a user's
        # terminal does not. Give the command the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first_line = process.stdout.readline().decode()  # once the data is loaded, before step 1
        assert first_line.startswith("training the lesson-08 GPT"), first_line
        progress = read_until(process.stderr, b"loss=")  # the progress bar's first loss
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed wait: a million steps must not outlive the test
            process.kill()
            process.wait()
    stderr = (progress + rest).decode()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted: the run stopped before its last step and nothing was saved" in stderr
    assert f"{out / 'gpt.safetensors'} was not written" in stderr
    assert not out.exists() or not any(out.iterdir())


def test_new_files_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o002)  # a workshop's group-shared folder
    try:
        assert files.new_file_mode() == 0o664
        written = files.write_text(tmp_path / "table.md", "x")
        assert written.stat().st_mode & 0o777 == 0o664
        os.umask(0o022)
        assert files.write_text(tmp_path / "other.md", "x").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


@pytest.fixture
def corrupt_cache(tmp_path, monkeypatch):
    """A fixture data set: a truncated copy in the cache, a good one in an AIGC_DATA_PATH folder."""
    good = tmp_path / "shared" / "fixture"
    make_idx_dataset(good)
    cache = tmp_path / "cache"
    (cache / "fixture").mkdir(parents=True)
    name = "t10k-labels-idx1-ubyte.gz"
    (cache / "fixture" / name).write_bytes((good / name).read_bytes()[:20])
    monkeypatch.setenv("AIGC_DATA_DIR", str(cache))
    monkeypatch.setenv("AIGC_DATA_PATH", str(tmp_path / "shared"))
    monkeypatch.setenv("AIGC_OFFLINE", "1")
    monkeypatch.setitem(sources.DATASETS, "fixture", fixture_spec("fixture", good, ()))
    return cache / "fixture" / name, good / name


def test_data_status_reports_a_corrupt_cache_file_even_when_a_good_copy_is_used(
    corrupt_cache, capsys
):
    damaged, good = corrupt_cache
    assert cli.main(["data", "status", "fixture"]) == 0
    out = capsys.readouterr().out
    assert f"found in {good.parent}" in out
    assert f"warning: cache {damaged}: corrupt, not used" in out
    assert "`aigc-course data fetch fixture` replaces it" in out


def test_data_fetch_replaces_a_corrupt_cache_file(corrupt_cache, capsys):
    damaged, good = corrupt_cache
    previous = os.umask(0o002)
    try:
        assert cli.main(["data", "fetch", "fixture"]) == 0
    finally:
        os.umask(previous)
    out = capsys.readouterr().out
    assert f"{damaged.name}: replaced a corrupt cache copy; copied from {good.parent}" in out
    assert gzip.decompress(damaged.read_bytes()) == gzip.decompress(good.read_bytes())
    assert damaged.stat().st_mode & 0o777 == 0o664, "files are created with the umask's mode"
    assert cli.main(["data", "status", "fixture"]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_corrupt_copy_outside_the_cache_is_reported_with_its_own_advice(tmp_path, monkeypatch):
    good = tmp_path / "cache" / "fixture"
    make_idx_dataset(good)
    shared = tmp_path / "shared" / "fixture"
    shared.mkdir(parents=True)
    for path in good.iterdir():
        (shared / path.name).write_bytes(b"damaged")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AIGC_DATA_PATH", str(tmp_path / "shared"))
    monkeypatch.setitem(sources.DATASETS, "fixture", fixture_spec("fixture", good, ()))
    (status,) = sources.dataset_status(["fixture"])
    assert status.ready and len(status.problems) == 4
    assert all("Delete or replace that file" in problem for problem in status.problems)


def test_system_copies_can_be_ignored(tmp_path, monkeypatch):
    system = tmp_path / "system"
    make_idx_dataset(system)
    spec = fixture_spec("fixture", system, (), system_dirs=(str(system),))
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIGC_DATA_PATH", raising=False)
    monkeypatch.setitem(sources.DATASETS, "fixture", spec)
    assert sources.dataset_status(["fixture"])[0].ready
    monkeypatch.setenv("AIGC_IGNORE_SYSTEM_DATA", "1")
    assert not sources.dataset_status(["fixture"])[0].ready


# --------------------------------------------------------------------------------------------
# Notebooks
# --------------------------------------------------------------------------------------------


def test_lesson_00_runs_to_the_end_without_fashion_mnist(tmp_path, monkeypatch):
    import nbformat

    shared = tmp_path / "shared"
    if SHAKESPEARE:  # keep Tiny Shakespeare: only Fashion-MNIST is missing
        (shared / "tinyshakespeare").mkdir(parents=True)
        shutil.copy(SHAKESPEARE[0], shared / "tinyshakespeare" / "input.txt")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("AIGC_DATA_PATH", str(shared))
    monkeypatch.setenv("AIGC_IGNORE_SYSTEM_DATA", "1")
    monkeypatch.setenv("AIGC_OFFLINE", "1")
    notebook = nbformat.read(ROOT / "notebooks" / "00_setup.ipynb", as_version=4)
    execute_notebook(notebook, ROOT / "notebooks")  # raises if any cell fails
    text = printed_text(notebook)
    assert "MISSING: Fashion-MNIST file train-images-idx3-ubyte.gz was not found" in text
    assert "Fix: on a machine with internet: aigc-course data fetch fashion-mnist" in text
    assert "The image lessons (06, 07) need it" in text
    assert "✅ stable_softmax: passed" in text, "ran to the end"
    if SHAKESPEARE:
        assert "characters, 65 distinct ones" in text


def test_a_course_error_in_a_notebook_shows_its_message_not_a_traceback(tmp_path):
    import nbformat
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import aigc_course\nfrom aigc_course.data import sources"),
        nbformat.v4.new_code_cell(
            "def load():\n    raise sources.DataNotFoundError('no data here.\\nFix: fetch it')\n"
            "load()"
        ),
        nbformat.v4.new_code_cell("print('not reached')"),
    ]
    with pytest.raises(CellExecutionError):
        execute_notebook(notebook, tmp_path)  # the cell still fails: Run All stops there
    (error,) = [output for output in notebook.cells[1].outputs if output.output_type == "error"]
    assert error.traceback[0] == "DataNotFoundError: no data here.\nFix: fetch it"
    assert len(error.traceback) == 2 and "AIGC_DEBUG=1" in error.traceback[1]
    assert notebook.cells[2].outputs == []


@pytest.mark.parametrize(
    "argv",
    [["generate", "gpt", "x", "--top-k", "0"], ["--help"], ["train", "--help"], ["data", "--help"]],
    ids=" ".join,
)
def test_a_bad_option_or_help_answers_before_pytorch_loads(argv):
    """Parsing needs no PyTorch: `aigc-course --help`, `train --help` and a mistyped option answer
    at once (only `train MODEL` imports its trainer, to read its recipe's options)."""
    code = (
        "import sys\nfrom aigc_course import cli\n"
        f"try:\n    cli.main({argv!r})\n"
        "except SystemExit as stop:\n    print(stop.code, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    status = "0" if "--help" in argv else "2"
    assert result.stdout.split()[-2:] == [status, "False"], result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Sizes that pass the range check and still cannot work
# --------------------------------------------------------------------------------------------


def test_a_batch_larger_than_the_data_is_refused_at_once_not_spun_on_forever():
    from aigc_course.training import random_batches

    generator = torch.Generator().manual_seed(0)
    with pytest.raises(errors.SettingError, match="does not fit in the 5 training examples"):
        next(random_batches((torch.zeros(5, 2),), 6, generator))
    with pytest.raises(errors.SettingError, match="no training examples"):
        next(random_batches((torch.zeros(0, 2),), 1, generator))
    assert next(random_batches((torch.zeros(5, 2),), 5, generator))[0].shape == (5, 2)


@pytest.mark.parametrize("model", ["vae", "gan", "diffusion"])
def test_train_with_a_batch_larger_than_the_training_set_stops_with_one_line(user, model):
    require_data("fashion-mnist")
    result = user(
        "train", model, "--profile", "smoke", "--batch-size", "100000", "--steps", "2",
        "--out", str(user.work / "run"),
    )  # fmt: skip
    assert_clean_error(result, "--batch-size", "does not fit")


# --------------------------------------------------------------------------------------------
# Trained work is never thrown away or silently replaced
# --------------------------------------------------------------------------------------------


def test_an_output_that_cannot_take_the_checkpoint_is_refused_before_training(user):
    (user.work / "afile").write_text("not a folder")
    result = user("train", "gpt", "--profile", "smoke", "--steps", "2", "--out", "afile/runs")
    assert_clean_error(result, "cannot write the checkpoint")
    (user.work / "runs" / "gpt.safetensors").mkdir(parents=True)
    result = user("train", "gpt", "--profile", "smoke", "--steps", "2", "--out", "runs")
    assert_clean_error(result, "is a folder where the checkpoint file should be")
    result = user("train", "gpt", "--profile", "smoke", "--steps", "2", "--out", " ")
    assert_clean_error(result, "--out is empty")


def test_retraining_into_a_checkpoint_needs_overwrite_and_a_busy_output_is_refused(user):
    require_data("tinyshakespeare")
    argv = ["train", "gpt", "--profile", "smoke", "--steps", "2", "--quiet", "--out", "runs"]
    assert user(*argv).returncode == 0
    checkpoint = user.work / "runs" / "gpt.safetensors"
    first = checkpoint.read_bytes()
    result = user(*argv)
    assert_clean_error(result, "already holds a checkpoint (written", "--overwrite")
    assert checkpoint.read_bytes() == first
    lock = checkpoint.with_name(".gpt.safetensors.lock")
    lock.write_text(str(os.getpid()))  # a run that is alive holds it
    assert_clean_error(user(*argv, "--overwrite"), "another run is writing")
    lock.write_text("999999999")  # a run that no longer exists left it: taken over
    assert user(*argv, "--overwrite").returncode == 0
    assert not lock.exists() and sorted(p.name for p in checkpoint.parent.iterdir()) == [
        "gpt.safetensors"
    ]


def test_model_variants_never_share_a_default_file():
    from aigc_course.runtime import Profile
    from aigc_course.trainers import finetune, gan

    smoke = Profile("smoke")
    names = {
        checkpoints.output_file("x", "gan", gan.variant(recipe)).name
        for recipe in (gan.recipe_for(smoke), gan.recipe_for(smoke, conditional=True))
    }
    names |= {checkpoints.output_file("x", "finetune", method).name for method in ("lora", "full")}
    assert names == {
        "gan.safetensors",
        "gan_conditional.safetensors",
        "finetune_lora.safetensors",
        "finetune_full.safetensors",
    }
    assert finetune.variant(finetune.recipe_for(smoke, method="full")) == "full"


def test_an_unknown_data_set_gets_the_same_answer_from_fetch_and_status(user):
    for command in ("fetch", "status"):
        result = user("data", command, "bogus")
        assert_clean_error(result, "unknown data set 'bogus'", "fashion-mnist")


def test_an_adapter_or_another_model_given_as_a_gpt_gets_a_short_answer(user):
    adapter = checkpoints.PRETRAINED_DIR / "gpt_lora_petruchio.safetensors"
    result = user("generate", "gpt", "ROMEO:", "--checkpoint", str(adapter))
    assert_clean_error(result, "is a LoRA adapter", "needs its base", "finetune.load")
    vae = checkpoints.PRETRAINED_DIR / "vae_fashion_mnist.safetensors"
    result = user("generate", "gpt", "ROMEO:", "--checkpoint", str(vae))
    assert_clean_error(result, "configuration this model cannot take")
    assert len(result.stderr) < 400, "a few names at most, not hundreds of state-dict keys"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["finetune", "--method", "full", "--rank", "8"], "rank (--rank) is a setting of LoRA's adapters"),
        (["finetune", "--method", "full", "--alpha", "2", "--targets", "mlp"], "alpha (--alpha) and targets (--targets) are settings"),
        (["gpt", "--force"], "--force only applies with --pretrained"),
        (["gpt", "--pretrained", "--overwrite", "--profile", "cpu"], "--overwrite is for --out folders"),
    ],
)  # fmt: skip
def test_an_option_the_run_would_ignore_is_refused(user, argv, message):
    assert_clean_error(user("train", *argv, "--steps", "1", "--quiet"), message)
