"""The paper's instruction format (§5), shared by training (04) and the ``paper`` evaluation protocol (05): the
user turn (:func:`user_prompt`: scenario, question and lettered options in tags, then the JSON to answer with) and
the assistant turn (the item's explanation as reasoning, then the letter). Letters and the EU item's two questions:
README, chapter 04 (departures from the paper).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass

from .schemas import EAItem, EUItem

LETTERS = string.ascii_uppercase

EU_EMOTION_QUESTION = "What emotion(s) would {subject} ultimately feel in this situation?"
EU_CAUSE_QUESTION = "Why would {subject} feel this way in this situation?"
EA_QUESTION = "In this scenario, what is the most effective {question_type} for {subject}?"


@dataclass(frozen=True)
class Question:
    """One multiple-choice question in the paper's format: what a model is trained on and evaluated with."""

    scenario: str
    question: str
    options: tuple[str, ...]
    answer_index: int | None = None  # None when the gold answer is unknown (inference)
    explanation: str | None = None
    kind: str = ""  # "EU-emotion", "EU-cause", "EA" or the MCQ's task

    @property
    def answer_letter(self) -> str | None:
        return None if self.answer_index is None else LETTERS[self.answer_index]


def option_letters(n: int) -> str:
    if not 2 <= n <= len(LETTERS):
        raise ValueError(f"a question needs between 2 and {len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def user_prompt(question: Question) -> str:
    """The user turn of the paper's template, lettered for as many options as the question has."""
    letters = option_letters(len(question.options))
    options = "\n".join(f"{letter}) {text}" for letter, text in zip(letters, question.options, strict=True))
    answer_hint = "/".join(letters)
    return (f"<scenario>\n{question.scenario}\n</scenario>\n\n"
            f"<question>\n{question.question}\n</question>\n\n"
            f"<options>\n{options}\n</options>\n\n"
            "Generate a JSON response with:\n"
            "{\n"
            '  "reasoning": "<reasoning>",\n'
            f'  "answer": "{answer_hint}"\n'
            "}")


def assistant_response(question: Question) -> str:
    """The assistant turn the model is trained to produce: the explanation as reasoning, then the letter."""
    if question.answer_index is None or not question.explanation:
        raise ValueError("a training response needs the gold answer and an explanation")
    return json.dumps({"reasoning": question.explanation, "answer": question.answer_letter}, ensure_ascii=False,
                      indent=2)


def response_schema(n_options: int) -> dict:
    """JSON schema of the answer, for constrained decoding and validation."""
    return {"title": "Answer", "type": "object", "additionalProperties": False,
            "properties": {"reasoning": {"type": "string"},
                           "answer": {"type": "string", "enum": list(option_letters(n_options))}},
            "required": ["reasoning", "answer"]}


def questions_from_eu(item: EUItem, emotion_explanation: str | None = None,
                      cause_explanation: str | None = None) -> tuple[Question, Question]:
    """An EU item as its emotion question (6 options) and its cause question (4; 6 or 7 in some EmoBench items)."""
    emotion = Question(item.scenario, EU_EMOTION_QUESTION.format(subject=item.subject), tuple(item.emotion_choices),
                       item.emotion_choices.index(item.emotion_label),
                       emotion_explanation, "EU-emotion")
    cause = Question(item.scenario, EU_CAUSE_QUESTION.format(subject=item.subject), tuple(item.cause_choices),
                     item.cause_choices.index(item.cause_label),
                     cause_explanation, "EU-cause")
    return emotion, cause


def question_from_ea(item: EAItem, explanation: str | None = None) -> Question:
    """An EA item as one question over its 4 choices."""
    text = EA_QUESTION.format(question_type=item.question_type.lower(), subject=item.subject)
    return Question(item.scenario, text, tuple(item.choices), item.choices.index(item.label),
                    explanation, "EA")


def chat_messages(question: Question, *, with_answer: bool) -> list[dict[str, str]]:
    """Chat turns for a question: the user prompt, plus the assistant answer when training."""
    messages = [{"role": "user", "content": user_prompt(question)}]
    if with_answer:
        messages.append({"role": "assistant", "content": assistant_response(question)})
    return messages
