"""Step 2, validation (§3.3): each filter drops the items that break one rule, with the reason and file:line.

:func:`validate_items` runs them in order: required fields (and a known category), answer among the options,
distinct options, emotion labels in the taxonomy, scenario length (``taxonomy.SCENARIO_WORDS``), no label leak, no
letter references, explanation consistent with the answer. The last three make §3.3's "self-contradictory
explanations" filter concrete; they are heuristics, and their docstrings say how they decide.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ..schemas import EA_CHOICES, EU_CAUSE_CHOICES, EU_EMOTION_CHOICES, DatasetItem
from ..taxonomy import EA_CATEGORIES, EU_CATEGORIES, SCENARIO_WORDS, is_known_emotion, split_emotion_label
from ..words import content_words
from .questions import is_emotion_question, question_slots
from .steps import StepReport, StepResult, run_check

TASK_CATEGORIES = {"EU": EU_CATEGORIES, "EA": EA_CATEGORIES}

# Word forms that name each emotion in running text (label leak, explanation consistency).
EMOTION_FORMS: dict[str, tuple[str, ...]] = {
    "acceptance": ("acceptance", "accepting"), "admiration": ("admiration", "admire", "admires", "admiring"),
    "amusement": ("amusement", "amused"), "anger": ("anger", "angry", "angered", "angrily"),
    "annoyance": ("annoyance", "annoyed"), "anticipation": ("anticipation", "anticipating"),
    "boredom": ("boredom", "bored"), "caring": ("caring",), "curiosity": ("curiosity", "curious"),
    "defiance": ("defiance", "defiant"), "delight": ("delight", "delighted"),
    "disappointment": ("disappointment", "disappointed"), "disapproval": ("disapproval", "disapproving"),
    "disgust": ("disgust", "disgusted"), "embarrassment": ("embarrassment", "embarrassed"),
    "envy": ("envy", "envious"), "excitement": ("excitement", "excited"),
    "fear": ("fear", "afraid", "fearful", "scared", "frightened"), "gratitude": ("gratitude", "grateful"),
    "grief": ("grief", "grieving"), "guilt": ("guilt", "guilty"), "hopeful": ("hopeful",),
    "hopeless": ("hopeless", "hopelessness"), "horror": ("horror", "horrified"), "hurt": ("hurt",),
    "indifferent": ("indifferent", "indifference"), "jealousy": ("jealousy", "jealous"),
    "joy": ("joy", "joyful", "joyous"), "loathe": ("loathe", "loathing"), "love": ("love", "loving"),
    "nervousness": ("nervousness", "nervous"), "oblivious": ("oblivious",),
    "pessimism": ("pessimism", "pessimistic"), "pride": ("pride", "proud"), "relief": ("relief", "relieved"),
    "remorse": ("remorse", "remorseful"), "resentment": ("resentment", "resentful"),
    "sadness": ("sadness", "sad"), "sentimental": ("sentimental",), "shame": ("shame", "ashamed"),
    "surprise": ("surprise", "surprised"), "trust": ("trust", "trusting"), "unbothered": ("unbothered",),
    "worry": ("worry", "worried"),
}
_NEGATION_BEFORE = re.compile(
    r"(?:\b(?:not|no|never|without|nor|hardly|rather than|instead of|lack of|isn't|wasn't|aren't|weren't|doesn't|"
    r"didn't|don't|won't|wouldn't)|n't)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_LETTER_REFERENCE = re.compile(
    r"\b(?i:option|answer|choice|letter)\s*(?:is\s*|:\s*)?\(?([A-H])\)?(?![\w'])|(?<![\w'])\(([A-H])\)(?![\w'])|"
    r"^\s*([A-H])\)", re.MULTILINE)


def _named_emotions(text: str, label: str) -> bool:
    """Whether ``text`` names (any part of) the emotion ``label`` outside a negation ("not angry")."""
    for part in split_emotion_label(label):
        for form in EMOTION_FORMS.get(part, (part,) if part else ()):
            for match in re.finditer(rf"\b{re.escape(form)}\b", text, re.IGNORECASE):
                if not _NEGATION_BEFORE.search(text[max(0, match.start() - 40):match.start()]):
                    return True
    return False


def check_required_fields(items: Sequence[DatasetItem]) -> StepResult:
    """An EmoBench category of the item's task (``unknown_category``); non-empty scenario, question and
    explanations; the right number of options: EmoBench-format EU items have 6 emotion and 4 cause choices, EA
    items 4 choices (``schemas``), MCQs 2-8 options."""
    def check(item: DatasetItem):
        if item.category not in TASK_CATEGORIES[item.task]:
            return "unknown_category", (f"{item.category!r} is not an {item.task} category "
                                        f"({', '.join(TASK_CATEGORIES[item.task])})")
        for name in ("scenario", "question", "explanation", "subject", "cause_explanation", "cause_label"):
            value = getattr(item, name)
            if value is not None and not value.strip():
                return "missing_field", f"{name} is empty"
        if not item.correct_answer.strip():
            return "missing_field", "correct_answer is empty"
        expected = {"emobench_eu": [("options", EU_EMOTION_CHOICES), ("cause_choices", EU_CAUSE_CHOICES)],
                    "emobench_ea": [("options", EA_CHOICES)]}.get(item.source_format, [])
        for name, count in expected:
            if len(getattr(item, name)) != count:
                return "option_count", f"{name} has {len(getattr(item, name))} entries, expected {count}"
        if not 2 <= len(item.options) <= 8:
            return "option_count", f"{len(item.options)} options, expected 2-8"
        return None
    return run_check("required fields", items, check)


def check_answer_in_options(items: Sequence[DatasetItem]) -> StepResult:
    """Each answer is one of its options. An answer that differs from an option only in case or spacing is
    rewritten to that option's spelling (a repair, not a drop; counted in ``notes["repaired"]``)."""
    repaired = []

    def check(item: DatasetItem):
        update = {}
        for slot, options, answer, _ in question_slots(item):
            if answer in options:
                continue
            same = [o for o in options if " ".join(o.split()).casefold() == " ".join(answer.split()).casefold()]
            if len(same) != 1:
                return "answer_not_in_options", f"{slot} answer {answer!r} is not one of {options}"
            if slot == "main":
                update |= {"correct_answer": same[0]} | (
                    {"emotion_label": same[0]} if item.source_format == "emobench_eu" else
                    {"label": same[0]} if item.source_format == "emobench_ea" else {})
            else:
                update["cause_label"] = same[0]
        if update:
            repaired.append(item.item_id)
            return item.model_copy(update=update)
        return None
    result = run_check("answer in options", items, check)
    result.report.notes["repaired"] = repaired
    return result


