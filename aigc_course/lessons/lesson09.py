"""Lesson 09: what a prompt does, and whom a text reads like: per-speech measures."""

from __future__ import annotations

import dataclasses

import torch

from aigc_course import data
from aigc_course.models.gpt import GPT
from aigc_course.trainers.finetune import SpeakerData, script_text


def in_context_loss(
    model: GPT,
    tokenizer: data.CharTokenizer,
    speech: data.Speech,
    context: list[data.Speech] = (),
) -> float:
    """The loss (nats per character) of ``speech``'s text read after a prompt: the ``context``
    speeches as the script writes them, then the speech's own speaker line (``NAME:\n``). With no
    context this is the speech after its speaker tag alone; with k earlier speeches it is k-shot
    prompting. A prompt longer than the model's context is cut from the left (the model cannot see
    more); the speech's text must fit in the context."""
    prompt = script_text(list(context)) + f"{speech.speaker}:\n"
    return model.continuation_nll(
        torch.tensor(tokenizer.encode(prompt)), torch.tensor(tokenizer.encode(speech.text))
    )


def short_speeches(speeches: list[data.Speech], longest: int = 100) -> list[data.Speech]:
    """The speeches whose text fits a per-speech measure with room for a prompt (``longest``
    characters at most; the GPT's context is 128)."""
    return [speech for speech in speeches if len(speech.text) <= longest]


def others_alongside(speaker_data: SpeakerData, speeches: list[data.Speech]) -> list[data.Speech]:
    """The other speakers' speeches among ``speeches`` that lie in the span of the speaker's
    validation speeches: the same scenes, so that a comparison of the speaker's validation speeches
    with others' is not a comparison of scenes the fine-tuning read with scenes it did not."""
    start, end = speaker_data.val_speeches[0].start, speaker_data.val_speeches[-1].end
    return [
        s
        for s in speeches
        if s.speaker != speaker_data.speaker and start <= s.start and s.end <= end
    ]


def speaker_likelihood_ratio(
    tuned: GPT, base: GPT, tokenizer: data.CharTokenizer, speech: data.Speech, speaker: str
) -> float:
    """How much more likely the fine-tuned model finds ``speech``'s text than the base model does,
    both reading it after ``speaker``'s tag (nats per character; above 0: it reads more like what
    the fine-tuning taught). Real speeches of the speaker should score higher than others'."""
    as_speaker = dataclasses.replace(speech, speaker=speaker)
    return in_context_loss(base, tokenizer, as_speaker) - in_context_loss(
        tuned, tokenizer, as_speaker
    )
