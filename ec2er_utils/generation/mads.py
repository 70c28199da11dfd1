"""The Multi-Agent Dialogue System (paper §3.2, Algorithm 1): persona + theme -> background -> supervised therapy
dialogue -> EmoBench-format EU and EA items. :func:`mads_dialogue` is the algorithm for one dialogue,
:func:`run_dialogue` runs it once, :func:`run_mads` runs many (batched, resumable). Output files: ``FILES``.
Behaviour and departures from the paper: README, chapter 01 and "Reliability".
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ..attributes import AttributeSet, sample_attributes
from ..jsonl import append_jsonl, iter_jsonl, write_json_atomic
from ..llm import ChatResult, LLMClient, LLMError
from ..paths import data_dir
from ..personas import Persona, compatibility
from ..seeds import rng_for
from ..taxonomy import EA_CATEGORIES, EA_QUESTION_TYPES, EU_CATEGORIES, MADS_TURNS, SCENARIO_WORDS
from ..themes import THEMES, Theme
from . import prompts
from .dialogue import CLIENT, THERAPIST, Conversation, transcript
from .items import (
    EU_FINEGRAINED,
    CategoryBalancer,
    build_ea_item,
    build_eu_item,
    ea_draft_schema,
    eu_draft_schema,
    resolve_quotas,
    supervisor_schema,
)
from .lockstep import Algorithm, Request, run_one
from .run_files import RunFiles, distribution, outcomes
from .runner import BatchedRun, RunConfig, check_run_settings, run_folder

CRITERIA = ("scenario", "emotions", "causes", "dilemma")
FILES = {"eu": "eu_items.jsonl", "ea": "ea_items.jsonl", "dialogues": "dialogues.jsonl",
         "metadata": "metadata.jsonl", "statistics": "statistics.json", "config": "run_config.json"}


class MADSConfig(RunConfig):
    """Every setting of a MADS run: the generator's and the run's (:class:`~.runner.RunConfig`) and Algorithm 1's.
    The defaults are notebook 01's: the CPU demo (2 short dialogues, small token budgets). The paper's set-up is
    ``recipes/paper/01_mads.yaml`` (papermill ``-f``)."""

    folder: ClassVar[str] = "mads"

    num_dialogues: int = Field(2, ge=1)
    min_turns: int = Field(MADS_TURNS[0], ge=1)
    max_turns: int = Field(4, ge=1)  # the paper: MADS_TURNS[1] (14); 4 keeps the CPU demo short
    supervisor_every: int = Field(2, ge=1)
    eu_items: tuple[int, int] = (2, 2)  # items per dialogue: drawn uniformly from this inclusive range
    ea_items: tuple[int, int] = (2, 2)
    checkpoint_every: int = Field(50, ge=1)  # dialogues between appends to the output files
    background_words: tuple[int, int] = (40, 70)
    background_max_tokens: int = Field(96, ge=1)
    turn_max_tokens: int = Field(40, ge=1)
    supervisor_max_tokens: int = Field(64, ge=1)
    item_max_tokens: int = Field(400, ge=1)
    scenario_min_words: int = Field(SCENARIO_WORDS[0], ge=0)  # shortest scenario the item schema allows
    # EU items whose emotion options are pairs felt at once ("Guilt & Relief"): always for the mixture_of_emotions
    # sub-type, and this share of the others (EmoBench's English EU items outside that sub-type: 49 of 186).
    mixed_share: float = Field(0.26, ge=0, le=1)
    judge_temperature: float = Field(0.0, ge=0)  # the supervisor: greedy
    extract_incomplete: bool = True  # extract from dialogues that hit max_turns without meeting every criterion
    supervisor_steering: bool = True  # the criteria a verdict finds unmet steer the next client and therapist turns
    themes_file: Path | None = None  # None: data/personas/themes.json (notebook 00)

    @property
    def themes_path(self) -> Path:
        return Path(self.themes_file or data_dir() / "personas" / "themes.json")

    @model_validator(mode="after")
    def _consistent(self):
        check_run_settings(self, "eu_items", "ea_items")
        if self.min_turns > self.max_turns:
            raise ValueError(f"min_turns ({self.min_turns}) is greater than max_turns ({self.max_turns}); the paper "
                             f"uses min_turns={MADS_TURNS[0]}, max_turns={MADS_TURNS[1]}")
        eu_draft_schema(self.item_max_tokens, self.scenario_min_words, mixed=True)  # raises if it cannot fit
        ea_draft_schema(self.item_max_tokens, self.scenario_min_words)
        if not MADS_TURNS[0] <= self.min_turns <= self.max_turns <= MADS_TURNS[1]:
            warnings.warn(f"turn limits {self.min_turns}-{self.max_turns} differ from the paper's "
                          f"{MADS_TURNS[0]}-{MADS_TURNS[1]}", stacklevel=2)
        return self


@dataclass(frozen=True)
class DialoguePlan:
    index: int
    dialogue_id: str
    persona: Persona
    theme: Theme
    attributes: AttributeSet

    @property
    def unit_id(self) -> str:
        return self.dialogue_id


def plan_dialogues(personas: Sequence[Persona], themes: Sequence[Theme], num_dialogues: int, seed: int = 0,
                   ) -> tuple[list[DialoguePlan], dict[str, Any]]:
    """Sample ``num_dialogues`` compatible (persona, theme) pairs and each dialogue's attributes (Algorithm 1, l.2).

    Personas are drawn without replacement in a seeded order (a new order each time all are used). For each, the
    theme is the compatible one whose category, then itself, is least used so far, ties broken at random with
    more weight for themes whose keywords occur in the persona text. Personas with no compatible theme are
    skipped and counted in the returned report. The plan depends only on the inputs and ``seed``.
    """
    if not personas:
        raise ValueError("no personas: load some first (notebooks/00_personas.ipynb)")
    if not themes:
        raise ValueError("no themes: pass the built-in catalogue (themes.THEMES) or a themes file")
    rng = random.Random(seed)
    category_uses, theme_uses = Counter(), Counter()
    plans: list[DialoguePlan] = []
    skipped: dict[str, list[str]] = {}
    order: list[int] = []
    draws = 0
    while len(plans) < num_dialogues:
        if not order:
            if draws and len(skipped) == len({p.persona_id for p in personas}):
                raise ValueError(f"none of the {len(personas)} personas is compatible with any of the {len(themes)} "
                                 "themes; check the themes' age and status limits")
            order = rng.sample(range(len(personas)), len(personas))
        persona = personas[order.pop(0)]
        draws += 1
        checks = [(t, compatibility(persona, t)) for t in themes]
        fitting = [(t, c) for t, c in checks if c.ok]
        if not fitting:
            skipped[persona.persona_id] = [f"{t.name}: {'; '.join(c.reasons)}" for t, c in checks]
            continue
        least = min((category_uses[t.category], theme_uses[t.name]) for t, _ in fitting)
        candidates = [(t, c) for t, c in fitting if (category_uses[t.category], theme_uses[t.name]) == least]
        theme = rng.choices([t for t, _ in candidates], weights=[1 + c.keyword_hits for _, c in candidates])[0]
        category_uses[theme.category] += 1
        theme_uses[theme.name] += 1
        index = len(plans)
        attributes = sample_attributes(rng_for(seed, "attributes", index), persona, theme)
        plans.append(DialoguePlan(index, f"mads-s{seed}-{index:05d}", persona, theme, attributes))
    report = {"personas_available": len(personas), "personas_skipped_incompatible": len(skipped),
              "skipped_examples": dict(list(skipped.items())[:5]), "theme_uses": dict(theme_uses),
              "theme_category_uses": dict(category_uses)}
    return plans, report


@dataclass
class Dialogue(Conversation):
    """A MADS dialogue in progress: the conversation, the supervisor's verdicts and why it stopped."""

    theme: Theme | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    stop_reason: str | None = None
    extracted: bool = False
    steered: list[dict[str, Any]] = field(default_factory=list)  # the turns the supervisor's verdict steered

    @property
    def criteria_met(self) -> bool:
        return bool(self.verdicts) and bool(self.verdicts[-1].get("all_met"))

    def judge(self, turn: int, reply: ChatResult | LLMError) -> None:
        """Record the supervisor's verdict; a failed check counts as "not yet" and the dialogue goes on."""
        if isinstance(reply, LLMError):
            self.verdicts.append({"turn": turn, "error": reply.reason, "message": str(reply)[:300]})
            return
        verdict = {"turn": turn, **{k: bool(reply.data[k]) for k in CRITERIA}, "reason": reply.data["reason"]}
        verdict["all_met"] = all(verdict[k] for k in CRITERIA)
        self.verdicts.append(verdict)

    @property
    def unmet(self) -> list[str]:
        """The criteria the last verdict found unmet (none before the first verdict or after a failed check)."""
        last = self.verdicts[-1] if self.verdicts else {}
        return [] if "error" in last else [c for c in CRITERIA if c in last and not last[c]]

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "ok" if self.extracted else "not_extracted"


