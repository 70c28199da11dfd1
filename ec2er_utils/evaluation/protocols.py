"""The evaluation protocols (README, chapter 05): one ``predict_<protocol>`` function per protocol, each turning a
chunk of EmoBench items into :class:`~ec2er_utils.evaluation.scoring.Prediction` records, one per item (an EU item
is two questions, emotion and cause; an EA item one)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..emobench import EmoBenchItem, category_of, chance_accuracy, task_of
from ..formatting import Question, chat_messages, response_schema
from ..llm import ChatResult, LLMClient, LLMError, LLMInvalidJSONError
from . import parsing
from .choice import ChoiceScorer, best_letter
from .prompts import OFFICIAL_MAX_NEW_TOKENS, gold_letters, official_messages, paper_questions
from .scoring import DEFAULT_SEED, Prediction

PAPER_MAX_TOKENS = 384
OFFICIAL_RETRY_TEMPERATURE = 0.6  # the temperature the official harness uses for API models


def _questions(items: Sequence[EmoBenchItem]) -> list[tuple[int, str, Question]]:
    """Every question of the chunk as (item index, part, question), part "emotion" and "cause" (EU) or "answer" (EA)."""
    return [(index, part, question) for index, item in enumerate(items)
            for part, question in paper_questions(item).items()]


def _record(item: EmoBenchItem, protocol: str, **fields: Any) -> Prediction:
    return Prediction(qid=item.qid, language=item.language, task=task_of(item),
                      category=category_of(item), protocol=protocol, gold=gold_letters(item),
                      chance=chance_accuracy(item), **fields)


def predict_choice(items: Sequence[EmoBenchItem], scorer: ChoiceScorer, *, progress: bool = False,
                   ) -> list[Prediction]:
    """``choice`` protocol: one forward pass per question, all questions of the chunk batched together."""
    questions = _questions(items)
    logprobs = scorer.option_logprobs([q for _, _, q in questions], progress=progress)
    per_item: list[dict[str, dict[str, float]]] = [{} for _ in items]
    for (index, part, _), scores in zip(questions, logprobs, strict=True):
        per_item[index][part] = scores
    return [_record(item, "choice", predicted={part: best_letter(s) for part, s in scores.items()},
                    option_logprobs=scores)
            for item, scores in zip(items, per_item, strict=True)]


def predict_cloze(items: Sequence[EmoBenchItem], scorer: ChoiceScorer, *, normalise: bool = False,
                  progress: bool = False) -> list[Prediction]:
    """``cloze`` protocol: the option whose text is most likely as the answer, options not shown; ``normalise``
    divides each log-likelihood by the option's length in characters (``cloze-norm``, lm-evaluation-harness's
    ``acc_norm``). ``option_logprobs`` holds the scores compared."""
    questions = _questions(items)
    likelihoods = scorer.option_loglikelihoods([q for _, _, q in questions], progress=progress)
    per_item: list[dict[str, dict[str, float]]] = [{} for _ in items]
    for (index, part, _), options in zip(questions, likelihoods, strict=True):
        per_item[index][part] = {letter: total / chars if normalise else total
                                 for letter, (total, chars) in options.items()}
    protocol = "cloze-norm" if normalise else "cloze"
    return [_record(item, protocol, predicted={part: best_letter(s) for part, s in scores.items()},
                    option_logprobs=scores)
            for item, scores in zip(items, per_item, strict=True)]


def reasoning_of(raw: str | None) -> tuple[str, bool]:
    """The ``"reasoning"`` value of a ``paper`` reply, and whether the reply was complete JSON; from a reply cut
    short (token budget), the reasoning written so far."""
    try:
        data = json.loads(raw or "")
        if isinstance(data, dict) and isinstance(data.get("reasoning"), str):
            return data["reasoning"], True
    except ValueError:
        pass
    found = re.search(r'"reasoning"\s*:\s*"((?:[^"\\]|\\.)*)', raw or "")
    if found is None:
        return "", False
    text = found.group(1).rstrip("\\")
    try:
        return json.loads(f'"{text}"'), False
    except ValueError:
        return text, False


def predict_reason_score(items: Sequence[EmoBenchItem], client: LLMClient, scorer: ChoiceScorer, *,
                         temperature: float = 0.0, max_tokens: int | None = None, seed: int = DEFAULT_SEED,
                         progress: bool = False) -> list[Prediction]:
    """``reason-score`` protocol: each question's reasoning is generated as ``paper`` does, then the option letters'
    log-probabilities are read where ``"answer": "`` follows it in the trained JSON; a reasoning cut short by the
    token budget is used as far as it goes (``detail`` says so). ``raw`` holds the reasoning per question."""
    generated = predict_paper(items, client, temperature=temperature, max_tokens=max_tokens, seed=seed)
    questions = _questions(items)
    reasonings = []
    for index, part, _ in questions:
        raw = generated[index].raw
        reasonings.append(reasoning_of(raw.get(part) if isinstance(raw, dict) else raw))
    logprobs = scorer.option_logprobs([q for _, _, q in questions], reasonings=[r for r, _ in reasonings],
                                      progress=progress)
    per_item: list[dict[str, Any]] = [{"scores": {}, "raw": {}, "cut": []} for _ in items]
    for (index, part, _), scores, (reasoning, complete) in zip(questions, logprobs, reasonings, strict=True):
        per_item[index]["scores"][part] = scores
        per_item[index]["raw"][part] = reasoning
        if not complete:
            per_item[index]["cut"].append(part)
    return [_record(item, "reason-score", predicted={part: best_letter(s) for part, s in done["scores"].items()},
                    option_logprobs=done["scores"], raw=done["raw"],
                    detail=f"reasoning incomplete ({', '.join(done['cut'])}): scored as far as it went"
                    if done["cut"] else "")
            for item, done in zip(items, per_item, strict=True)]


def predict_official(items: Sequence[EmoBenchItem], client: LLMClient, *, cot: bool = False, temperature: float = 0.0,
                     retry_temperature: float = OFFICIAL_RETRY_TEMPERATURE, attempts: int = 5,
                     max_tokens: int | None = None, seed: int = DEFAULT_SEED, lenient: bool = False,
                     model_name: str = "") -> list[Prediction]:
    """``official`` protocol: EmoBench's prompts, free generation, official parsing. Only the unreadable replies
    are sent again, at ``retry_temperature`` with a new seed (a greedy retry would repeat the same reply)."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    max_tokens = max_tokens or OFFICIAL_MAX_NEW_TOKENS[cot]
    conversations = [official_messages(item, cot=cot, model_name=model_name) for item in items]
    latest: dict[int, tuple[parsing.ParsedReply, str | None]] = {}
    tries = dict.fromkeys(range(len(items)), 0)
    pending = list(range(len(items)))
    for attempt in range(1, attempts + 1):
        answers = client.chat_many([conversations[i] for i in pending], max_tokens=max_tokens,
                                   temperature=temperature if attempt == 1 else retry_temperature,
                                   seed=seed + attempt - 1)
        for index, answer in zip(pending, answers, strict=True):
            tries[index] += 1
            if isinstance(answer, LLMError):
                parsed, text = parsing.ParsedReply({}, parsing.REQUEST_FAILED, str(answer)), None
            else:
                parsed = parsing.parse_official_reply(answer.text, task_of(items[index]),
                                                      finish_reason=answer.finish_reason,
                                                      lenient=lenient)
                text = answer.text
            latest[index] = (parsed, text)
        pending = [index for index in pending if not latest[index][0].ok]
        if not pending:
            break
    records = []
    for index, item in enumerate(items):
        parsed, text = latest[index]
        predicted = {part: parsed.answers.get(part, "") for part in gold_letters(item)}
        records.append(_record(item, "official", predicted=predicted, raw=text, status=parsed.status,
                               detail=parsed.detail, attempts=tries[index]))
    return records


