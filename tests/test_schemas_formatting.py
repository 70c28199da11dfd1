"""Item schemas accept EmoBench's own items and reject broken ones; the paper's prompt format."""

import json

import pytest
from pydantic import ValidationError

from ec2er_utils.formatting import (assistant_response, chat_messages, question_from_ea, questions_from_eu,
                                    response_schema, user_prompt)
from ec2er_utils.paths import shared_dir
from ec2er_utils.schemas import EAItem, EUItem

EMOBENCH = shared_dir() / "emobench" if shared_dir() else None
needs_emobench = pytest.mark.skipif(EMOBENCH is None, reason="../shared/emobench not present")

EU = {"qid": 7, "language": "en", "coarse_category": "complex_emotions", "finegrained_category": "emotion_transition",
      "scenario": "Dorea's baklava was ruined, but her daughter tasted it and gave a thumbs-up.", "subject": "Dorea",
      "emotion_choices": ["Delight", "Anger", "Embarrassment", "Hopeless", "Pride", "Disappointment"],
      "emotion_label": "Delight", "cause_choices": ["a", "b", "c", "d"], "cause_label": "b"}
EA = {"qid": "1", "language": "en", "category": "Personal-Others", "question type": "Action",
      "scenario": "Sarah's brother is bullied.", "subject": "Sarah", "choices": ["w", "x", "y", "z"], "label": "z"}


@needs_emobench
@pytest.mark.parametrize("task,model", [("EU", EUItem), ("EA", EAItem)])
def test_every_emobench_item_validates(task, model):
    lines = (EMOBENCH / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()
    items = [model.model_validate_json(line) for line in lines]
    assert len(items) == 400


def test_ea_round_trips_emobench_key_with_a_space():
    item = EAItem.model_validate(EA)
    assert item.question_type == "Action" and item.qid == "1"
    assert item.model_dump()["question type"] == "Action"


@pytest.mark.parametrize("change,problem", [
    ({"emotion_label": "Joy"}, "not one of the choices"),
    ({"emotion_choices": ["A", "B", "C", "D", "E"]}, "at least 6"),
    ({"emotion_choices": ["Delight", "delight", "C", "D", "E", "F"]}, "duplicate"),
    ({"coarse_category": "feelings"}, "coarse_category"),
    ({"cause_choices": ["a", "b", "c", " "]}, "empty option"),
])
def test_broken_eu_items_are_rejected_with_the_reason(change, problem):
    with pytest.raises(ValidationError, match=problem):
        EUItem.model_validate({**EU, **change})


def test_eu_item_becomes_emotion_and_cause_questions_in_the_paper_format():
    emotion, cause = questions_from_eu(EUItem.model_validate(EU), "She is moved.", "The thumbs-up.")
    prompt = user_prompt(emotion)
    assert prompt.startswith("<scenario>\nDorea's baklava")
    assert "<question>\nWhat emotion(s) would Dorea ultimately feel in this situation?\n</question>" in prompt
    assert "A) Delight\nB) Anger" in prompt and "F) Disappointment\n</options>" in prompt
    assert '"answer": "A/B/C/D/E/F"' in prompt  # 6 options, lettered A-F (a documented departure)
    assert '"answer": "A/B/C/D"' in user_prompt(cause)
    assert json.loads(assistant_response(emotion)) == {"reasoning": "She is moved.", "answer": "A"}
    assert json.loads(assistant_response(cause)) == {"reasoning": "The thumbs-up.", "answer": "B"}


def test_ea_question_and_chat_messages():
    question = question_from_ea(EAItem.model_validate(EA), "A counselor can act safely.")
    assert question.question == "In this scenario, what is the most effective action for Sarah?"
    messages = chat_messages(question, with_answer=True)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert json.loads(messages[1]["content"])["answer"] == "D"
    assert chat_messages(question, with_answer=False)[-1]["role"] == "user"
    with pytest.raises(ValueError, match="explanation"):
        assistant_response(question_from_ea(EAItem.model_validate(EA)))


def test_response_schema_restricts_letters():
    import jsonschema

    schema = response_schema(6)
    jsonschema.validate({"reasoning": "r", "answer": "F"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"reasoning": "r", "answer": "G"}, schema)
