"""Step 3, the quality gate's cheap rules (§3.3's "linguistic quality checks"): degenerate text that passes every
schema and consistency filter but cannot teach reasoning, such as cause options "Amusem, amusem, amusem". The drop
reasons: ``explanation_too_short``, ``option_fragment``, ``repeated_word``, ``nonword_text`` (pyspellchecker) and
``json_remnant``, each threshold a notebook parameter (:class:`QualityRules`). The scenario is checked only for
non-words and JSON remnants (it may repeat "no, no, no" in dialogue). The rest of the gate: :mod:`.judge`.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..schemas import DatasetItem
from ..taxonomy import EMOTION_LABELS, EXPLANATION_MIN_WORDS, OPTION_MIN_WORDS
from .filters import EMOTION_FORMS
from .questions import is_emotion_question, question_slots
from .steps import StepResult, run_check

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_JSON_REMNANT = re.compile(r'[{}\[\]]|"\s*:\s*["\[{\d]|"\s*,\s*"|\\["n]|^\s*[,;:)\]}]')
# Words that do not end an English phrase: an option ending on one was cut off.
_DANGLING = frozenset("a an the and or but nor to of with for from by at in on as because that than if so "
                      "while whose which who their his her its my your our".split())
_EMOTION_WORDS = frozenset(EMOTION_LABELS) | {form for forms in EMOTION_FORMS.values() for form in forms}


class QualityRules(BaseModel):
    """The thresholds of the cheap rules (notebook 03's parameters of the same names)."""

    model_config = ConfigDict(extra="forbid")

    min_explanation_words: int = Field(EXPLANATION_MIN_WORDS, ge=0)
    min_option_words: int = Field(OPTION_MIN_WORDS, ge=0)
    max_word_repeats: int = Field(2, ge=1)
    max_nonword_share: float = Field(0.5, ge=0, le=1)


@functools.lru_cache(maxsize=1)
def _dictionary():
    from spellchecker import SpellChecker

    return SpellChecker(language="en", distance=1)


def words(text: str) -> list[str]:
    """The words of ``text`` (letters, with inner apostrophes: "wasn't", "Sarah's")."""
    return _WORD.findall(text.replace("\u2019", "'"))


def names_in(item: DatasetItem) -> set[str]:
    """Words that may be names here (casefolded): the subject's and every capitalised word of the scenario."""
    found = {w.casefold() for w in words(item.subject or "")}
    return found | {w.casefold().removesuffix("'s") for w in words(item.scenario) if w[0].isupper()}


def nonwords(text: str, known: set[str] = frozenset()) -> list[str]:
    """The words of ``text`` that are neither English words (pyspellchecker's dictionary) nor in ``known``
    (casefolded names, emotion words)."""
    dictionary = _dictionary()
    out = []
    for word in words(text):
        lower = word.casefold()
        base = lower.removesuffix("'s")
        if base in known or base in _EMOTION_WORDS or lower in dictionary or base in dictionary:
            continue
        out.append(word)
    return out


def _repeated_run(text: str, max_repeats: int) -> str | None:
    found = words(text)
    run = 1
    for previous, word in zip(found, found[1:], strict=False):
        run = run + 1 if word.casefold() == previous.casefold() else 1
        if run > max_repeats:
            return word
    return None


def _fragment(option: str, min_words: int) -> str | None:
    found = words(option)
    if len(found) < min_words:
        return f"{len(found)} word(s), fewer than {min_words}"
    if not re.match(r"\s*[\w\"'(]", option):
        return "starts with punctuation"
    if found and found[-1].casefold() in _DANGLING and not re.search(r"[.!?]\s*$", option):
        return f"ends on {found[-1]!r}"
    return None


def text_problem(field: str, text: str, rules: QualityRules, known: set[str], *,
                 repeats: bool = True) -> tuple[str, str] | None:
    """(reason, detail) for the first rule ``text`` breaks (JSON remnant, repeated word, non-words), else None."""
    remnant = _JSON_REMNANT.search(text)
    if remnant:
        return "json_remnant", f"{field} {text[:60]!r} holds {remnant.group(0).strip()!r}"
    if repeats:
        word = _repeated_run(text, rules.max_word_repeats)
        if word:
            return "repeated_word", f"{field} repeats {word!r} more than {rules.max_word_repeats} times in a row"
    total = len(words(text))
    unknown = nonwords(text, known)
    if total and len(unknown) / total > rules.max_nonword_share:
        return "nonword_text", (f"{field}: {len(unknown)} of {total} words are not English words "
                                f"({', '.join(unknown[:5])}); at most {rules.max_nonword_share:.0%} allowed")
    return None


def item_quality_problem(item: DatasetItem, rules: QualityRules) -> tuple[str, str] | None:
    """(reason, detail) for the first rule the item breaks, else None."""
    known = names_in(item)
    problem = (text_problem("scenario", item.scenario, rules, known, repeats=False)
               or text_problem("question", item.question, rules, known))
    if problem:
        return problem
    for slot, options, _, explanation in question_slots(item):
        n_words = len(words(explanation))
        if n_words < rules.min_explanation_words:
            return "explanation_too_short", (f"{slot} explanation {explanation[:60]!r} has {n_words} word(s), "
                                             f"fewer than {rules.min_explanation_words}")
        problem = text_problem(f"{slot} explanation", explanation, rules, known)
        if problem:
            return problem
        free_text = not (slot == "main" and is_emotion_question(item))
        for option in options:
            problem = text_problem(f"{slot} option", option, rules, known)
            if problem:
                return problem
            why = _fragment(option, rules.min_option_words) if free_text else None
            if why:
                return "option_fragment", f"{slot} option {option!r}: {why}"
        word_sets = [frozenset(w.casefold() for w in words(o)) for o in options]
        for i, first in enumerate(word_sets):
            for j in range(i + 1, len(word_sets)):
                if first and first == word_sets[j]:
                    return "repeated_word", f"{slot} options {options[i]!r} and {options[j]!r} use the same words"
    return None


def check_text_quality(items: Sequence[DatasetItem], rules: QualityRules | None = None) -> StepResult:
    """The quality gate's cheap rules, as one step ("quality rules"); ``notes`` hold the thresholds."""
    rules = rules or QualityRules()
    result = run_check("quality rules", items, lambda item: item_quality_problem(item, rules))
    result.report.notes.update(rules.model_dump())
    return result