@dataclass(frozen=True)
class Target:
    """What one extraction request asks for: an EU category and sub-type (``mixed``: emotion options are pairs),
    or an EA category and question type."""

    task: str
    number: int
    category: str
    detail: str
    mixed: bool = False


class MADSAgents:
    """The requests of each agent (Background, Client, Therapist, Supervisor, EU and EA extraction) for one run's
    settings; the extraction agents also choose what to ask for and turn replies into items."""

    def __init__(self, config: MADSConfig, generator_model: str):
        self.config, self.generator_model = config, generator_model
        self.turn_words = max(15, int(config.turn_max_tokens * 0.6))
        quotas = resolve_quotas(config.quotas)
        self.eu_balancer = CategoryBalancer(EU_CATEGORIES, quotas)
        self.fine_balancers = {c: CategoryBalancer(EU_FINEGRAINED[c]) for c in EU_CATEGORIES}
        self.ea_balancer = CategoryBalancer(EA_CATEGORIES, quotas)
        self.qtype_balancer = CategoryBalancer(EA_QUESTION_TYPES)
        self.schemas = {"supervisor": supervisor_schema(config.supervisor_max_tokens),
                        "EU": eu_draft_schema(config.item_max_tokens, config.scenario_min_words),
                        "EU-mixed": eu_draft_schema(config.item_max_tokens, config.scenario_min_words, mixed=True),
                        "EA": ea_draft_schema(config.item_max_tokens, config.scenario_min_words)}

    def background(self, d: Dialogue) -> Request:
        low, high = self.config.background_words
        user = prompts.MADS_BACKGROUND_USER.format(
            min_words=low, max_words=high, persona=d.persona.describe(), theme_title=d.theme.title,
            theme_description=d.theme.description, attributes=d.attributes.describe())
        return Request("background", [{"role": "system", "content": prompts.BACKGROUND_SYSTEM},
                                      {"role": "user", "content": user}],
                       self.config.temperature, self.config.background_max_tokens, required=True,
                       timing="background_s")

    def _steer(self, d: Dialogue) -> list[str]:
        return d.unmet if self.config.supervisor_steering else []

    def client(self, d: Dialogue, turn: int) -> Request:
        steer = self._steer(d)
        if steer:
            d.steered.append({"turn": turn, "criteria": steer})
        return Request(f"turn {turn} client", d.client_prompt(self.turn_words, steer),
                       self.config.temperature, self.config.turn_max_tokens, required=True)

    def therapist(self, d: Dialogue, turn: int) -> Request:
        return Request(f"turn {turn} therapist", d.therapist_prompt(self.turn_words, self._steer(d)),
                       self.config.temperature, self.config.turn_max_tokens, required=True)

    def supervisor(self, d: Dialogue, turn: int) -> Request:
        user = prompts.SUPERVISOR_USER.format(transcript=transcript(d.messages))
        return Request(f"supervisor after turn {turn}", [{"role": "system", "content": prompts.SUPERVISOR_SYSTEM},
                                                         {"role": "user", "content": user}],
                       self.config.judge_temperature, self.config.supervisor_max_tokens,
                       schema=self.schemas["supervisor"], timing="supervisor_s")

    def targets(self, d: Dialogue) -> list[Target]:
        """``config.eu_items`` EU and ``config.ea_items`` EA targets (a seeded count per dialogue; the paper's 3-4),
        each the least represented so far; fewer, or none, when quotas leave fewer categories open."""
        n_eu = rng_for(self.config.seed, "eu_items", d.index).randint(*self.config.eu_items)
        n_ea = rng_for(self.config.seed, "ea_items", d.index).randint(*self.config.ea_items)
        eu = [(c, self.fine_balancers[c].take(1)[0]) for c in self.eu_balancer.take(n_eu)]
        ea = list(zip(self.ea_balancer.take(n_ea), self.qtype_balancer.take(n_ea), strict=True))
        return [Target("EU", k, c, f, self._mixed(d, k, f)) for k, (c, f) in enumerate(eu, start=1)] + \
               [Target("EA", k, c, q) for k, (c, q) in enumerate(ea, start=1)]

    def _mixed(self, d: Dialogue, number: int, finegrained: str) -> bool:
        if finegrained == "mixture_of_emotions":
            return True
        return rng_for(self.config.seed, "mixed", d.index, number).random() < self.config.mixed_share

    def extractor(self, d: Dialogue, target: Target) -> Request:
        context = prompts.DIALOGUE_CONTEXT.format(transcript=d.items_transcript())
        if target.task == "EU":
            user = prompts.EU_EXTRACTOR_USER.format(
                context=context, category=target.category, category_guide=prompts.EU_CATEGORY_GUIDE[target.category],
                finegrained=target.detail, finegrained_guide=prompts.EU_FINEGRAINED_GUIDE[target.detail],
                emotion_fields=prompts.EU_MIXED_EMOTION_FIELDS if target.mixed else prompts.EU_SINGLE_EMOTION_FIELDS)
        else:
            user = prompts.EA_EXTRACTOR_USER.format(
                context=context, category=target.category, category_guide=prompts.EA_CATEGORY_GUIDE[target.category],
                question_type=target.detail, question_type_guide=prompts.EA_QUESTION_TYPE_GUIDE[target.detail],
                question_type_word=target.detail.lower())
        return Request("items", [{"role": "system", "content": prompts.EXTRACTOR_SYSTEM},
                                 {"role": "user", "content": user}],
                       self.config.temperature, self.config.item_max_tokens,
                       schema=self.schemas["EU-mixed" if target.mixed else target.task], timing="extraction_s",
                       last=True)

    def add_item(self, d: Dialogue, target: Target, reply: ChatResult | LLMError) -> None:
        """The item built from an extraction reply, or its rejection, recorded on the dialogue and counted."""
        item_id = f"{d.unit_id}-{target.task.lower()}{target.number}"
        provenance = {"pipeline": "mads", "generator_model": self.generator_model,
                      "persona_id": d.persona.persona_id, "dialogue_id": d.unit_id, "theme": d.theme.name}
        rng = rng_for(self.config.seed, "options", item_id)
        if target.task == "EU":
            build = partial(build_eu_item, item_id=item_id, category=target.category, finegrained=target.detail,
                            provenance=provenance, rng=rng, repairs=d.repaired)
        else:
            build = partial(build_ea_item, item_id=item_id, category=target.category, question_type=target.detail,
                            provenance=provenance, rng=rng)
        written = d.record_item(reply, build, task=target.task, target=f"{target.category}/{target.detail}",
                                item_id=item_id)
        if target.task == "EU":
            self.eu_balancer.settle(target.category, written)
            self.fine_balancers[target.category].settle(target.detail, written)
        else:
            self.ea_balancer.settle(target.category, written)
            self.qtype_balancer.settle(target.detail, written)