def check_options_distinct(items: Sequence[DatasetItem]) -> StepResult:
    """No two options of a question are the same (casefolded, whitespace-collapsed), none is empty."""
    def check(item: DatasetItem):
        for slot, options, _, _ in question_slots(item):
            normal = [" ".join(o.split()).casefold() for o in options]
            if any(not o for o in normal):
                return "duplicate_options", f"{slot} has an empty option"
            repeated = [o for o, n in Counter(normal).items() if n > 1]
            if repeated:
                return "duplicate_options", f"{slot} repeats {repeated}"
        return None
    return run_check("options distinct", items, check)


def check_emotion_labels(items: Sequence[DatasetItem]) -> StepResult:
    """Every emotion option and gold emotion is in the taxonomy (``taxonomy.is_known_emotion``: EmoBench's words
    plus the paper's mix-profile emotions, compounds allowed). Applies to emotion questions only."""
    def check(item: DatasetItem):
        if not is_emotion_question(item):
            return None
        unknown = [o for o in [*item.options, item.correct_answer] if not is_known_emotion(o)]
        if unknown:
            return "emotion_not_in_taxonomy", f"unknown emotion label(s) {sorted(set(unknown))}"
        return None
    return run_check("emotion labels in taxonomy", items, check)


def check_scenario_length(items: Sequence[DatasetItem], limits: tuple[int, int] = SCENARIO_WORDS) -> StepResult:
    """Scenario length within ``limits`` (shortest, longest) in whitespace-separated words; the paper's 50-500."""
    shortest, longest = limits
    if shortest > longest:
        raise ValueError(f"scenario length limits {limits}: the shortest is larger than the longest")

    def check(item: DatasetItem):
        words = len(item.scenario.split())
        if words < shortest:
            return "scenario_too_short", f"{words} words < {shortest}"
        if words > longest:
            return "scenario_too_long", f"{words} words > {longest}"
        return None
    result = run_check("scenario length", items, check)
    result.report.notes.update(min_words=shortest, max_words=longest)
    return result


