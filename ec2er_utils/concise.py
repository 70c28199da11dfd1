"""The concise single-conversation pipeline (paper §3.2, Algorithm 2).

For each of n = min(num_samples, |P|) sampled personas: sample the attribute set, write a condensed background,
hold a short therapist–patient conversation (``rounds`` rounds of patient message + therapist reply, at most 10
messages for the paper's 5 rounds), then generate EU and EA multiple-choice questions inline from background +
conversation. There is no supervisor. Every item is validated before it is written (JSON schema, required fields,
answer among the options, distinct options, EU options in the emotion vocabulary); rejected items are counted with
their reason and never written.

Item format (our choice, the paper leaves it open): the paper's generic MCQ record
:class:`~ec2er_utils.schemas.MCQItem` (scenario, question, options, correct answer, explanation; §3.3), with 4
options for both tasks and EU options drawn from the emotion vocabulary. Categories are targeted like in MADS: each
request asks for the least-represented EU / EA category so far.

Outputs in ``out_dir`` (``data/concise/``): ``personas_final.json`` (every sampled persona with its attributes,
background, conversation, item ids, rejected items, status, token usage) and ``items_final.jsonl``, written at the
end; ``personas_checkpoint.json`` / ``items_checkpoint.jsonl`` every ``checkpoint_every`` (10) personas;
``summary.json`` (paths, counts, category distributions), also returned. ``resume=True`` continues from the
checkpoint, dropping items of personas that were not marked complete, and generates again the personas whose
record shows a transport failure (``request_failed``: server down, HTTP error or timeout after the client's
retries); same rules as MADS (:class:`~ec2er_utils.generation.RunFiles`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import generation_prompts as prompts
from .generation import (
    CLIENT,
    PAPER_SCENARIO_MIN_WORDS,
    THERAPIST,
    CategoryBalancer,
    ItemRejected,
    RunFiles,
    Timer,
    UnreachableWatch,
    build_mcq_item,
    call_seed,
    check_run_config,
    client_view,
    exchange_turns,
    distribution,
    error_record,
    fingerprint,
    mcq_draft_schema,
    rejection,
    require,
    result_usage,
    therapist_view,
    transcript,
)
from .jsonl import append_jsonl, iter_jsonl, write_json_atomic, write_jsonl_atomic
from .llm import LLMClient, LLMError, Usage
from .paths import data_dir
from .personas import AttributeSet, Persona, rng_for, sample_attributes, sample_personas
from .schemas import MCQItem, Provenance
from .taxonomy import EA_CATEGORIES, EU_CATEGORIES

PAPER_ROUNDS = 5  # "5 rounds, max 10 messages"
FILES = {"personas_final": "personas_final.json", "items_final": "items_final.jsonl",
         "personas_checkpoint": "personas_checkpoint.json", "items_checkpoint": "items_checkpoint.jsonl",
         "summary": "summary.json", "config": "run_config.json"}


@dataclass
class ConciseConfig:
    """Every setting of a concise run. Defaults follow the paper; the notebook passes tiny CPU-sized values."""

    num_samples: int = 3000
    rounds: int = PAPER_ROUNDS
    eu_items: int = 1  # EU questions per persona
    ea_items: int = 1  # EA questions per persona
    concurrency: int = 8
    checkpoint_every: int = 10
    seed: int = 0
    background_words: tuple[int, int] = (80, 150)
    background_max_tokens: int = 260
    turn_max_tokens: int = 150
    item_max_tokens: int = 500
    scenario_min_words: int = PAPER_SCENARIO_MIN_WORDS  # shortest scenario the item schema allows (see notebook 03)
    temperature: float = 0.8
    shard_index: int = 0
    num_shards: int = 1

    def __post_init__(self):
        check_run_config(self, positive=("num_samples", "concurrency", "checkpoint_every", "background_max_tokens",
                                         "turn_max_tokens", "item_max_tokens"))
        require(1 <= self.rounds <= PAPER_ROUNDS,
                f"rounds must be between 1 and {PAPER_ROUNDS} (at most 10 messages), got {self.rounds}")
        require(self.eu_items >= 0 and self.ea_items >= 0 and self.eu_items + self.ea_items >= 1,
                f"need eu_items, ea_items >= 0 and at least one item per persona, got {self.eu_items}, "
                f"{self.ea_items}")
        for task in ("EU", "EA"):  # raises, naming item_max_tokens, if the budget cannot hold such a scenario
            mcq_draft_schema(task, self.item_max_tokens, self.scenario_min_words)


@dataclass
class SampleState:
    index: int
    sample_id: str
    persona: Persona
    attributes: AttributeSet
    background: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    items: list[MCQItem] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    repaired: list[dict[str, str]] = field(default_factory=list)  # items written after a recorded repair
    error: dict[str, str] | None = None
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.error is None

    def charge(self, result) -> None:
        used = result_usage(result)
        self.usage.add(used.prompt_tokens, used.completion_tokens, used.calls or 1)

    def fail(self, stage: str, error) -> None:
        self.error = error_record(stage, error)

    def record(self) -> dict[str, Any]:
        return {"sample_id": self.sample_id, "index": self.index, "status": "failed" if self.error else "ok",
                "persona": self.persona.model_dump(), "attributes": self.attributes.model_dump(),
                "background": self.background, "messages": self.messages, "item_ids": [i.item_id for i in self.items],
                "targets": self.targets, "rejected_items": self.rejected, "repaired_items": self.repaired,
                "error": self.error,
                "usage": self.usage.as_dict(), "timings": self.timings}


def sample_id_for(seed: int, index: int) -> str:
    return f"concise-s{seed}-{index:05d}"


class ConciseRunner:
    def __init__(self, client: LLMClient, personas: Sequence[Persona], out_dir: Path, config: ConciseConfig,
                 progress: bool = True):
        self.client, self.config, self.progress = client, config, progress
        sampled = sample_personas(personas, config.num_samples, config.seed)  # Algorithm 2, line 2
        self.population = len(personas)
        self.all_samples = [(i, sample_id_for(config.seed, i), p) for i, p in enumerate(sampled)]
        self.samples = [s for s in self.all_samples if s[0] % config.num_shards == config.shard_index]
        self.out_dir = Path(out_dir)
        self.paths = {k: self.out_dir / v for k, v in FILES.items()}
        self.timer = Timer()
        self.balancers = {"EU": CategoryBalancer(EU_CATEGORIES), "EA": CategoryBalancer(EA_CATEGORIES)}
        self.turn_words = max(15, int(config.turn_max_tokens * 0.6))

    # -- prompts ----------------------------------------------------------------------------------------------

    def _background(self, s: SampleState) -> list[dict[str, str]]:
        lo, hi = self.config.background_words
        user = prompts.CONCISE_BACKGROUND_USER.format(min_words=lo, max_words=hi, persona=s.persona.describe(),
                                                      attributes=s.attributes.describe())
        return [{"role": "system", "content": prompts.BACKGROUND_SYSTEM}, {"role": "user", "content": user}]

    def _client(self, s: SampleState) -> list[dict[str, str]]:
        return client_view(s.persona, s.attributes, s.background, s.messages, self.turn_words)

    def _therapist(self, s: SampleState) -> list[dict[str, str]]:
        return therapist_view(s.background, s.messages, self.turn_words)

    def _item_request(self, s: SampleState, task: str, category: str) -> list[dict[str, str]]:
        context = prompts.BACKGROUND_AND_DIALOGUE_CONTEXT.format(background=s.background,
                                                                 transcript=transcript(s.messages))
        template, guide = (prompts.CONCISE_EU_USER, prompts.EU_CATEGORY_GUIDE) if task == "EU" else \
            (prompts.CONCISE_EA_USER, prompts.EA_CATEGORY_GUIDE)
        user = template.format(context=context, category=category, category_guide=guide[category])
        return [{"role": "system", "content": prompts.EXTRACTOR_SYSTEM}, {"role": "user", "content": user}]

    # -- files ------------------------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
        settings["generator_model"] = self.client.model
        settings["plan_fingerprint"] = fingerprint((sid, p.persona_id) for _, sid, p in self.all_samples)
        return settings

    def _prepare(self, resume: bool) -> list[dict[str, Any]]:
        """Check/repair existing files (:meth:`RunFiles.prepare`); return the records of complete personas."""
        files = RunFiles("concise", "persona", self.out_dir, self.paths["config"],
                         ledger=self.paths["personas_checkpoint"], id_key="sample_id",
                         records=[self.paths["items_checkpoint"]], unit_of=lambda r: r["provenance"]["dialogue_id"],
                         outputs=list(self.paths.values()))
        return files.prepare(self._settings(), resume)

    # -- run --------------------------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        from tqdm.auto import tqdm

        done = self._prepare(resume)
        complete = {r["sample_id"]: r for r in done}
        items_by_sample: dict[str, list[dict]] = {}
        if self.paths["items_checkpoint"].is_file():
            for record in iter_jsonl(self.paths["items_checkpoint"]):
                items_by_sample.setdefault(record["provenance"]["dialogue_id"], []).append(record)
        started = time.perf_counter()
        size = self.config.concurrency
        batches = [self.samples[i:i + size] for i in range(0, len(self.samples), size)]
        buffer: list[SampleState] = []
        bar = tqdm(total=len(self.samples), desc="concise personas", unit="persona", disable=not self.progress)
        bar.update(sum(sid in complete for _, sid, _ in self.samples))
        watch = UnreachableWatch("persona", self.out_dir, self.config.concurrency)
        try:
            for number, batch in enumerate(batches):
                if all(sid in complete for _, sid, _ in batch):
                    for _, sid, _ in batch:
                        self._count(items_by_sample.get(sid, []))
                    continue
                new = []
                for state in self._run_batch(number, batch, bar):
                    if state.sample_id in complete:
                        self._count(items_by_sample.get(state.sample_id, []))
                        continue
                    self._count([{"task": i.task, "category": i.category} for i in state.items])
                    new.append(state)
                    bar.update(1)
                buffer += new
                if watch.tripped(s.error for s in new) and number + 1 < len(batches):
                    self._checkpoint(done, buffer)
                    raise watch.error()
                if len(buffer) >= self.config.checkpoint_every:
                    done = self._checkpoint(done, buffer)
                    buffer = []
            done = self._checkpoint(done, buffer)
        finally:
            bar.close()
        return self._finish(done, time.perf_counter() - started)

    def _count(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.balancers[item["task"]].record(item["category"])

    def _step(self, states, build, key, **options):
        return self.timer.step(self.client, states, build, key, **options)

    def _run_batch(self, number: int, batch, bar) -> list[SampleState]:
        config = self.config
        states = [SampleState(i, sid, p, sample_attributes(rng_for(config.seed, "attributes", i), p))
                  for i, sid, p in batch]
        bar.set_postfix_str(f"batch {number + 1}: background")
        results = self._step(states, self._background, "background_s", temperature=config.temperature,
                             max_tokens=config.background_max_tokens, seed=call_seed(config.seed, number, "background"))
        for state, result in zip(states, results, strict=True):
            if isinstance(result, LLMError) or not result.text.strip():
                state.fail("background", result if isinstance(result, LLMError) else "empty_reply")
            else:
                state.background = result.text.strip()
        for round_number in range(1, config.rounds + 1):
            exchange_turns(self._step, states, ((CLIENT, self._client), (THERAPIST, self._therapist)),
                           stage=f"round {round_number}", seed=(config.seed, number, round_number), bar=bar,
                           bar_prefix=f"batch {number + 1}: ", temperature=config.temperature,
                           max_tokens=config.turn_max_tokens)
        self._generate_items(number, [s for s in states if s.active], bar)
        return states

    def _generate_items(self, number: int, states: list[SampleState], bar) -> None:
        if not states:
            return
        config = self.config
        bar.set_postfix_str(f"batch {number + 1}: items")
        groups: dict[str, list] = {"EU": [], "EA": []}
        for task, count in (("EU", config.eu_items), ("EA", config.ea_items)):
            if count == 0:
                continue
            for state, targets in zip(states, self.balancers[task].plan([count] * len(states)), strict=True):
                for k, category in enumerate(targets, start=1):
                    state.targets.append(f"{task}:{category}")
                    groups[task].append((state, f"{state.sample_id}-{task.lower()}{k}", category))
        # Every EU and EA request of the batch in one call, one schema per request (one local generate batch).
        requests = [(task, member) for task, members in groups.items() for member in members]
        if not requests:
            return
        task_schemas = {task: mcq_draft_schema(task, config.item_max_tokens, config.scenario_min_words)
                        for task in groups}
        started = time.perf_counter()
        results = self.client.chat_many([self._item_request(s, task, c) for task, (s, _, c) in requests],
                                        schemas=[task_schemas[task] for task, _ in requests],
                                        temperature=config.temperature, max_tokens=config.item_max_tokens,
                                        seed=call_seed(config.seed, number, "items"))
        self.timer.charge(states, "items_s", started)
        for (task, (state, item_id, category)), result in zip(requests, results, strict=True):
            state.charge(result)
            if isinstance(result, LLMError):
                state.rejected.append(rejection(result, task=task, target=category, item_id=item_id))
                continue
            provenance = Provenance(pipeline="concise", generator_model=self.client.model,
                                    persona_id=state.persona.persona_id, dialogue_id=state.sample_id)
            try:
                state.items.append(build_mcq_item(result.data, item_id=item_id, task=task, category=category,
                                                  provenance=provenance, repairs=state.repaired,
                                                  rng=rng_for(config.seed, "options", item_id)))
            except ItemRejected as problem:
                state.rejected.append(rejection(problem, task=task, target=category, item_id=item_id))

    def _checkpoint(self, done: list[dict[str, Any]], states: list[SampleState]) -> list[dict[str, Any]]:
        """Items first, then the personas JSON that marks them complete (Algorithm 2, line 9)."""
        self.paths["items_checkpoint"].touch()
        if states:
            append_jsonl(self.paths["items_checkpoint"], [i for s in states for i in s.items])
            done = done + [s.record() for s in states]
            write_json_atomic(self.paths["personas_checkpoint"], done)
        return done

    def _finish(self, done: list[dict[str, Any]], elapsed_s: float) -> dict[str, Any]:
        done = sorted(done, key=lambda r: r["index"])
        items = list(iter_jsonl(self.paths["items_checkpoint"], MCQItem)) \
            if self.paths["items_checkpoint"].is_file() else []
        order = {r["sample_id"]: r["index"] for r in done}
        items.sort(key=lambda i: (order[i.provenance.dialogue_id], i.item_id))
        write_json_atomic(self.paths["personas_final"], done)
        write_jsonl_atomic(self.paths["items_final"], items)
        summary = concise_summary(done, items, self.paths, elapsed_s=elapsed_s, population=self.population,
                                  planned=len(self.samples))
        write_json_atomic(self.paths["summary"], summary)
        return summary


def concise_summary(done: list[dict[str, Any]], items: list[MCQItem], paths: dict[str, Path], *,
                    elapsed_s: float | None = None, population: int | None = None,
                    planned: int | None = None) -> dict[str, Any]:
    """Algorithm 2, line 12: paths, counts and category distributions."""
    usage = Counter()
    for record in done:
        usage.update(record["usage"])
    rejected = [r for record in done for r in record["rejected_items"]]
    return {
        "paths": {k: str(p) for k, p in paths.items()},
        "personas_available": population, "personas_sampled": planned, "personas_written": len(done),
        "status": distribution(r["status"] for r in done),
        "failure_reasons": distribution(f"{r['error']['stage']}: {r['error']['reason']}" for r in done if r["error"]),
        "messages_mean": round(sum(len(r["messages"]) for r in done) / len(done), 2) if done else None,
        "items": len(items),
        "items_by_task": distribution((i.task for i in items), ("EU", "EA")),
        "eu_categories": distribution((i.category for i in items if i.task == "EU"), EU_CATEGORIES),
        "ea_categories": distribution((i.category for i in items if i.task == "EA"), EA_CATEGORIES),
        "items_rejected": len(rejected),
        "rejection_reasons": distribution(r["reason"] for r in rejected),
        "items_repaired": sum(len(record.get("repaired_items", [])) for record in done),
        "usage": dict(usage),
        "elapsed_s_this_session": None if elapsed_s is None else round(elapsed_s, 1),
    }


def output_dir(base: str | Path | None, config: ConciseConfig) -> Path:
    folder = Path(base) if base else data_dir() / "concise"
    if config.num_shards > 1:
        folder = folder / f"shard-{config.shard_index:02d}-of-{config.num_shards:02d}"
    return folder


def run_concise(client: LLMClient, personas: Sequence[Persona], out_dir: str | Path | None = None,
                config: ConciseConfig | None = None, *, resume: bool = False, progress: bool = True,
                ) -> dict[str, Any]:
    """Algorithm 2 end to end; returns the summary (also written to ``summary.json``)."""
    config = config or ConciseConfig()
    runner = ConciseRunner(client, personas, output_dir(out_dir, config), config, progress=progress)
    return runner.run(resume=resume)
