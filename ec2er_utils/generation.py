"""Machinery shared by the two generation pipelines (MADS in :mod:`ec2er_utils.mads`, concise in
:mod:`ec2er_utils.concise`): speaker turns, JSON schemas for the items the LLM drafts, turning drafts into
validated items, category balancing, per-call seeds, and crash-safe output files.

Items are drafted, not written whole, by the LLM: the model fills a small schema (scenario, subject, the correct
option, the distractors, the explanation) and the code adds ids, categories and provenance, then shuffles the
options with a seed derived from the item id. Putting the correct option in its own field is what makes "the label
is one of the choices" hold by construction; the shuffle keeps the gold answer's position uniform. Emotion options
are constrained to the taxonomy's vocabulary (``EMOTION_LABELS``, written in EmoBench's capitalisation).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import generation_prompts as prompts
from .jsonl import JSONLError, iter_jsonl, read_json, repair_jsonl_tail, write_json_atomic, write_text_atomic
from .llm import ChatResult, LLMClient, LLMError, LLMInvalidJSONError, LLMRequestError, Usage, make_client
from .schemas import GeneratedEAItem, GeneratedEUItem, MCQItem, Provenance
from .taxonomy import EA_CATEGORIES, EMOTION_LABELS, EU_CATEGORIES, is_known_emotion

CLIENT, THERAPIST, SUPERVISOR = "CLIENT", "THERAPIST", "SUPERVISOR"  # taxonomy.SPEAKER_TAGS

# EmoBench's English EU fine-grained categories under each coarse category (read from EU.jsonl).
EU_FINEGRAINED: dict[str, tuple[str, ...]] = {
    "complex_emotions": ("emotion_transition", "mixture_of_emotions", "unexpected_outcome"),
    "emotional_cues": ("visual_cues", "vocal_cues"),
    "personal_beliefs_and_experiences": ("cultural_value", "persona", "sentimental_value"),
    "perspective_taking": ("false_belief", "faux_pas", "strange_story"),
}
# The emotion vocabulary as options are written (EmoBench capitalises: "Delight").
EMOTION_OPTIONS: tuple[str, ...] = tuple(label.capitalize() for label in EMOTION_LABELS)

# Text fields get a maxLength of about max_tokens * CHARS_PER_TOKEN characters (shared between fields), so that a
# constrained reply can close its JSON before max_tokens. English prose runs ~4 characters per token, but small
# models often write short tokens; 2 leaves that margin.
CHARS_PER_TOKEN = 2.0
# Scenario word limits become string lengths at ~6 characters per English word (5 letters + a space): a scenario of
# ``min_words * CHARS_PER_WORD`` characters usually holds ``min_words`` words, so drafts can pass the 50-500-word
# filter of notebook 03 (paper §3.4). Words are counted by that filter, not here.
CHARS_PER_WORD = 6
PAPER_SCENARIO_MIN_WORDS = 50
OTHER_FIELDS_MIN_CHARS = 100  # explanations and options need at least this much room beside the scenario


def require(ok: bool, message: str) -> None:
    """Raise ValueError(message) unless ``ok``: a config check that names the setting and the fix."""
    if not ok:
        raise ValueError(message)


def check_run_config(config: Any, *, positive: Sequence[str], temperatures: Sequence[str] = ("temperature",)) -> None:
    """The checks MADS and concise configs share: the settings named in ``positive`` (counts, token budgets) are
    >= 1, ``background_words`` is (low, high) with 1 <= low <= high (made a tuple, as JSON gives lists), the
    temperatures are >= 0, ``scenario_min_words`` >= 0, and ``shard_index`` names one of ``num_shards`` shards."""
    config.background_words = tuple(config.background_words)
    for name in positive:
        require(getattr(config, name) >= 1, f"{name} must be >= 1, got {getattr(config, name)}")
    low_high = config.background_words
    require(len(low_high) == 2 and 1 <= low_high[0] <= low_high[1],
            f"background_words must be (low, high) with 1 <= low <= high, got {low_high}")
    for name in temperatures:
        require(getattr(config, name) >= 0, f"{name} must be >= 0, got {getattr(config, name)}")
    require(config.scenario_min_words >= 0, f"scenario_min_words must be >= 0, got {config.scenario_min_words}")
    require(config.num_shards >= 1 and 0 <= config.shard_index < config.num_shards,
            f"need 0 <= shard_index < num_shards, got shard_index={config.shard_index}, "
            f"num_shards={config.num_shards}")


def call_seed(seed: int, *keys: Any) -> int:
    """A per-call sampling seed that depends only on the run seed and where the call sits in the run."""
    digest = hashlib.sha256(repr((seed, *keys)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1)


def make_generator_client(backend: str = "local", model: str | None = None, *, base_url: str | None = None,
                          concurrency: int = 8, batch_size: int | None = None, temperature: float = 0.8,
                          seed: int | None = 0, max_reasks: int = 1, progress: bool = False,
                          **options: Any) -> LLMClient:
    """The LLM client for generation, sized for ``concurrency`` conversations at once.

    ``local``: the embedded model (``model=None``) or any registry alias / HF id / folder; one forward pass
    generates up to ``batch_size`` replies (default ``8 * concurrency``: extraction sends up to eight requests per
    conversation at once, 4 EU + 4 EA). ``openai``: an OpenAI-compatible server (vLLM serving
    ``openai/gpt-oss-20b`` in the paper) at ``base_url`` with ``concurrency`` requests in flight; several
    comma-separated URLs (vLLM replicas) give a :class:`ReplicaClient` that spreads requests over them,
    ``concurrency`` in flight on each. The API key is read from ``OPENAI_API_KEY`` by the client, never passed here
    as a literal. ``max_reasks`` (default 1): how often a reply that is not schema-valid JSON is asked for again
    before the item counts as rejected.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    backend = (backend or "").strip().lower()
    common = dict(temperature=temperature, seed=seed, max_reasks=max_reasks, progress=progress, **options)
    if backend == "local":
        return make_client("local", model, batch_size=batch_size or 8 * concurrency, **common)
    if backend == "openai":
        urls = [u.strip() for u in (base_url or "").split(",") if u.strip()]
        if len(urls) > 1:
            return ReplicaClient([make_client("openai", model, base_url=u, concurrency=concurrency, **common)
                                  for u in urls])
        return make_client("openai", model, base_url=urls[0] if urls else None, concurrency=concurrency, **common)
    return make_client(backend, model, **options)  # raises the client's "unknown backend" error


