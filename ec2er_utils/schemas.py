"""Item schemas shared by generation, preprocessing, training and evaluation.

``EUItem`` / ``EAItem`` are EmoBench's items with its own field names (``EU.jsonl`` / ``EA.jsonl``), as the
benchmark is read. ``DatasetItem`` is the one record of a training item, written by both generators (MADS in
EmoBench's EU/EA shape, concise as the paper's generic MCQ, §3.3) and read by preprocessing and training.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .taxonomy import EA_CATEGORIES, EA_QUESTION_TYPES, EU_CATEGORIES

EUCategory = Literal[EU_CATEGORIES]  # type: ignore[valid-type]
EACategory = Literal[EA_CATEGORIES]  # type: ignore[valid-type]
EAQuestionType = Literal[EA_QUESTION_TYPES]  # type: ignore[valid-type]
Language = Literal["en", "zh"]
SourceFormat = Literal["emobench_eu", "emobench_ea", "mcq"]
Qid = Annotated[str, BeforeValidator(str)]  # a qid given as a number (e.g. 7) is read as "7"

EU_EMOTION_CHOICES = 6  # EmoBench EU emotion questions
EU_CAUSE_CHOICES = 4  # what our extractors write; EmoBench itself has 4, 6 or 7 (60 + 61 of its 400 EU items)
EA_CHOICES = 4


def _distinct_nonempty(values: list[str], what: str) -> list[str]:
    cleaned = [v.strip() for v in values]
    if any(not v for v in cleaned):
        raise ValueError(f"{what} contains an empty option")
    if len({v.casefold() for v in cleaned}) != len(cleaned):
        raise ValueError(f"{what} contains duplicate options: {cleaned}")
    return cleaned


def _label_in(label: str, choices: list[str], what: str) -> None:
    if label.strip() not in choices:
        raise ValueError(f"{what} {label!r} is not one of the choices {choices}")


class EUItem(BaseModel):
    """An Emotional Understanding item in EmoBench's format: which emotion (6 choices) and why (4 choices)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    qid: Qid
    language: Language = "en"
    coarse_category: EUCategory
    finegrained_category: str = ""
    scenario: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    emotion_choices: list[str] = Field(min_length=EU_EMOTION_CHOICES, max_length=EU_EMOTION_CHOICES)
    emotion_label: str
    cause_choices: list[str] = Field(min_length=2, max_length=8)
    cause_label: str

    @model_validator(mode="after")
    def _labels_are_choices(self):
        self.emotion_choices = _distinct_nonempty(self.emotion_choices, "emotion_choices")
        self.cause_choices = _distinct_nonempty(self.cause_choices, "cause_choices")
        _label_in(self.emotion_label, self.emotion_choices, "emotion_label")
        _label_in(self.cause_label, self.cause_choices, "cause_label")
        return self


class EAItem(BaseModel):
    """An Emotional Awareness (application) item in EmoBench's format: the most effective action or response."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, populate_by_name=True,
                              serialize_by_alias=True)

    qid: Qid
    language: Language = "en"
    category: EACategory
    question_type: EAQuestionType = Field(alias="question type")  # EmoBench's key has a space
    scenario: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    choices: list[str] = Field(min_length=EA_CHOICES, max_length=EA_CHOICES)
    label: str

    @model_validator(mode="after")
    def _label_is_a_choice(self):
        self.choices = _distinct_nonempty(self.choices, "choices")
        _label_in(self.label, self.choices, "label")
        return self


class DatasetItem(BaseModel):
    """One training item, whichever pipeline and record shape it came from.

    The *training fields* (§3.3) hold the item's main question: an EmoBench-format EU item's emotion question, the
    EA question or the MCQ. EmoBench-native fields mirror them (EU: emotion_*; EA: choices/label) beside the EU
    cause question (cause_*), so an item converts back to EmoBench's format losslessly. The record is lenient
    about content (an answer outside the options is representable): chapter 03's filters reject it with a reason.
    """

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1)
    task: Literal["EU", "EA"]
    category: str  # EmoBench spelling: EU coarse_category or EA category
    source_format: SourceFormat
    # training fields (§3.3)
    scenario: str
    question: str
    options: list[str]
    correct_answer: str
    explanation: str
    # EmoBench-native fields
    subject: str | None = None
    finegrained_category: str | None = None
    emotion_choices: list[str] | None = None
    emotion_label: str | None = None
    emotion_explanation: str | None = None
    cause_choices: list[str] | None = None
    cause_label: str | None = None
    cause_explanation: str | None = None
    question_type: str | None = None  # EA: "Action" or "Response"
    choices: list[str] | None = None
    label: str | None = None
    # provenance
    pipeline: str | None = None  # "mads" or "concise"
    generator_model: str | None = None
    persona_id: str | None = None
    dialogue_id: str | None = None
    theme: str | None = None
    source: str | None = None  # "file:line" the item was first read from
    # quality (chapter 03): the §3.4 manual review and the LLM judge; None where not reviewed / not judged
    confidence: float | None = Field(None, ge=0, le=1)  # review: the annotators' mean confidence in the answer
    ambiguous: bool | None = None  # review: another option judged equally defensible, or the annotators disagreed
    quality_score: float | None = Field(None, ge=0, le=1)  # the LLM judge's rubric score

    @model_validator(mode="after")
    def _native_fields_mirror_training_fields(self):
        if self.source_format == "emobench_eu":
            missing = [name for name in ("subject", "cause_choices", "cause_label", "cause_explanation")
                       if getattr(self, name) is None]
            if missing or self.task != "EU":
                raise ValueError(f"an emobench_eu item needs task EU and {missing}")
            if (self.emotion_choices, self.emotion_label, self.emotion_explanation) != \
                    (self.options, self.correct_answer, self.explanation):
                raise ValueError("emotion_choices/emotion_label/emotion_explanation must equal "
                                 "options/correct_answer/explanation")
        elif self.source_format == "emobench_ea":
            if self.subject is None or self.question_type is None or self.task != "EA":
                raise ValueError("an emobench_ea item needs task EA, subject and question_type")
            if (self.choices, self.label) != (self.options, self.correct_answer):
                raise ValueError("choices/label must equal options/correct_answer")
        return self

    def with_options(self, options: list[str], cause_choices: list[str] | None = None) -> DatasetItem:
        """A copy with re-ordered options (and cause choices), mirrors kept in step."""
        update: dict[str, Any] = {"options": list(options)}
        if self.source_format == "emobench_eu":
            update["emotion_choices"] = list(options)
            if cause_choices is not None:
                update["cause_choices"] = list(cause_choices)
        elif self.source_format == "emobench_ea":
            update["choices"] = list(options)
        return self.model_copy(update=update)
