"""The ``cloze`` protocols: each option's text scored as the answer, options not shown (raw and per character)."""

from __future__ import annotations

import pytest

from ec2er_utils.emobench import load_tasks
from ec2er_utils.evaluation import EvalConfig, evaluate, paper_questions
from ec2er_utils.evaluation.prompts import cloze_prompt
from ec2er_utils.formatting import LETTERS
from ec2er_utils.parameters import ParameterError
from tests.helpers import SHARED, needs_emobench



class LengthScorer:
    """Stands in for ChoiceScorer: each option's log-likelihood is -1 per character plus a bonus of 30 for the
    gold option, so the raw score prefers short options and the per-character score the gold one."""

    def __init__(self):
        self.asked = []

    def option_loglikelihoods(self, questions, **_options):
        self.asked += questions
        return [{letter: (-len(text) + (30 if i == q.answer_index else 0), len(text))
                 for i, (letter, text) in enumerate(zip(LETTERS, q.options, strict=False))} for q in questions]


@needs_emobench
def test_cloze_reads_raw_and_per_character_scores_and_ignores_option_orders(tmp_path):
    items = load_tasks(("EA",), "en", SHARED / "emobench", limit=8)["EA"]
    runs = {}
    for protocol in ("cloze", "cloze-norm"):
        scorer = LengthScorer()
        config = EvalConfig(adapter=None, protocol=protocol, tasks=("EA",), orders="cyclic", limit=8,
                            emobench_dir=SHARED / "emobench", out_dir=tmp_path / protocol, n_resamples=200)
        runs[protocol] = evaluate(config, scorer=scorer, progress=False)
        assert len(scorer.asked) == 8  # no letters shown: one order per item whatever `orders` says
        assert "orders" not in runs[protocol].leaderboards["EA"]["languages"]["en"]
    for item, raw, norm in zip(items, runs["cloze"].records("EA"), runs["cloze-norm"].records("EA"), strict=True):
        scores = {i: -len(t) + (30 if t == item.label else 0) for i, t in enumerate(item.choices)}
        assert raw.predicted["answer"] == "ABCD"[max(scores, key=scores.get)]
        assert norm.correct  # per character the gold bonus always wins
        assert norm.option_logprobs["answer"]["A"] == pytest.approx(scores[0] / len(item.choices[0]))


def test_cloze_needs_a_local_model():
    with pytest.raises((ValueError, ParameterError), match="log-probabilities from a local model"):
        EvalConfig(protocol="cloze", backend="openai", adapter=None, model="served")


@pytest.mark.slow
@needs_emobench
def test_cloze_loglikelihoods_equal_one_unpadded_forward_pass_per_option():
    import torch

    from ec2er_utils.evaluation import ChoiceScorer

    scorer = ChoiceScorer("smollm2", batch_size=3, dtype=torch.float32)  # several batches, padded
    items = load_tasks(("EU", "EA"), "en", SHARED / "emobench", limit=1)
    questions = [q for task_items in items.values() for item in task_items for q in paper_questions(item).values()]
    got = scorer.option_loglikelihoods(questions)
    tokenizer, model = scorer.tokenizer, scorer.hf_model
    for question, scores in zip(questions, got, strict=True):
        opened = tokenizer.apply_chat_template([{"role": "user", "content": cloze_prompt(question)}],
                                               tokenize=False, add_generation_prompt=True)
        assert "A)" not in opened and question.options[0] not in opened  # the options are not shown
        context = tokenizer(opened, add_special_tokens=False)["input_ids"]
        for letter, option in zip(LETTERS, question.options, strict=False):
            continuation = tokenizer(option, add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([context + continuation])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            expected = sum(float(logprobs[len(context) - 1 + k, token]) for k, token in enumerate(continuation))
            assert scores[letter][0] == pytest.approx(expected, abs=2e-3)
            assert scores[letter][1] == len(option)
