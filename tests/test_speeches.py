"""Speeches of the play script (lesson 09 fine-tunes on one speaker): parsing and the honest split."""

from __future__ import annotations

from aigc_course import data
from aigc_course.data.text import Speech, parse_speeches, speaker_counts, split_speeches
from tests.helpers import require_data

SCRIPT = """ROMEO:
But, soft! what light through yonder window breaks?
It is the east, and Juliet is the sun.

JULIET:
Ay me!

Exit, pursued by a bear

First Citizen:
Speak, speak:
we are resolved.

ROMEO:
She speaks:
"""


def test_a_hand_made_script_parses_into_its_speeches():
    speeches = parse_speeches(SCRIPT)
    assert [s.speaker for s in speeches] == ["ROMEO", "JULIET", "First Citizen", "ROMEO"]
    assert speeches[0].text == (
        "But, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
    )
    assert speeches[2].text == "Speak, speak:\nwe are resolved.", (
        "a line ending in ':' inside a speech"
    )
    assert speeches[3].text == "She speaks:", "the last speech ends before the final newline"
    for speech in speeches:
        assert SCRIPT[speech.start : speech.end] == f"{speech.speaker}:\n{speech.text}"
    assert "bear" not in "".join(s.text for s in speeches), "a block without a speaker is skipped"
    assert speaker_counts(speeches).most_common(1) == [("ROMEO", 2)]


def test_a_speaker_line_alone_is_not_a_speech():
    assert parse_speeches("ROMEO:\n\nJULIET:\nAy me!\n") == [Speech("JULIET", "Ay me!", 8, 22)]


def test_the_split_keeps_no_speech_on_both_sides_of_the_cut():
    speeches = parse_speeches(SCRIPT)
    cut = speeches[2].start + 5  # inside the third speech
    before, after = split_speeches(speeches, cut)
    assert before == speeches[:2] and after == speeches[3:]
    assert all(s.end <= cut for s in before) and all(s.start >= cut for s in after)


def test_tiny_shakespeare_speeches_and_where_the_cut_falls():
    """The facts lesson 09's choice of speaker rests on."""
    require_data("tinyshakespeare")
    corpus = data.load_tiny_shakespeare()
    speeches = parse_speeches(corpus)
    assert len(speeches) == 7_095
    covered = sum(s.end - s.start for s in speeches) / len(corpus)
    assert covered > 0.98, "almost every character is inside a speech"
    before, after = split_speeches(speeches, int(0.9 * len(corpus)))
    assert len(before) + len(after) == len(speeches) - 1, "one speech straddles the 90% cut"
    seen, unseen = speaker_counts(before), speaker_counts(after)
    assert seen.most_common(1) == [("GLOUCESTER", 211)] and unseen["GLOUCESTER"] == 0
    # The last 10% is The Taming of the Shrew: its Petruchio has the most held-out speeches, and
    # few before the cut (the play starts just before it).
    assert unseen.most_common(1) == [("PETRUCHIO", 134)] and seen["PETRUCHIO"] == 21
