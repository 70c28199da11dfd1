"""The Multi-Agent Dialogue System (paper §3.2, Algorithm 1): persona + theme -> background -> supervised therapy
dialogue -> EmoBench-format EU and EA items with chain-of-thought explanations.

Agents (prompts in :mod:`ec2er_utils.generation_prompts`):

- **BackgroundGeneratorAgent** writes a 200–400-word narrative from the persona, the theme and the sampled
  attributes; it is the shared context of the two speakers.
- **ClientAgent** and **TherapistAgent** take turns; the client opens. One *turn* is a client message followed by
  a therapist message, so the paper's 14 turns are its "28 messages".
- **SupervisorAgent** judges the dialogue every ``supervisor_every`` (2) turns: scenario, emotions, causes and
  dilemma, each true/false, with a reason (JSON schema). The dialogue stops when all four hold and at least
  ``min_turns`` turns are done, or at ``max_turns``. The stop reason (``criteria_met`` / ``max_turns``) and every
  verdict are recorded.
- **EU and EA extraction agents** then write 3–4 items each (one request per item) in EmoBench's format. Each
  request names a target category: the least represented so far (:class:`~ec2er_utils.generation.CategoryBalancer`),
  which keeps the four EU and four EA categories balanced; EU sub-types (EmoBench's fine-grained categories) and
  EA question types (Action/Response) are balanced the same way.

Throughput: the dialogues of a batch (``concurrency`` of them) advance in lockstep; each step (background, client
turn, therapist turn, verdict, extraction) is one ``chat_many`` over the still-active dialogues, so the local
backend generates them in one batched forward pass and a server gets them as concurrent requests.

Outputs in ``out_dir`` (``data/mads/``; ``shard-KK-of-NN/`` inside it for a sharded run):
``eu_items.jsonl`` / ``ea_items.jsonl`` (:class:`~ec2er_utils.schemas.GeneratedEUItem` / ``GeneratedEAItem``),
``dialogues.jsonl`` (background + transcript), ``metadata.jsonl`` (one line per dialogue: persona id, theme,
attributes, turns, stop reason, verdicts, item ids, rejected items, token usage, timings), ``statistics.json``
(category distributions and counts), ``run_config.json``.

Crash safety: results are appended every ``checkpoint_every`` dialogues (at the end of a batch), items first and
the dialogue's metadata line last, so a metadata line means "this dialogue is complete". ``resume=True`` repairs a
partial last line, removes items of dialogues without a metadata line, and re-runs from the first incomplete
batch, writing only dialogues not yet complete. Dialogue ids, plans and sampling seeds depend only on the seed and
the dialogue's index, so with a deterministic backend a resumed run writes exactly what an uninterrupted run
writes. A dialogue that fails (an :class:`~ec2er_utils.llm.LLMError` in a background or turn) is recorded with
``status="failed"`` and its reason; the run goes on, and the statistics count failures by stage and reason.

Transport failures are retried twice over: each request by the client (the openai SDK's exponential backoff on
connection errors, HTTP 429/5xx and timeouts, ``max_retries`` times), and each dialogue by ``resume=True``: a
dialogue whose metadata shows a request that never got an answer (``request_failed``, in its error, a rejected
item or a supervisor verdict) is taken out of the files and generated again, because it does not hold what the
model would have written. So when a server dies mid-run, every dialogue from then on is recorded as failed, and
after a restart a resume fills them in: with greedy decoding the result has the same ids and items as an
uninterrupted run (dialogues generated again are appended, so lines may come in another order). Failures of the
model's output (empty replies, invalid JSON, rejected items) are results, not faults, and are kept. The resume
rules are shared with the concise pipeline: :class:`~ec2er_utils.generation.RunFiles`.

Departures from the paper (documented choices): the supervisor gives its reason before its verdicts and decodes
greedily; the supervisor also judges at turns before ``min_turns`` (its verdict is recorded, it cannot stop the
dialogue yet); items are drafted field by field and assembled by code (see :mod:`ec2er_utils.generation`); a
dialogue that reaches ``max_turns`` without meeting all criteria is still extracted unless
``extract_incomplete=False`` (its metadata says so); an item's category, EU sub-type and EA question type are the
ones its extractor was asked for (not re-judged afterwards); dialogues of a batch run in lockstep and a batch ends
when its longest dialogue ends (no refilling), which keeps batches, and so resumed runs, reproducible.
"""

