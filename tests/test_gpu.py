"""What only a CUDA GPU can show: mixed precision, ``torch.compile``, the flash-attention path of
SDPA, the KV cache on the GPU, and checkpoints that move between GPU and CPU.

Every test here is marked ``gpu`` and skips without CUDA, so ``pytest`` passes on any machine;
``benchmarks/gpu_check.sh`` runs them (``pytest -m gpu``) on a GPU. What a CPU can check of the same
code paths (the precision chosen per compute capability, the compile rules) is in test_runtime.py.
"""

from __future__ import annotations

import pytest
import torch

from aigc_course import checkpoints, runtime, training
from aigc_course.models.gpt import GPT, GPTConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")


def small_gpt(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(
        GPTConfig(
            vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, dropout=0.0, **changes
        )
    )


def test_the_precision_matches_the_gpu():
    precision = runtime.choose_precision(CUDA)
    capability = torch.cuda.get_device_capability()
    assert precision == runtime.precision_for("cuda", capability)
    expected = "bf16" if capability >= (8, 0) else "fp16"
    assert precision.name == expected
    x = torch.randn(8, 8, device=CUDA)
    with precision.autocast():
        assert (x @ x).dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


def test_mixed_precision_training_lowers_the_loss():
    model = small_gpt().to(CUDA)
    torch.manual_seed(1)
    data = torch.randint(0, 65, (16, 65), device=CUDA)
    batch = (data[:, :-1], data[:, 1:])

    def batches():
        while True:
            yield batch

    history = training.train(
        model,
        lambda m, b: (m(*b)[1], {}),
        batches(),
        training.TrainConfig(steps=30, lr=3e-3, log_every=1, eval_every=1000),
        device=CUDA,
        compile_model=False,
        progress=False,
    )
    losses = history.metrics["loss"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], "memorising one batch halves the loss"


def test_cuda_graphs_train_as_the_eager_loop_does():
    """The gpu GPT's recipe compiles with CUDA graphs (reduce-overhead), whose replays reuse their
    output memory: the loop must keep no graph output across steps. Every step's logged loss is
    the one computed on that step (the same curve as eager, within bf16), and the weights move."""
    if not runtime.compile_support("cuda")[0]:
        pytest.skip(runtime.compile_support("cuda")[1])
    torch.manual_seed(1)
    data = torch.randint(0, 65, (16, 65), device=CUDA)
    batch = (data[:, :-1], data[:, 1:])
    curves = {}
    for mode, compiled in (("reduce-overhead", True), (None, False)):
        model = small_gpt().to(CUDA)
        history = training.train(
            model,
            lambda m, b: (m(*b)[1], {}),
            iter(lambda: batch, None),
            training.TrainConfig(
                steps=12, lr=3e-3, log_every=1, eval_every=1000, compile_mode=mode
            ),
            device=CUDA,
            compile_model=compiled,
            progress=False,
        )
        curves[mode] = history.metrics["loss"]
    graphs, eager = curves["reduce-overhead"], curves[None]
    assert len(graphs) == 12 and len(set(graphs)) > 6, "a loss of its own at every step"
    torch.testing.assert_close(torch.tensor(graphs), torch.tensor(eager), rtol=0.05, atol=0.05)
    assert graphs[-1] < graphs[0]


def test_compiled_model_gives_the_eager_outputs():
    if not runtime.compile_support("cuda")[0]:
        pytest.skip(runtime.compile_support("cuda")[1])
    model = small_gpt().to(CUDA).eval()
    idx = torch.randint(0, 65, (4, 64), device=CUDA)
    compiled = runtime.maybe_compile(model, CUDA)
    assert compiled is not model, "CUDA with Triton compiles"
    with torch.no_grad():
        torch.testing.assert_close(compiled(idx)[0], model(idx)[0], rtol=1e-4, atol=1e-4)


def test_sdpa_takes_the_flash_path_and_equals_the_manual_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("flash attention needs compute capability 8.0 or newer")
    sdpa = small_gpt().to(CUDA).eval()
    manual = small_gpt(attention="manual").to(CUDA).eval()
    manual.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 65, (4, 64), device=CUDA)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # raises if flash cannot run these shapes
            fused = sdpa(idx)[0]
        reference = manual(idx)[0]
    torch.testing.assert_close(fused.float(), reference.float(), rtol=2e-2, atol=2e-2)


def test_kv_cache_on_the_gpu_gives_the_cpu_tokens():
    model = small_gpt()
    prompt = torch.randint(0, 65, (1, 5))
    on_cpu = model.eval().generate(prompt, 80, temperature=0)  # greedy: no sampling noise
    on_gpu = model.to(CUDA).generate(prompt.to(CUDA), 80, temperature=0)
    no_cache = model.generate(prompt.to(CUDA), 80, temperature=0, use_cache=False)
    assert torch.equal(on_gpu, no_cache), "the cache changes nothing on the GPU"
    assert torch.equal(on_gpu.cpu(), on_cpu), "greedy tokens on the GPU equal the CPU's"


def test_a_checkpoint_saved_on_the_gpu_loads_on_the_cpu(tmp_path):
    model = small_gpt().to(CUDA)
    path = tmp_path / "gpt.safetensors"
    checkpoints.save(path, model, model.config.to_dict())
    loaded, _ = checkpoints.load_model(
        lambda config: GPT(GPTConfig(**config)), "unused", path, kind="GPT"
    )
    idx = torch.randint(0, 65, (2, 16))
    assert next(loaded.parameters()).device.type == "cpu"
    torch.testing.assert_close(loaded(idx)[0], model.eval().cpu()(idx)[0])
