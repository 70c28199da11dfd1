"""The concise single-conversation pipeline (paper §3.2, Algorithm 2): :func:`concise_conversation` is the algorithm
for one persona, :func:`run_sample` runs it once, :func:`run_concise` runs many (batched, resumable, like MADS).
Output files: ``FILES``. The item format and the departures from the paper: README, chapter 02.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ..attributes import sample_attributes
from ..jsonl import append_jsonl, iter_jsonl, write_json_atomic, write_jsonl_atomic
from ..llm import ChatResult, LLMClient, LLMError
from ..personas import Persona, sample_personas
from ..seeds import rng_for
from ..schemas import DatasetItem
from ..taxonomy import CONCISE_ROUNDS, EA_CATEGORIES, EU_CATEGORIES, SCENARIO_WORDS
from . import prompts
from .dialogue import CLIENT, THERAPIST, Conversation
from .items import CategoryBalancer, build_mcq_item, mcq_draft_schema, resolve_quotas
from .lockstep import Algorithm, Request, run_one
from .run_files import RunFiles, distribution, outcomes
from .runner import BatchedRun, RunConfig, check_run_settings, run_folder

FILES = {"personas_final": "personas_final.json", "items_final": "items_final.jsonl",
         "personas_checkpoint": "personas_checkpoint.json", "items_checkpoint": "items_checkpoint.jsonl",
         "summary": "summary.json", "config": "run_config.json"}


class ConciseConfig(RunConfig):
    """Every setting of a concise run: the generator's and the run's (:class:`~.runner.RunConfig`) and Algorithm
    2's. The defaults are notebook 02's: the CPU demo. The paper's set-up is ``recipes/paper/02_concise.yaml``
    (papermill ``-f``)."""

    folder: ClassVar[str] = "concise"

    num_samples: int = Field(2, ge=1)
    rounds: int = Field(CONCISE_ROUNDS, ge=1, le=CONCISE_ROUNDS)  # "5 rounds, max 10 messages"
    eu_items: int = Field(2, ge=0)  # EU questions per persona
    ea_items: int = Field(2, ge=0)  # EA questions per persona
    checkpoint_every: int = Field(10, ge=1)
    background_words: tuple[int, int] = (30, 60)
    background_max_tokens: int = Field(80, ge=1)
    turn_max_tokens: int = Field(40, ge=1)
    item_max_tokens: int = Field(400, ge=1)
    scenario_min_words: int = Field(SCENARIO_WORDS[0], ge=0)  # shortest scenario the item schema allows

    @model_validator(mode="after")
    def _consistent(self):
        check_run_settings(self)
        if self.eu_items + self.ea_items < 1:
            raise ValueError(f"need at least one item per persona, got eu_items={self.eu_items}, "
                             f"ea_items={self.ea_items}")
        for task in ("EU", "EA"):  # raises, naming item_max_tokens, if the budget cannot hold such a scenario
            mcq_draft_schema(task, self.item_max_tokens, self.scenario_min_words)
        return self


@dataclass(frozen=True)
class SamplePlan:
    index: int
    unit_id: str
    persona: Persona


def plan_samples(personas: Sequence[Persona], config: ConciseConfig) -> list[SamplePlan]:
    """Algorithm 2, line 2: n = min(num_samples, |P|) personas, in a seeded order."""
    sampled = sample_personas(personas, config.num_samples, config.seed)
    return [SamplePlan(i, f"concise-s{config.seed}-{i:05d}", p) for i, p in enumerate(sampled)]


class ConciseAgents:
    """The requests of the background writer, the two speakers and the item writer, and the item builder."""

    def __init__(self, config: ConciseConfig, generator_model: str):
        self.config, self.generator_model = config, generator_model
        self.turn_words = max(15, int(config.turn_max_tokens * 0.6))
        quotas = resolve_quotas(config.quotas)
        self.balancers = {"EU": CategoryBalancer(EU_CATEGORIES, quotas), "EA": CategoryBalancer(EA_CATEGORIES, quotas)}
        self.schemas = {task: mcq_draft_schema(task, config.item_max_tokens, config.scenario_min_words)
                        for task in ("EU", "EA")}

    def background(self, c: Conversation) -> Request:
        low, high = self.config.background_words
        user = prompts.CONCISE_BACKGROUND_USER.format(min_words=low, max_words=high, persona=c.persona.describe(),
                                                      attributes=c.attributes.describe())
        return Request("background", [{"role": "system", "content": prompts.BACKGROUND_SYSTEM},
                                      {"role": "user", "content": user}],
                       self.config.temperature, self.config.background_max_tokens, required=True,
                       timing="background_s")

    def client(self, c: Conversation, round_number: int) -> Request:
        return Request(f"round {round_number} client", c.client_prompt(self.turn_words), self.config.temperature,
                       self.config.turn_max_tokens, required=True)

    def therapist(self, c: Conversation, round_number: int) -> Request:
        return Request(f"round {round_number} therapist", c.therapist_prompt(self.turn_words),
                       self.config.temperature, self.config.turn_max_tokens, required=True)

    def targets(self) -> list[tuple[str, int, str]]:
        """(task, number, category): the least represented EU and EA categories so far."""
        return [(task, k, category) for task, n in (("EU", self.config.eu_items), ("EA", self.config.ea_items))
                for k, category in enumerate(self.balancers[task].take(n), start=1)]

    def item_writer(self, c: Conversation, task: str, category: str) -> Request:
        context = prompts.BACKGROUND_AND_DIALOGUE_CONTEXT.format(background=c.background,
                                                                 transcript=c.items_transcript())
        template, guide = (prompts.CONCISE_EU_USER, prompts.EU_CATEGORY_GUIDE) if task == "EU" else \
            (prompts.CONCISE_EA_USER, prompts.EA_CATEGORY_GUIDE)
        user = template.format(context=context, category=category, category_guide=guide[category])
        return Request("items", [{"role": "system", "content": prompts.EXTRACTOR_SYSTEM},
                                 {"role": "user", "content": user}], self.config.temperature,
                       self.config.item_max_tokens, schema=self.schemas[task], timing="items_s", last=True)

    def add_item(self, c: Conversation, task: str, number: int, category: str,
                 reply: ChatResult | LLMError) -> None:
        """Algorithm 2, line 8: validate the reply into an item, or record why it was rejected."""
        item_id = f"{c.unit_id}-{task.lower()}{number}"
        provenance = {"pipeline": "concise", "generator_model": self.generator_model,
                      "persona_id": c.persona.persona_id, "dialogue_id": c.unit_id}
        build = partial(build_mcq_item, item_id=item_id, task=task, category=category, provenance=provenance,
                        repairs=c.repaired, rng=rng_for(self.config.seed, "options", item_id))
        written = c.record_item(reply, build, task=task, target=category, item_id=item_id)
        self.balancers[task].settle(category, written)


def concise_conversation(c: Conversation, agents: ConciseAgents, config: ConciseConfig) -> Algorithm:
    """Algorithm 2, lines 5-8, for one sampled persona (its attributes, line 4, are sampled with the plan)."""
    c.set_background((yield agents.background(c)))                       # 5: background from persona + attributes
    for round_number in range(1, config.rounds + 1):                     # 6: 5 rounds, at most 10 messages
        c.say(CLIENT, (yield agents.client(c, round_number)), f"round {round_number}")
        c.say(THERAPIST, (yield agents.therapist(c, round_number)), f"round {round_number}")
    targets = agents.targets()                                           # 7: EU / EA questions from the dialogue
    c.targets = [f"{task}:{category}" for task, _, category in targets]
    replies = yield [agents.item_writer(c, task, category) for task, _, category in targets]
    for (task, number, category), reply in zip(targets, replies, strict=True):
        agents.add_item(c, task, number, category, reply)                # 8: validate, keep or reject


def new_conversation(plan: SamplePlan, seed: int) -> Conversation:
    attributes = sample_attributes(rng_for(seed, "attributes", plan.index), plan.persona)  # Algorithm 2, line 4
    return Conversation(plan.unit_id, plan.index, plan.persona, attributes)


def run_sample(client: LLMClient, plan: SamplePlan, config: ConciseConfig | None = None) -> Conversation:
    """Algorithm 2 for one sampled persona, request by request (what :func:`run_concise` does in batches)."""
    config = config or ConciseConfig()
    c = new_conversation(plan, config.seed)
    return run_one(client, c, concise_conversation(c, ConciseAgents(config, client.model), config), seed=config.seed)


def sample_record(c: Conversation) -> dict[str, Any]:
    return {"sample_id": c.unit_id, "index": c.index, "status": "failed" if c.error else "ok",
            "persona": c.persona.model_dump(), "attributes": c.attributes.model_dump(),
            "background": c.background, "messages": c.messages, "redundant_turns": c.redundant_turns(),
            "item_ids": [i.item_id for i in c.items], "targets": c.targets, "rejected_items": c.rejected,
            "repaired_items": c.repaired, "error": c.error,
            "usage": c.usage.as_dict(), "timings": c.timings}


class ConciseRun(BatchedRun):
    """Algorithm 2 for one shard of the sampled personas, in lockstep batches; files and resume as MADS."""

    unit, description = "persona", "concise personas"

    def __init__(self, client: LLMClient, plans: Sequence[SamplePlan], out_dir: str | Path, config: ConciseConfig,
                 *, population: int, progress: bool = True):
        super().__init__(client, plans, out_dir, config, progress=progress)
        self.paths = {k: self.out_dir / v for k, v in FILES.items()}
        self.agents = ConciseAgents(config, client.model)
        self.quota_balancers = tuple(self.agents.balancers.values())
        self.population = population
        self.done: list[dict[str, Any]] = []

    def plan_identity(self, plan: SamplePlan) -> tuple:
        return plan.unit_id, plan.persona.persona_id

    def prepare(self, resume: bool) -> set[str]:
        files = RunFiles("concise", "persona", self.out_dir, self.paths["config"],
                         ledger=self.paths["personas_checkpoint"], id_key="sample_id",
                         records=[self.paths["items_checkpoint"]], unit_of=lambda r: r["dialogue_id"],
                         outputs=list(self.paths.values()))
        self.done = files.prepare(self.settings(), resume)
        self.read_written_items(self.paths["items_checkpoint"])
        return {r["sample_id"] for r in self.done}

    def recount(self, unit_id: str) -> None:
        for item in self.written_items.get(unit_id, []):
            self.agents.balancers[item["task"]].record(item["category"])

    def start(self, plan: SamplePlan) -> tuple[Conversation, Algorithm]:
        c = new_conversation(plan, self.config.seed)
        return c, concise_conversation(c, self.agents, self.config)

    def flush(self, done: list[Conversation]) -> None:
        """Items first, then the personas JSON that marks them complete (Algorithm 2, line 9)."""
        self.paths["items_checkpoint"].touch()
        if done:
            append_jsonl(self.paths["items_checkpoint"], [i for c in done for i in c.items])
            self.done = self.done + [sample_record(c) for c in done]
            write_json_atomic(self.paths["personas_checkpoint"], self.done)

    def finish(self, elapsed_s: float) -> dict[str, Any]:
        """Algorithm 2, lines 11-12: the final files and the summary."""
        done = sorted(self.done, key=lambda r: r["index"])
        items = list(iter_jsonl(self.paths["items_checkpoint"], DatasetItem))
        order = {r["sample_id"]: r["index"] for r in done}
        items.sort(key=lambda i: (order[i.dialogue_id], i.item_id))
        write_json_atomic(self.paths["personas_final"], done)
        write_jsonl_atomic(self.paths["items_final"], items)
        summary = {
            "paths": {k: str(p) for k, p in self.paths.items()},
            "personas_available": self.population, "personas_sampled": len(self.plans),
            "personas_written": len(done), **outcomes(done),
            "messages_mean": round(sum(len(r["messages"]) for r in done) / len(done), 2) if done else None,
            "items": len(items),
            "items_by_task": distribution((i.task for i in items), ("EU", "EA")),
            "eu_categories": distribution((i.category for i in items if i.task == "EU"), EU_CATEGORIES),
            "ea_categories": distribution((i.category for i in items if i.task == "EA"), EA_CATEGORIES),
            "elapsed_s_this_session": round(elapsed_s, 1),
        }
        write_json_atomic(self.paths["summary"], summary)
        return summary


def run_concise(client: LLMClient, personas: Sequence[Persona], out_dir: str | Path | None = None,
                config: ConciseConfig | None = None, *, resume: bool | None = None, progress: bool = True,
                ) -> dict[str, Any]:
    """Algorithm 2 end to end; returns the summary (also written to ``summary.json``). ``out_dir`` and ``resume``
    default to the config's (``config.run_dir``, ``config.resume``)."""
    config = config or ConciseConfig()
    run = ConciseRun(client, plan_samples(personas, config), run_folder(config, out_dir), config,
                     population=len(personas), progress=progress)
    return run.run(resume=config.resume if resume is None else resume)
