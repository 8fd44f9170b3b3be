"""Fine-tuning the pretrained GPT on one speaker (aigc_course.trainers.finetune): the data held out
honestly, full and LoRA training, adapter checkpoints that know their base."""

from __future__ import annotations

import pytest
import torch

from aigc_course import checkpoints, runtime
from aigc_course.checkpoints import CheckpointError
from aigc_course.errors import SettingError
from aigc_course.lessons import lesson09
from aigc_course.models import lora
from aigc_course.trainers import finetune
from aigc_course.trainers import gpt as gpt_trainer

SMOKE = runtime.get_profile("smoke")


@pytest.fixture(scope="module")
def speaker_data():
    return finetune.load_speaker_data()


def test_the_speakers_text_is_split_at_the_pretraining_cut():
    speaker_data = finetune.load_speaker_data(source="pretraining")
    boundary = len(gpt_trainer.load_data().train_ids)
    assert speaker_data.train_speeches and speaker_data.val_speeches
    assert all(s.end <= boundary and s.speaker == "PETRUCHIO" for s in speaker_data.train_speeches)
    assert all(s.start >= boundary and s.speaker == "PETRUCHIO" for s in speaker_data.val_speeches)
    text = speaker_data.tokenizer.decode(speaker_data.train_ids.tolist())
    assert text.startswith("PETRUCHIO:\n") and "\n\nPETRUCHIO:\n" in text
    # the speaker chosen has the most held-out text of those on both sides of the cut
    corpus = gpt_trainer.data.load_tiny_shakespeare()
    assert finetune.speakers_on_both_sides(corpus)[0][0] == "PETRUCHIO"


def test_a_speaker_without_speeches_on_both_sides_is_refused_with_the_choices():
    with pytest.raises(SettingError, match="no speaker is called 'NOBODY'.*PETRUCHIO"):
        finetune.load_speaker_data("NOBODY")
    corpus = gpt_trainer.data.load_tiny_shakespeare()
    boundary = len(gpt_trainer.load_data().train_ids)
    before, after = gpt_trainer.data.split_speeches(
        gpt_trainer.data.parse_speeches(corpus), boundary
    )
    early = sorted({s.speaker for s in before} - {s.speaker for s in after})[0]
    with pytest.raises(SettingError, match=f"'{early}' speaks only before the 90% cut.*PETRUCHIO"):
        finetune.load_speaker_data(early)


def test_the_recipe_sets_the_learning_rate_by_method_and_checks_its_settings():
    assert finetune.recipe_for(SMOKE, method="lora").train.lr == pytest.approx(
        10 * finetune.recipe_for(SMOKE, method="full").train.lr
    )
    assert finetune.recipe_for(SMOKE, rank=16).model.rank == 16
    with pytest.raises(SettingError, match="method must be one of full, lora"):
        finetune.recipe_for(SMOKE, method="half")
    with pytest.raises(SettingError, match="LoRA rank"):
        finetune.recipe_for(SMOKE, rank=0)


@pytest.fixture(scope="module")
def lora_run(speaker_data):
    recipe = finetune.recipe_for(
        SMOKE,
        method="lora",
        steps=10,
        rank=2,
        lr=1e-3,
        batch_size=16,
        # 8 fixed batches, the same before and after (a paired difference), one evaluation at the
        # end: the gain measured 0.0261 nats (the threshold is 0.005) in 11 s, where 20 steps at
        # lr 3e-4 with 16 batches gained 0.0212 in 25 s (seeded, one thread)
        eval_batches=8,
        eval_every=10,
    )
    return finetune.train(recipe, torch.device("cpu"), progress=False, speaker_data=speaker_data)


def test_a_short_seeded_lora_fine_tune_lowers_the_speaker_loss(lora_run):
    m = lora_run.metrics
    assert m["speaker_loss"] < m["base_speaker_loss"] - 0.005, m
    trainable, total = lora.parameter_counts(lora_run.model)
    assert m["trainable_parameters"] == trainable < 0.05 * total
    # AdamW keeps two moments of each trainable number, float32
    assert m["optimizer_state_bytes"] == 2 * 4 * trainable


def test_full_fine_tuning_trains_every_weight(speaker_data):
    recipe = finetune.recipe_for(SMOKE, method="full", steps=3)
    run = finetune.train(recipe, torch.device("cpu"), progress=False, speaker_data=speaker_data)
    assert run.metrics["trainable_parameters"] == run.metrics["parameters"]
    assert not lora.lora_layers(run.model)


