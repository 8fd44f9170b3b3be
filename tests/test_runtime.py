"""Device, seeds, profiles, precision and compile choices: the logic, tested on the CPU."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from aigc_course import doctor, runtime, settings
from aigc_course.runtime import RuntimeConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("AIGC_DEVICE", "AIGC_PROFILE", "AIGC_COMPILE"):
        monkeypatch.delenv(name, raising=False)


def test_default_device_is_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.get_device().type == expected


def test_device_override_and_clear_errors(monkeypatch):
    monkeypatch.setenv("AIGC_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")
    monkeypatch.setenv("AIGC_DEVICE", "tpu9")
    with pytest.raises(RuntimeConfigError, match="not a device name"):
        runtime.get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("AIGC_DEVICE", "cuda")
        with pytest.raises(RuntimeConfigError, match="sees no CUDA GPU.*Unset AIGC_DEVICE"):
            runtime.get_device()
    if not torch.backends.mps.is_available():
        with pytest.raises(RuntimeConfigError, match="MPS is not available"):
            runtime.get_device("mps")


def test_mps_is_never_chosen_automatically(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.get_device().type == "cpu"
    assert runtime.get_device("mps").type == "mps"


def test_seed_everything_repeats_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(2).tolist()

    runtime.seed_everything(7)
    first = draw()
    runtime.seed_everything(7)
    assert draw() == first
    runtime.seed_everything(8)
    assert draw() != first
    with pytest.raises(ValueError, match="non-negative int"):
        runtime.seed_everything(-1)


def test_profile_choice(monkeypatch):
    assert runtime.get_profile(device=torch.device("cpu")).name == "cpu"
    assert runtime.get_profile(device=torch.device("cuda")).name == "gpu"
    assert runtime.get_profile(device=torch.device("cpu")).source == "automatic"
    monkeypatch.setenv("AIGC_PROFILE", "SMOKE")
    profile = runtime.get_profile(device=torch.device("cuda"))
    assert (profile.name, profile.source) == ("smoke", "AIGC_PROFILE")
    assert runtime.get_profile("gpu").name == "gpu"
    monkeypatch.setenv("AIGC_PROFILE", "fast")
    with pytest.raises(
        RuntimeConfigError, match="AIGC_PROFILE='fast' is not one of smoke, cpu, gpu"
    ):
        runtime.get_profile()
    with pytest.raises(RuntimeConfigError, match="unknown run profile"):
        runtime.Profile("huge")


def test_profile_select_picks_the_value_of_its_profile():
    sizes = {"smoke": 8, "cpu": 64, "gpu": 512}
    for name, size in sizes.items():
        assert runtime.Profile(name).select(**sizes) == size
    with pytest.raises(TypeError):
        runtime.Profile("cpu").select(smoke=1, cpu=2)  # every profile must be given a value


@pytest.mark.parametrize(
    "device_type, capability, name, scaler",
    [
        ("cuda", (9, 0), "bf16", False),  # H100
        ("cuda", (8, 0), "bf16", False),  # A100
        ("cuda", (7, 5), "fp16", True),  # T4 (Colab): no bf16
        ("cuda", (7, 0), "fp16", True),  # V100
        ("cpu", None, "fp32", False),
        ("mps", None, "fp32", False),
    ],
)
def test_precision_rule(device_type, capability, name, scaler):
    precision = runtime.precision_for(device_type, capability)
    assert precision.name == name
    assert precision.needs_grad_scaler is scaler


def test_precision_on_this_machine_and_autocast():
    precision = runtime.choose_precision(torch.device("cpu"))
    assert precision.name == "fp32" and precision.autocast_dtype is None
    x = torch.randn(4, 4)
    with precision.autocast():
        assert (x @ x).dtype == torch.float32
    assert not precision.grad_scaler().is_enabled()
    bf16 = runtime.Precision("bf16", "cpu")
    with bf16.autocast():
        assert (x @ x).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "device_type, system, triton, env, expected",
    [
        ("cuda", "Linux", True, "", True),
        ("cuda", "Linux", True, "0", False),
        ("cuda", "Windows", False, "", False),
        ("cuda", "Linux", False, "", False),
        ("cpu", "Linux", True, "", False),
        ("mps", "Darwin", False, "", False),
    ],
)
def test_compile_support(device_type, system, triton, env, expected):
    use, reason = runtime.compile_support(device_type, system, triton, env)
    assert use is expected
    assert reason
    if system == "Windows":
        assert "Windows" in reason


def test_maybe_compile_leaves_cpu_models_alone():
    model = torch.nn.Linear(2, 2)
    assert runtime.maybe_compile(model, torch.device("cpu")) is model


def test_maybe_compile_obeys_an_explicit_choice():
    model = torch.nn.Linear(2, 2)
    assert runtime.maybe_compile(model, torch.device("cpu"), enabled=False) is model
    compiled = runtime.maybe_compile(model, torch.device("cpu"), enabled=True)
    assert compiled is not model and compiled._orig_mod is model, "shares the parameters"


def test_optimizer_step_clears_backpropagates_clips_and_steps():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    weight.grad = torch.full((3,), 100.0)  # a stale gradient: the step must clear it first
    loss = (weight * torch.tensor([3.0, 4.0, 0.0])).sum()  # gradient (3, 4, 0), norm 5
    norm = runtime.optimizer_step(loss, optimizer, grad_clip=1.0)
    assert float(norm) == pytest.approx(5.0), "the norm before clipping"
    torch.testing.assert_close(weight.detach(), torch.tensor([1 - 0.6, 1 - 0.8, 1.0]))
    loss = (weight * torch.tensor([3.0, 4.0, 0.0])).sum()
    assert runtime.optimizer_step(loss, optimizer) is None, "no clipping, no norm"
    torch.testing.assert_close(weight.detach(), torch.tensor([0.4 - 3, 0.2 - 4, 1.0]))


def test_describe_reports_every_line(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "smoke")
    report = doctor.environment_report()
    for label in ("Python", "PyTorch", "device", "profile", "precision", "compile", "data cache"):
        assert any(line.startswith(label) for line in report.splitlines()), label
    assert "smoke (AIGC_PROFILE)" in report
    assert "Fashion-MNIST" in report and "Tiny Shakespeare" in report


def test_in_colab_follows_the_module(monkeypatch):
    import sys
    import types

    assert not runtime.in_colab()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert runtime.in_colab()


@pytest.mark.parametrize("mode", [None, "reduce-overhead", "max-autotune"])
def test_the_compile_mode_comes_from_aigc_compile_mode(monkeypatch, mode):
    """CUDA graphs (``reduce-overhead``) cut a small model's kernel launches on a GPU; the mode is
    the user's choice, passed to torch.compile as it is (no compilation happens here)."""
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: seen.update(kwargs) or model)
    if mode:
        monkeypatch.setenv("AIGC_COMPILE_MODE", mode.upper())
    else:
        monkeypatch.delenv("AIGC_COMPILE_MODE", raising=False)
    model = torch.nn.Linear(2, 2)
    assert runtime.maybe_compile(model, enabled=True) is model
    assert seen == {"mode": mode}
    assert runtime.maybe_compile(model, enabled=False) is model and len(seen) == 1


def test_aigc_compile_mode_overrides_the_callers_mode(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: seen.append(kwargs) or model)
    model = torch.nn.Linear(2, 2)
    monkeypatch.delenv("AIGC_COMPILE_MODE", raising=False)
    runtime.maybe_compile(model, enabled=True, mode="reduce-overhead")
    monkeypatch.setenv("AIGC_COMPILE_MODE", "default")
    runtime.maybe_compile(model, enabled=True, mode="reduce-overhead")
    assert seen == [{"mode": "reduce-overhead"}, {"mode": "default"}]


def test_a_misspelt_compile_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("AIGC_COMPILE_MODE", "fast")
    with pytest.raises(settings.RuntimeConfigError, match="reduce-overhead"):
        runtime.maybe_compile(torch.nn.Linear(2, 2), enabled=True)