class ReplicaClient(LLMClient):
    """Spreads each batch of requests round-robin over several clients serving the same model (vLLM replicas).

    Validation, re-asks and usage accounting happen once, here; the replicas only answer. A failure on one replica
    comes back as that conversation's error, like any other backend error.
    """

    def __init__(self, replicas: Sequence[LLMClient]):
        if not replicas:
            raise ValueError("ReplicaClient needs at least one replica")
        models = {r.model for r in replicas}
        if len(models) != 1:
            raise ValueError(f"replicas must serve the same model, got {sorted(models)}")
        first = replicas[0]
        super().__init__(first.model, temperature=first.temperature, max_tokens=first.max_tokens, seed=first.seed,
                         max_reasks=first.max_reasks, progress=first.progress, top_p=first.top_p)
        self.replicas = list(replicas)
        self.backend = first.backend

    def __repr__(self) -> str:
        return f"ReplicaClient({', '.join(repr(r) for r in self.replicas)})"

    async def _complete_batch(self, conversations, *, schemas, temperature, max_tokens, seed):
        n = len(self.replicas)
        answers = await asyncio.gather(*(
            replica._complete_batch(conversations[i::n], schemas=schemas[i::n], temperature=temperature,
                                    max_tokens=max_tokens, seed=seed)
            for i, replica in enumerate(self.replicas) if conversations[i::n]))
        merged: list[Any] = [None] * len(conversations)
        for i, share_answers in enumerate(answers):
            merged[i::n] = share_answers
        return merged

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()


# --------------------------------------------------------------------------------------------------------------
# Turns and transcripts

_SPEAKER_PREFIX = re.compile(r"^\s*\**\s*(client|patient|therapist|counsel+or|supervisor|me|you)\s*\**\s*:\s*",
                             re.IGNORECASE)
_OTHER_SPEAKER_LINE = re.compile(r"\n\s*\**\s*(client|patient|therapist|counsel+or)\s*\**\s*:", re.IGNORECASE)


