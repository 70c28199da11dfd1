"""The ``choice`` protocol: read a local model's preference among the option letters, without generating.

Each question is put in the paper's format (:func:`ec2er_utils.formatting.user_prompt`, the same user turn the
``paper`` protocol and training use), the chat template opens the assistant turn, and the assistant turn is
prefilled with the start of the answer JSON, ``{\\n  "answer": "``. One forward pass then gives the next-token
log-probability of every option letter; the prediction is the most likely letter among the item's options.
Nothing is generated, so nothing can fail to parse, and the questions of many items share a batch.

Departure, documented: the trained format writes ``"reasoning"`` before ``"answer"``; here the reasoning is
skipped, so the letter is read where the JSON asks for it without the model's reasoning before it. An EU item is
two questions (emotion, cause) and so two sequences.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..formatting import Question, option_letters, user_prompt
from .prompts import CHOICE_ANSWER_PREFIX


class ChoiceScorer:
    """Batched option-letter log-likelihoods from a transformers model (optionally with a PEFT adapter).

    Pass ``hf_model`` and ``tokenizer`` to reuse a loaded model (e.g. a local LLM client's), else the model is
    loaded with :func:`ec2er_utils.models.load_model_and_tokenizer`.
    """

    def __init__(self, model: str | None = None, *, adapter: str | os.PathLike | None = None, batch_size: int = 16,
                 hf_model: Any = None, tokenizer: Any = None, dtype: Any = None, device: str | None = None):
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
        self._letter_ids: dict[str, int] = {}

    def prompt(self, question: Question) -> str:
        """The exact text scored: chat template, paper-format user turn, assistant turn up to the answer letter."""
        messages = [{"role": "user", "content": user_prompt(question)}]
        opened = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return opened + CHOICE_ANSWER_PREFIX

    def letter_id(self, letter: str) -> int:
        if letter not in self._letter_ids:
            ids = self.tokenizer.encode(letter, add_special_tokens=False)
            if len(ids) != 1:
                raise ValueError(f"option letter {letter!r} is {len(ids)} tokens for this tokenizer; the choice "
                                 "protocol needs single-token letters")
            self._letter_ids[letter] = ids[0]
        return self._letter_ids[letter]

    def option_logprobs(self, questions: Sequence[Question], *, progress: bool = False) -> list[dict[str, float]]:
        """For each question, ``{letter: log-probability}`` of its option letters as the next token."""
        import torch

        prompts = [self.prompt(q) for q in questions]
        letters = [option_letters(len(q.options)) for q in questions]
        token_ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: len(token_ids[i]))  # similar lengths pad little
        results: list[dict[str, float] | None] = [None] * len(prompts)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        bar = None
        if progress and len(batches) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc="choice", unit="question", leave=False)
        device = self.hf_model.device
        self.tokenizer.padding_side = "left"  # the last position is then every row's next-token position
        try:
            for batch in batches:
                encoded = self.tokenizer.pad({"input_ids": [token_ids[i] for i in batch]}, padding=True,
                                             return_tensors="pt").to(device)
                # Positions count real tokens only, so a left-padded row scores as it would alone.
                positions = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                with torch.inference_mode():
                    logits = self.hf_model(**encoded, position_ids=positions, logits_to_keep=1).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
                for row, i in enumerate(batch):
                    results[i] = {letter: float(logprobs[row, self.letter_id(letter)]) for letter in letters[i]}
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return results  # type: ignore[return-value]


def best_letter(logprobs: dict[str, float]) -> str:
    """The most likely letter (the first one on an exact tie)."""
    return max(logprobs, key=lambda letter: logprobs[letter])
