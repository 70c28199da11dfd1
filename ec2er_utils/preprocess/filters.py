"""Step 2, validation (§3.3): each filter drops the items that break one rule, with the reason and file:line.

:func:`validate_items` runs them in order (the list: README, chapter 03). Label leak, letter citations and
explanation consistency make §3.3's "self-contradictory explanations" filter concrete; they are heuristics, and
their docstrings say how they decide.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ..formatting import LETTERS
from ..schemas import EA_CHOICES, EU_CAUSE_CHOICES, EU_EMOTION_CHOICES, DatasetItem
from ..taxonomy import SCENARIO_WORDS, TASK_CATEGORIES, is_known_emotion, split_emotion_label
from ..words import content_words
from .dedup import normalise_for_matching
from .questions import is_emotion_question, question_slots
from .steps import StepResult, run_check, run_steps

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
    r"\b(?i:options?|answers?|choices?|letters?)\s*(?:is\s*|:\s*)?\(?([A-H])\)?(?![\w'])|"
    r"(?<![\w'])\(([A-H])\)(?![\w'])|^\s*([A-H])\)", re.MULTILINE)
# An answer written as a letter: "B", "(B)", "B)", "Option B", "B) Relief", "B. Relief".
_LETTER_ANSWER = re.compile(r"^\s*(?:(?i:option|answer|choice)\s*:?\s*)?\(?([A-H])\)?(?:[.):]\s*(.*?))?\s*$",
                            re.DOTALL)
# Where an explanation states its conclusion: what follows the last of these is what it argues for.
_CONCLUSION = re.compile(
    r"\b(?:therefore|thus|hence|ultimately|in the end|which is why|that is why|the answer is|"
    r"the (?:most (?:effective|appropriate|helpful|likely)|best|right|correct)\b|"
    r"so (?:she|he|they|the|it|her|his|their|this|that|what)\b)", re.IGNORECASE)
# A negated clause ("not confront the bullies herself") argues against its words, so coverage ignores it.
_NEGATED_CLAUSE = re.compile(
    r"\b(?:not|never|rather than|instead of|no need to|(?:is|was|are|were|do|does|did|should|would|could|wo|ca)"
    r"n't)\b[^.;,:!?]*", re.IGNORECASE)


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
    items 4 choices in either format (``schemas``; EmoBench's EA questions all have 4), EU MCQs 2-8 options."""
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
        if item.task == "EA" and item.source_format == "mcq":
            expected = [("options", EA_CHOICES)]
        for name, count in expected:
            if len(getattr(item, name)) != count:
                return "option_count", f"{name} has {len(getattr(item, name))} entries, expected {count}"
        if not 2 <= len(item.options) <= 8:
            return "option_count", f"{len(item.options)} options, expected 2-8"
        return None
    return run_check("required fields", items, check)


def letter_answer(answer: str, options: Sequence[str]) -> tuple[str | None, str]:
    """The option a letter answer names ("B", "(B)", "Option B", "B) Relief"), or None and why not.

    Unambiguous only when the letter is within the options, no option is itself a single letter (options "A",
    "B" would make "B" a text answer), and any text after the letter is that option's."""
    match = _LETTER_ANSWER.match(answer)
    if not match:
        return None, "not a letter"
    letter, text = match.group(1), (match.group(2) or "").strip()
    index = LETTERS.index(letter)
    if index >= len(options):
        return None, f"letter {letter} but only {len(options)} options"
    if any(re.fullmatch(r"\(?[A-Ha-h]\)?", o.strip()) for o in options):
        return None, "the options themselves are letters, so the letter is ambiguous"
    if text and normalise_for_matching(text) != normalise_for_matching(options[index]):
        return None, f"letter {letter} is {options[index]!r}, not {text!r}"
    return options[index], f"letter {letter}"


def check_answer_in_options(items: Sequence[DatasetItem]) -> StepResult:
    """Each answer is one of its options. Two answers are repaired, not dropped: one that differs from an option
    only in case or spacing takes that option's spelling, and a letter answer ("B", "Option B", "B) Relief"; the
    commonest generator output) becomes the option it names when that is unambiguous (:func:`letter_answer`).
    ``notes["repaired"]`` lists the repaired items, ``notes["letter_answers"]`` those mapped from a letter."""
    repaired, letters = [], []

    def check(item: DatasetItem):
        update = {}
        for slot, options, answer, _ in question_slots(item):
            if answer in options:
                continue
            same = [o for o in options if normalise_for_matching(o) == normalise_for_matching(answer)]
            if not same:
                mapped, why = letter_answer(answer, options)
                if mapped is None:
                    extra = "" if why == "not a letter" else f" ({why})"
                    return "answer_not_in_options", f"{slot} answer {answer!r} is not one of {options}{extra}"
                same = [mapped]
                letters.append(item.item_id)
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
    result.report.notes["letter_answers"] = sorted(set(letters))
    return result


def check_options_distinct(items: Sequence[DatasetItem]) -> StepResult:
    """No two options of a question are the same (casefolded, whitespace-collapsed), none is empty."""
    def check(item: DatasetItem):
        for slot, options, _, _ in question_slots(item):
            normal = [normalise_for_matching(o) for o in options]
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


