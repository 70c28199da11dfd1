"""The quality gate's LLM judge (§3.3: "questions are grammatical and unambiguous, and distractors ... plausible
but distinctly wrong"): a model behind :func:`ec2er_utils.llm.make_client` scores every question of every item on
a four-criterion rubric (:class:`JudgeVerdict`, greedy); an item scores as its weakest question. What it means for
the demo, and the departure from the paper: README, chapter 03.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from ..formatting import Question
from ..llm import LLMClient, LLMError, LLMRequestError, make_client
from ..schemas import DatasetItem
from .questions import item_questions, lettered
from .steps import StepReport, StepResult, drop

JUDGE_SYSTEM_PROMPT = """\
You review multiple-choice questions written for a dataset that teaches emotional reasoning. Each question has a \
scenario, a question, lettered options, the answer the author marked as correct, and the author's explanation.

Score the question on four criteria, each from 1 (bad) to 5 (good):
- grammar: the scenario, question, options and explanation are complete, grammatical English sentences or \
phrases, with no cut-off words, repeated words or nonsense words.
- unambiguous: given the scenario, exactly one option is clearly the best answer, and it is the marked one.
- distractors_plausible: every other option is plausible at first sight but distinctly wrong given the scenario.
- explanation_supports_answer: the explanation reasons from details in the scenario to the marked answer, \
without inventing facts and without arguing for another option.

Answer with the four scores. Be strict: a question with any real problem must not get 5 on the criterion it \
breaks."""

JUDGE_USER_TEMPLATE = """\
Scenario: {scenario}

Question: {question}

Options:
{options}

Marked answer: {answer}

Explanation: {explanation}"""

Score = Literal[1, 2, 3, 4, 5]
CRITERIA = ("grammar", "unambiguous", "distractors_plausible", "explanation_supports_answer")
REASONING_KEPT = 600  # characters of a reasoning model's reasoning kept per verdict in the report
JUDGE_MAX_TOKENS = 64  # the verdict of an in-process model: four digits in JSON (~32 tokens)
# A served judge may reason before its verdict, and vLLM counts gpt-oss-20b's reasoning against max_tokens: 64 would
# cut every verdict off. Structured output ends a verdict at its closing brace, so a model that does not reason
# spends no more. Not measured (no GPU here): a guess, like the token budgets of recipes/paper/01_mads.yaml.
JUDGE_SERVER_MAX_TOKENS = 2048


class JudgeVerdict(BaseModel):
    """The judge's reply for one question: the rubric's four scores. No free-text field: each generated token
    costs a decoding step, and on a CPU the steps are the judge's cost; a reasoning model (gpt-oss) reasons in
    its own channel, which the step keeps in its notes."""

    grammar: Score
    unambiguous: Score
    distractors_plausible: Score
    explanation_supports_answer: Score

    @property
    def score(self) -> float:
        """The mean of the four criteria, mapped from 1-5 to 0-1."""
        return (sum(getattr(self, c) for c in CRITERIA) / len(CRITERIA) - 1) / 4


class JudgeUnavailable(RuntimeError):
    """The judge could not be reached for any question: a missing server, a wrong URL or model name."""


def judge_messages(question: Question) -> list[dict[str, str]]:
    """The judge's conversation for one question (system rubric, then the question with its marked answer)."""
    answer = f"{question.answer_letter}) {question.options[question.answer_index]}"
    user = JUDGE_USER_TEMPLATE.format(scenario=question.scenario, question=question.question,
                                      options=lettered(question.options), answer=answer,
                                      explanation=question.explanation or "")
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def make_judge_client(backend: str, model: str | None = None, *, base_url: str | None = None, seed: int = 0,
                      batch_size: int = 16) -> LLMClient:
    """The judge's client: greedy, one re-ask, ``max_tokens`` sized for a verdict (:data:`JUDGE_MAX_TOKENS`; a
    server's model may reason first: :data:`JUDGE_SERVER_MAX_TOKENS`). ``local``: ``model`` is an alias, a Hugging
    Face id or a folder (None: the embedded model); ``openai``: the served model's name, at ``base_url`` (None:
    ``OPENAI_BASE_URL``), the key from ``OPENAI_API_KEY``."""
    common = dict(temperature=0.0, max_tokens=JUDGE_MAX_TOKENS, seed=seed, max_reasks=1, progress=False)
    if backend == "local":
        return make_client("local", model, batch_size=batch_size, **common)
    if backend == "openai":
        if not model:
            raise ValueError("judge_backend 'openai' needs judge_model, the name the server serves (e.g. "
                             "'openai/gpt-oss-20b')")
        return make_client("openai", model, base_url=base_url, **dict(common, max_tokens=JUDGE_SERVER_MAX_TOKENS))
    return make_client(backend, model, **common)  # raises the client's "unknown backend" error