def _paper_status(answer: ChatResult | LLMError) -> tuple[str, str, str | None, int]:
    """(predicted letter, status, raw text, attempts) of one ``paper`` question."""
    if isinstance(answer, ChatResult):
        return str(answer.data["answer"]), parsing.OK, answer.text, answer.attempts
    if isinstance(answer, LLMInvalidJSONError):
        return "", parsing.INVALID_JSON, answer.raw_text, answer.attempts
    return "", parsing.REQUEST_FAILED, None, 1


def predict_paper(items: Sequence[EmoBenchItem], client: LLMClient, *, temperature: float = 0.0,
                  max_tokens: int | None = None, seed: int = DEFAULT_SEED) -> list[Prediction]:
    """``paper`` protocol: each question in the training format, answered as ``{"reasoning", "answer"}`` JSON,
    batched per number of options (the answer schema lists the valid letters); the client re-asks invalid replies."""
    questions = _questions(items)
    by_size: dict[int, list[int]] = {}
    for position, (_, _, question) in enumerate(questions):
        by_size.setdefault(len(question.options), []).append(position)
    answers: list[Any] = [None] * len(questions)
    for size, positions in sorted(by_size.items()):
        replies = client.chat_many([chat_messages(questions[p][2], with_answer=False) for p in positions],
                                   schema=response_schema(size), temperature=temperature,
                                   max_tokens=max_tokens or PAPER_MAX_TOKENS, seed=seed)
        for position, reply in zip(positions, replies, strict=True):
            answers[position] = reply
    per_item: list[dict[str, tuple]] = [{} for _ in items]
    unanswered: list[dict[str, str]] = [{} for _ in items]  # why a request got no answer, per part
    for (index, part, _), answer in zip(questions, answers, strict=True):
        per_item[index][part] = _paper_status(answer)
        if isinstance(answer, LLMError) and not isinstance(answer, LLMInvalidJSONError):
            unanswered[index][part] = f" ({str(answer)[:200]})"
    records = []
    for item, parts, why in zip(items, per_item, unanswered, strict=True):
        failed = [f"{part}: {status}{why.get(part, '')}" for part, (_, status, _, _) in parts.items()
                  if status != parsing.OK]
        status = next((s for _, s, _, _ in parts.values() if s != parsing.OK), parsing.OK)
        raw = {part: text or "" for part, (_, _, text, _) in parts.items()}
        records.append(_record(item, "paper", predicted={part: letter for part, (letter, *_rest) in parts.items()},
                               raw=raw if len(raw) > 1 else next(iter(raw.values())), status=status,
                               detail="; ".join(failed), attempts=max(a for *_, a in parts.values())))
    return records