def clean_turn(text: str, finish_reason: str | None = None) -> str:
    """One spoken message: drop a leading speaker tag, cut where the model starts writing the other side, and
    when the reply ran out of tokens mid-sentence, end it at the last full sentence (if there is one)."""
    text = _SPEAKER_PREFIX.sub("", text.strip())
    cut = _OTHER_SPEAKER_LINE.search(text)
    if cut:
        text = text[:cut.start()]
    text = text.strip().strip('"').strip()
    if finish_reason == "length":
        end = max(text.rfind(p) for p in ".!?")
        if end >= len(text) // 3:
            text = text[:end + 1]
    return text


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """``SPEAKER: text`` lines, the speaker tags normalised to CLIENT / THERAPIST (paper §3.3)."""
    return "\n".join(f"{m['speaker']}: {m['text']}" for m in messages)


def speaker_view(system: str, opening: str, messages: Sequence[Mapping[str, str]], me: str) -> list[dict[str, str]]:
    """The conversation as one speaker sees it: its own messages as ``assistant``, the other side's as ``user``.

    The client's first message answers ``opening`` (the therapist's welcome); the therapist always answers the
    client's latest message.
    """
    conversation = [{"role": "system", "content": system}]
    if me == CLIENT:
        conversation.append({"role": "user", "content": opening})
    for message in messages:
        role = "assistant" if message["speaker"] == me else "user"
        conversation.append({"role": role, "content": message["text"]})
    return conversation


def client_view(persona: Any, attributes: Any, background: str, messages: Sequence[Mapping[str, str]],
                max_words: int) -> list[dict[str, str]]:
    """The client's next request: its system prompt (persona, background, therapy attributes) and the dialogue."""
    system = prompts.CLIENT_SYSTEM.format(
        persona=persona.describe(), background=background, insight=attributes.insight,
        coping_style=attributes.coping_style.replace("_", " "),
        communication_style=attributes.communication_style.replace("_", " "), max_words=max_words)
    return speaker_view(system, prompts.CLIENT_OPENING, messages, CLIENT)


def therapist_view(background: str, messages: Sequence[Mapping[str, str]], max_words: int) -> list[dict[str, str]]:
    """The therapist's next request: its system prompt (the client's background) and the dialogue."""
    system = prompts.THERAPIST_SYSTEM.format(background=background, max_words=max_words)
    return speaker_view(system, prompts.CLIENT_OPENING, messages, THERAPIST)


def exchange_turns(step: Callable[..., list], states: Sequence[Any], speakers: Sequence[tuple[str, Callable]], *,
                   stage: str, seed: Sequence[Any], bar: Any = None, bar_prefix: str = "", **options: Any) -> None:
    """One exchange of the therapy conversations: each speaker in turn (client, then therapist) answers in every
    conversation still active, as one batched ``step(active, build, "dialogue_s", seed=..., **options)``.

    A cleaned reply is appended to ``state.messages``; an error or an empty reply ends that conversation with
    ``state.fail("<stage> <speaker>", reason)``. The seed of each step is ``call_seed(*seed, speaker)``.
    """
    for speaker, build in speakers:
        active = [s for s in states if s.active]
        if not active:
            return
        where = f"{stage} {speaker.lower()}"
        if bar is not None:
            bar.set_postfix_str(bar_prefix + where)
        results = step(active, build, "dialogue_s", seed=call_seed(*seed, speaker), **options)
        for state, result in zip(active, results, strict=True):
            if isinstance(result, LLMError):
                state.fail(where, result)
                continue
            text = clean_turn(result.text, result.finish_reason)
            if text:
                state.messages.append({"speaker": speaker, "text": text})
            else:
                state.fail(where, "empty_reply")


def result_usage(result: ChatResult | LLMError) -> Usage:
    if isinstance(result, ChatResult):
        return result.usage
    if isinstance(result, LLMInvalidJSONError):
        return result.usage
    return Usage()


def error_record(stage: str, error: LLMError | str) -> dict[str, str]:
    """Why a conversation failed, as stored in metadata (the client already keeps secrets out of messages)."""
    if isinstance(error, LLMError):
        return {"stage": stage, "reason": error.reason, "message": str(error)[:500]}
    return {"stage": stage, "reason": error, "message": error}


# --------------------------------------------------------------------------------------------------------------
# Category balancing


