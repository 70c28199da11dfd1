"""Run a model on EmoBench with one protocol, resumably: :class:`EvalConfig` and :func:`evaluate` (protocols,
option orders and outputs: README, chapter 05). Under ``results_dir()/<label>/<protocol>/``: ``run.json`` (the
settings; a re-run with other settings is refused), ``<task>-<language>.predictions.jsonl`` (appended chunk by
chunk, so a killed run resumes where it stopped) and ``<task>.leaderboard.json``."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from ..emobench import TASKS, EmoBenchItem, check_language, check_task, load_tasks
from ..hub import download_adapter, is_repo_id
from ..jsonl import JSONLError, append_jsonl, read_json, read_jsonl, repair_jsonl_tail, write_json_atomic
from ..llm import BACKENDS, LLMClient, LLMFatalError, make_client
from ..models import DEFAULT_MODEL, latest_adapter, resolve_model
from ..parameters import StageConfig
from ..paths import results_dir, runs_dir
from . import parsing
from .adapter_check import check_adapter_applied
from .choice import ChoiceScorer
from .orders import check_orders, item_shifts, rotated
from .prompts import OFFICIAL_MAX_NEW_TOKENS, paper_questions
from .protocols import (OFFICIAL_RETRY_TEMPERATURE, PAPER_MAX_TOKENS, predict_choice, predict_cloze, predict_official,
                        predict_paper, predict_reason_score)
from .report import EvaluationRun, leaderboard_path, predictions_path
from .scoring import DEFAULT_RESAMPLES, DEFAULT_SEED, Prediction, summarize

PROTOCOLS: tuple[str, ...] = ("official", "paper", "choice", "cloze", "cloze-norm", "reason-score")
# Protocols that read a local model's log-probabilities instead of generating (deterministic: no seed).
SCORED_PROTOCOLS = ("choice", "cloze", "cloze-norm")
# Protocols that show no option letters: the answer cannot depend on the option order, so only EmoBench's is asked.
ORDER_FREE_PROTOCOLS = ("cloze", "cloze-norm")
# Protocols that need a model in this process (log-probabilities).
LOCAL_PROTOCOLS = (*SCORED_PROTOCOLS, "reason-score")
# Settings that change the numbers: a resumed run must match them.
_RESUME_KEYS = ("model", "adapter", "backend", "protocol", "cot", "temperature", "retry_temperature", "attempts",
                "max_tokens", "lenient", "seed")


class NoAnswers(RuntimeError):
    """Every item of a chunk failed to get an answer from the model (the server went away): the run stops
    instead of scoring requests that never reached it as wrong answers."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "model"


def model_label(model: str, adapter: str | os.PathLike | None = None, backend: str = "local") -> str:
    """Folder name for a model (and adapter): the alias or id, ``+`` the adapter's run folder and name."""
    if backend == "local":
        spec = resolve_model(model)
        name = spec.alias or Path(spec.hf_id).name
    else:
        name = model
    label = _slug(name)
    if adapter is not None:
        path = Path(adapter).expanduser().resolve()
        try:
            parts = path.relative_to(runs_dir().resolve()).parts
        except ValueError:
            parts = path.parts
        label += "+" + _slug("-".join(parts[-2:]))
    return label


def run_folder(label: str, protocol: str, cot: bool = False) -> Path:
    return results_dir() / label / (protocol + ("-cot" if cot else ""))


def _check_config(out_dir: Path, config: dict[str, Any]) -> None:
    path = out_dir / "run.json"
    if not path.exists():
        return
    previous = read_json(path)
    changed = {k: (previous.get(k), config.get(k)) for k in _RESUME_KEYS if previous.get(k) != config.get(k)}
    if changed:
        details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(f"{out_dir} holds predictions made with other settings ({details}); resuming would mix "
                         "them. Pass another label= or out_dir=, or delete that folder to start over.")


def _read_existing(path: Path) -> dict[tuple[str, int], Prediction]:
    if repair_jsonl_tail(path):
        print(f"[evaluate] {path.name}: cut a partial last line left by an interrupted run")
    if not path.exists():
        return {}
    try:
        return {(r.qid, r.shift): r for r in read_jsonl(path, Prediction)}
    except JSONLError as err:
        raise JSONLError(f"{err}. Delete {path} to re-score those items.") from None