def test_an_adapter_checkpoint_holds_only_the_adapters_and_loads_onto_its_base(lora_run, tmp_path):
    path = tmp_path / "adapter.safetensors"
    finetune.save_run(lora_run, path, "test")
    saved = checkpoints.load(path)
    assert saved.state_dict.keys() == lora.adapter_state_dict(lora_run.model).keys()
    assert (
        path.stat().st_size
        < 0.1 * (checkpoints.PRETRAINED_DIR / "gpt_tiny_shakespeare.safetensors").stat().st_size
    )
    loaded = finetune.load(path)
    model, tokenizer = loaded.model, loaded.tokenizer
    x = torch.tensor([tokenizer.encode("PETRUCHIO:\nGood morrow, Kate")])
    torch.testing.assert_close(model(x)[0], lora_run.model.eval()(x)[0])


def test_an_adapter_refuses_a_base_with_another_sha256(lora_run, tmp_path):
    path = tmp_path / "adapter.safetensors"
    finetune.save_run(lora_run, path, "test")
    loaded = gpt_trainer.load()
    base, checkpoint = loaded.model, loaded.checkpoint
    with torch.no_grad():
        base.lm_head.weight[0, 0] += 1.0  # another base: one number changed
    other = tmp_path / "other_base.safetensors"
    checkpoints.save(other, base, config=base.config.to_dict(), extra=checkpoint.extra)
    with pytest.raises(CheckpointError, match="trained on the base GPT with sha256"):
        finetune.load(path, base=other)


def test_a_full_fine_tune_saves_a_whole_gpt(speaker_data, tmp_path):
    recipe = finetune.recipe_for(SMOKE, method="full", steps=2)
    run = finetune.train(recipe, torch.device("cpu"), progress=False, speaker_data=speaker_data)
    path = tmp_path / "full.safetensors"
    finetune.save_run(run, path, "test")
    model = finetune.load(path).model
    for name, tensor in run.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor)


def test_the_pretrained_option_refuses_a_full_fine_tune():
    with pytest.raises(SettingError, match="ships a LoRA adapter only"):
        finetune.checkpoint_name(finetune.recipe_for(SMOKE, method="full"))


def test_the_pretrained_adapter_loads_onto_the_course_gpt_verified():
    loaded = finetune.load()
    model, tokenizer, checkpoint = loaded.model, loaded.tokenizer, loaded.checkpoint
    entry = checkpoints.manifest()[finetune.PRETRAINED_NAME]
    assert entry["profile"] == "cpu" and checkpoint.extra["base_sha256"] == finetune.base_sha256()
    assert len(lora.lora_layers(model)) == 4 * model.config.n_layer  # attention and MLP, each block
    assert checkpoint.metrics["speaker_loss"] < checkpoint.metrics["base_speaker_loss"]
    assert tokenizer.vocab_size == model.config.vocab_size


def test_the_comparison_benchmark_prints_every_row(monkeypatch, capsys):
    from tests.helpers import run_benchmark

    out = run_benchmark(
        "finetune",
        "--profile",
        "smoke",
        "--ranks",
        "1",
        "4",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    rows = [
        "base GPT, tag only",
        "base GPT, 2-shot prompt",
        "full fine-tuning",
        "LoRA r=1",
        "LoRA r=4",
    ]
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    for row in rows:
        assert row in lines, out
    assert "818,048" in lines["full fine-tuning"] and "8,192" in lines["LoRA r=1"]


def test_the_held_out_source_fine_tunes_on_unseen_speeches_and_validates_on_others():
    shakespeare = gpt_trainer.load_data()
    boundary = len(shakespeare.train_ids)
    held_out = finetune.load_speaker_data(shakespeare=shakespeare, source="held-out")
    seen = finetune.load_speaker_data(shakespeare=shakespeare, source="pretraining")
    train, val = held_out.train_speeches, held_out.val_speeches
    assert all(s.start >= boundary for s in train + val)
    assert train + val == seen.val_speeches and abs(len(train) - len(val)) <= 1
    assert train[-1].end <= val[0].start  # the first half trains, the second validates
    general = held_out.tokenizer.decode(held_out.general_val_ids.tolist())
    assert "PETRUCHIO:" not in general and "KATHARINA:" in general
    with pytest.raises(SettingError, match="data must be one of pretraining, held-out"):
        finetune.recipe_for(SMOKE, data="elsewhere")


def test_the_style_comparison_takes_other_speakers_from_the_validation_scenes(speaker_data):
    corpus = gpt_trainer.data.load_tiny_shakespeare()
    speeches = gpt_trainer.data.parse_speeches(corpus)
    others = lesson09.others_alongside(speaker_data, speeches)
    start, end = speaker_data.val_speeches[0].start, speaker_data.val_speeches[-1].end
    assert len(others) > len(speaker_data.val_speeches)  # there is something to compare with
    assert all(s.speaker != "PETRUCHIO" and start <= s.start and s.end <= end for s in others)
    assert all(s.end <= start or s.start >= end for s in speaker_data.train_speeches)