def cited_letters(explanation: str) -> list[str]:
    """The option letters an explanation cites ("option B", "(C)", "D)" at a line start), in order."""
    return [next(g for g in m.groups() if g) for m in _LETTER_REFERENCE.finditer(explanation)]


def rewrite_letter_citations(explanation: str, new_letter: dict[str, str]) -> str:
    """``explanation`` with every cited letter replaced by ``new_letter[letter]`` (all at once, so swapping B and
    D works); only the letter changes, "Option B is" becomes "Option D is"."""
    def replace(match: re.Match) -> str:
        group = next(i for i in range(1, 4) if match.group(i))
        start, end = match.start(group) - match.start(), match.end(group) - match.start()
        text = match.group(0)
        return text[:start] + new_letter.get(match.group(group), match.group(group)) + text[end:]
    return _LETTER_REFERENCE.sub(replace, explanation)


def check_letter_references(items: Sequence[DatasetItem]) -> StepResult:
    """Explanations that cite options by letter ("option B", "(C)") are kept: step 8 (answer positions) re-orders
    the options and rewrites each cited letter to where its option went (:func:`rewrite_letter_citations`). Only
    an explanation citing a letter its question does not have ("option F" of 4 options) is dropped
    (``explanation_cites_letter``): there is no option to follow, so no rewrite is possible.
    ``notes["cites_letters"]`` lists the items whose citations will be rewritten."""
    citing = []

    def check(item: DatasetItem):
        cites = False
        for slot, options, _, explanation in question_slots(item):
            for letter in cited_letters(explanation):
                if LETTERS.index(letter) >= len(options):
                    return "explanation_cites_letter", (f"{slot} explanation cites option {letter}, but the question "
                                                        f"has {len(options)} options: the citation cannot be "
                                                        "rewritten when the options are re-ordered")
                cites = True
        if cites:
            citing.append(item.item_id)
        return None
    result = run_check("letter references", items, check)
    result.report.notes["cites_letters"] = citing
    return result


def conclusion(explanation: str) -> str | None:
    """What follows the explanation's last conclusion marker ("so she", "therefore", "the most effective",
    "ultimately", ...), or None when it has none."""
    markers = list(_CONCLUSION.finditer(explanation))
    return explanation[markers[-1].start():] if markers else None


def _emotion_contradiction(text: str, options: Sequence[str], answer: str) -> list[str] | None:
    """The distractors ``text`` names when it does not name the answer; None when it names the answer."""
    if _named_emotions(text, answer):
        return None
    return [o for o in options if o != answer and _named_emotions(text, o)]


def _coverage_contradiction(text: str, options: Sequence[str], answer: str, min_coverage: float,
                            margin: float) -> str | None:
    words = content_words(_NEGATED_CLAUSE.sub(" ", text))
    coverage = {o: len(content_words(o) & words) / max(1, len(content_words(o))) for o in options}
    best = max((o for o in options if o != answer), key=lambda o: coverage[o], default=None)
    if best is not None and coverage[best] >= min_coverage and coverage[best] >= coverage.get(answer, 0) + margin:
        return (f"matches distractor {best!r} ({coverage[best]:.0%} of its words) better than the answer "
                f"{answer!r} ({coverage.get(answer, 0):.0%})")
    return None


def explanation_contradiction(explanation: str, options: Sequence[str], answer: str, *, emotions: bool,
                              min_coverage: float = 0.6, margin: float = 0.34) -> str | None:
    """Why ``explanation`` argues for a different option than ``answer``, or None if it does not.

    Emotion questions: the explanation names at least one distractor emotion (not negated) and no part of the gold
    emotion; or its conclusion (:func:`conclusion`: "..., but ultimately she feels embarrassment") names a
    distractor and not the gold one. Other questions: the option whose content words the explanation (or its
    conclusion) covers best is a distractor, covering at least ``min_coverage`` of its words and ``margin`` more
    than the gold option; words in negated clauses ("rather than confront the bullies") do not count.
    Explanations that name nothing are not judged (absence of evidence is not a contradiction).
    """
    end = conclusion(explanation)
    if emotions:
        named = _emotion_contradiction(end, options, answer) if end else None
        if named:
            return f"concludes {end.strip()!r}, naming {named} but not the answer {answer!r}"
        named = _emotion_contradiction(explanation, options, answer)
        return f"names {named} but not the answer {answer!r}" if named else None
    if end:
        why = _coverage_contradiction(end, options, answer, min_coverage, margin)
        if why:
            return f"concludes {end.strip()!r}, which {why}"
    return _coverage_contradiction(explanation, options, answer, min_coverage, margin)


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
    result = run_steps("validation", items, (
        check_required_fields, check_answer_in_options, check_options_distinct, check_emotion_labels,
        check_scenario_length, check_label_leak, check_letter_references, check_explanation_consistency))
    result.report.notes = {"steps": [r.model_dump() for r in result.report.notes["reports"]]}
    return result