from __future__ import annotations

import random
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import generation_prompts as prompts
from .generation import (
    CLIENT,
    EU_FINEGRAINED,
    PAPER_SCENARIO_MIN_WORDS,
    THERAPIST,
    CategoryBalancer,
    ItemRejected,
    RunFiles,
    UnreachableWatch,
    Timer,
    build_ea_item,
    build_eu_item,
    call_seed,
    check_run_config,
    client_view,
    distribution,
    ea_draft_schema,
    error_record,
    eu_draft_schema,
    exchange_turns,
    fingerprint,
    rejection,
    require,
    result_usage,
    supervisor_schema,
    therapist_view,
    transcript,
)
from .jsonl import append_jsonl, iter_jsonl, write_json_atomic
from .llm import LLMClient, LLMError, Usage
from .paths import data_dir
from .personas import AttributeSet, Persona, rng_for, sample_attributes
from .schemas import Provenance
from .taxonomy import EA_CATEGORIES, EA_QUESTION_TYPES, EU_CATEGORIES
from .themes import THEMES, Theme, compatibility

PAPER_MIN_TURNS, PAPER_MAX_TURNS = 4, 14
CRITERIA = ("scenario", "emotions", "causes", "dilemma")
FILES = {"eu": "eu_items.jsonl", "ea": "ea_items.jsonl", "dialogues": "dialogues.jsonl",
         "metadata": "metadata.jsonl", "statistics": "statistics.json", "config": "run_config.json"}


@dataclass
class MADSConfig:
    """Every setting of a MADS run. Defaults are the paper's; the notebook passes tiny CPU-sized values."""

    num_dialogues: int = 3000
    min_turns: int = PAPER_MIN_TURNS
    max_turns: int = PAPER_MAX_TURNS
    supervisor_every: int = 2
    eu_items: tuple[int, int] = (3, 4)  # items per dialogue: drawn uniformly from this inclusive range
    ea_items: tuple[int, int] = (3, 4)
    concurrency: int = 8  # dialogues in flight (one lockstep batch)
    checkpoint_every: int = 50  # dialogues between appends to the output files
    seed: int = 0
    background_words: tuple[int, int] = (200, 400)
    background_max_tokens: int = 700
    turn_max_tokens: int = 200
    supervisor_max_tokens: int = 160
    item_max_tokens: int = 700
    scenario_min_words: int = PAPER_SCENARIO_MIN_WORDS  # shortest scenario the item schema allows (see notebook 03)
    temperature: float = 0.8  # background, turns and extraction
    judge_temperature: float = 0.0  # the supervisor: greedy
    extract_incomplete: bool = True  # extract from dialogues that hit max_turns without meeting every criterion
    shard_index: int = 0
    num_shards: int = 1

    def __post_init__(self):
        self.eu_items, self.ea_items = tuple(self.eu_items), tuple(self.ea_items)
        check_run_config(self, positive=("num_dialogues", "min_turns", "supervisor_every", "concurrency",
                                         "checkpoint_every", "background_max_tokens", "turn_max_tokens",
                                         "supervisor_max_tokens", "item_max_tokens"),
                         temperatures=("temperature", "judge_temperature"))
        require(self.min_turns <= self.max_turns,
                f"min_turns ({self.min_turns}) is greater than max_turns ({self.max_turns}); the paper uses "
                f"min_turns={PAPER_MIN_TURNS}, max_turns={PAPER_MAX_TURNS}")
        for name in ("eu_items", "ea_items"):
            low_high = getattr(self, name)
            require(len(low_high) == 2 and 1 <= low_high[0] <= low_high[1],
                    f"{name} must be (low, high) with 1 <= low <= high, got {low_high}")
        eu_draft_schema(self.item_max_tokens, self.scenario_min_words)  # raises if the budget cannot hold it
        ea_draft_schema(self.item_max_tokens, self.scenario_min_words)
        if not PAPER_MIN_TURNS <= self.min_turns <= self.max_turns <= PAPER_MAX_TURNS:
            warnings.warn(f"turn limits {self.min_turns}-{self.max_turns} differ from the paper's "
                          f"{PAPER_MIN_TURNS}-{PAPER_MAX_TURNS}", stacklevel=3)


