"""Option orders: each item asked under the cyclic shifts of its options (MMBench's CircularEval), and the
letter-prior baselines (:func:`baseline_predictors`); why, and what the leaderboards add: README, chapter 05.

Shift ``s`` moves the option at position ``i`` to position ``(i - s) mod n``; shift 0 is EmoBench's order. An EU
item's emotion and cause questions turn by the same ``s``, each modulo its own option count, so the item stays one
prompt in the ``official`` protocol (with 4 causes, shifts 4 and 5 repeat cause orders 0 and 1).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..schemas import EAItem, EUItem

Prediction = Any  # a scoring.Prediction (its gold, predicted and shift); not imported: scoring imports this module

ORDERS: tuple[str, ...] = ("original", "cyclic")
BASELINES: tuple[str, ...] = ("always_A", "majority_gold", "own_letters")


def check_orders(orders: str) -> str:
    if orders not in ORDERS:
        raise ValueError(f"Unknown orders {orders!r}; use 'original' (EmoBench's option order only) or 'cyclic' "
                         "(every cyclic shift of the options; shift 0 is EmoBench's order)")
    return orders


def shift_count(item: EUItem | EAItem) -> int:
    """How many cyclic shifts ask every option under every letter (EU: the longer of its two option lists)."""
    if isinstance(item, EUItem):
        return max(len(item.emotion_choices), len(item.cause_choices))
    return len(item.choices)


def item_shifts(item: EUItem | EAItem, orders: str) -> list[int]:
    """The shifts to ask ``item`` under: ``[0]`` for ``original``, all of them for ``cyclic``."""
    return list(range(shift_count(item))) if check_orders(orders) == "cyclic" else [0]


def rotate(options: Sequence[str], shift: int) -> list[str]:
    """``options`` shifted left by ``shift`` (modulo their number): shift 1 puts the second option under "A"."""
    shift %= len(options)
    return [*options[shift:], *options[:shift]]


def rotated(item: EUItem | EAItem, shift: int) -> EUItem | EAItem:
    """The item with its options rotated by ``shift`` (both questions of an EU item); shift 0 is the item itself.
    Labels are option texts, so the gold letters follow the options."""
    if shift == 0:
        return item
    if isinstance(item, EUItem):
        return item.model_copy(update={"emotion_choices": rotate(item.emotion_choices, shift),
                                       "cause_choices": rotate(item.cause_choices, shift)})
    return item.model_copy(update={"choices": rotate(item.choices, shift)})


def letter_shares(records: Sequence[Prediction], part: str, *, gold: bool = False) -> dict[str, float]:
    """How often each letter was predicted (or was gold) for question ``part``, as shares of ``records``
    (``"(none)"`` for unreadable answers)."""
    counts = Counter((r.gold[part] if gold else r.predicted.get(part, "")) or "(none)" for r in records)
    return {letter: counts[letter] / len(records) for letter in sorted(counts)}


def baseline_predictors(records: Sequence[Prediction]):
    """``{name: function(record) -> expected correctness}`` for the letter-prior baselines of ``records`` (one
    task and language; all orders): ``always_A``; ``majority_gold``, the most common gold letter in EmoBench's order
    (an oracle prior; ties: the first letter); ``own_letters``, answering at random with the model's own
    answer-letter shares over the same records."""
    official = [r for r in records if r.shift == 0] or list(records)
    parts = list(records[0].gold)
    majority = {part: max(sorted(letter_shares(official, part, gold=True).items()), key=lambda kv: kv[1])[0]
                for part in parts}
    own = {part: letter_shares(records, part) for part in parts}

    def always(letters: dict[str, str]):
        return lambda r: float(all(r.gold[part] == letters[part] for part in parts))

    return {"always_A": always(dict.fromkeys(parts, "A")), "majority_gold": always(majority),
            "own_letters": lambda r: math.prod(own[part].get(r.gold[part], 0.0) for part in parts)}