class EvalConfig(StageConfig):
    """One evaluation: notebook 05's parameters, then the settings programmatic callers may change.

    ``adapter``: a LoRA folder of notebook 04 (``runs/<model>/<run-id>/adapter``), ``"latest"`` (the newest one
    notebook 04 saved for ``model``, or none; see :meth:`resolved`) or None (the base model). ``None`` elsewhere
    means the default: ``emobench_dir`` :func:`~ec2er_utils.emobench.local_emobench_dir`'s search, ``out_dir``
    ``results/<label>/<protocol>/``, ``label`` :func:`model_label`, ``max_tokens`` the protocol's budget,
    ``chunk_size`` 256 items (``choice``) or 4 batches.
    """

    model: str = DEFAULT_MODEL  # alias, Hugging Face id or folder; for backend "openai" the served model name
    adapter: Literal["latest"] | Path | None = "latest"
    protocol: str = "choice"  # one of PROTOCOLS
    backend: str = "local"  # one of BACKENDS
    base_url: str | None = None  # backend "openai" only
    language: str = "en"  # "en", "zh" or "all"
    limit: int | None = Field(50, ge=1)  # first items of each task and language (the CPU demo); None: all 200
    cot: bool = False  # protocol "official" only: EmoBench's chain-of-thought prompt
    orders: Annotated[str, AfterValidator(check_orders)] = "cyclic"  # one of orders.ORDERS
    emobench_dir: Path | None = None  # folder with EU.jsonl and EA.jsonl
    tasks: tuple[str, ...] = TASKS
    out_dir: Path | None = None
    label: str | None = None
    temperature: float = Field(0.0, ge=0.0)  # first attempt; 0 = greedy
    retry_temperature: float = Field(OFFICIAL_RETRY_TEMPERATURE, ge=0.0)  # "official": later attempts
    attempts: int = Field(5, ge=1)  # "official": tries per unreadable reply (the harness's num_retries)
    max_tokens: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    chunk_size: int | None = Field(None, ge=1)  # items per append to disk (the resume granularity)
    seed: int = DEFAULT_SEED  # sampling and bootstrap
    lenient: bool = False  # "official": also read answers the harness's parser would miss
    n_resamples: int = Field(DEFAULT_RESAMPLES, ge=1)  # bootstrap resamples of every interval
    client_options: dict[str, Any] = Field(default_factory=dict)  # for ec2er_utils.llm.make_client

    @field_validator("protocol", "backend")
    @classmethod
    def _one_of_the_known(cls, value: str, info: ValidationInfo) -> str:
        known = {"protocol": PROTOCOLS, "backend": BACKENDS}[info.field_name]
        if value not in known:
            raise ValueError(f"Unknown {info.field_name} {value!r}; use one of {', '.join(known)}")
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        check_language(value)
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"no tasks; use some of {', '.join(TASKS)}")
        return tuple(check_task(task) for task in value)

    @model_validator(mode="after")
    def _consistent(self):
        if self.protocol in LOCAL_PROTOCOLS and self.backend != "local":
            raise ValueError(f"protocol {self.protocol!r} reads token log-probabilities from a local model; use "
                             "backend 'local', or protocol 'official'/'paper' with backend 'openai'")
        if self.backend == "openai" and self.adapter not in (None, "latest"):
            raise ValueError("with backend 'openai' the server applies the adapter: serve it (e.g. vLLM "
                             "--enable-lora --lora-modules NAME=PATH), set model to NAME and adapter to None")
        if self.base_url is not None and self.backend != "openai":
            raise ValueError("base_url is the address of an OpenAI-compatible server: set backend to 'openai', "
                             "or base_url to None")
        if self.cot and self.protocol != "official":
            raise ValueError("cot selects EmoBench's chain-of-thought prompt; it needs protocol 'official'")
        return self

    def resolved(self) -> EvalConfig:
        """This config with ``adapter="latest"`` replaced by the newest adapter notebook 04 saved for ``model``,
        or None when there is none (or with backend "openai", whose server applies its own)."""
        if self.adapter != "latest":
            return self
        return self.model_copy(update={"adapter": latest_adapter(self.model) if self.backend == "local" else None})

    def base_model(self) -> EvalConfig:
        """The same evaluation of the base model, without adapter (to compare a fine-tuned run with)."""
        return self.model_copy(update={"adapter": None})