def mads_dialogue(d: Dialogue, agents: MADSAgents, config: MADSConfig) -> Algorithm:
    """Algorithm 1, lines 4-11, for one (persona, theme) pair. Each ``yield`` asks an agent and gets its reply."""
    d.set_background((yield agents.background(d)))                              # 4: BackgroundGeneratorAgent
    for turn in range(1, config.max_turns + 1):                                 # 5-6: client and therapist talk
        d.say(CLIENT, (yield agents.client(d, turn)), f"turn {turn}")
        d.say(THERAPIST, (yield agents.therapist(d, turn)), f"turn {turn}")
        d.turns = turn
        if turn % config.supervisor_every == 0:                                 # 7: supervisor every 2 turns
            d.judge(turn, (yield agents.supervisor(d, turn)))
            if d.criteria_met and turn >= config.min_turns:                     # 8: stop when all criteria hold
                d.stop_reason = "criteria_met"
                break
    else:
        d.stop_reason = "max_turns"
    if d.stop_reason == "criteria_met" or config.extract_incomplete:
        targets = agents.targets(d)                                             # 9-10: extract EU and EA items
        d.extracted = True
        d.targets = [f"{t.task}:{t.category}/{t.detail}" for t in targets]
        replies = yield [agents.extractor(d, t) for t in targets]
        for target, reply in zip(targets, replies, strict=True):
            agents.add_item(d, target, reply)                                   # 11: items and category counts


