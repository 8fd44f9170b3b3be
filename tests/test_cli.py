"""The ``aigc-course`` command: doctor, data status and fetch (exercises: see test_exercises.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from aigc_course import __version__, cli, runtime
from aigc_course.data import sources
from tests.helpers import FileServer, fixture_spec, make_idx_dataset


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "aigc_course.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"aigc-course {__version__}"


LEAVING = """
import atexit, sys, threading, time
from aigc_course import cli

class Torn:  # says so if Python tears this module's objects down at exit
    def __del__(self):
        sys.__stdout__.write("torn down\\n")

kept = Torn()
atexit.register(print, "atexit handler ran")
print("unflushed output", end="")
threading.Thread(target=lambda: (time.sleep(0.2), print("thread finished"))).start()
cli.leave(3)
"""


def test_the_program_leaves_with_its_status_and_everything_python_exit_does_but_teardown():
    """``cli.leave``: the status, a thread waited for, the atexit handlers run, the output flushed;
    the loaded modules' objects are not torn down one by one (their finalisers never run)."""
    result = subprocess.run([sys.executable, "-c", LEAVING], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "unflushed outputthread finished\natexit handler ran\n"
    assert result.stderr == ""
    # ... and as Python's usual exit would do it, but for the teardown:
    usual = LEAVING.replace("cli.leave(3)", "sys.exit(3)")
    result = subprocess.run([sys.executable, "-c", usual], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stdout == "unflushed outputthread finished\natexit handler ran\ntorn down\n"


@pytest.mark.parametrize(
    "trouble",
    [
        "sys.stdout = None  # as under `>&-` or pythonw: no stream\n",
        "import os; os.close(1)  # a stream that cannot be flushed\n",
    ],
    ids=["no-stdout", "stdout-closed"],
)
def test_leaving_with_stdout_gone_ends_as_pythons_usual_exit(trouble):
    """Status and stderr as Python's own exit gives them: no traceback of the course's."""
    script = "import sys\nfrom aigc_course import cli\nprint('lost', end='')\n" + trouble
    results = [
        subprocess.run([sys.executable, "-c", script + end], capture_output=True, text=True)
        for end in ("cli.leave(4)\n", "sys.exit(4)\n")
    ]
    assert "Traceback" not in results[0].stderr, results[0].stderr
    assert results[0].returncode == results[1].returncode, results
    assert results[0].stderr == results[1].stderr


def test_doctor_with_data_present_says_ready(capsys, monkeypatch):
    statuses = sources.dataset_status()
    if not all(status.ready for status in statuses if status.spec.required):
        pytest.skip("the course data is not on this machine")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "device" in out and "profile" in out and "precision" in out
    assert "READY: everything the lessons need is here." in out


def test_doctor_without_fashion_mnist_fails_with_the_fix(no_data, capsys):
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "NOT READY: required data is missing." in out
    assert "Fashion-MNIST: on a machine with internet: aigc-course data fetch fashion-mnist" in out
    assert "sudo apt-get install dataset-fashion-mnist" in out
    assert (
        "Tiny Shakespeare: on a machine with internet: aigc-course data fetch tinyshakespeare"
        in out
    )


def test_doctor_reports_a_bad_device_setting(monkeypatch, capsys):
    monkeypatch.setenv("AIGC_DEVICE", "warp-drive")
    assert cli.main(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "NOT READY:\n  - AIGC_DEVICE='warp-drive' is not a device name" in out
    assert "device     NOT CHOSEN: AIGC_DEVICE='warp-drive'" in out  # the report still comes


def test_data_fetch_offline_fails_clearly(no_data, capsys):
    assert cli.main(["data", "fetch", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert "FAILED fashion-mnist: Fashion-MNIST file" in err and "cannot connect" in err
    assert cli.main(["data", "fetch", "cifar"]) == 2  # as `data status cifar`: a bad argument
    assert "error: unknown data set 'cifar'" in capsys.readouterr().err


def test_data_fetch_fills_the_cache_from_a_server(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    make_idx_dataset(served)
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    with FileServer(served) as server:
        monkeypatch.setitem(
            sources.DATASETS, "fixture", fixture_spec("fixture", served, (server.url,))
        )
        assert cli.main(["data", "status", "fixture"]) == 0
        assert "missing" in capsys.readouterr().out
        assert cli.main(["data", "fetch", "fixture"]) == 0
    assert (
        f"ok     fixture: 4 file(s) verified in {tmp_path / 'cache' / 'fixture'}"
        in capsys.readouterr().out
    )
    assert sorted(path.name for path in (tmp_path / "cache" / "fixture").iterdir()) == sorted(
        path.name for path in served.iterdir()
    )


# --------------------------------------------------------------------------------------------
# train MODEL: its options come from its recipe
# --------------------------------------------------------------------------------------------

#: A value for each recipe option that differs from every profile's default (the switch: its own).
CHANGED = {
    "beta": "0.5", "latent_dim": "8", "n_classes": None, "schedule": "cosine",
    "diffusion_steps": "500", "fid_sampling_steps": "7", "method": "full", "rank": "2",
    "alpha": "4", "targets": "mlp", "speaker": "KATHARINA", "data": "pretraining",
    "network": "mlp", "lr_decay": "cosine",
}  # fmt: skip

#: Settings that another one's value brings along: the MLP VAE's own latent size (784-400-20).
BROUGHT_ALONG = {"network": {"latent_dim": 20}}


@pytest.mark.parametrize("model", list(cli.TRAINERS))
def test_every_recipe_setting_is_an_option_that_changes_the_recipe(model):
    """Each field declared with ``validators.setting`` is an option of ``train MODEL`` (nothing in
    the CLI names it), and giving it changes exactly that setting of the recipe the run gets."""
    import importlib

    from aigc_course import runtime, training

    trainer = importlib.import_module(cli.TRAINERS[model].module)
    smoke = runtime.get_profile("smoke")
    defaults = {
        name: value for name, _, value in training.command_options(trainer.recipe_for(smoke))
    }
    options = {
        name: option for name, option, _ in training.command_options(trainer.recipe_for(smoke))
    }
    assert set(options) <= set(CHANGED), "give the new setting a changed value in CHANGED"
    for name, option in options.items():
        text = CHANGED[name]
        argv = ["train", model, "--profile", "smoke", option.flag_for(name)]
        args = cli.build_parser(argv).parse_args(argv if text is None else [*argv, text])
        overrides = cli._recipe_overrides(args)
        assert list(overrides) == [name], argv
        recipe = trainer.recipe_for(smoke, **overrides)
        values = {name: value for name, _, value in training.command_options(recipe)}
        expected = option.switch if text is None else (option.parse or str)(text)
        assert values[name] == expected != defaults[name], (name, values[name])
        brought = BROUGHT_ALONG.get(name, {})
        assert {n: v for n, v in values.items() if n != name} == {
            n: brought.get(n, v) for n, v in defaults.items() if n != name
        }


def test_train_help_shows_each_option_with_its_profile_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "diffusion", "--profile", "smoke", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--diffusion-steps DIFFUSION_STEPS the noising steps T (default 1000)" in out
    assert (
        "--sampling-steps FID_SAMPLING_STEPS DDIM steps for the samples the FID is measured on (default 5)"
        in out
    )
    assert "--schedule {linear,cosine} the noise schedule (default linear)" in out


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_no_option_is_taken_by_a_prefix_of_its_name(capsys):
    """``--lr`` is the learning rate, not an abbreviation of ``--lr-decay``; a prefix of an option
    is refused as unknown, on every command and sub-command."""
    argv = ["train", "vae", "--profile", "smoke"]
    parsers = list(_parsers(cli.build_parser(argv)))
    assert len(parsers) > 10 and all(parser.allow_abbrev is False for parser in parsers)
    args = cli.build_parser(argv).parse_args([*argv, "--lr", "2e-3", "--lr-decay", "cosine"])
    assert cli._recipe_overrides(args) == {"lr": 2e-3, "lr_decay": "cosine"}
    with pytest.raises(SystemExit) as refused:  # parsing only: nothing would train if it passed
        cli.build_parser(argv).parse_args([*argv, "--lr-d", "cosine"])
    assert refused.value.code == 2
    assert "unrecognized arguments: --lr-d cosine" in capsys.readouterr().err


def test_the_learning_rate_option_wins_over_the_budget_row():
    """``train vae --minutes 1 --lr 1e-3`` keeps the budget's network and decay with the given
    rate: the learner's option wins, the rest of the row stays."""
    from aigc_course.trainers import vae

    argv = ["train", "vae", "--profile", "cpu", "--minutes", "1", "--lr", "1e-3"]
    overrides = cli._recipe_overrides(cli.build_parser(argv).parse_args(argv))
    recipe = vae.recipe_for(runtime.get_profile("cpu"), **overrides)
    assert (recipe.network, recipe.train.lr, recipe.lr_decay) == ("mlp", 1e-3, "cosine")
