"""The VAE (lesson 06), the shared training loop and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_course import checkpoints, cli, divergences
from aigc_course.models.vae import VAE, VAEConfig, binarize, nats_to_bits_per_dim
from aigc_course.training import NonFiniteLossError, TrainConfig, random_batches, train

TINY = VAEConfig(latent_dim=4, channels=(4, 8), hidden=16)


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Binary images drawn around 8 fixed blob-like prototypes: structure a VAE can learn."""
    prototypes_generator = torch.Generator().manual_seed(1234)
    smooth = F.avg_pool2d(
        torch.rand(8, 1, 28, 28, generator=prototypes_generator), 7, stride=1, padding=3
    )
    prototypes = torch.where(smooth > smooth.median(), 0.95, 0.05)
    generator = torch.Generator().manual_seed(seed)
    return binarize(prototypes[torch.arange(n) % 8], generator)


@pytest.fixture(scope="module")
def trained_tiny():
    """A tiny VAE trained for 300 steps on the prototype images, with its loss before and after."""
    torch.manual_seed(5)
    model = VAE(TINY)
    x = images(256, seed=5)
    with torch.no_grad():
        torch.manual_seed(6)
        before = model(x)[0].item()
    history = train(
        model,
        lambda m, batch: (m(batch[0])[0], {}),
        random_batches((x,), 32, torch.Generator().manual_seed(0)),
        TrainConfig(steps=300, lr=3e-3, log_every=50),
        progress=False,
        device=torch.device("cpu"),
    )
    with torch.no_grad():
        torch.manual_seed(6)
        after = model(x)[0].item()
    return model.eval(), history, before, after


