"""The training data: questions from notebook 03's items, TRL prompt-completion records, the chat template, and
what the model sees and is trained on (token counts, response-only masking)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..formatting import Question, chat_messages
from ..models import ModelSpec

BASE_MODEL_TEMPLATE = "alpaca"  # Unsloth's template for tokenizers without one (the llama base model)
FEW_QUESTIONS = 8  # below this a run only proves the machinery, and the notebook says so


class NoTrainingDataError(RuntimeError):
    """There are no training questions to train on."""


def training_records(questions: Sequence[Question]) -> list[dict[str, list[dict[str, str]]]]:
    """TRL conversational prompt-completion records: the user turn as prompt, the JSON answer as completion."""
    records = []
    for index, question in enumerate(questions):
        try:
            messages = chat_messages(question, with_answer=True)
        except ValueError as err:
            raise ValueError(f"training question {index} ({question.kind or 'unknown kind'}, scenario "
                             f"{question.scenario[:60]!r}...) cannot be trained on: {err}") from None
        records.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return records


def ensure_chat_template(tokenizer, spec: ModelSpec | None = None) -> str | None:
    """Give a tokenizer without a chat template (the llama base model) Unsloth's ``alpaca`` template; returns its
    name, or None when the tokenizer already had one."""
    if getattr(tokenizer, "chat_template", None):
        return None
    from unsloth.chat_templates import CHAT_TEMPLATES, DEFAULT_SYSTEM_MESSAGE

    template = CHAT_TEMPLATES[BASE_MODEL_TEMPLATE][0]
    tokenizer.chat_template = template.replace("{system_message}", DEFAULT_SYSTEM_MESSAGE[BASE_MODEL_TEMPLATE])
    name = spec.display_name if spec else "this model"
    print(f"{name}'s tokenizer has no chat template (a base model): using Unsloth's {BASE_MODEL_TEMPLATE!r} "
          "template, saved with the adapter")
    return BASE_MODEL_TEMPLATE


def render_example(question: Question, tokenizer) -> dict[str, str]:
    """The prompt text the model sees and the response text it is trained on, through the chat template."""
    messages = chat_messages(question, with_answer=True)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full conversation; "
                         "response-only masking needs the prompt to be a prefix")
    return {"prompt": prompt, "response": full[len(prompt):]}


def token_statistics(questions: Sequence[Question], tokenizer, max_seq_length: int) -> dict[str, Any]:
    """Token counts per example (prompt + response), and how many exceed ``max_seq_length`` (TRL truncates them)."""
    lengths, response_lengths = [], []
    for question in questions:
        parts = render_example(question, tokenizer)
        prompt_ids = tokenizer(parts["prompt"], add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(parts["response"], add_special_tokens=False)["input_ids"]
        lengths.append(len(prompt_ids) + len(response_ids))
        response_lengths.append(len(response_ids))
    too_long = sum(n > max_seq_length for n in lengths)
    return {"examples": len(lengths), "tokens": sum(lengths), "response_tokens": sum(response_lengths),
            "mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0, "max_tokens": max(lengths, default=0),
            "over_max_seq_length": too_long, "max_seq_length": max_seq_length}


def load_questions(split: str = "train", *, file: str | os.PathLike | None = None,
                   folder: str | os.PathLike | None = None, min_confidence: float | None = None) -> list[Question]:
    """Questions of a processed split (``data/processed/<split>.jsonl``, notebook 03) or of any JSONL of
    :class:`~ec2er_utils.schemas.DatasetItem` s (``file``). EU items give two questions, EA items one.
    ``min_confidence`` drops reviewed items (§3.4) whose confidence is below it; unreviewed items are kept."""
    from ..jsonl import read_jsonl
    from ..preprocess import item_questions, load_split
    from ..schemas import DatasetItem

    if file is not None:
        path = Path(file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"train_file {path} not found: point it at a JSONL of DatasetItems (notebook 03 "
                                    "writes data/processed/train.jsonl), or set train_file = None")
        items = read_jsonl(path, DatasetItem)
    else:
        items = load_split(split, folder=Path(folder) if folder is not None else None)
    if min_confidence is not None:
        items = [i for i in items if i.confidence is None or i.confidence >= min_confidence]
    return [question for item in items for question in item_questions(item)]


def load_eval_questions(train_file: str | os.PathLike | None = None, eval_file: str | os.PathLike | None = None,
                        folder: str | os.PathLike | None = None) -> tuple[list[Question], str]:
    """Validation questions and where they came from: ``eval_file`` if given; else, when training on the processed
    split (no ``train_file``), ``data/processed/validation.jsonl`` if notebook 03 wrote one; else none."""
    if eval_file is not None:
        return load_questions(file=eval_file), str(eval_file)
    if train_file is not None:
        return [], "none (train_file given without eval_file)"
    from ..preprocess import processed_dir

    path = processed_dir(Path(folder) if folder is not None else None) / "validation.jsonl"
    if not path.is_file():
        return [], f"none ({path} not found)"
    return load_questions("validation", folder=folder), str(path)


def masking_summary(example: dict[str, list[int]], tokenizer) -> dict[str, Any]:
    """How a prepared training example is labelled: prompt tokens -100 (no loss), response tokens trained."""
    labels = example["labels"]
    trained = [token for token, label in zip(example["input_ids"], labels, strict=True) if label != -100]
    first_trained = next((i for i, label in enumerate(labels) if label != -100), len(labels))  # all -100 before it
    return {"tokens": len(labels), "masked_prompt_tokens": sum(label == -100 for label in labels),
            "trained_tokens": len(trained), "masked_tokens_all_before_response": -100 not in labels[first_trained:],
            "trained_text": tokenizer.decode(trained)}


def require_questions(questions: Sequence[Question], source: str) -> str:
    """Refuse to train on nothing; say plainly when there is too little data for more than a smoke test."""
    if not questions:
        raise NoTrainingDataError(
            f"{source} holds no training questions. Run notebooks/03_preprocess.ipynb first (it writes "
            "data/processed/train.jsonl from the generated items), or point train_file at a JSONL of DatasetItems.")
    if len(questions) < FEW_QUESTIONS:
        return (f"Only {len(questions)} training question(s) in {source}: this run proves the training machinery "
                "works, it cannot teach the model anything measurable. Generate more items (notebooks 01/02) for a "
                "real run.")
    return f"{len(questions)} training questions from {source}"