def check_label_leak(items: Sequence[DatasetItem]) -> StepResult:
    """The scenario must not name the gold emotion outright ("...and she felt proud" when the answer is Pride):
    any part of the gold label, or a listed word form of it (``EMOTION_FORMS``), outside a negation."""
    def check(item: DatasetItem):
        if is_emotion_question(item) and _named_emotions(item.scenario, item.correct_answer):
            return "label_leak", f"the scenario names the answer {item.correct_answer!r}"
        return None
    return run_check("no label leak", items, check)


def check_no_letter_references(items: Sequence[DatasetItem]) -> StepResult:
    """Explanations must not cite options by letter ("option B", "(C)"): step 6 re-orders the options, after which
    a cited letter would point at the wrong option."""
    def check(item: DatasetItem):
        for slot, _, _, explanation in question_slots(item):
            match = _LETTER_REFERENCE.search(explanation)
            if match:
                return "explanation_cites_letter", f"{slot} explanation says {match.group(0).strip()!r}"
        return None
    return run_check("no letter references", items, check)


def explanation_contradiction(explanation: str, options: Sequence[str], answer: str, *, emotions: bool,
                              min_coverage: float = 0.6, margin: float = 0.34) -> str | None:
    """Why ``explanation`` argues for a different option than ``answer``, or None if it does not.

    Emotion questions: the explanation names at least one distractor emotion (not negated) and no part of the gold
    emotion. Other questions: the option whose content words the explanation covers best is a distractor,
    covering at least ``min_coverage`` of its words and ``margin`` more than the gold option. Explanations that
    name nothing are not judged (absence of evidence is not a contradiction).
    """
    if emotions:
        if _named_emotions(explanation, answer):
            return None
        named = [o for o in options if o != answer and _named_emotions(explanation, o)]
        return f"names {named} but not the answer {answer!r}" if named else None
    words = content_words(explanation)
    coverage = {o: len(content_words(o) & words) / max(1, len(content_words(o))) for o in options}
    best = max((o for o in options if o != answer), key=lambda o: coverage[o], default=None)
    if best is not None and coverage[best] >= min_coverage and coverage[best] >= coverage.get(answer, 0) + margin:
        return (f"matches distractor {best!r} ({coverage[best]:.0%} of its words) better than the answer "
                f"{answer!r} ({coverage.get(answer, 0):.0%})")
    return None


def check_explanation_consistency(items: Sequence[DatasetItem], *, min_coverage: float = 0.6,
                                  margin: float = 0.34) -> StepResult:
    """§3.3's self-contradiction filter: the option an explanation names or best matches must be the answer
    (see :func:`explanation_contradiction`)."""
    def check(item: DatasetItem):
        for slot, options, answer, explanation in question_slots(item):
            why = explanation_contradiction(explanation, options, answer, min_coverage=min_coverage, margin=margin,
                                            emotions=slot == "main" and is_emotion_question(item))
            if why:
                return "self_contradiction", f"{slot} explanation {why}"
        return None
    return run_check("explanation consistency", items, check)


def validate_items(items: Sequence[DatasetItem]) -> StepResult:
    """All validation filters in order; ``notes["steps"]`` holds each filter's report."""
    reports = []
    current = list(items)
    for step in (check_required_fields, check_answer_in_options, check_options_distinct, check_emotion_labels,
                 check_scenario_length, check_label_leak,
                 check_no_letter_references, check_explanation_consistency):
        current, report = step(current)
        reports.append(report)
    return StepResult(current, StepReport(step="validation", n_in=len(items), n_out=len(current),
                                          dropped=[d for r in reports for d in r.dropped],
                                          notes={"steps": [r.model_dump() for r in reports]}))