def test_shapes_and_dtypes():
    torch.manual_seed(0)
    model = VAE(TINY)
    x = images(3)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (3, 4) and mean.dtype == torch.float32
    assert model.decode(mean).shape == (3, 1, 28, 28)
    samples = model.sample(5)
    assert samples.shape == (5, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    loss, reconstruction, kl = model(x)
    assert loss.shape == reconstruction.shape == kl.shape == ()
    assert model.iwae_log_likelihood(x, k=3).shape == (3,)


def test_loss_is_the_hand_computed_negative_elbo():
    torch.manual_seed(1)
    model = VAE(TINY)
    x = images(4, seed=1)
    torch.manual_seed(7)
    reconstruction, kl = model.loss_terms(x)
    torch.manual_seed(7)
    mean, logvar = model.encode(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    p = torch.sigmoid(model.decode(z)).double()
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction.double(), by_hand, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, divergences.kl_standard_normal(mean, logvar))
    torch.manual_seed(7)
    loss, _, _ = model(x, beta=0.5)
    torch.testing.assert_close(loss, (reconstruction + 0.5 * kl).mean())


def test_iwae_bound_is_above_the_elbo_and_grows_with_k(trained_tiny):
    model = trained_tiny[0]
    x = images(64, seed=2)
    torch.manual_seed(3)
    elbo = -torch.stack([sum(model.loss_terms(x)) for _ in range(20)]).mean()
    estimates = {}
    for k in (1, 10, 100):
        torch.manual_seed(4)
        estimates[k] = model.iwae_log_likelihood(x, k=k).mean().item()
    assert estimates[1] == pytest.approx(elbo.item(), abs=2.0), "k = 1 is the ELBO"
    assert estimates[100] > estimates[10] > estimates[1] >= elbo.item() - 2.0
    assert nats_to_bits_per_dim(784 * math.log(2)) == pytest.approx(1.0)


def test_a_few_hundred_steps_lower_the_loss(trained_tiny):
    _, history, before, after = trained_tiny
    assert after < before - 100, (before, after)
    assert history.metrics["loss"][-1] < history.metrics["loss"][0]
    assert history.examples == 300 * 32 and history.examples_per_second > 0


def test_nan_loss_stops_training_with_the_step_and_advice():
    model = torch.nn.Linear(2, 1)
    calls = {"n": 0}

    def loss_fn(m, batch):
        calls["n"] += 1
        loss = m(batch[0]).pow(2).mean()
        return (loss * float("nan") if calls["n"] == 3 else loss), {}

    batches = random_batches((torch.randn(64, 2),), 8, torch.Generator().manual_seed(0))
    with pytest.raises(
        NonFiniteLossError, match=r"the loss became nan at step 3.*lower learning rate"
    ):
        train(
            model,
            loss_fn,
            batches,
            TrainConfig(steps=10, lr=0.1),
            progress=False,
            device=torch.device("cpu"),
        )


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(8)
    model = VAE(TINY).eval()
    path = tmp_path / "vae.safetensors"
    digest = checkpoints.save(
        path, model, TINY.to_dict(), {"test_neg_elbo": 123.0}, {"command": "test"}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["vae.safetensors"], "no temporary file left"
    loaded = checkpoints.load(path, expected_sha256=digest)
    assert loaded.metrics == {"test_neg_elbo": 123.0} and loaded.extra["command"] == "test"
    again = VAE(VAEConfig.from_dict(loaded.config)).eval()
    again.load_state_dict(loaded.state_dict)
    z = torch.randn(3, 4)
    torch.testing.assert_close(again.decode(z), model.decode(z), rtol=0, atol=0)
    with pytest.raises(checkpoints.CheckpointError, match="not the expected checkpoint"):
        checkpoints.load(path, expected_sha256="0" * 64)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(checkpoints.CheckpointError, match="not a readable safetensors checkpoint"):
        checkpoints.load(path)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint at"):
        checkpoints.load(tmp_path / "missing.safetensors")


def test_pretrained_vae_is_verified_and_works():
    from aigc_course.trainers import vae as trainer

    entry = checkpoints.manifest()[trainer.PRETRAINED_NAME]
    assert (checkpoints.PRETRAINED_DIR / entry["file"]).stat().st_size <= 8 * 2**20
    assert entry["command"].startswith("aigc-course train vae")
    model, checkpoint = trainer.load()
    assert checkpoint.metrics["test_iwae_nll"] <= checkpoint.metrics["test_neg_elbo"]
    torch.manual_seed(0)
    x = images(8)
    loss, reconstruction, kl = model(x)
    assert torch.isfinite(loss) and kl > 0


def test_tampered_pretrained_checkpoint_is_refused(tmp_path, monkeypatch):
    from aigc_course.trainers import vae as trainer

    entry = checkpoints.manifest()[trainer.PRETRAINED_NAME]
    copy = tmp_path / entry["file"]
    data = bytearray((checkpoints.PRETRAINED_DIR / entry["file"]).read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the weights
    copy.write_bytes(bytes(data))
    (tmp_path / "manifest.json").write_text(checkpoints.MANIFEST.read_text())
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr(checkpoints, "MANIFEST", tmp_path / "manifest.json")
    with pytest.raises(checkpoints.CheckpointError, match="not the expected checkpoint"):
        trainer.load()


def test_cli_train_vae_smoke(tmp_path, capsys):
    assert cli.main(["train", "vae", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "VAE trained:" in out and "test IWAE NLL" in out and "bits/dim" in out
    loaded = checkpoints.load(tmp_path / "vae.safetensors")
    assert loaded.extra["steps"] == 20 and loaded.metrics["iwae_k"] == 5


def test_benchmark_script_prints_one_figure_a_line():
    import subprocess
    import sys

    from tests.helpers import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vae.py"), "--profile", "smoke"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    names = [line.split(":")[0] for line in result.stdout.strip().splitlines()]
    for expected in (
        "device",
        "torch",
        "steps",
        "images/s (training)",
        "test negative ELBO [nats]",
        "wall time [s]",
    ):
        assert expected in names, (expected, names)
    assert any(name.startswith("test IWAE NLL, K=5") for name in names)


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_mixed_precision_paths_train_on_the_cpu(name):
    """The GPU precisions' code paths (autocast, and the gradient scaler for fp16), run on the CPU."""
    from aigc_course.runtime import Precision

    torch.manual_seed(9)
    model = VAE(TINY)
    x = images(64, seed=9)
    history = train(
        model,
        lambda m, batch: (m(batch[0])[0], {}),
        random_batches((x,), 16, torch.Generator().manual_seed(0)),
        TrainConfig(steps=30, lr=3e-3, log_every=10),
        progress=False,
        device=torch.device("cpu"),
        precision=Precision(name, "cpu"),
        compile_model=False,
    )
    assert all(math.isfinite(v) for v in history.metrics["loss"])
    assert history.metrics["loss"][-1] < history.metrics["loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay in fp32"