def judge_items(items: Sequence[DatasetItem], client: LLMClient | None, *, threshold: float = 0.75,
                min_keep: int = 0) -> StepResult:
    """Score every question of every item with ``client``; keep the items scoring at least ``threshold``, and at
    least the ``min_keep`` best-scored ones (ties: the earlier item). Kept items get ``quality_score``. A reply still
    invalid after the client's re-asks drops its item (``judge_error``); a judge that fails every request raises
    :class:`JudgeUnavailable`. ``client=None`` disables the step (items pass unscored)."""
    if client is None:
        return StepResult(list(items), StepReport(step="quality judge", n_in=len(items), n_out=len(items),
                                                  notes={"disabled": True}))
    questions = [(index, question) for index, item in enumerate(items) for question in item_questions(item)]
    start = time.perf_counter()
    tokens_before = client.usage.total_tokens
    answers = client.chat_many([judge_messages(q) for _, q in questions], schema=JudgeVerdict) if questions else []
    seconds = time.perf_counter() - start
    if answers and all(isinstance(a, LLMRequestError) for a in answers):
        raise JudgeUnavailable(f"the judge ({client!r}) failed every request, e.g. {answers[0]}. Start its server "
                               "or fix judge_base_url / judge_model, or set judge_backend = None to skip the judge.")
    verdicts: dict[int, list[dict[str, Any]]] = {}
    errors: dict[int, str] = {}
    for (index, question), answer in zip(questions, answers, strict=True):
        if isinstance(answer, LLMError):
            errors.setdefault(index, f"{question.kind}: {type(answer).__name__}: {str(answer)[:200]}")
            continue
        verdict: JudgeVerdict = answer.data
        verdicts.setdefault(index, []).append({"question": question.kind, "score": round(verdict.score, 4),
                                               **verdict.model_dump(),
                                               "reasoning": (answer.reasoning or "")[:REASONING_KEPT]})
    scores = {index: min(v["score"] for v in vs) for index, vs in verdicts.items() if index not in errors}
    passing = sum(score >= threshold for score in scores.values())
    below = sorted((i for i in scores if scores[i] < threshold), key=lambda i: (-scores[i], i))
    floor = set(below[:max(0, min_keep - passing)])
    kept, dropped = [], []
    for index, item in enumerate(items):
        if index in errors:
            dropped.append(drop(item, "judge_error", errors[index]))
            continue
        score = scores[index]
        if score < threshold and index not in floor:
            worst = min(verdicts[index], key=lambda v: v["score"])
            dropped.append(drop(item, "judge_below_threshold",
                                f"score {score:.2f} < {threshold} ({worst['question']}: "
                                + ", ".join(f"{c} {worst[c]}" for c in CRITERIA) + ")"))
        else:
            kept.append(item.model_copy(update={"quality_score": score}))
    every = [v for vs in verdicts.values() for v in vs]
    notes = {"model": client.model, "backend": client.backend, "threshold": threshold, "min_keep": min_keep,
             "kept_below_threshold": [items[i].item_id for i in sorted(floor)],
             "questions": len(questions), "seconds": round(seconds, 2),
             "tokens": client.usage.total_tokens - tokens_before,
             "criteria_means": {c: round(sum(v[c] for v in every) / len(every), 3) if every else None
                                for c in CRITERIA},
             "scores": {items[i].item_id: score for i, score in scores.items()},
             "verdicts": {items[i].item_id: vs for i, vs in verdicts.items()}}
    return StepResult(kept, StepReport(step="quality judge", n_in=len(items), n_out=len(kept), dropped=dropped,
                                       notes=notes))