# --------------------------------------------------------------------------------------------------------------
# Planning: which persona, theme and attributes each dialogue gets


@dataclass(frozen=True)
class DialoguePlan:
    index: int
    dialogue_id: str
    persona: Persona
    theme: Theme
    attributes: AttributeSet


def dialogue_id_for(seed: int, index: int) -> str:
    return f"mads-s{seed}-{index:05d}"


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
        plans.append(DialoguePlan(index, dialogue_id_for(seed, index), persona, theme, attributes))
    report = {"personas_available": len(personas), "personas_skipped_incompatible": len(skipped),
              "skipped_examples": dict(list(skipped.items())[:5]), "theme_uses": dict(theme_uses),
              "theme_category_uses": dict(category_uses)}
    return plans, report


# --------------------------------------------------------------------------------------------------------------
# One dialogue in flight


@dataclass
class DialogueState:
    plan: DialoguePlan
    background: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0
    stop_reason: str | None = None
    error: dict[str, str] | None = None
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    eu_items: list[Any] = field(default_factory=list)
    ea_items: list[Any] = field(default_factory=list)
    eu_targets: list[str] = field(default_factory=list)
    ea_targets: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    repaired: list[dict[str, str]] = field(default_factory=list)  # items written after a recorded repair
    extracted: bool = False

    @property
    def active(self) -> bool:
        return self.stop_reason is None and self.error is None

    def charge(self, result) -> None:
        used = result_usage(result)
        self.usage.add(used.prompt_tokens, used.completion_tokens, used.calls or 1)

    def fail(self, stage: str, error) -> None:
        self.error = error_record(stage, error)
        self.stop_reason = "error"

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "ok" if self.extracted else "not_extracted"