def evaluate(config: EvalConfig | None = None, *, client: LLMClient | None = None,
             scorer: ChoiceScorer | None = None, progress: bool = True) -> EvaluationRun:
    """Evaluate ``config.model`` on EmoBench, write predictions and leaderboards, and return the run. A ``client``
    or a ``scorer`` can be passed to reuse a loaded model; otherwise one is made only if some item needs scoring."""
    from tqdm.auto import tqdm

    config = (config or EvalConfig()).resolved()
    model, adapter, protocol, backend, cot = config.model, config.adapter, config.protocol, config.backend, config.cot
    if adapter is not None and backend == "local" and not adapter.expanduser().is_dir():
        if not is_repo_id(str(adapter)):
            raise FileNotFoundError(f"adapter folder {adapter} not found; train one with notebook 04 (it writes "
                                    f"{runs_dir()}/<model>/<run-id>/), name a pushed adapter on the Hub "
                                    "('owner/name'), or set adapter to None to evaluate the base model")
        adapter = download_adapter(str(adapter))  # a Hub id: downloaded once, then read from the cache
    items = load_tasks(config.tasks, config.language, config.emobench_dir, limit=config.limit)

    label = config.label or model_label(model, adapter, backend)
    out_dir = config.out_dir if config.out_dir is not None else run_folder(label, protocol, cot)
    max_tokens = config.max_tokens
    if max_tokens is None and protocol not in SCORED_PROTOCOLS:  # reason-score generates like paper
        max_tokens = OFFICIAL_MAX_NEW_TOKENS[cot] if protocol == "official" else PAPER_MAX_TOKENS
    temperature, seed = config.temperature, config.seed
    settings = {"label": label, "model": model, "adapter": str(adapter) if adapter is not None else None,
                "backend": backend, "protocol": protocol, "cot": cot, "orders": config.orders,
                "temperature": temperature,
                "retry_temperature": config.retry_temperature if protocol == "official" else None,
                "attempts": config.attempts if protocol == "official" else None, "max_tokens": max_tokens,
                "lenient": config.lenient if protocol == "official" else None,
                "seed": seed if protocol not in SCORED_PROTOCOLS else None}  # scoring is deterministic: no seed
    _check_config(out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "run.json", {**settings, "updated": _now()})

    batch_size = config.batch_size
    # Items per chunk: each chunk is appended to disk when done (the resume granularity); bigger chunks pad less.
    chunk_size = config.chunk_size or (256 if protocol in SCORED_PROTOCOLS else max(64, 4 * batch_size))
    state: dict[str, Any] = {"client": client, "scorer": scorer}

    def predictor():  # created on first need, so a fully resumed run loads no model
        if protocol in SCORED_PROTOCOLS:
            if state["scorer"] is None:
                state["scorer"] = (_client_scorer(state["client"], batch_size)
                                   or ChoiceScorer(model, adapter=adapter, batch_size=batch_size))
            if protocol in ORDER_FREE_PROTOCOLS:
                return lambda chunk: predict_cloze(chunk, state["scorer"], normalise=protocol == "cloze-norm",
                                                   progress=progress)
            return lambda chunk: predict_choice(chunk, state["scorer"], progress=progress)
        if state["client"] is None:
            options = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, "progress": False,
                       **({"base_url": config.base_url} if config.base_url else {}), **config.client_options}
            if backend == "local":
                options.update(adapter=adapter, batch_size=batch_size)
            state["client"] = make_client(backend, model, **options)
        if protocol == "reason-score":
            local = state["client"]
            if state["scorer"] is None:
                state["scorer"] = ChoiceScorer(hf_model=local.hf_model, tokenizer=local.tokenizer,
                                               batch_size=batch_size)
            return lambda chunk: predict_reason_score(chunk, local, state["scorer"], temperature=temperature,
                                                      max_tokens=max_tokens, seed=seed, progress=progress)
        if protocol == "official":
            # the name the official harness would see (it adds "/no_think" for Qwen models)
            name = f"{model} {resolve_model(model).hf_id}" if backend == "local" else model
            return lambda chunk: predict_official(chunk, state["client"], cot=cot, temperature=temperature,
                                                  retry_temperature=config.retry_temperature,
                                                  attempts=config.attempts, max_tokens=max_tokens, seed=seed,
                                                  lenient=config.lenient, model_name=name)
        return lambda chunk: predict_paper(chunk, state["client"], temperature=temperature, max_tokens=max_tokens,
                                           seed=seed)

    run = EvaluationRun(out_dir, settings)
    predict = None
    for task, task_items in items.items():
        by_language: dict[str, list[Prediction]] = {}
        for lang in dict.fromkeys(item.language for item in task_items):
            # One unit of work per item and option order.
            wanted = [(item, shift) for item in task_items if item.language == lang
                      for shift in item_shifts(item, "original" if protocol in ORDER_FREE_PROTOCOLS
                                               else config.orders)]
            path = predictions_path(out_dir, task, lang)
            done = _read_existing(path)
            pending = [(item, shift) for item, shift in wanted if (item.qid, shift) not in done]
            if pending:
                if predict is None:
                    predict = predictor()
                    if adapter is not None and backend == "local":  # a tuned run that scores the base model is refused
                        _check_adapter(state, pending[0][0], adapter, batch_size)
                with tqdm(total=len(wanted), initial=len(wanted) - len(pending), disable=not progress,
                          desc=f"{label} {protocol} {task}-{lang}",
                          unit="item-order" if config.orders != "original" else "item") as bar:
                    for start in range(0, len(pending), chunk_size):
                        chunk = pending[start:start + chunk_size]
                        records = _predicted_or_stopped(predict, [rotated(item, shift) for item, shift in chunk], path)
                        chunk_records = [record.model_copy(update={"shift": shift})
                                         for record, (_, shift) in zip(records, chunk, strict=True)]
                        append_jsonl(path, chunk_records)
                        done.update(((r.qid, r.shift), r) for r in chunk_records)
                        bar.update(len(chunk_records))
            by_language[lang] = [done[item.qid, shift] for item, shift in wanted]
        run.predictions[task] = [r for records in by_language.values() for r in records]
        run.leaderboards[task] = _write_leaderboard(out_dir, task, settings, by_language, config.n_resamples,
                                                    seed)
    return run


