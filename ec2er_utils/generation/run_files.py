"""The files of a generation run and the rules that make it resumable (shared by MADS and concise), and the errors
that end a broken run (:class:`ModelUnreachable`, :class:`RunFailed`). README: "Reliability".
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import JSONLError, iter_jsonl, read_json, repair_jsonl_tail, write_json_atomic, write_text_atomic
from ..llm import LLMRequestError


# The settings a resumed run may change (backend, base_url and top_p: a run_config.json saved before the run's config
# took in the generator's settings lacks them).
RESUMABLE = ("checkpoint_every", "resume", "personas_file", "themes_file", "output_dir", "backend", "base_url",
             "top_p")


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


class RunFailed(RuntimeError):
    """A run in which every unit it generated failed: nothing usable came out, so it is an error, not a result."""


def failed_run(unit: str, out_dir: Path, errors: Sequence[Mapping[str, str]]) -> RunFailed:
    """The error of a run whose ``errors`` (one per unit it generated, all failed) leave nothing usable."""
    reasons = Counter(f"{e['stage']}: {e['reason']}" for e in errors)
    listing = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common())
    return RunFailed(
        f"all {len(errors)} {unit}s of this run failed, so nothing usable was generated ({listing}); last error: "
        f"{errors[-1].get('message', '')[:300]}. The failures are recorded in {out_dir}. Fix what the last error "
        f"names, then run again (resume=False starts afresh; resume=True runs again only the {unit}s that failed "
        "in transport, request_failed).")


class UnreachableWatch:
    """Stops a run whose model has gone away (server killed, network down) instead of letting every remaining unit
    fail only after the client's full retry sequence: once ``limit`` units in a row (default: two full batches)
    failed in transport on their own request, :meth:`tripped` is True and the run raises :meth:`error`. A unit that
    got its answers resets the count."""

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
    """The files of one generation run. A unit (a MADS dialogue, a concise persona) is complete once its record is in
    the ``ledger``, written after its other ``records`` (JSONL lines whose unit is ``unit_of(record)``); ``id_key``
    names the unit in a ledger record."""

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

        Resuming refuses changed settings (except :data:`RESUMABLE`), deletes the temporary file of an interrupted
        atomic write, cuts a partial last line, takes units that met a transport failure out of the ledger (first:
        a crash right after leaves them incomplete, never half-removed) and drops every record of incomplete units.
        """
        if not resume:
            removed = [path for path in self.outputs if path.exists()]
            for path in removed:
                path.unlink()
            if removed:
                print(f"[{self.label}] fresh run: removed {len(removed)} file(s) of a previous run in {self.out_dir}")
        elif self.config.is_file():
            saved = self._explained(read_json, self.config)
            differences = [f"{k}: saved {saved.get(k)!r}, now {settings.get(k)!r}"
                           for k in sorted((set(saved) | set(settings)) - set(RESUMABLE))
                           if saved.get(k) != settings.get(k)]
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


def outcomes(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a run's unit records add up to: their status, why units failed, the items rejected and repaired, and
    the tokens used."""
    usage = Counter()
    for record in records:
        usage.update(record["usage"])
    rejected = [r for record in records for r in record["rejected_items"]]
    return {"status": distribution(r["status"] for r in records),
            "failure_reasons": distribution(f"{r['error']['stage']}: {r['error']['reason']}"
                                            for r in records if r["error"]),
            "items_rejected": len(rejected), "rejection_reasons": distribution(r["reason"] for r in rejected),
            "items_repaired": sum(len(r.get("repaired_items", [])) for r in records), "usage": dict(usage)}
