"""Dialogue transcripts: removing turns (``{"speaker": ..., "text": ...}`` dicts) in which a speaker repeats
themselves without new information (§3.3)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from rapidfuzz import fuzz

from ..words import content_words


class DroppedTurn(NamedTuple):
    """A turn :func:`remove_redundant_turns` removed: its index in the input, the reason and a detail."""

    index: int
    reason: str  # "empty_turn", "repeated_turn" or "adds_no_information"
    detail: str = ""


def remove_redundant_turns(turns: Sequence[dict], *, similarity: float = 0.9,
                           window: int = 3) -> tuple[list[dict], list[DroppedTurn]]:
    """The turns worth keeping (text whitespace-collapsed) and the ones dropped, with why.

    A turn is redundant when it is empty (``empty_turn``); when it is near-identical (``rapidfuzz.fuzz.ratio`` /
    100 >= ``similarity`` on casefolded text) to one of the same speaker's last ``window`` kept turns
    (``repeated_turn``); or when it directly follows a turn by the same speaker and its content words
    (:func:`ec2er_utils.words.content_words`) are all in that turn (``adds_no_information``). Different speakers'
    short replies ("Yes.") are never compared with each other.
    """
    kept: list[dict] = []
    dropped: list[DroppedTurn] = []
    history: dict[str, list[str]] = defaultdict(list)
    for index, turn in enumerate(turns):
        speaker, text = turn.get("speaker", ""), " ".join(str(turn.get("text", "")).split())
        normalised = text.casefold()
        reason = None
        if not text:
            reason = DroppedTurn(index, "empty_turn")
        else:
            for earlier in history[speaker][-window:]:
                score = fuzz.ratio(normalised, earlier) / 100
                if score >= similarity:
                    reason = DroppedTurn(index, "repeated_turn", f"{score:.2f} similar to an earlier {speaker} turn")
                    break
            if reason is None and kept and kept[-1].get("speaker") == speaker:
                words = content_words(text)
                if words and words <= content_words(kept[-1]["text"]):
                    reason = DroppedTurn(index, "adds_no_information",
                                         f"every content word is in the previous {speaker} turn")
        if reason:
            dropped.append(reason)
            continue
        kept.append({**turn, "text": text})
        history[speaker].append(normalised)
    return kept, dropped
