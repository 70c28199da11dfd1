"""Redundant dialogue turns (§3.3): a speaker repeating themselves without new information is removed."""

from __future__ import annotations

from ec2er_utils.generation.transcript import DroppedTurn, remove_redundant_turns


def test_redundant_turns_are_removed_and_informative_ones_kept():
    turns = [{"speaker": "CLIENT", "text": "I feel so tired and sad since my mother moved away."},
             {"speaker": "CLIENT", "text": "Sad and tired, yes."},  # adds nothing to the previous client turn
             {"speaker": "THERAPIST", "text": "That sounds really hard. When did she move?"},
             {"speaker": "CLIENT", "text": "Last spring, right after my birthday."},
             {"speaker": "THERAPIST", "text": "That sounds really hard.  When did she move?"},  # repeated
             {"speaker": "CLIENT", "text": "   "},  # empty
             {"speaker": "CLIENT", "text": "Yes."},
             {"speaker": "THERAPIST", "text": "Yes."},  # another speaker's short reply is not compared
             {"speaker": "CLIENT", "text": "My sister   calls every Sunday though."}]
    kept, dropped = remove_redundant_turns(turns)
    assert [t["text"] for t in kept] == [turns[0]["text"], turns[2]["text"], turns[3]["text"], "Yes.", "Yes.",
                                         "My sister calls every Sunday though."]  # whitespace collapsed
    assert [(d.index, d.reason) for d in dropped] == [(1, "adds_no_information"), (4, "repeated_turn"),
                                                      (5, "empty_turn")]
    assert "THERAPIST" in dropped[1].detail
    again, dropped_again = remove_redundant_turns(kept)
    assert again == kept and dropped_again == []


def test_similarity_and_window_bound_what_counts_as_a_repeat():
    turns = [{"speaker": "CLIENT", "text": "I can't sleep at night anymore."},
             {"speaker": "THERAPIST", "text": "What keeps you awake?"},
             {"speaker": "CLIENT", "text": "I cannot sleep at night any more."}]
    assert remove_redundant_turns(turns)[1] == [DroppedTurn(2, "repeated_turn",
                                                            "0.94 similar to an earlier CLIENT turn")]
    assert remove_redundant_turns(turns, similarity=0.99)[1] == []
    others = [{"speaker": "CLIENT", "text": text} for text in ("My job is stressful.", "The neighbours are loud.",
                                                                "My cat is ill.")]
    spaced = [turns[0], *others, turns[2]]  # the repeat comes 4 client turns later
    assert remove_redundant_turns(spaced, window=3)[1] == []
    assert [d.index for d in remove_redundant_turns(spaced, window=4)[1]] == [4]