def _check_adapter(state: dict[str, Any], item: EmoBenchItem, adapter: Any, batch_size: int) -> None:
    """:func:`~ec2er_utils.evaluation.adapter_check.check_adapter_applied` on the item's first question, with the
    protocol's scorer or, for the generating protocols, one over the local client's model. A stand-in scorer
    passed by the caller without a model (a test's scripted scores) has nothing to check."""
    scorer = state["scorer"] or _client_scorer(state["client"], batch_size)
    if getattr(scorer, "hf_model", None) is not None:
        check_adapter_applied(scorer, next(iter(paper_questions(item).values())), adapter)


def _predicted_or_stopped(predict, chunk: list[EmoBenchItem], path: Path) -> list[Prediction]:
    """``predict(chunk)``; a fatal client error, or a chunk without a single answer, stops the run before the chunk
    is written (a prediction on file is never asked again)."""
    kept = (f"nothing of this chunk was written; the predictions made so far are kept in {path}, and running "
            "again after the fix resumes after them")
    try:
        records = predict(chunk)
    except LLMFatalError as fatal:
        raise LLMFatalError(f"{fatal} Evaluation stopped: {kept}.", status_code=fatal.status_code,
                            fix=fatal.fix) from None
    if records and all(r.status == parsing.REQUEST_FAILED for r in records):
        raise NoAnswers(f"none of the {len(records)} items of this chunk got an answer from the model (last error: "
                        f"{records[-1].detail[:300]}); is the server still running? Evaluation stopped: {kept}.")
    return records


def _client_scorer(client: LLMClient | None, batch_size: int) -> ChoiceScorer | None:
    """A scorer over the model a local client already holds (None when it holds none)."""
    if getattr(client, "hf_model", None) is None:
        return None
    return ChoiceScorer(hf_model=client.hf_model, tokenizer=client.tokenizer, batch_size=batch_size)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_leaderboard(out_dir: Path, task: str, config: dict[str, Any], by_language: dict[str, list[Prediction]],
                       n_resamples: int, seed: int) -> dict[str, Any]:
    path = leaderboard_path(out_dir, task)
    previous = read_json(path).get("languages", {}) if path.exists() else {}
    languages = {**previous, **{lang: summarize(records, n_resamples=n_resamples, seed=seed)
                                for lang, records in by_language.items()}}
    board = {"task": task, **{k: config[k] for k in ("label", "model", "adapter", "backend", "protocol", "cot",
                                                     "orders")},
             "ci": {"level": 0.95, "method": "percentile bootstrap", "n_resamples": n_resamples, "seed": seed},
             "updated": _now(), "languages": languages}
    write_json_atomic(path, board)
    return board
