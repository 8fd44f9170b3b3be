"""Compare ways to adapt the pretrained GPT to one speaker: no adaptation, prompting, full
fine-tuning and LoRA at several ranks, at equal steps; print one table.

    python benchmarks/finetune.py [--profile smoke|cpu|gpu] [--steps N] [--ranks 1 4 16]
                                  [--lr-full LR] [--lr-lora LR] [--shots K] [--curves]
                                  [--data held-out|pretraining]

Rows: the base GPT with the speaker's tag alone; the base GPT prompted with K of the speaker's
earlier held-out speeches (few-shot); full fine-tuning; LoRA at each rank (alpha 8, attention and
MLP layers). Every fine-tune starts from the course's pretrained GPT and trains on the first half
of the speaker's unseen speeches, or with --data pretraining on the speaker's speeches inside the
pre-training text (aigc_course.trainers.finetune.load_speaker_data).

Columns: trainable parameters; optimizer state (KiB); training time (s); the speaker loss on the
held-out speeches as a stream (fixed blocks, what the trainer evaluates); the per-speech loss (each
short held-out speech after its speaker tag, or after the K earlier speeches); the general loss on
the whole held-out text (forgetting); and the style measure: the AUC with which the fine-tuned
model's likelihood ratio to the base separates the speaker's held-out speeches from other
speakers' (0.5: no better than chance). Record the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import _common  # benchmarks/_common.py: the script's own folder is on sys.path

from aigc_course import data, metrics, runtime
from aigc_course.lessons import lesson09
from aigc_course.trainers import finetune
from aigc_course.trainers import gpt as gpt_trainer
from aigc_course.validators import count, positive_float


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--ranks", type=count, nargs="+", default=[1, 4, 16])
    parser.add_argument("--lr-full", type=positive_float, help="full fine-tuning's learning rate")
    parser.add_argument("--lr-lora", type=positive_float, help="LoRA's learning rate")
    parser.add_argument("--shots", type=count, default=2, help="earlier speeches in the prompt")
    parser.add_argument(
        "--curves",
        action="store_true",
        help="also print each fine-tune's losses at every evaluation",
    )
    parser.add_argument(
        "--data",
        choices=finetune.DATA_SOURCES,
        default="held-out",
        help="the speaker's text to fine-tune on (see trainers.finetune.load_speaker_data)",
    )
    args = parser.parse_args()
    if args.minutes is not None:
        parser.error("the comparison is at equal steps: give --steps, not --minutes")

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    shakespeare = gpt_trainer.load_data()
    speaker_data = finetune.load_speaker_data(shakespeare=shakespeare, source=args.data)
    speaker = speaker_data.speaker
    held = lesson09.short_speeches(speaker_data.val_speeches)
    if profile.name == "smoke":
        held = held[:6]
    _, after = data.split_speeches(
        data.parse_speeches(data.load_tiny_shakespeare()), len(shakespeare.train_ids)
    )
    others = lesson09.short_speeches(lesson09.others_alongside(speaker_data, after))
    if profile.name == "smoke":  # the code path: a few speeches on each side of the AUC
        others = others[: len(held)]
    loaded = gpt_trainer.load()
    base, tokenizer = loaded.model, loaded.tokenizer
    base = base.to(device).eval()

    def per_speech(model, shots: int = 0) -> float:
        """Each held-out speech from the (args.shots + 1)-th on (the same speeches in every row),
        after its tag, and after the ``shots`` speeches before it."""
        return mean(
            [
                lesson09.in_context_loss(model, tokenizer, held[i], held[i - shots : i])
                for i in range(args.shots, len(held))
            ]
        )

    recipe = finetune.recipe_for(profile, steps=args.steps)
    batches = recipe.eval_batches
    base_figures = finetune.evaluate(base, speaker_data, batches, recipe.batch_size)
    rows = [
        ("base GPT, tag only", 0, 0, 0.0, base_figures, per_speech(base), None),
        (f"base GPT, {args.shots}-shot prompt", 0, 0, 0.0, base_figures, per_speech(base, args.shots), None),
    ]  # fmt: skip
    settings = [("full", {"lr": args.lr_full})]
    settings += [("lora", {"rank": rank, "lr": args.lr_lora}) for rank in args.ranks]
    for method, options in settings:
        run_recipe = finetune.recipe_for(
            profile, method=method, steps=args.steps, data=args.data, **options
        )
        run = finetune.train(run_recipe, device, progress=False, speaker_data=speaker_data)
        model = run.model.eval()
        ratios = [
            [lesson09.speaker_likelihood_ratio(model, base, tokenizer, s, speaker) for s in group]
            for group in (held, others)
        ]
        name = "full fine-tuning" if method == "full" else f"LoRA r={options['rank']}"
        if args.curves:
            history = run.history
            print(f"{name}: evaluations at steps {history.eval_steps}")
            for measure in ("speaker_loss", "general_loss"):
                values = " ".join(f"{v:.3f}" for v in history.eval_metrics[measure])
                print(f"  {measure} {values} (before: {run.metrics['base_' + measure]:.3f})")
        figures = {
            "speaker_loss": run.metrics["speaker_loss"],
            "general_loss": run.metrics["general_loss"],
        }
        rows.append(
            (
                name,
                run.metrics["trainable_parameters"],
                run.metrics["optimizer_state_bytes"],
                run.metrics["train_seconds"],
                figures,
                per_speech(model),
                metrics.roc_auc(*ratios),
            )
        )

    _common.print_figures(
        {
            **_common.environment(profile, device),
            "speaker": f"{speaker}: {len(speaker_data.train_speeches)} speeches to fine-tune on "
            f"({len(speaker_data.train_ids):,} characters), {len(held)} short held-out speeches "
            f"scored one by one, {len(others)} of other speakers for the style measure",
            "steps": f"{recipe.train.steps} x {recipe.batch_size} sequences, learning rates: "
            f"full {args.lr_full or finetune.recipe_for(profile, method='full').train.lr:g}, "
            f"LoRA {args.lr_lora or finetune.recipe_for(profile, method='lora').train.lr:g}",
        }
    )
    print()
    print(
        f"{'':28s} {'trainable':>10s} {'opt. state':>10s} {'time':>6s} {'speaker':>8s} "
        f"{'per-speech':>10s} {'general':>8s} {'style AUC':>9s}"
    )
    print(
        f"{'':28s} {'params':>10s} {'[KiB]':>10s} {'[s]':>6s} {'[nats]':>8s} {'[nats]':>10s} {'[nats]':>8s}"
    )
    for name, trainable, state, seconds, figures, speech_loss, style in rows:
        print(
            f"{name:28s} {trainable:>10,} {state / 1024:>10.0f} {seconds:>6.1f} "
            f"{figures['speaker_loss']:>8.4f} {speech_loss:>10.4f} {figures['general_loss']:>8.4f} "
            f"{'' if style is None else f'{style:.3f}':>9s}"
        )
    print(f"\nwall time [s]: {time.perf_counter() - started:.1f}")


if __name__ == "__main__":
    main()
