"""Items: the JSON schemas the extraction agents fill, and turning a filled draft into a
:class:`~ec2er_utils.schemas.DatasetItem`. The correct option has its own field, so "the label is one of the choices"
holds by construction; the code adds ids and provenance and shuffles the options with a seed derived from the item
id. MADS writes EmoBench's EU / EA shape, concise the paper's generic MCQ (§3.3); README, chapters 01 and 02.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..formatting import EA_QUESTION, EU_EMOTION_QUESTION
from ..schemas import DatasetItem
from ..taxonomy import (
    EA_CATEGORIES,
    EMOTION_LABELS,
    EU_CATEGORIES,
    EXPLANATION_MIN_WORDS,
    OPTION_MIN_WORDS,
    PAPER_EA_COUNTS,
    PAPER_EU_COUNTS,
    is_known_emotion,
    split_emotion_label,
)

# EmoBench's English EU fine-grained categories under each coarse category (read from EU.jsonl).
EU_FINEGRAINED: dict[str, tuple[str, ...]] = {
    "complex_emotions": ("emotion_transition", "mixture_of_emotions", "unexpected_outcome"),
    "emotional_cues": ("visual_cues", "vocal_cues"),
    "personal_beliefs_and_experiences": ("cultural_value", "persona", "sentimental_value"),
    "perspective_taking": ("false_belief", "faux_pas", "strange_story"),
}
EMOTION_OPTIONS: tuple[str, ...] = tuple(label.capitalize() for label in EMOTION_LABELS)

# Text fields share about max_tokens * CHARS_PER_TOKEN characters, so that a constrained reply can close its JSON
# before max_tokens (English runs ~4 characters per token, but small models often write short tokens).
CHARS_PER_TOKEN = 2.0
# Word limits become string lengths at ~6 characters per English word (5 letters + a space).
CHARS_PER_WORD = 6
OTHER_FIELDS_MIN_CHARS = 100  # explanations and options need at least this much room beside the scenario


class CategoryBalancer:
    """Targets the least-represented categories for new items, so the categories stay balanced (§3.3).

    :meth:`take` reserves targets (ties go to the taxonomy order, so targets are deterministic); :meth:`settle`
    releases one and counts it only if its item was written, so a rejected target is asked for again later;
    :meth:`record` counts an item of a resumed run. A category that reached its ``quota`` is no longer asked for.
    """

    def __init__(self, categories: Sequence[str], quota: Mapping[str, int] | None = None):
        self.categories = tuple(categories)
        self.counts = Counter({c: 0 for c in self.categories})
        self.reserved: Counter = Counter()
        self.quota = {c: n for c, n in (quota or {}).items() if c in self.categories}

    def _open(self, category: str) -> bool:
        return category not in self.quota or self.counts[category] + self.reserved[category] < self.quota[category]

    def take(self, n: int) -> list[str]:
        """Up to ``n`` targets; fewer when quotas leave fewer categories open."""
        chosen: list[str] = []
        for _ in range(n):
            open_ = [c for c in self.categories if self._open(c)]
            fresh = [c for c in open_ if c not in chosen] or open_
            if not fresh:
                break
            target = min(fresh, key=lambda c: (self.counts[c] + self.reserved[c], self.categories.index(c)))
            self.reserved[target] += 1
            chosen.append(target)
        return chosen

    @property
    def met(self) -> bool:
            return bool(self.quota) and all(self.counts[c] >= n for c, n in self.quota.items())

    def settle(self, category: str, written: bool) -> None:
        self.reserved[category] -= 1
        if written:
            self.counts[category] += 1

    def record(self, category: str) -> None:
        if category not in self.counts:
            raise ValueError(f"unknown category {category!r}; expected one of {list(self.categories)}")
        self.counts[category] += 1


def resolve_quotas(quotas: Mapping[str, int] | str | None) -> dict[str, int]:
    """Per-category item quotas: a mapping, ``"paper"`` (the paper's counts after preprocessing, §3.3) or None."""
    if quotas is None:
        return {}
    if quotas == "paper":
        return {**PAPER_EU_COUNTS, **PAPER_EA_COUNTS}
    if isinstance(quotas, str):
        raise ValueError(f"quotas must be a mapping of category to count, 'paper' or None, got {quotas!r}")
    unknown = sorted(set(quotas) - set(EU_CATEGORIES) - set(EA_CATEGORIES))
    if unknown:
        raise ValueError(f"quotas name unknown categories {unknown}; use EmoBench's: "
                         f"{', '.join(EU_CATEGORIES + EA_CATEGORIES)}")
    if any(n < 1 for n in quotas.values()):
        raise ValueError(f"quotas must be >= 1 items per category, got {dict(quotas)}")
    return dict(quotas)


def _string(max_chars: int, min_chars: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_chars, "maxLength": max(max_chars, min_chars + 10)}


_WORD_CHAR = r'[^\s{}\[\]"\\]'  # no whitespace, no JSON syntax


def _prose(max_chars: int, min_words: int = 1) -> dict[str, Any]:
    """Prose of at least ``min_words`` words as a pattern the decoder follows (README, chapter 03). xgrammar ignores
    minLength/maxLength beside a pattern, so the length is bounded in words of at most 24 characters."""
    max_words = max(min_words, max_chars // CHARS_PER_WORD)
    first, word = f"[A-Za-z0-9]{_WORD_CHAR}{{0,23}}", f"{_WORD_CHAR}{{1,24}}"
    return {"type": "string", "pattern": f"^{first}( {word}){{{min_words - 1},{max_words - 1}}}$"}


# No "uniqueItems" in the arrays: grammars cannot enforce it, and a re-ask for it rarely helps a small model;
# repeated options are rejected by the item builders instead (reason "duplicate_options").
def _options(n: int, max_chars: int) -> dict[str, Any]:
    return {"type": "array", "items": _prose(max_chars, OPTION_MIN_WORDS), "minItems": n, "maxItems": n}


def _emotion(mixed: bool = False) -> dict[str, Any]:
    """One emotion from the vocabulary, or (``mixed``) a pair felt at once, joined as EmoBench writes it: "X & Y"."""
    one = {"enum": list(EMOTION_OPTIONS)}
    return {"type": "array", "items": one, "minItems": 2, "maxItems": 2} if mixed else one


def _emotions(n: int, mixed: bool = False) -> dict[str, Any]:
    return {"type": "array", "items": _emotion(mixed), "minItems": n, "maxItems": n}


def _object(title: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def supervisor_schema(max_tokens: int) -> dict[str, Any]:
    """The SupervisorAgent's verdict: a short reason, then the four criteria of Algorithm 1 as booleans."""
    return _object("SupervisorVerdict", {
        "reason": _string(int(max_tokens * CHARS_PER_TOKEN - 70)),
        **{name: {"type": "boolean"} for name in ("scenario", "emotions", "causes", "dilemma")}})


def scenario_budget(max_tokens: int, overhead_chars: int, share: float, min_words: int, what: str,
                    ) -> tuple[int, int]:
    """(scenario characters, characters left for the other text fields) within a reply of ``max_tokens``, after
    ``overhead_chars`` for keys and punctuation; raises, naming the fix, when the other fields would lack room."""
    chars = max_tokens * CHARS_PER_TOKEN - overhead_chars
    floor = min_words * CHARS_PER_WORD + 60
    scenario = max(int(chars * share), floor)
    rest = int(chars - scenario)
    if rest < OTHER_FIELDS_MIN_CHARS:
        needed = math.ceil((floor + OTHER_FIELDS_MIN_CHARS + overhead_chars) / CHARS_PER_TOKEN)
        if not min_words:
            raise ValueError(f"item_max_tokens={max_tokens} cannot hold {what}; raise it to >= {needed}")
        raise ValueError(f"item_max_tokens={max_tokens} cannot hold {what} whose scenario has at least {min_words} "
                         f"words; raise item_max_tokens to >= {needed} or lower scenario_min_words")
    return scenario, rest


def eu_draft_schema(max_tokens: int, scenario_min_words: int = 0, *, mixed: bool = False) -> dict[str, Any]:
    """One schema for every EU request of a kind (the category and sub-type are in the prompt), so the requests of
    a whole batch of dialogues share one batched, grammar-constrained generate call on the local backend. ``mixed``:
    every emotion option is a pair felt at once ("Guilt & Relief"), as in EmoBench's mixed-emotion items."""
    overhead = 300 if mixed else 240  # keys, enums and brackets
    scenario, rest = scenario_budget(max_tokens, overhead, 0.35, scenario_min_words, "an EU item")
    return _object("EUMixedItemDraft" if mixed else "EUItemDraft", {
        "scenario": _string(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "subject": _prose(40),
        "emotion_label": _emotion(mixed),
        "emotion_distractors": _emotions(5, mixed),
        "emotion_explanation": _prose(int(rest * 0.23), EXPLANATION_MIN_WORDS),
        "cause_label": _prose(int(rest * 0.11), OPTION_MIN_WORDS),
        "cause_distractors": _options(3, int(rest * 0.11)),
        "cause_explanation": _prose(int(rest * 0.18), EXPLANATION_MIN_WORDS),
    })


def ea_draft_schema(max_tokens: int, scenario_min_words: int = 0) -> dict[str, Any]:
    scenario, rest = scenario_budget(max_tokens, 110, 0.4, scenario_min_words, "an EA item")
    return _object("EAItemDraft", {
        "scenario": _string(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "subject": _prose(40),
        "best_choice": _prose(int(rest * 0.13), OPTION_MIN_WORDS),
        "other_choices": _options(3, int(rest * 0.13)),
        "explanation": _prose(int(rest * 0.33), EXPLANATION_MIN_WORDS),
    })


def mcq_draft_schema(task: str, max_tokens: int, scenario_min_words: int = 0) -> dict[str, Any]:
    """Concise pipeline: the paper's MCQ record (§3.3); EU options are emotions from the vocabulary."""
    share, shares = (0.45, (0.15, 0.55)) if task == "EU" else (0.35, (0.11, 0.38))
    scenario, rest = scenario_budget(max_tokens, 150, share, scenario_min_words, f"an {task} question")
    if task == "EU":
        answer, distractors = _emotion(), _emotions(3)
    else:
        answer, distractors = _prose(int(rest * 0.09), OPTION_MIN_WORDS), _options(3, int(rest * 0.09))
    return _object(f"{task}MCQDraft", {
        "scenario": _string(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "question": _prose(int(rest * shares[0]), 3),
        "correct_answer": answer,
        "distractors": distractors,
        "explanation": _prose(int(rest * shares[1]), EXPLANATION_MIN_WORDS),
    })


class ItemRejected(ValueError):
    """A draft that cannot become a valid item; ``reason`` is counted in the statistics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _distinct(options: Sequence[str], what: str) -> list[str]:
    cleaned = [" ".join(str(o).split()) for o in options]
    if any(not o for o in cleaned):
        raise ItemRejected("empty_option", f"{what} has an empty option")
    if len({o.casefold() for o in cleaned}) != len(cleaned):
        raise ItemRejected("duplicate_options", f"{what} repeats an option: {cleaned}")
    return cleaned


def _known_emotions(options: Sequence[str]) -> None:
    unknown = [o for o in options if not is_known_emotion(o)]
    if unknown:
        raise ItemRejected("unknown_emotion", f"not in the emotion vocabulary: {unknown}")


def _text(value: Any, field: str) -> str:
    text = " ".join(str(value).split())
    if not text:
        raise ItemRejected("schema", f"{field}: empty")
    return text


def _shuffled(options: list[str], rng: random.Random) -> list[str]:
    options = list(options)
    rng.shuffle(options)
    return options


def _emotion_text(value: str | Sequence[str]) -> str:
    """An option as EmoBench writes it: one emotion, or a pair joined with " & "."""
    return value if isinstance(value, str) else " & ".join(value)


def _emotion_key(option: str) -> frozenset[str] | None:
    """What makes two options the same ("Guilt & Relief" = "relief & guilt"); None for a pair of one emotion twice."""
    parts = split_emotion_label(option)
    return frozenset(parts) if len(set(parts)) == len(parts) else None


def emotion_options(label: str | Sequence[str], distractors: Sequence[str | Sequence[str]], rng: random.Random,
                    repairs: list[dict[str, Any]] | None = None, item_id: str = "") -> list[str]:
    """The gold emotion first, then the distractors, each repeat replaced by an unused emotion (or pair) drawn with
    ``rng`` and noted in ``repairs``: a grammar can force the vocabulary but not distinct options, and small models
    repeat one. Free-text options (causes, EA choices) are never invented: repeats there reject the item."""
    mixed = not isinstance(label, str)
    gold = _emotion_text(label)
    if _emotion_key(gold) is None:
        raise ItemRejected("duplicate_options", f"the emotion pair {gold!r} names one emotion twice")
    options, seen = [gold], {_emotion_key(gold)}
    for value in distractors:
        option = _emotion_text(value)
        key = _emotion_key(option)
        if key is not None and key not in seen:
            options.append(option)
            seen.add(key)
    missing = len(distractors) + 1 - len(options)
    while len(options) < len(distractors) + 1:
        drawn = rng.sample(EMOTION_OPTIONS, 2 if mixed else 1)
        if frozenset(e.casefold() for e in drawn) not in seen:
            options.append(_emotion_text(drawn) if mixed else drawn[0])
            seen.add(frozenset(e.casefold() for e in drawn))
    if missing and repairs is not None:
        repairs.append({"item_id": item_id, "repair": "repeated_emotions_replaced",
                        "detail": f"{[_emotion_text(v) for v in distractors]} -> {options[1:]}"})
    return options


def build_eu_item(draft: Mapping[str, Any], *, item_id: str, category: str, finegrained: str,
                  provenance: Mapping[str, Any], rng: random.Random,
                  repairs: list[dict[str, Any]] | None = None) -> DatasetItem:
    """An EmoBench-format EU item (emotion + cause question) from a draft; raises :class:`ItemRejected` when it
    cannot be valid."""
    if finegrained not in EU_FINEGRAINED[category]:
        raise ValueError(f"{finegrained!r} is not a sub-type of {category}")
    emotions = _distinct(emotion_options(draft["emotion_label"], draft["emotion_distractors"], rng, repairs,
                                         item_id), "emotion options")
    _known_emotions(emotions)
    causes = _distinct([draft["cause_label"], *draft["cause_distractors"]], "cause options")
    subject, explanation = _text(draft["subject"], "subject"), _text(draft["emotion_explanation"], "explanation")
    emotion_choices = _shuffled(emotions, rng)
    return DatasetItem(
        item_id=item_id, task="EU", category=category, source_format="emobench_eu",
        scenario=_text(draft["scenario"], "scenario"), question=EU_EMOTION_QUESTION.format(subject=subject),
        options=emotion_choices, correct_answer=emotions[0], explanation=explanation, subject=subject,
        finegrained_category=finegrained, emotion_choices=emotion_choices, emotion_label=emotions[0],
        emotion_explanation=explanation, cause_choices=_shuffled(causes, rng), cause_label=causes[0],
        cause_explanation=_text(draft["cause_explanation"], "cause_explanation"), **provenance)


def build_ea_item(draft: Mapping[str, Any], *, item_id: str, category: str, question_type: str,
                  provenance: Mapping[str, Any], rng: random.Random) -> DatasetItem:
    """An EmoBench-format EA item (the most effective action or response) from a draft."""
    choices = _distinct([draft["best_choice"], *draft["other_choices"]], "choices")
    subject = _text(draft["subject"], "subject")
    shuffled = _shuffled(choices, rng)
    return DatasetItem(
        item_id=item_id, task="EA", category=category, source_format="emobench_ea",
        scenario=_text(draft["scenario"], "scenario"),
        question=EA_QUESTION.format(question_type=question_type.lower(), subject=subject), options=shuffled,
        correct_answer=choices[0], explanation=_text(draft["explanation"], "explanation"), subject=subject,
        question_type=question_type, choices=shuffled, label=choices[0], **provenance)


def build_mcq_item(draft: Mapping[str, Any], *, item_id: str, task: str, category: str,
                   provenance: Mapping[str, Any], rng: random.Random,
                   repairs: list[dict[str, Any]] | None = None) -> DatasetItem:
    """The paper's generic MCQ (§3.3) from a concise draft; EU options are emotions from the vocabulary."""
    if task == "EU":  # emotion options: repeats repaired from the vocabulary, as for MADS EU items
        options = emotion_options(draft["correct_answer"], draft["distractors"], rng, repairs, item_id)
        _known_emotions(options)
    options = _distinct(options if task == "EU" else [draft["correct_answer"], *draft["distractors"]], "options")
    return DatasetItem(
        item_id=item_id, task=task, category=category, source_format="mcq",
        scenario=_text(draft["scenario"], "scenario"), question=_text(draft["question"], "question"),
        options=_shuffled(options, rng), correct_answer=options[0],
        explanation=_text(draft["explanation"], "explanation"), **provenance)