def new_dialogue(plan: DialoguePlan) -> Dialogue:
    return Dialogue(plan.dialogue_id, plan.index, plan.persona, plan.attributes, theme=plan.theme)


def run_dialogue(client: LLMClient, plan: DialoguePlan, config: MADSConfig | None = None) -> Dialogue:
    """Algorithm 1 for a single planned dialogue, request by request (what :func:`run_mads` does in batches)."""
    config = config or MADSConfig()
    d = new_dialogue(plan)
    return run_one(client, d, mads_dialogue(d, MADSAgents(config, client.model), config), seed=config.seed)


class MADSRun(BatchedRun):
    """Algorithm 1 for one shard of a plan, in lockstep batches; see the module docstring for files and resume."""

    unit, description = "dialogue", "MADS dialogues"

    def __init__(self, client: LLMClient, plans: Sequence[DialoguePlan], out_dir: str | Path, config: MADSConfig,
                 plan_report: dict[str, Any] | None = None, progress: bool = True):
        super().__init__(client, plans, out_dir, config, progress=progress)
        self.paths = {k: self.out_dir / v for k, v in FILES.items()}
        self.agents = MADSAgents(config, client.model)
        self.quota_balancers = (self.agents.eu_balancer, self.agents.ea_balancer)
        self.plan_report = plan_report or {}
        self.position = {p.dialogue_id: n for n, p in enumerate(self.plans)}

    def plan_identity(self, plan: DialoguePlan) -> tuple:
        return plan.dialogue_id, plan.persona.persona_id, plan.theme.name, plan.attributes.model_dump()

    def prepare(self, resume: bool) -> set[str]:
        files = RunFiles("mads", "dialogue", self.out_dir, self.paths["config"], ledger=self.paths["metadata"],
                         id_key="dialogue_id", records=[self.paths[k] for k in ("eu", "ea", "dialogues")],
                         unit_of=lambda record: record["dialogue_id"], outputs=list(self.paths.values()))
        complete = {r["dialogue_id"] for r in files.prepare(self.settings(), resume)}
        self.read_written_items(self.paths["eu"], self.paths["ea"])
        return complete

    def recount(self, unit_id: str) -> None:
        for item in self.written_items.get(unit_id, []):
            if item["task"] == "EU":
                self.agents.eu_balancer.record(item["category"])
                self.agents.fine_balancers[item["category"]].record(item["finegrained_category"])
            else:
                self.agents.ea_balancer.record(item["category"])
                self.agents.qtype_balancer.record(item["question_type"])

    def start(self, plan: DialoguePlan) -> tuple[Dialogue, Algorithm]:
        d = new_dialogue(plan)
        return d, mads_dialogue(d, self.agents, self.config)

    def flush(self, done: list[Dialogue]) -> None:
        for key in ("dialogues", "eu", "ea", "metadata"):  # every output exists, even when it has no line yet
            self.paths[key].touch()
        if done:
            append_jsonl(self.paths["dialogues"], [self._dialogue_record(d) for d in done])
            append_jsonl(self.paths["eu"], [i for d in done for i in d.items if i.task == "EU"])
            append_jsonl(self.paths["ea"], [i for d in done for i in d.items if i.task == "EA"])
            append_jsonl(self.paths["metadata"], [self._metadata_record(d) for d in done])  # last: "complete"
        self.finish(None)

    def finish(self, elapsed_s: float | None) -> dict[str, Any]:
        """Counts and category distributions of everything the run has written so far (``statistics.json``)."""
        meta = list(iter_jsonl(self.paths["metadata"]))
        eu, ea = list(iter_jsonl(self.paths["eu"])), list(iter_jsonl(self.paths["ea"]))
        ok = [r for r in meta if r["status"] != "failed"]
        totals = outcomes(meta)
        stats = {
            "dialogues_planned": len(self.plans), "dialogues_written": len(meta), **totals,
            "stop_reasons": distribution(r["stop_reason"] for r in meta),
            "turns_mean": round(sum(r["turns"] for r in ok) / len(ok), 2) if ok else None,
            "turns_distribution": distribution(str(r["turns"]) for r in ok),
            "eu_items": len(eu), "ea_items": len(ea),
            "eu_categories": distribution((i["category"] for i in eu), EU_CATEGORIES),
            "eu_finegrained": distribution(i["finegrained_category"] for i in eu),
            "ea_categories": distribution((i["category"] for i in ea), EA_CATEGORIES),
            "ea_question_types": distribution((i["question_type"] for i in ea), EA_QUESTION_TYPES),
            "themes": distribution(r["theme"] for r in meta),
            "completion_tokens_per_dialogue":
                round(totals["usage"]["completion_tokens"] / len(meta), 1) if meta else None,
            "elapsed_s_this_session": None if elapsed_s is None else round(elapsed_s, 1),
            "plan": self.plan_report,
            "quotas": resolve_quotas(self.config.quotas),
        }
        write_json_atomic(self.paths["statistics"], stats)
        return stats

    def _dialogue_record(self, d: Dialogue) -> dict[str, Any]:
        return {"dialogue_id": d.unit_id, "persona_id": d.persona.persona_id, "theme": d.theme.name,
                "background": d.background, "messages": d.messages}

    def _metadata_record(self, d: Dialogue) -> dict[str, Any]:
        return {
            "dialogue_id": d.unit_id, "index": d.index, "status": d.status,
            "persona_id": d.persona.persona_id, "persona": d.persona.text, "theme": d.theme.name,
            "theme_category": d.theme.category, "attributes": d.attributes.model_dump(),
            "turns": d.turns, "messages": len(d.messages), "redundant_turns": d.redundant_turns(),
            "stop_reason": "error" if d.error else d.stop_reason,
            "criteria_met": d.criteria_met, "supervisor_verdicts": d.verdicts, "supervisor_steering": d.steered,
            "background_words": len(d.background.split()), "error": d.error,
            "eu_targets": [t for t in d.targets if t.startswith("EU:")],
            "ea_targets": [t for t in d.targets if t.startswith("EA:")],
            "eu_item_ids": [i.item_id for i in d.items if i.task == "EU"],
            "ea_item_ids": [i.item_id for i in d.items if i.task == "EA"],
            "rejected_items": d.rejected, "repaired_items": d.repaired, "usage": d.usage.as_dict(),
            "timings": d.timings, "generator_model": self.client.model, "seed": self.config.seed,
            "batch": self.position[d.unit_id] // self.config.concurrency,
        }


def run_mads(client: LLMClient, personas: Sequence[Persona], themes: Sequence[Theme] = THEMES,
             out_dir: str | Path | None = None, config: MADSConfig | None = None, *, resume: bool | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Algorithm 1 end to end; returns the statistics (also in ``statistics.json``). ``out_dir`` and ``resume``
    default to the config's (``config.run_dir``, ``config.resume``)."""
    config = config or MADSConfig()
    plans, report = plan_dialogues(personas, themes, config.num_dialogues, config.seed)
    run = MADSRun(client, plans, run_folder(config, out_dir), config, report, progress=progress)
    stats = run.run(resume=config.resume if resume is None else resume)
    stats["out_dir"] = str(run.out_dir)
    stats["files"] = {k: str(p) for k, p in run.paths.items()}
    return stats