class CategoryBalancer:
    """Targets the least-represented category for each new item, so the four categories stay balanced.

    ``plan`` assigns targets for a whole batch at once (ties go to the taxonomy order, so plans are
    deterministic), preferring categories the same dialogue has not had yet; ``record`` counts an item actually
    written. Targets whose item was rejected are simply asked for again by later plans.
    """

    def __init__(self, categories: Sequence[str], counts: Mapping[str, int] | None = None):
        self.categories = tuple(categories)
        self.counts = Counter({c: 0 for c in self.categories})
        for category, count in (counts or {}).items():
            if category not in self.counts:
                raise ValueError(f"unknown category {category!r}; expected one of {list(self.categories)}")
            self.counts[category] += count

    def plan(self, sizes: Sequence[int]) -> list[list[str]]:
        pending = Counter(self.counts)
        plans = []
        for size in sizes:
            chosen: list[str] = []
            for _ in range(size):
                fresh = [c for c in self.categories if c not in chosen] or list(self.categories)
                target = min(fresh, key=lambda c: (pending[c], self.categories.index(c)))
                pending[target] += 1
                chosen.append(target)
            plans.append(chosen)
        return plans

    def record(self, category: str, n: int = 1) -> None:
        self.counts[category] += n


# --------------------------------------------------------------------------------------------------------------
# Draft schemas (what the LLM fills) and item building


def _text(max_chars: int, min_chars: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_chars, "maxLength": max(max_chars, min_chars + 10)}


# No "uniqueItems" in the arrays: grammars cannot enforce it, and a re-ask for it rarely helps a small model;
# repeated options are rejected by the item builders instead (reason "duplicate_options").
def _strings(n: int, max_chars: int) -> dict[str, Any]:
    return {"type": "array", "items": _text(max_chars), "minItems": n, "maxItems": n}


def _emotions(n: int) -> dict[str, Any]:
    return {"type": "array", "items": {"enum": list(EMOTION_OPTIONS)}, "minItems": n, "maxItems": n}


