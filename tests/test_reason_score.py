"""The ``reason-score`` protocol: reasoning generated in the trained format, then the letters' log-probabilities
read where the trained JSON puts the answer."""

from __future__ import annotations

import json

import pytest

from ec2er_utils.emobench import load_tasks
from ec2er_utils.evaluation import EvalConfig, paper_questions, predict_reason_score
from ec2er_utils.evaluation.prompts import reasoned_answer_prefix
from ec2er_utils.evaluation.protocols import reasoning_of
from ec2er_utils.formatting import Question, assistant_response
from ec2er_utils.parameters import ParameterError
from tests.helpers import SHARED, ScriptedClient, needs_emobench



@pytest.mark.parametrize("explanation", ['She "liked" it.\nA lot — 很好', "Plain."])
def test_the_scored_prefix_is_the_trained_answer_up_to_its_letter(explanation):
    question = Question("A scene.", "Why?", ("one", "two", "three"), 2, explanation)
    trained = assistant_response(question)
    prefix = reasoned_answer_prefix(explanation)
    assert trained == prefix + 'C"\n}'


def test_reasoning_is_read_from_complete_and_cut_replies():
    assert reasoning_of(json.dumps({"reasoning": 'a "b"', "answer": "A"}, indent=2)) == ('a "b"', True)
    assert reasoning_of('{\n  "reasoning": "She felt \\"torn\\" and th') == ('She felt "torn" and th', False)
    assert reasoning_of('{\n  "reasoning": "ends in an escape \\') == ("ends in an escape ", False)
    assert reasoning_of("no JSON") == ("", False)
    assert reasoning_of(None) == ("", False)


class RecordingScorer:
    """Stands in for ChoiceScorer: favours the last letter, and records the reasonings it was given."""

    def __init__(self):
        self.reasonings = []

    def option_logprobs(self, questions, *, reasonings=None, **_options):
        self.reasonings += list(reasonings)
        return [{letter: float(i) for i, letter in enumerate("ABCDEFG"[:len(q.options)])} for q in questions]


@needs_emobench
def test_reason_score_scores_after_the_generated_reasoning_ignoring_the_generated_letter():
    items = load_tasks(("EU", "EA"), "en", SHARED / "emobench", limit=1)
    eu, ea = items["EU"][0], items["EA"][0]

    def script(call, index, conversation):
        prompt = conversation[0]["content"]  # the question (a re-ask appends turns after it)
        if "Why would" in prompt:  # the EU cause question: cut short by the token budget, every time
            return '{"reasoning": "Because she'
        return json.dumps({"reasoning": f"Thinking about {len(prompt)}.", "answer": "A"})

    scorer = RecordingScorer()
    records = predict_reason_score([eu, ea], ScriptedClient(script), scorer)
    assert [r.predicted for r in records] == [{"emotion": "F", "cause": "ABCDEFG"[len(eu.cause_choices) - 1]},
                                              {"answer": "D"}]  # the scorer's letters, not the generated "A"
    questions = [q for item in (eu, ea) for q in paper_questions(item).values()]
    from ec2er_utils.formatting import user_prompt

    assert scorer.reasonings[0] == f"Thinking about {len(user_prompt(questions[0]))}."
    assert scorer.reasonings[1] == "Because she"
    assert records[0].raw == {"emotion": scorer.reasonings[0], "cause": "Because she"}
    assert "reasoning incomplete (cause)" in records[0].detail and records[1].detail == ""
    assert all(r.status == "ok" and r.protocol == "reason-score" for r in records)


def test_reason_score_needs_a_local_model():
    with pytest.raises((ValueError, ParameterError), match="log-probabilities from a local model"):
        EvalConfig(protocol="reason-score", backend="openai", adapter=None, model="served")


@pytest.mark.slow
@needs_emobench
def test_reason_score_end_to_end_with_the_embedded_model(tmp_path):
    """Generation and scoring share one loaded model; the letters scored are those of a plain forward pass over
    the trained JSON with the generated reasoning in it."""
    import torch

    from ec2er_utils.evaluation import evaluate
    from ec2er_utils.evaluation.choice import ChoiceScorer

    config = EvalConfig(adapter=None, protocol="reason-score", tasks=("EA",), limit=2, orders="original",
                        max_tokens=40, emobench_dir=SHARED / "emobench", out_dir=tmp_path, n_resamples=200)
    run = evaluate(config, progress=False)
    records = run.records("EA", "en")
    assert len(records) == 2 and all(r.raw["answer"] for r in records)  # some reasoning was generated
    scorer = ChoiceScorer("smollm2")
    items = load_tasks(("EA",), "en", SHARED / "emobench", limit=2)["EA"]
    for item, record in zip(items, records, strict=True):
        question = paper_questions(item)["answer"]
        prompt = scorer.prompt(question, record.raw["answer"])
        assert prompt.endswith('",\n  "answer": "')
        ids = scorer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = scorer.hf_model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        reference = torch.log_softmax(logits, dim=-1)
        expected = {letter: float(reference[scorer.letter_id(letter)]) for letter in "ABCD"}
        assert max(abs(record.option_logprobs["answer"][k] - v) for k, v in expected.items()) < 0.1
