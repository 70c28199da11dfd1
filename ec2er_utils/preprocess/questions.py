"""What an item asks: its question slots, whether the main question is about an emotion, and the questions it
contributes to training in the paper's format (:mod:`ec2er_utils.formatting`)."""

from __future__ import annotations

import re

from ..formatting import LETTERS, Question, question_from_ea, questions_from_eu
from ..schemas import DatasetItem, EAItem, EUItem
from ..taxonomy import is_known_emotion


def question_slots(item: DatasetItem) -> list[tuple[str, list[str], str, str]]:
    """The item's questions as (slot, options, answer, explanation): "main", plus "cause" for EmoBench EU items."""
    slots = [("main", item.options, item.correct_answer, item.explanation)]
    if item.source_format == "emobench_eu":
        slots.append(("cause", item.cause_choices or [], item.cause_label or "", item.cause_explanation or ""))
    return slots


def lettered(options: list[str] | tuple[str, ...]) -> str:
    """Options one per line as "A) text"."""
    return "\n".join(f"{LETTERS[i]}) {text}" for i, text in enumerate(options))


def is_emotion_question(item: DatasetItem) -> bool:
    """Whether the item's main question asks which emotion: EmoBench-format EU items, and EU MCQs whose options
    are all emotion words, or whose question mentions "emotion(s)" and whose options are short labels."""
    if item.source_format == "emobench_eu":
        return True
    if item.source_format != "mcq" or item.task != "EU" or not item.options:
        return False
    if all(is_known_emotion(o) for o in item.options):
        return True
    # "Which emotion...?" with short, label-like options; a cause question has sentence-long options
    return bool(re.search(r"\bemotions?\b", item.question, re.IGNORECASE)) and all(
        len(o.split()) <= 3 for o in item.options)


def item_questions(item: DatasetItem) -> list[Question]:
    """The questions a training item contributes, in the paper's format: an EmoBench-format EU item gives its
    emotion and its cause question, an EA item one question, a generic MCQ one question."""
    if item.source_format == "emobench_eu":
        eu = EUItem(qid=item.item_id, coarse_category=item.category, finegrained_category=item.finegrained_category
                    or "", scenario=item.scenario, subject=item.subject, emotion_choices=item.options,
                    emotion_label=item.correct_answer, cause_choices=item.cause_choices, cause_label=item.cause_label)
        return list(questions_from_eu(eu, item.explanation, item.cause_explanation))
    if item.source_format == "emobench_ea":
        ea = EAItem(qid=item.item_id, category=item.category, question_type=item.question_type,
                    scenario=item.scenario, subject=item.subject, choices=item.options, label=item.correct_answer)
        return [question_from_ea(ea, item.explanation)]
    return [Question(item.scenario, item.question, tuple(item.options), item.options.index(item.correct_answer),
                     item.explanation, item.task)]