def _object(title: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _budget(max_tokens: int) -> float:
    return max_tokens * CHARS_PER_TOKEN


def supervisor_schema(max_tokens: int) -> dict[str, Any]:
    """The SupervisorAgent's verdict: a short reason, then the four criteria of Algorithm 1 as booleans."""
    return _object("SupervisorVerdict", {
        "reason": _text(int(_budget(max_tokens) - 70)),
        **{name: {"type": "boolean"} for name in ("scenario", "emotions", "causes", "dilemma")}})


def scenario_budget(max_tokens: int, overhead_chars: int, share: float, min_words: int, what: str,
                    ) -> tuple[int, int]:
    """(scenario characters, characters left for the other text fields) within a reply of ``max_tokens``.

    ``overhead_chars`` go to keys, enums and punctuation. The scenario gets ``share`` of the rest but at least
    ``min_words * CHARS_PER_WORD`` characters plus some room; a budget that cannot also hold
    ``OTHER_FIELDS_MIN_CHARS`` for the other fields is a settings error that names the fix.
    """
    chars = _budget(max_tokens) - overhead_chars
    floor = min_words * CHARS_PER_WORD + 60
    scenario = max(int(chars * share), floor)
    rest = int(chars - scenario)
    if rest < OTHER_FIELDS_MIN_CHARS:
        needed = math.ceil((floor + OTHER_FIELDS_MIN_CHARS + overhead_chars) / CHARS_PER_TOKEN)
        if not min_words:
            raise ValueError(f"item_max_tokens={max_tokens} cannot hold {what}; raise it to >= {needed}")
        raise ValueError(f"item_max_tokens={max_tokens} cannot hold {what} whose scenario has at least {min_words} "
                         f"words; raise item_max_tokens to >= {needed} or lower scenario_min_words")
    return scenario, rest


def eu_draft_schema(max_tokens: int, scenario_min_words: int = 0) -> dict[str, Any]:
    """One schema for every EU request (the category and sub-type are in the prompt), so the requests of a whole
    batch of dialogues share one batched, grammar-constrained generate call on the local backend."""
    scenario, rest = scenario_budget(max_tokens, 240, 0.35, scenario_min_words, "an EU item")  # 240: keys, enums
    return _object("EUItemDraft", {
        "scenario": _text(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "subject": _text(40),
        "emotion_label": {"enum": list(EMOTION_OPTIONS)},
        "emotion_distractors": _emotions(5),
        "emotion_explanation": _text(int(rest * 0.23)),
        "cause_label": _text(int(rest * 0.11)),
        "cause_distractors": _strings(3, int(rest * 0.11)),
        "cause_explanation": _text(int(rest * 0.18)),
    })


def ea_draft_schema(max_tokens: int, scenario_min_words: int = 0) -> dict[str, Any]:
    scenario, rest = scenario_budget(max_tokens, 110, 0.4, scenario_min_words, "an EA item")
    return _object("EAItemDraft", {
        "scenario": _text(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "subject": _text(40),
        "best_choice": _text(int(rest * 0.13)),
        "other_choices": _strings(3, int(rest * 0.13)),
        "explanation": _text(int(rest * 0.33)),
    })


def mcq_draft_schema(task: str, max_tokens: int, scenario_min_words: int = 0) -> dict[str, Any]:
    """Concise pipeline: the paper's MCQ record (§3.3); EU options are emotions from the vocabulary."""
    if task == "EU":
        answer, distractors = {"enum": list(EMOTION_OPTIONS)}, _emotions(3)
        share, shares = 0.45, (0.15, 0.55)
    else:
        share, shares = 0.35, (0.11, 0.38)
    scenario, rest = scenario_budget(max_tokens, 150, share, scenario_min_words, f"an {task} question")
    if task != "EU":
        answer, distractors = _text(int(rest * 0.09)), _strings(3, int(rest * 0.09))
    return _object(f"{task}MCQDraft", {
        "scenario": _text(scenario, max(20, scenario_min_words * CHARS_PER_WORD)),
        "question": _text(int(rest * shares[0]), 5),
        "correct_answer": answer,
        "distractors": distractors,
        "explanation": _text(int(rest * shares[1])),
    })


class ItemRejected(ValueError):
    """A draft that cannot become a valid item; ``reason`` is counted in the statistics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _distinct(options: Sequence[str], what: str) -> list[str]:
    cleaned = [" ".join(str(o).split()) for o in options]
    if any(not o for o in cleaned):
        raise ItemRejected("empty_option", f"{what} has an empty option")
    if len({o.casefold() for o in cleaned}) != len(cleaned):
        raise ItemRejected("duplicate_options", f"{what} repeats an option: {cleaned}")
    return cleaned


def _known_emotions(options: Sequence[str]) -> None:
    unknown = [o for o in options if not is_known_emotion(o)]
    if unknown:
        raise ItemRejected("unknown_emotion", f"not in the emotion vocabulary: {unknown}")


def _validated(model: type[BaseModel], record: dict[str, Any]) -> Any:
    try:
        return model.model_validate(record)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(item)'}: {e['msg']}" for e in err.errors())
        raise ItemRejected("schema", problems) from None


def _shuffled(options: list[str], rng: random.Random) -> list[str]:
    options = list(options)
    rng.shuffle(options)
    return options


def emotion_options(label: str, distractors: Sequence[str], rng: random.Random,
                    repairs: list[dict[str, Any]] | None = None, item_id: str = "") -> list[str]:
    """The gold emotion first, then the distractors; repeated distractors are replaced by other emotions.

    A grammar can force emotions from the vocabulary but not distinct ones, and small models repeat one (often the
    label itself). Each repeat (or copy of the label) is replaced by an emotion drawn, with ``rng``, from the
    vocabulary words not yet among the options; the repair is appended to ``repairs`` so runs can count it.
    Free-text options (causes, EA choices) are never invented: repeats there reject the item.
    """
    options = [label]
    for emotion in distractors:
        if emotion.casefold() not in {o.casefold() for o in options}:
            options.append(emotion)
    missing = len(distractors) + 1 - len(options)
    if missing:
        unused = [e for e in EMOTION_OPTIONS if e.casefold() not in {o.casefold() for o in options}]
        replacements = rng.sample(unused, missing)
        options += replacements
        if repairs is not None:
            repairs.append({"item_id": item_id, "repair": "repeated_emotions_replaced",
                            "detail": f"{list(distractors)} -> {options[1:]}"})
    return options


def build_eu_item(draft: Mapping[str, Any], *, qid: str, category: str, finegrained: str, provenance: Provenance,
                  rng: random.Random, repairs: list[dict[str, Any]] | None = None) -> GeneratedEUItem:
    """An EmoBench-format EU item from a draft; raises :class:`ItemRejected` when it cannot be valid.

    Repeated emotion distractors are repaired (see :func:`emotion_options`) and noted in ``repairs``.
    """
    if finegrained not in EU_FINEGRAINED[category]:
        raise ValueError(f"{finegrained!r} is not a sub-type of {category}")
    emotions = emotion_options(draft["emotion_label"], draft["emotion_distractors"], rng, repairs, qid)
    _known_emotions(emotions)
    causes = _distinct([draft["cause_label"], *draft["cause_distractors"]], "cause options")
    return _validated(GeneratedEUItem, dict(
        qid=qid, language="en", coarse_category=category, finegrained_category=finegrained,
        scenario=draft["scenario"], subject=draft["subject"], emotion_choices=_shuffled(emotions, rng),
        emotion_label=emotions[0], cause_choices=_shuffled(causes, rng), cause_label=causes[0],
        emotion_explanation=draft["emotion_explanation"], cause_explanation=draft["cause_explanation"],
        provenance=provenance))


def build_ea_item(draft: Mapping[str, Any], *, qid: str, category: str, question_type: str,
                  provenance: Provenance, rng: random.Random) -> GeneratedEAItem:
    choices = _distinct([draft["best_choice"], *draft["other_choices"]], "choices")
    return _validated(GeneratedEAItem, {
        "qid": qid, "language": "en", "category": category, "question type": question_type,
        "scenario": draft["scenario"], "subject": draft["subject"], "choices": _shuffled(choices, rng),
        "label": choices[0], "explanation": draft["explanation"], "provenance": provenance})


def build_mcq_item(draft: Mapping[str, Any], *, item_id: str, task: str, category: str, provenance: Provenance,
                   rng: random.Random, repairs: list[dict[str, Any]] | None = None) -> MCQItem:
    if task == "EU":  # emotion options: repeats repaired from the vocabulary, as for MADS EU items
        options = emotion_options(draft["correct_answer"], draft["distractors"], rng, repairs, item_id)
        _known_emotions(options)
    else:
        options = _distinct([draft["correct_answer"], *draft["distractors"]], "options")
    return _validated(MCQItem, dict(
        item_id=item_id, task=task, category=category, scenario=draft["scenario"], question=draft["question"],
        options=_shuffled(options, rng), correct_answer=options[0], explanation=draft["explanation"],
        provenance=provenance))


def rejection(result: ChatResult | LLMError | ItemRejected, *, task: str, target: str, item_id: str,
              ) -> dict[str, str]:
    """What the statistics record about an item that was not written."""
    reason = result.reason if isinstance(result, (LLMError, ItemRejected)) else "unknown"
    detail = result.detail if isinstance(result, ItemRejected) else str(result)
    return {"item_id": item_id, "task": task, "target": target, "reason": reason, "detail": detail[:300]}


# --------------------------------------------------------------------------------------------------------------
# Output files, checkpoints and resume


@dataclass
class Timer:
    """Wall time of lockstep steps, charged to every conversation that took part in a step."""

    totals: dict[str, float] = field(default_factory=dict)

    def charge(self, states: Iterable[Any], key: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        for state in states:
            state.timings[key] = round(state.timings.get(key, 0.0) + elapsed, 3)
        self.totals[key] = self.totals.get(key, 0.0) + elapsed

    def step(self, client: LLMClient, states: Sequence[Any], build: Callable[[Any], list], key: str,
             **options: Any) -> list[ChatResult | LLMError]:
        """One lockstep step: ``build(state)``'s conversation of every state in one ``chat_many`` call, its wall
        time charged to ``key`` and each reply's usage to its state (``state.charge``)."""
        started = time.perf_counter()
        results = client.chat_many([build(state) for state in states], **options)
        self.charge(states, key, started)
        for state, result in zip(states, results, strict=True):
            state.charge(result)
        return results


def config_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """The settings that differ between a saved run and this one (``ignore``: settings safe to change)."""
    skip = set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def keep_records(path: Path, keep: Callable[[dict], bool]) -> int:
    """Rewrite a JSONL file (atomically, lines byte-for-byte) without the records ``keep`` rejects; returns how
    many were removed. Bad lines raise :class:`~ec2er_utils.jsonl.JSONLError` naming file and line."""
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    verdicts = [keep(record) for record in iter_jsonl(path)]
    if all(verdicts):
        return 0
    kept = "".join(line for line, ok in zip(lines, verdicts, strict=True) if ok)
    write_text_atomic(path, kept)
    return verdicts.count(False)


def fingerprint(values: Iterable[Any]) -> str:
    """A short hash of a plan (which persona and theme each conversation gets), to refuse resuming another plan."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:16]


def remove_outputs(paths: Iterable[Path]) -> list[Path]:
    """Delete a previous run's files before a fresh run; returns the ones that existed."""
    removed = []
    for path in paths:
        if path.exists():
            os.remove(path)
            removed.append(path)
    return removed


# What a request that never got an answer ends in: connection refused or reset, HTTP 429/5xx or a timeout, after the
# client's own retries (LLMRequestError). Resume runs such a unit again: it does not hold what the model would write.
TRANSPORT_FAILURE = LLMRequestError.reason


def transport_failed(record: Mapping[str, Any]) -> bool:
    """Whether a finished unit's record shows a transport failure: in its own error (a failed background or turn),
    in a rejected item, or in a supervisor verdict (a failed check lets a dialogue go on, so it changes its course)."""
    reasons = [(record.get("error") or {}).get("reason")]
    reasons += [item.get("reason") for item in record.get("rejected_items") or ()]
    reasons += [verdict.get("error") for verdict in record.get("supervisor_verdicts") or ()]
    return TRANSPORT_FAILURE in reasons


class ModelUnreachable(RuntimeError):
    """A run stopped early because its last units all failed to reach the model (see :class:`UnreachableWatch`)."""


class UnreachableWatch:
    """Stops a run whose model has gone away (server killed, network down) instead of letting every remaining unit
    fail only after the client's full retry sequence (seconds per request).

    After each batch, :meth:`tripped` counts its new units in order; once ``limit`` in a row failed in transport on
    their own request (background or turn: :data:`TRANSPORT_FAILURE`), the run saves its files and raises
    :meth:`error` (a :class:`ModelUnreachable` saying how to resume). A unit that got its answers resets the count,
    so single failing units between answered ones do not stop a run. The default limit, two full batches, lets a
    short outage pass within one batch.
    """

    def __init__(self, unit: str, out_dir: Path, concurrency: int, limit: int | None = None):
        self.unit, self.out_dir = unit, out_dir
        self.limit = limit if limit is not None else max(4, 2 * concurrency)
        self.streak = 0
        self.last_message = ""

    def tripped(self, errors: Iterable[Mapping[str, str] | None]) -> bool:
        """Count the batch's units (each unit's error record, or None); True once ``limit`` failed in a row."""
        for error in errors:
            if error is not None and error.get("reason") == TRANSPORT_FAILURE:
                self.streak += 1
                self.last_message = error.get("message", "")
            else:
                self.streak = 0
        return self.streak >= self.limit

    def error(self) -> ModelUnreachable:
        return ModelUnreachable(
            f"the last {self.streak} {self.unit}s in a row could not reach the model (last error: "
            f"{self.last_message[:300]}); the run stopped instead of failing every remaining {self.unit} after its "
            f"retries. Everything generated so far is saved in {self.out_dir}. Once the server answers again, run "
            f"again with resume=True (papermill: -p resume True): it generates the failed and the remaining "
            f"{self.unit}s and keeps the rest.")


@dataclass
class RunFiles:
    """The files of one generation run and the rules that make it resumable (shared by MADS and concise).

    A unit (a MADS dialogue, a concise persona) is complete once its record is in the ``ledger``, which is written
    after the unit's other records: ``metadata.jsonl`` for MADS (JSON lines, appended and fsynced) or
    ``personas_checkpoint.json`` for concise (a JSON list, replaced atomically). ``records`` are the JSONL files
    whose lines belong to a unit; ``unit_of(record)`` gives that unit's id, ``id_key`` names it in a ledger record.
    """

    label: str  # "mads" or "concise": prefixes what is printed
    unit: str  # "dialogue" or "persona"
    out_dir: Path
    config: Path  # run_config.json: the settings a resume must match
    ledger: Path
    id_key: str
    records: Sequence[Path]
    unit_of: Callable[[dict], str]
    outputs: Sequence[Path]  # every file of a run: a fresh run removes them

    def prepare(self, settings: Mapping[str, Any], resume: bool) -> list[dict[str, Any]]:
        """Start a fresh run (removing a previous run's files) or make an interrupted one ready to continue;
        returns the ledger records of the complete units, in file order.

        Resuming refuses changed settings (only ``checkpoint_every`` may change), deletes the temporary file of an
        interrupted atomic write, cuts a partial last line (a process killed mid-append), takes units that met a
        transport failure out of the ledger so they run again (the ledger first: a crash right after leaves them
        incomplete, never half-removed), then drops every record of a unit that is not complete. Damage inside a
        file raises :class:`~ec2er_utils.jsonl.JSONLError` naming the file, the line and the fix.
        """
        if not resume:
            removed = remove_outputs(self.outputs)
            if removed:
                print(f"[{self.label}] fresh run: removed {len(removed)} file(s) of a previous run in {self.out_dir}")
        elif self.config.is_file():
            differences = config_mismatch(self._explained(read_json, self.config), settings,
                                          ignore=("checkpoint_every",))
            if differences:
                raise ValueError(f"cannot resume the run in {self.out_dir}: settings changed "
                                 f"({'; '.join(differences)}). Use the saved settings to resume, or resume=False "
                                 "(or another out_dir) to start a new run.")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for path in self.outputs:
            for leftover in self.out_dir.glob(f".{path.name}.*.tmp"):  # see jsonl.write_text_atomic
                leftover.unlink()
        write_json_atomic(self.config, dict(settings))
        for path in (self.ledger, *self.records):
            if path.suffix == ".jsonl" and repair_jsonl_tail(path):
                print(f"[{self.label}] resume: cut a partial last line from {path.name}")
        ledger = self._read_ledger()
        retry = [r[self.id_key] for r in ledger if transport_failed(r)]
        if retry:
            ledger = [r for r in ledger if not transport_failed(r)]
            if self.ledger.suffix == ".jsonl":
                self._explained(keep_records, self.ledger, lambda r: not transport_failed(r))
            else:
                write_json_atomic(self.ledger, ledger)
            print(f"[{self.label}] resume: {len(retry)} {self.unit}(s) met a transport failure (server down, HTTP "
                  f"error or timeout) and will run again: {', '.join(retry[:5])}{' ...' if len(retry) > 5 else ''}")
        complete = {r[self.id_key] for r in ledger}
        removed = sum(self._explained(keep_records, path, lambda r: self.unit_of(r) in complete)
                      for path in self.records)
        if removed:
            print(f"[{self.label}] resume: removed {removed} record(s) of unfinished {self.unit}s; they will be "
                  "generated again")
        if resume and ledger:
            print(f"[{self.label}] resume: {len(ledger)} {self.unit}(s) already complete in {self.out_dir}")
        return ledger

    def _read_ledger(self) -> list[dict[str, Any]]:
        if not self.ledger.is_file():
            return []
        if self.ledger.suffix == ".jsonl":
            return self._explained(lambda path: list(iter_jsonl(path)), self.ledger)
        return self._explained(read_json, self.ledger)

    def _explained(self, read: Callable[..., Any], path: Path, *args: Any) -> Any:
        """``read(path, *args)``, with a corrupted file's error saying what resuming can and cannot mend."""
        try:
            return read(path, *args)
        except JSONLError as err:
            rerun = f"deleting a {self.unit}'s line in {self.ledger.name} makes that {self.unit} run again" \
                if self.ledger.suffix == ".jsonl" else f"deleting {self.ledger.name} makes every {self.unit} run again"
            raise JSONLError(f"cannot resume the run in {self.out_dir}: {err}. Resuming mends a partial last line "
                             f"by itself, not damage inside a file; {rerun}, and resume=False starts the run over."
                             ) from None


def distribution(values: Iterable[str], order: Sequence[str] = ()) -> dict[str, int]:
    """Counts with every expected value present (0 when missing), expected values first."""
    counts = Counter(values)
    ordered = {value: counts.pop(value, 0) for value in order}
    ordered.update(sorted(counts.items()))
    return ordered


EU_ORDER, EA_ORDER = EU_CATEGORIES, EA_CATEGORIES
