"""The local scorer of the ``choice``, ``cloze`` and ``reason-score`` protocols (:class:`ChoiceScorer`): the
log-probability of each option letter as the next token after the paper's prompt and the start of the answer JSON
(or of each option's text, ``cloze``), without generating. Each shared prompt prefix is computed once, with the
same log-probabilities as a plain forward pass up to float rounding (README, chapter 05, "Speed")."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import cpu_speedups
from ..formatting import LETTERS, Question, option_letters, user_prompt
from .prompts import CHOICE_ANSWER_PREFIX, cloze_prompt, reasoned_answer_prefix

LETTERS_INDEX = {letter: i for i, letter in enumerate(LETTERS)}


@dataclass
class _Row:
    """One sequence of a forward pass: new tokens after an already computed prefix (``past``, or none)."""

    tokens: list[int]
    past: Any = None  # key/value states of the prefix's real tokens: (layers, 2, kv_heads, length, head_dim)
    keep_past: bool = False  # return the key/value states of prefix + tokens, to extend later
    question: int | None = None  # index of the question whose next-token log-probabilities this row yields
    group: int | None = None  # index of the group of questions whose shared prefix this row computes

    @property
    def past_length(self) -> int:
        return 0 if self.past is None else self.past.shape[-2]


def _common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    return len(os.path.commonprefix(sequences))  # compares any sequences item by item, not only paths


def _shared_prefix_plan(token_ids: list[list[int]], scenarios: list[str]) -> tuple[int, list[tuple[list[int], int]]]:
    """Which tokens to compute once: the length of the prefix common to all prompts (the root), and the groups of
    questions on the same scenario with the end of the prefix they share. A group's shared part ends before the
    last token of its shortest prompt, and the root before every group's end, so that every question computes at
    least its own last token (which yields its logits) and every group at least one token of its own."""
    by_scenario: dict[str, list[int]] = {}
    for i, scenario in enumerate(scenarios):
        by_scenario.setdefault(scenario, []).append(i)
    groups: list[tuple[list[int], int]] = []
    for members in by_scenario.values():
        end = min(_common_prefix_length([token_ids[i] for i in members]), *(len(token_ids[i]) - 1 for i in members))
        if len(members) > 1 and end > 0:
            groups.append((members, end))
        else:  # alone on its scenario, or nothing to share: each question is one sequence
            groups += [([i], len(token_ids[i]) - 1) for i in members]
    root_length = min(_common_prefix_length(token_ids), *(end - (len(members) > 1) for members, end in groups))
    return max(0, root_length), groups


class ChoiceScorer:
    """Batched option-letter log-probabilities from a transformers model (optionally with a PEFT adapter), loaded
    with :func:`ec2er_utils.models.load_model_and_tokenizer` unless ``hf_model`` and ``tokenizer`` are passed. A
    forward pass holds at most ``batch_size`` times the longest prompt's tokens. ``share_prefixes=False`` scores every
    prompt in full (the reference the shared-prefix method is tested against; also for models without plain
    key/value caches)."""

    def __init__(self, model: str | None = None, *, adapter: str | os.PathLike | None = None, batch_size: int = 16,
                 hf_model: Any = None, tokenizer: Any = None, dtype: Any = None, device: str | None = None,
                 share_prefixes: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if (hf_model is None) != (tokenizer is None):
            raise ValueError("pass both hf_model and tokenizer, or neither")
        if hf_model is None:
            from ..models import load_model_and_tokenizer

            hf_model, tokenizer = load_model_and_tokenizer(model, adapter=adapter, dtype=dtype, device=device)
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer of {model or hf_model.name_or_path!r} has no chat template; the choice "
                             "protocol needs one to open the assistant turn")
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.share_prefixes = share_prefixes and self._plain_key_value_cache()
        self._letter_ids: dict[str, int] = {}

    def _plain_key_value_cache(self) -> bool:
        """Prefix sharing copies key/value states between sequences: only for models whose every layer keeps
        them all (no sliding window, no recurrent state)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        try:
            cache = DynamicCache(config=self.hf_model.config)
        except Exception:  # noqa: BLE001 - an exotic config: fall back to full prompts
            return False
        return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)

    def prompt(self, question: Question, reasoning: str | None = None) -> str:
        """The exact text scored: chat template, paper-format user turn, assistant turn up to the answer letter;
        with ``reasoning`` (``reason-score``), the assistant turn is the trained JSON with that reasoning first."""
        messages = [{"role": "user", "content": user_prompt(question)}]
        opened = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return opened + (CHOICE_ANSWER_PREFIX if reasoning is None else reasoned_answer_prefix(reasoning))

    def letter_id(self, letter: str) -> int:
        if letter not in self._letter_ids:
            ids = self.tokenizer.encode(letter, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"option letter {letter!r} is {len(ids)} tokens for this tokenizer; the choice "
                                 "protocol needs single-token letters")
            self._letter_ids[letter] = ids[0]
        return self._letter_ids[letter]

    def option_logprobs(self, questions: Sequence[Question], *, progress: bool = False,
                        reasonings: Sequence[str] | None = None) -> list[dict[str, float]]:
        """For each question, ``{letter: log-probability}`` of its option letters as the next token (after the
        question's reasoning in the trained format when ``reasonings`` are given; see :meth:`prompt`).

        With ``share_prefixes`` no token is computed twice: the prefix common to all prompts once, then per group
        of questions on one scenario (an EU item's two) step 1 the group's common part after it, step 2 each
        question's remainder from those key/value states, while that step-1 batch's states are in memory. Each
        token attends to exactly what it would in its full prompt, at the same position (left padding, positions
        counting real tokens only).
        """
        if not questions:
            return []
        if reasonings is not None and len(reasonings) != len(questions):
            raise ValueError(f"{len(reasonings)} reasonings for {len(questions)} questions")
        prompts = [self.prompt(q, None if reasonings is None else reasonings[i]) for i, q in enumerate(questions)]
        token_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        letters = [option_letters(len(q.options)) for q in questions]
        budget = self.batch_size * max(len(ids) for ids in token_ids)
        results: list[dict[str, float] | None] = [None] * len(questions)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(questions), desc="choice", unit="question", leave=False,
                   disable=not progress or len(questions) <= self.batch_size)

        def record(rows: list[_Row], logprobs) -> None:
            for row, scores in zip(rows, logprobs, strict=True):
                if row.question is not None:
                    results[row.question] = {letter: float(scores[-1, self.letter_id(letter)])
                                             for letter in letters[row.question]}
                    bar.update(1)

        with bar:
            if not self.share_prefixes:
                for batch in self._batches([_Row(ids, question=i) for i, ids in enumerate(token_ids)], budget):
                    record(batch, self._forward(batch)[0])
                return results  # type: ignore[return-value]
            root_length, groups = _shared_prefix_plan(token_ids, [q.scenario for q in questions])
            root = None
            if root_length > 0:
                root = self._forward([_Row(token_ids[0][:root_length], keep_past=True)])[1][0]
            # Step 1: each group's shared part after the root; a question alone is scored whole here.
            firsts = [_Row(token_ids[members[0]][root_length:end], past=root, keep_past=True, group=g)
                      if len(members) > 1 else _Row(token_ids[members[0]][root_length:], past=root, question=members[0])
                      for g, (members, end) in enumerate(groups)]
            for batch in self._batches(firsts, budget):
                logprobs, pasts = self._forward(batch)
                record(batch, logprobs)
                # Step 2, while these prefixes are in memory: each question of these groups, after its group's part.
                rests = [_Row(token_ids[i][groups[row.group][1]:], past=past, question=i)
                         for row, past in zip(batch, pasts, strict=True) if row.group is not None
                         for i in groups[row.group][0]]
                for rest_batch in self._batches(rests, budget):
                    record(rest_batch, self._forward(rest_batch)[0])
        return results  # type: ignore[return-value]

    def option_loglikelihoods(self, questions: Sequence[Question], *, progress: bool = False,
                              ) -> list[dict[str, tuple[float, int]]]:
        """``cloze``: for each question, ``{letter: (log-likelihood, characters)}`` of each option's text as the
        assistant's answer to :func:`~ec2er_utils.evaluation.prompts.cloze_prompt` (no options shown, so no
        letter can be favoured). The prompt and each option are tokenized apart and joined, as
        lm-evaluation-harness does; every (question, option) pair is one full sequence (no prefix sharing)."""
        import torch
        from tqdm.auto import tqdm

        sequences: list[tuple[int, str, list[int], int]] = []  # (question, letter, tokens, continuation length)
        for index, question in enumerate(questions):
            opened = self.tokenizer.apply_chat_template([{"role": "user", "content": cloze_prompt(question)}],
                                                        tokenize=False, add_generation_prompt=True)
            context = self.tokenizer(opened, add_special_tokens=False)["input_ids"]
            for letter, option in zip(option_letters(len(question.options)), question.options, strict=True):
                continuation = self.tokenizer(option, add_special_tokens=False)["input_ids"]
                sequences.append((index, letter, context + continuation, len(continuation)))
        results: list[dict[str, tuple[float, int]]] = [{} for _ in questions]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][2]))
        budget = self.batch_size * max((len(s[2]) for s in sequences), default=1)
        batches = _budget_batches(order, [len(sequences[i][2]) for i in order], budget)
        for batch in tqdm(batches, desc="cloze", unit="batch", leave=False, disable=not progress or len(batches) <= 1):
            keep = max(sequences[i][3] for i in batch) + 1
            logprobs = self._forward([_Row(sequences[i][2]) for i in batch], last=keep)[0]
            for r, i in enumerate(batch):
                question, letter, tokens, length = sequences[i]
                # logits at position t predict token t + 1: the last ``length`` tokens come from the ``length``
                # positions before the end
                predicted = logprobs[r, keep - 1 - length:keep - 1]
                target = torch.tensor(tokens[-length:])
                total = float(predicted.gather(-1, target[:, None]).sum())
                results[question][letter] = (total, len(questions[question].options[LETTERS_INDEX[letter]]))
        return results

    def _batches(self, rows: list[_Row], budget: int) -> list[list[_Row]]:
        """Rows sorted by length, each batch filled up to ``budget`` tokens, padding included (on CPU, the cuts of
        fewest, fullest forward passes)."""
        ordered = sorted(rows, key=lambda row: (len(row.tokens), row.past_length))
        cut = cpu_speedups.least_cost_batches if cpu_speedups.enabled(self.hf_model.device) else _budget_batches
        return cut(ordered, [len(row.tokens) for row in ordered], budget)

    def _forward(self, rows: list[_Row], last: int = 1):
        """One forward pass over ``rows``: the log-probabilities at each row's ``last`` positions (float32, CPU;
        rows x last x vocabulary; left padding makes them every row's last) and, for rows with
        ``keep_past``, the key/value states of the row's real tokens (prefix included), else None."""
        import torch
        from transformers import DynamicCache

        device = self.hf_model.device
        past_width = max(row.past_length for row in rows)
        new_width = max(len(row.tokens) for row in rows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), new_width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), past_width + new_width), dtype=torch.long)
        past = None
        if past_width:
            reference = next(row.past for row in rows if row.past is not None)
            past = reference.new_zeros((len(rows), *reference.shape[:-2], past_width, reference.shape[-1]))
        for r, row in enumerate(rows):  # left padding, in the past as in the new tokens
            input_ids[r, new_width - len(row.tokens):] = torch.tensor(row.tokens)
            mask[r, past_width - row.past_length:past_width] = 1
            mask[r, past_width + new_width - len(row.tokens):] = 1
            if row.past is not None:
                past[r, ..., past_width - row.past_length:, :] = row.past
        keep = any(row.keep_past for row in rows)
        cache = None
        if past is not None or keep:
            cache = DynamicCache(config=self.hf_model.config)
            if past is not None:
                for layer in range(past.shape[1]):
                    cache.update(past[:, layer, 0].to(device), past[:, layer, 1].to(device), layer)
        # Positions count real tokens only, so a padded row scores as it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past_width:]
        with torch.inference_mode():
            output = self.hf_model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                   position_ids=positions.to(device), past_key_values=cache,
                                   use_cache=cache is not None, logits_to_keep=last)
            logprobs = torch.log_softmax(output.logits.float(), dim=-1).cpu()
            kept: list[Any] = [None] * len(rows)
            if keep:
                layers = output.past_key_values.layers
                # (layers, 2, rows, heads, length, dim) -> (rows, layers, 2, heads, length, dim)
                states = torch.stack([torch.stack([layer.keys, layer.values]) for layer in layers])
                states = states.permute(2, 0, 1, 3, 4, 5)
                for r, row in enumerate(rows):
                    if row.keep_past:
                        real = mask[r].bool().to(states.device)
                        kept[r] = states[r][..., real, :].clone()
        return logprobs, kept


def _budget_batches(ordered: Sequence[Any], widths: Sequence[int], budget: int) -> list[list[Any]]:
    """``ordered`` (sorted by their ``widths``, tokens each) cut into consecutive batches of at most ``budget``
    tokens, padding included (a row wider than that alone)."""
    batches: list[list[Any]] = []
    for row, width in zip(ordered, widths, strict=True):  # the widest row of a batch is its last
        if batches and width * (len(batches[-1]) + 1) <= budget:
            batches[-1].append(row)
        else:
            batches.append([row])
    return batches


def best_letter(logprobs: dict[str, float]) -> str:
    """The most likely letter (the first one on an exact tie)."""
    return max(logprobs, key=lambda letter: logprobs[letter])
