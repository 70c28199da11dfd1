"""The batched, resumable run around an algorithm (shared by MADS and concise): this shard's planned units,
``concurrency`` at a time through :func:`~.lockstep.run_lockstep`, appended to the run's files every
``checkpoint_every`` units. What a run does when something breaks: README, "Reliability".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..jsonl import iter_jsonl
from ..llm import LLMClient, LLMFatalError
from ..paths import data_dir
from ..seeds import sampling_seed
from .client import GeneratorConfig
from .dialogue import Conversation
from .items import CategoryBalancer, resolve_quotas
from .lockstep import Algorithm, run_lockstep
from .run_files import UnreachableWatch, failed_run, fingerprint


class RunConfig(GeneratorConfig):
    """The settings every generation run has, on top of the generator's (:class:`~.client.GeneratorConfig`): its
    inputs and output folder, resuming, shards and quotas. ``MADSConfig`` and ``ConciseConfig`` extend it."""

    folder: ClassVar[str] = "generation"  # the run's folder under data/ ("mads", "concise")

    # Items per category ({"complex_emotions": 382, ...} or "paper" for §3.3's counts): a full category is no longer
    # asked for, and the run stops once every quota is met (the number of units is then an upper bound).
    quotas: dict[str, int] | Literal["paper"] | None = None
    resume: bool = False  # True continues an interrupted run in output_dir (same settings); False starts afresh
    shard_index: int = Field(0, ge=0)
    num_shards: int = Field(1, ge=1)
    personas_file: Path | None = None  # None: data/personas/personas.jsonl (notebook 00)
    output_dir: Path | None = None  # None: data/<folder>/ (shard-KK-of-NN/ inside it when num_shards > 1)

    @property
    def personas_path(self) -> Path:
        return Path(self.personas_file or data_dir() / "personas" / "personas.jsonl")

    @property
    def run_dir(self) -> Path:
        """The folder this run (this shard) writes: see :func:`run_folder`."""
        return run_folder(self)


def run_folder(config: RunConfig, base: str | Path | None = None) -> Path:
    """``base``, else ``config.output_dir``, else ``data/<config.folder>``, with a ``shard-KK-of-NN`` folder inside
    for a sharded run."""
    folder = Path(base or config.output_dir or data_dir() / config.folder)
    if config.num_shards > 1:
        folder = folder / f"shard-{config.shard_index:02d}-of-{config.num_shards:02d}"
    return folder


def check_run_settings(config: Any, *ranges: str) -> None:
    """The checks MADS and concise configs share: ``background_words`` (and any of ``ranges``) is (low, high) with
    1 <= low <= high, the quotas name real categories, and ``shard_index`` names one of ``num_shards`` shards."""
    for name in ("background_words", *ranges):
        low, high = getattr(config, name)
        if not 1 <= low <= high:
            raise ValueError(f"{name} must be (low, high) with 1 <= low <= high, got {(low, high)}")
    resolve_quotas(config.quotas)
    if config.shard_index >= config.num_shards:
        raise ValueError(f"need 0 <= shard_index < num_shards, got shard_index={config.shard_index}, "
                         f"num_shards={config.num_shards}")


class BatchedRun:
    """Runs one shard of a plan in lockstep batches; subclasses define the unit, its files and its records."""

    unit = "unit"  # "dialogue" / "persona": used in messages
    description = "units"  # the progress bar's label
    quota_balancers: Sequence[CategoryBalancer] = ()  # the balancers whose quotas end the run (:meth:`quotas_met`)

    def __init__(self, client: LLMClient, plans: Sequence[Any], out_dir: str | Path, config: Any, *,
                 progress: bool = True):
        self.client, self.config, self.progress = client, config, progress
        self.all_plans = list(plans)
        self.plans = [p for p in self.all_plans if p.index % config.num_shards == config.shard_index]
        self.out_dir = Path(out_dir)
        self.written_items: dict[str, list[dict[str, Any]]] = {}  # unit id -> its items already on disk (resume)

    def settings(self) -> dict[str, Any]:
        """What a resumed run must match: the config, the generator and a fingerprint of the whole plan."""
        return {**self.config.model_dump(mode="json"), "generator_model": self.client.model,
                "plan_fingerprint": fingerprint(self.plan_identity(p) for p in self.all_plans)}

    def plan_identity(self, plan: Any) -> tuple:
        """What a resumed run must plan the same for a unit (its id and persona, ...)."""
        raise NotImplementedError

    def read_written_items(self, *paths: Path) -> None:
        """Index the items already in ``paths`` by their unit, for :meth:`recount`."""
        for path in paths:
            if path.is_file():
                for record in iter_jsonl(path):
                    self.written_items.setdefault(record["dialogue_id"], []).append(record)

    def prepare(self, resume: bool) -> set[str]:
        """Make the files ready (fresh or resumed); return the ids of complete units, whose items are counted."""
        raise NotImplementedError

    def recount(self, unit_id: str) -> None:
        """Count a complete unit's written items for balancing (a batch skipped on resume)."""
        raise NotImplementedError

    def start(self, plan: Any) -> tuple[Conversation, Algorithm]:
        """A unit's conversation and its algorithm, ready to run."""
        raise NotImplementedError

    def quotas_met(self) -> bool:
        """Whether the run's item quotas are all reached, so no further batch is needed (no quotas: never)."""
        balancers = self.quota_balancers
        return any(b.quota for b in balancers) and all(b.met or not b.quota for b in balancers)

    def flush(self, done: list[Conversation]) -> None:
        """Append the records of finished units (the ledger last: it marks them complete)."""
        raise NotImplementedError

    def finish(self, elapsed_s: float) -> dict[str, Any]:
        """The run's statistics (and any final files)."""
        raise NotImplementedError

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Run the shard's units not yet complete; returns :meth:`finish`'s statistics with this call's
        ``completed_this_session``, ``failed_this_session`` and ``completed_per_hour`` (completed units only). A
        fatal client error saves the finished units and records none of its batch as failed."""
        from tqdm.auto import tqdm

        complete = self.prepare(resume)
        started = time.perf_counter()
        size = self.config.concurrency
        batches = [self.plans[i:i + size] for i in range(0, len(self.plans), size)]
        buffer: list[Conversation] = []
        generated: list[Conversation] = []
        stopped = None
        watch = UnreachableWatch(self.unit, self.out_dir, size)
        with tqdm(total=len(self.plans), desc=self.description, unit=self.unit, disable=not self.progress) as bar:
            bar.update(sum(p.unit_id in complete for p in self.plans))
            for number, batch in enumerate(batches):
                if all(p.unit_id in complete for p in batch):
                    for plan in batch:
                        self.recount(plan.unit_id)
                    continue
                if self.quotas_met():
                    stopped = "quotas_met"
                    break
                # A batch runs whole, even when resumed: the same batch gets the same targets and sampling seeds.
                label = f"batch {number + 1}: "
                try:
                    ran = run_lockstep(self.client, [self.start(p) for p in batch],
                                       seed=sampling_seed(self.config.seed, number),
                                       on_step=lambda step, label=label: bar.set_postfix_str(label + step))
                except LLMFatalError as fatal:
                    self.flush(buffer)
                    raise self._stopped(fatal, len(complete) + len(generated)) from None
                new = [c for c in ran if c.unit_id not in complete]
                bar.update(len(new))
                buffer += new
                generated += new
                if watch.tripped(c.error for c in new) and number + 1 < len(batches):
                    self.flush(buffer)
                    raise watch.error()
                if len(buffer) >= self.config.checkpoint_every:
                    self.flush(buffer)
                    buffer = []
            self.flush(buffer)
        elapsed = time.perf_counter() - started
        stats = self.finish(elapsed)
        failed = [c.error for c in generated if c.error is not None]
        if generated and len(failed) == len(generated):
            raise failed_run(self.unit, self.out_dir, failed)
        completed = len(generated) - len(failed)
        stats.update(stopped_early=stopped, completed_this_session=completed, failed_this_session=len(failed),
                     completed_per_hour=round(completed / elapsed * 3600, 1) if completed and elapsed > 0 else None)
        return stats

    def _stopped(self, fatal: LLMFatalError, saved: int) -> LLMFatalError:
        """The fatal error, saying what the run kept."""
        kept = (f"the {saved} {self.unit}(s) finished before it are saved in {self.out_dir}; after the fix, "
                "resume=True keeps them and generates the rest") if saved else "nothing was written"
        return LLMFatalError(f"{fatal} The {self.unit}s in flight were not recorded as failed; {kept}.",
                             status_code=fatal.status_code, fix=fatal.fix)


def run_plan(num_dialogues: int, dialogues_per_hour_per_server: float, *, servers: int = 1,
             shards: int | None = None) -> dict[str, Any]:
    """Wall-clock hours for a run, from a *measured* per-server rate (e.g. ``benchmarks/generation.py``; for concise,
    read "dialogues" as personas): the dialogues per shard divided by the rate of that shard's own server(s)."""
    if dialogues_per_hour_per_server <= 0:
        raise ValueError("dialogues_per_hour_per_server must be > 0 (measure it first)")
    shards = shards or servers
    if servers < shards:
        raise ValueError(f"each shard needs a server: servers ({servers}) < shards ({shards})")
    per_shard = -(-num_dialogues // shards)
    rate = dialogues_per_hour_per_server * (servers / shards)
    return {"num_dialogues": num_dialogues, "servers": servers, "shards": shards, "dialogues_per_shard": per_shard,
            "dialogues_per_hour_per_shard": round(rate, 1), "hours": round(per_shard / rate, 2)}
