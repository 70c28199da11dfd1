"""What every preprocessing step returns: the items it kept and a report naming every item it dropped, and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from ..schemas import DatasetItem


class Drop(BaseModel):
    """One item (or input line) a step removed, and why."""

    item_id: str
    reason: str
    detail: str = ""
    source: str | None = None  # "file:line" the item was read from


class StepReport(BaseModel):
    """What one step did: items in, items out, every drop with its reason, and step-specific notes."""

    step: str
    n_in: int
    n_out: int
    dropped: list[Drop] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)

    @property
    def by_reason(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dropped).most_common())


class StepResult(NamedTuple):
    items: list
    report: StepReport


def drop(item: DatasetItem, reason: str, detail: str = "") -> Drop:
    return Drop(item_id=item.item_id, reason=reason, detail=detail, source=item.source)


def run_check(step: str, items: Sequence[DatasetItem],
              check: Callable[[DatasetItem], tuple[str, str] | None | DatasetItem]) -> StepResult:
    """Apply a per-item check: None keeps the item, (reason, detail) drops it, a DatasetItem replaces it."""
    kept, dropped = [], []
    for item in items:
        verdict = check(item)
        if verdict is None:
            kept.append(item)
        elif isinstance(verdict, DatasetItem):
            kept.append(verdict)
        else:
            dropped.append(drop(item, *verdict))
    return StepResult(kept, StepReport(step=step, n_in=len(items), n_out=len(kept), dropped=dropped))


def run_steps(step: str, items: Sequence[DatasetItem], steps: Sequence[Callable[[list], StepResult]]) -> StepResult:
    """Apply ``steps`` one after another as one step: every drop, and each step's report in ``notes["reports"]``."""
    current, reports = list(items), []
    for run in steps:
        current, report = run(current)
        reports.append(report)
    return StepResult(current, StepReport(step=step, n_in=len(items), n_out=len(current),
                                          dropped=[d for r in reports for d in r.dropped], notes={"reports": reports}))