class MADSAgents:
    """The prompts of each agent for one run's settings (conversation builders, not network clients)."""

    def __init__(self, config: MADSConfig):
        self.config = config
        self.turn_words = max(15, int(config.turn_max_tokens * 0.6))

    def background(self, state: DialogueState) -> list[dict[str, str]]:
        plan = state.plan
        lo, hi = self.config.background_words
        user = prompts.MADS_BACKGROUND_USER.format(
            min_words=lo, max_words=hi, persona=plan.persona.describe(), theme_title=plan.theme.title,
            theme_description=plan.theme.description, attributes=plan.attributes.describe())
        return [{"role": "system", "content": prompts.BACKGROUND_SYSTEM}, {"role": "user", "content": user}]

    def client(self, state: DialogueState) -> list[dict[str, str]]:
        return client_view(state.plan.persona, state.plan.attributes, state.background, state.messages,
                           self.turn_words)

    def therapist(self, state: DialogueState) -> list[dict[str, str]]:
        return therapist_view(state.background, state.messages, self.turn_words)

    def supervisor(self, state: DialogueState) -> list[dict[str, str]]:
        return [{"role": "system", "content": prompts.SUPERVISOR_SYSTEM},
                {"role": "user", "content": prompts.SUPERVISOR_USER.format(transcript=transcript(state.messages))}]

    def eu_extractor(self, state: DialogueState, category: str, finegrained: str) -> list[dict[str, str]]:
        user = prompts.EU_EXTRACTOR_USER.format(
            context=prompts.DIALOGUE_CONTEXT.format(transcript=transcript(state.messages)), category=category,
            category_guide=prompts.EU_CATEGORY_GUIDE[category], finegrained=finegrained,
            finegrained_guide=prompts.EU_FINEGRAINED_GUIDE[finegrained])
        return [{"role": "system", "content": prompts.EXTRACTOR_SYSTEM}, {"role": "user", "content": user}]

    def ea_extractor(self, state: DialogueState, category: str, question_type: str) -> list[dict[str, str]]:
        user = prompts.EA_EXTRACTOR_USER.format(
            context=prompts.DIALOGUE_CONTEXT.format(transcript=transcript(state.messages)), category=category,
            category_guide=prompts.EA_CATEGORY_GUIDE[category], question_type=question_type,
            question_type_guide=prompts.EA_QUESTION_TYPE_GUIDE[question_type],
            question_type_word=question_type.lower())
        return [{"role": "system", "content": prompts.EXTRACTOR_SYSTEM}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------------------------
# The run


class MADSRunner:
    """Runs Algorithm 1 for one shard of a plan; see the module docstring for outputs and resume."""

    def __init__(self, client: LLMClient, plans: Sequence[DialoguePlan], out_dir: Path, config: MADSConfig,
                 plan_report: dict[str, Any] | None = None, progress: bool = True):
        self.client = client
        self.config = config
        self.all_plans = list(plans)
        self.plans = [p for p in plans if p.index % config.num_shards == config.shard_index]
        self.position = {p.dialogue_id: n for n, p in enumerate(self.plans)}
        self.out_dir = Path(out_dir)
        self.paths = {k: self.out_dir / v for k, v in FILES.items()}
        self.agents = MADSAgents(config)
        self.plan_report = plan_report or {}
        self.progress = progress
        self.timer = Timer()
        self.eu_balancer = CategoryBalancer(EU_CATEGORIES)
        self.ea_balancer = CategoryBalancer(EA_CATEGORIES)
        self.qtype_balancer = CategoryBalancer(EA_QUESTION_TYPES)
        self.fine_balancers = {c: CategoryBalancer(EU_FINEGRAINED[c]) for c in EU_CATEGORIES}

    # -- settings check ---------------------------------------------------------------------------------------

    def _run_settings(self) -> dict[str, Any]:
        settings = asdict(self.config)
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
        settings["generator_model"] = self.client.model
        settings["plan_fingerprint"] = fingerprint(
            (p.dialogue_id, p.persona.persona_id, p.theme.name, p.attributes.model_dump()) for p in self.all_plans)
        return settings

    def _prepare(self, resume: bool) -> tuple[set[str], dict[str, dict[str, list]]]:
        """Check/repair existing files (:meth:`RunFiles.prepare`); return complete dialogue ids and their items'
        categories."""
        files = RunFiles("mads", "dialogue", self.out_dir, self.paths["config"], ledger=self.paths["metadata"],
                         id_key="dialogue_id", records=[self.paths[k] for k in ("eu", "ea", "dialogues")],
                         unit_of=_dialogue_of, outputs=[self.paths[k] for k in ("eu", "ea", "dialogues", "metadata",
                                                                                 "statistics", "config")])
        complete = {r["dialogue_id"] for r in files.prepare(self._run_settings(), resume)}
        existing: dict[str, dict[str, list]] = defaultdict(lambda: {"eu": [], "fine": [], "ea": [], "qtype": []})
        for key in ("eu", "ea"):
            if self.paths[key].is_file():
                for record in iter_jsonl(self.paths[key]):
                    entry = existing[_dialogue_of(record)]
                    if key == "eu":
                        entry["eu"].append(record["coarse_category"])
                        entry["fine"].append(record["finegrained_category"])
                    else:
                        entry["ea"].append(record["category"])
                        entry["qtype"].append(record["question type"])
        return complete, existing

    # -- main loop --------------------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        from tqdm.auto import tqdm

        complete, existing = self._prepare(resume)
        started = time.perf_counter()
        size = self.config.concurrency
        batches = [self.plans[i:i + size] for i in range(0, len(self.plans), size)]
        buffer: list[DialogueState] = []
        bar = tqdm(total=len(self.plans), desc="MADS dialogues", unit="dlg", disable=not self.progress)
        bar.update(sum(p.dialogue_id in complete for p in self.plans))
        watch = UnreachableWatch("dialogue", self.out_dir, self.config.concurrency)
        try:
            for number, batch in enumerate(batches):
                if all(p.dialogue_id in complete for p in batch):
                    for plan in batch:
                        self._count(existing[plan.dialogue_id])
                    continue
                states = self._run_batch(number, batch, bar)
                new = [s for s in states if s.plan.dialogue_id not in complete]
                for plan in batch:
                    if plan.dialogue_id in complete:  # a resumed batch: keep what was written before
                        self._count(existing[plan.dialogue_id])
                for state in new:
                    self._count({"eu": [i.coarse_category for i in state.eu_items],
                                 "fine": [i.finegrained_category for i in state.eu_items],
                                 "ea": [i.category for i in state.ea_items],
                                 "qtype": [i.question_type for i in state.ea_items]})
                    buffer.append(state)
                    bar.update(1)
                if watch.tripped(s.error for s in new) and number + 1 < len(batches):
                    self._flush(buffer, started)
                    raise watch.error()
                if len(buffer) >= self.config.checkpoint_every:
                    self._flush(buffer, started)
                    buffer = []
            self._flush(buffer, started)
        finally:
            bar.close()
        return self.statistics(time.perf_counter() - started)

    def _count(self, categories: dict[str, list]) -> None:
        for category, fine in zip(categories["eu"], categories["fine"], strict=True):
            self.eu_balancer.record(category)
            self.fine_balancers[category].record(fine)
        for category in categories["ea"]:
            self.ea_balancer.record(category)
        for question_type in categories["qtype"]:
            self.qtype_balancer.record(question_type)

    def _step(self, states: list[DialogueState], build, key: str, **options) -> list:
        return self.timer.step(self.client, states, build, key, **options)

    def _run_batch(self, number: int, plans: list[DialoguePlan], bar) -> list[DialogueState]:
        config, agents = self.config, self.agents
        states = [DialogueState(p) for p in plans]
        bar.set_postfix_str(f"batch {number + 1}: background")
        results = self._step(states, agents.background, "background_s",
                             temperature=config.temperature, max_tokens=config.background_max_tokens,
                             seed=call_seed(config.seed, number, "background"))
        for state, result in zip(states, results, strict=True):
            if isinstance(result, LLMError):
                state.fail("background", result)
            elif not result.text.strip():
                state.fail("background", "empty_reply")
            else:
                state.background = result.text.strip()
        for turn in range(1, config.max_turns + 1):
            if not any(s.active for s in states):
                break
            exchange_turns(self._step, states, ((CLIENT, agents.client), (THERAPIST, agents.therapist)),
                           stage=f"turn {turn}", seed=(config.seed, number, turn), bar=bar,
                           bar_prefix=f"batch {number + 1}: ", temperature=config.temperature,
                           max_tokens=config.turn_max_tokens)
            for state in states:
                if state.active:
                    state.turns = turn
            if turn % config.supervisor_every == 0:
                self._supervise(number, turn, [s for s in states if s.active], bar)
            if turn >= config.max_turns:
                for state in states:
                    if state.active:
                        state.stop_reason = "max_turns"
        self._extract(number, states, bar)
        return states

    def _supervise(self, number: int, turn: int, states: list[DialogueState], bar) -> None:
        if not states:
            return
        config = self.config
        bar.set_postfix_str(f"batch {number + 1}: supervisor after turn {turn}")
        results = self._step(states, self.agents.supervisor, "supervisor_s",
                             schema=supervisor_schema(config.supervisor_max_tokens),
                             temperature=config.judge_temperature, max_tokens=config.supervisor_max_tokens,
                             seed=call_seed(config.seed, number, turn, "supervisor"))
        for state, result in zip(states, results, strict=True):
            if isinstance(result, LLMError):  # a failed check is "not yet": the dialogue goes on
                state.verdicts.append({"turn": turn, "error": result.reason, "message": str(result)[:300]})
                continue
            verdict = {"turn": turn, **{k: bool(result.data[k]) for k in CRITERIA}, "reason": result.data["reason"]}
            verdict["all_met"] = all(verdict[k] for k in CRITERIA)
            state.verdicts.append(verdict)
            if verdict["all_met"] and turn >= config.min_turns:
                state.stop_reason = "criteria_met"

    def _extract(self, number: int, states: list[DialogueState], bar) -> None:
        """Every EU and EA request of the batch in one call (one schema per request), so a local model decodes
        them all in one batch and a server has them all in flight at once."""
        config, agents = self.config, self.agents
        ready = [s for s in states if s.error is None
                 and (config.extract_incomplete or s.stop_reason == "criteria_met")]
        if not ready:
            return
        bar.set_postfix_str(f"batch {number + 1}: extraction")
        eu_sizes = [rng_for(config.seed, "eu_items", s.plan.index).randint(*config.eu_items) for s in ready]
        ea_sizes = [rng_for(config.seed, "ea_items", s.plan.index).randint(*config.ea_items) for s in ready]
        eu_targets = self.eu_balancer.plan(eu_sizes)
        fine_targets = {c: iter(b.plan([1] * sum(t.count(c) for t in eu_targets)))
                        for c, b in self.fine_balancers.items()}
        ea_targets = self.ea_balancer.plan(ea_sizes)
        qtype_targets = self.qtype_balancer.plan(ea_sizes)
        eu_requests, ea_requests = [], []  # (state, item number, category, sub-type or question type)
        for state, eu, ea, qtypes in zip(ready, eu_targets, ea_targets, qtype_targets, strict=True):
            fines = [next(fine_targets[c])[0] for c in eu]
            state.extracted = True
            state.eu_targets = [f"{c}/{f}" for c, f in zip(eu, fines, strict=True)]
            state.ea_targets = [f"{c}/{q}" for c, q in zip(ea, qtypes, strict=True)]
            eu_requests += [(state, k, c, f) for k, (c, f) in enumerate(zip(eu, fines, strict=True), start=1)]
            ea_requests += [(state, k, c, q) for k, (c, q) in enumerate(zip(ea, qtypes, strict=True), start=1)]
        sizes = (config.item_max_tokens, config.scenario_min_words)
        eu_schema, ea_schema = eu_draft_schema(*sizes), ea_draft_schema(*sizes)
        started = time.perf_counter()
        results = self.client.chat_many(
            [agents.eu_extractor(s, c, f) for s, _, c, f in eu_requests]
            + [agents.ea_extractor(s, c, q) for s, _, c, q in ea_requests],
            schemas=[eu_schema] * len(eu_requests) + [ea_schema] * len(ea_requests),
            temperature=config.temperature, max_tokens=config.item_max_tokens,
            seed=call_seed(config.seed, number, "items"))
        eu_results, ea_results = results[:len(eu_requests)], results[len(eu_requests):]
        self.timer.charge(ready, "extraction_s", started)
        for task, requests, results in (("EU", eu_requests, eu_results), ("EA", ea_requests, ea_results)):
            for (state, k, category, detail), result in zip(requests, results, strict=True):
                state.charge(result)
                self._add_item(state, task, k, category, detail, result)

    def _add_item(self, state: DialogueState, task: str, k: int, category: str, detail: str, result) -> None:
        """``detail``: the EU sub-type or the EA question type the request asked for."""
        plan = state.plan
        item_id = f"{plan.dialogue_id}-{task.lower()}{k}"
        target = f"{category}/{detail}"
        if isinstance(result, LLMError):
            state.rejected.append(rejection(result, task=task, target=target, item_id=item_id))
            return
        provenance = Provenance(pipeline="mads", generator_model=self.client.model, persona_id=plan.persona.persona_id,
                                dialogue_id=plan.dialogue_id, theme=plan.theme.name)
        rng = rng_for(self.config.seed, "options", item_id)
        try:
            if task == "EU":
                state.eu_items.append(build_eu_item(result.data, qid=item_id, category=category, finegrained=detail,
                                                    provenance=provenance, rng=rng, repairs=state.repaired))
            else:
                state.ea_items.append(build_ea_item(result.data, qid=item_id, category=category, question_type=detail,
                                                    provenance=provenance, rng=rng))
        except ItemRejected as problem:
            state.rejected.append(rejection(problem, task=task, target=target, item_id=item_id))

    # -- writing ----------------------------------------------------------------------------------------------

    def _flush(self, states: list[DialogueState], started: float) -> None:
        for key in ("dialogues", "eu", "ea", "metadata"):  # every output exists, even when it has no line yet
            self.paths[key].touch()
        if states:
            append_jsonl(self.paths["dialogues"], [self._dialogue_record(s) for s in states])
            append_jsonl(self.paths["eu"], [i for s in states for i in s.eu_items])
            append_jsonl(self.paths["ea"], [i for s in states for i in s.ea_items])
            append_jsonl(self.paths["metadata"], [self._metadata_record(s) for s in states])  # last: "complete"
        write_json_atomic(self.paths["statistics"], self.statistics(time.perf_counter() - started))

    def _dialogue_record(self, state: DialogueState) -> dict[str, Any]:
        plan = state.plan
        return {"dialogue_id": plan.dialogue_id, "persona_id": plan.persona.persona_id, "theme": plan.theme.name,
                "background": state.background, "messages": state.messages}

    def _metadata_record(self, state: DialogueState) -> dict[str, Any]:
        plan = state.plan
        return {
            "dialogue_id": plan.dialogue_id, "index": plan.index, "status": state.status,
            "persona_id": plan.persona.persona_id, "persona": plan.persona.text, "theme": plan.theme.name,
            "theme_category": plan.theme.category, "attributes": plan.attributes.model_dump(),
            "turns": state.turns, "messages": len(state.messages), "stop_reason": state.stop_reason,
            "criteria_met": bool(state.verdicts and state.verdicts[-1].get("all_met")),
            "supervisor_verdicts": state.verdicts,
            "background_words": len(state.background.split()), "error": state.error,
            "eu_targets": state.eu_targets, "ea_targets": state.ea_targets,
            "eu_item_ids": [i.qid for i in state.eu_items], "ea_item_ids": [i.qid for i in state.ea_items],
            "rejected_items": state.rejected, "repaired_items": state.repaired, "usage": state.usage.as_dict(),
            "timings": state.timings,
            "generator_model": self.client.model, "seed": self.config.seed,
            "batch": self.position[plan.dialogue_id] // self.config.concurrency,
        }

    def statistics(self, elapsed_s: float | None = None) -> dict[str, Any]:
        return mads_statistics(self.out_dir, elapsed_s=elapsed_s, plan_report=self.plan_report,
                               planned=len(self.plans))


def _dialogue_of(record: dict[str, Any]) -> str:
    if "dialogue_id" in record and "provenance" not in record:
        return record["dialogue_id"]
    return record["provenance"]["dialogue_id"]


def mads_statistics(out_dir: str | Path, *, elapsed_s: float | None = None, plan_report: dict | None = None,
                    planned: int | None = None) -> dict[str, Any]:
    """Counts and category distributions of everything a MADS run has written so far."""
    out_dir = Path(out_dir)
    paths = {k: out_dir / v for k, v in FILES.items()}
    meta = list(iter_jsonl(paths["metadata"])) if paths["metadata"].is_file() else []
    eu = list(iter_jsonl(paths["eu"])) if paths["eu"].is_file() else []
    ea = list(iter_jsonl(paths["ea"])) if paths["ea"].is_file() else []
    usage = Counter()
    for record in meta:
        usage.update(record["usage"])
    rejected = [r for record in meta for r in record["rejected_items"]]
    ok = [r for r in meta if r["status"] != "failed"]
    stats = {
        "dialogues_planned": planned, "dialogues_written": len(meta),
        "status": distribution(r["status"] for r in meta),
        "stop_reasons": distribution(r["stop_reason"] for r in meta),
        "failure_reasons": distribution(f"{r['error']['stage']}: {r['error']['reason']}" for r in meta if r["error"]),
        "turns_mean": round(sum(r["turns"] for r in ok) / len(ok), 2) if ok else None,
        "turns_distribution": distribution(str(r["turns"]) for r in ok),
        "eu_items": len(eu), "ea_items": len(ea),
        "eu_categories": distribution((i["coarse_category"] for i in eu), EU_CATEGORIES),
        "eu_finegrained": distribution(i["finegrained_category"] for i in eu),
        "ea_categories": distribution((i["category"] for i in ea), EA_CATEGORIES),
        "ea_question_types": distribution((i["question type"] for i in ea), EA_QUESTION_TYPES),
        "items_rejected": len(rejected),
        "rejection_reasons": distribution(r["reason"] for r in rejected),
        "items_repaired": sum(len(record.get("repaired_items", [])) for record in meta),
        "themes": distribution(r["theme"] for r in meta),
        "usage": dict(usage),
        "completion_tokens_per_dialogue": round(usage["completion_tokens"] / len(meta), 1) if meta else None,
        "elapsed_s_this_session": None if elapsed_s is None else round(elapsed_s, 1),
        "plan": plan_report or {},
    }
    return stats


def output_dir(base: str | Path | None, config: MADSConfig) -> Path:
    """``data/mads`` (or ``base``), with a ``shard-KK-of-NN`` folder inside for a sharded run."""
    folder = Path(base) if base else data_dir() / "mads"
    if config.num_shards > 1:
        folder = folder / f"shard-{config.shard_index:02d}-of-{config.num_shards:02d}"
    return folder


def run_mads(client: LLMClient, personas: Sequence[Persona], themes: Sequence[Theme] = THEMES,
             out_dir: str | Path | None = None, config: MADSConfig | None = None, *, resume: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Algorithm 1 end to end; returns the statistics (also in ``statistics.json``)."""
    config = config or MADSConfig()
    plans, report = plan_dialogues(personas, themes, config.num_dialogues, config.seed)
    runner = MADSRunner(client, plans, output_dir(out_dir, config), config, report, progress=progress)
    stats = runner.run(resume=resume)
    stats["out_dir"] = str(runner.out_dir)
    stats["files"] = {k: str(p) for k, p in runner.paths.items()}
    return stats


def run_plan(num_dialogues: int, dialogues_per_hour_per_server: float, *, servers: int = 1,
             shards: int | None = None) -> dict[str, Any]:
    """Wall-clock hours for a run, from a *measured* per-server rate (e.g. ``benchmarks/generation.py``).

    Shards split the dialogues over machines or Colab sessions; each shard needs its own server(s), so the hours
    are the dialogues per shard divided by that shard's rate. Nothing here is measured: it is arithmetic on the
    figure you pass in.
    """
    if dialogues_per_hour_per_server <= 0:
        raise ValueError("dialogues_per_hour_per_server must be > 0 (measure it first)")
    shards = shards or servers
    if servers < shards:
        raise ValueError(f"each shard needs a server: servers ({servers}) < shards ({shards})")
    per_shard = -(-num_dialogues // shards)
    rate = dialogues_per_hour_per_server * (servers / shards)
    return {"num_dialogues": num_dialogues, "servers": servers, "shards": shards, "dialogues_per_shard": per_shard,
            "dialogues_per_hour_per_shard": round(rate, 1), "hours": round(per_shard / rate, 2)}
