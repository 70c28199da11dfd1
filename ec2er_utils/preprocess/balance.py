"""Steps 7 and 8, balance: no sub-category above 1.5x its expected share (§3.3), and gold answer letters uniform.

The expected share of each sub-category is uniform (1/4 of its task), the paper's target. Why the cap runs after
generation's quotas, and its ``min_cap`` floor for tiny demo runs: README, chapter 03.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ..formatting import LETTERS
from ..schemas import DatasetItem
from ..seeds import derived_seed, rng_for
from ..taxonomy import CATEGORY_CAP_RATIO, TASK_CATEGORIES
from .filters import cited_letters, rewrite_letter_citations
from .questions import question_slots
from .steps import StepReport, StepResult, drop


def category_cap(counts: Sequence[int], ratio: float = CATEGORY_CAP_RATIO, min_cap: int = 0) -> int:
    """The largest per-category count m such that, with every category cut to min(count, m), no category holds
    more than ``ratio`` times its expected share (1/len(counts)) of the total; at least ``min_cap``."""
    for m in range(max(counts, default=0), 0, -1):
        total = sum(min(c, m) for c in counts)
        if all(min(c, m) <= ratio * total / len(counts) + 1e-9 for c in counts):
            return max(m, min_cap)
    return max(0, min_cap)


def category_counts(items: Iterable[DatasetItem]) -> dict[str, dict[str, int]]:
    """Items per task and category, every EmoBench category listed (zeros included)."""
    counts = {task: dict.fromkeys(categories, 0) for task, categories in TASK_CATEGORIES.items()}
    for item in items:
        counts[item.task][item.category] = counts[item.task].get(item.category, 0) + 1
    return counts


def balance_categories(items: Sequence[DatasetItem], *, ratio: float | None = CATEGORY_CAP_RATIO, min_cap: int = 0,
                       ) -> StepResult:
    """No EU/EA sub-category above ``ratio`` x its expected share (uniform over the task's 4 categories).

    Within an over-full category the earliest items are kept, later ones dropped (``over_category_cap``), as the
    paper rejected later samples during generation. ``ratio=None`` disables the step. ``notes`` hold the counts
    before and after, each task's cap, and whether ``min_cap`` overrode the rule.
    """
    before = category_counts(items)
    if ratio is None:
        return StepResult(list(items), StepReport(step="category balance", n_in=len(items), n_out=len(items),
                                                  notes={"disabled": True, "before": before, "after": before}))
    caps, floor_used = {}, {}
    for task, categories in TASK_CATEGORIES.items():
        counts = [before[task][c] for c in categories]
        caps[task] = category_cap(counts, ratio, min_cap)
        floor_used[task] = caps[task] > category_cap(counts, ratio, 0)
    seen: Counter = Counter()
    kept, dropped = [], []
    for item in items:
        seen[(item.task, item.category)] += 1
        if seen[(item.task, item.category)] > caps[item.task]:
            dropped.append(drop(item, "over_category_cap",
                                 f"{item.task} {item.category} already has {caps[item.task]} items (cap)"))
        else:
            kept.append(item)
    notes = {"ratio": ratio, "min_cap": min_cap, "caps": caps, "min_cap_overrode_rule": floor_used,
             "before": before, "after": category_counts(kept)}
    return StepResult(kept, StepReport(step="category balance", n_in=len(items), n_out=len(kept), dropped=dropped,
                                       notes=notes))


def answer_letter_counts(items: Iterable[DatasetItem]) -> dict[str, dict[str, int]]:
    """Gold-letter counts per question group ("EU-emotion/6", "EU-cause/4", "EA/4", "MCQ-EU/5", ...)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        for slot, options, answer, _ in question_slots(item):
            if answer in options:
                counts[_position_group(item, slot, len(options))][LETTERS[options.index(answer)]] += 1
    return {group: {LETTERS[i]: c[LETTERS[i]] for i in range(int(group.rsplit("/", 1)[1]))}
            for group, c in sorted(counts.items())}


def _position_group(item: DatasetItem, slot: str, n_options: int) -> str:
    if item.source_format == "emobench_eu":
        name = "EU-emotion" if slot == "main" else "EU-cause"
    elif item.source_format == "emobench_ea":
        name = "EA"
    else:
        name = f"MCQ-{item.task}"
    return f"{name}/{n_options}"


def letter_uniformity(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Chi-square goodness-of-fit of each group's gold letters against uniform (``scipy.stats.chisquare``)."""
    from scipy.stats import chisquare

    out = {}
    for group, letters in counts.items():
        out[group] = {"n": sum(letters.values()), "counts": letters, "chi2": None, "p_value": None}
        if out[group]["n"]:
            result = chisquare(list(letters.values()))
            out[group].update(chi2=float(result.statistic), p_value=float(result.pvalue))
    return out


def _with_explanations(item: DatasetItem, explanations: dict[str, str]) -> DatasetItem:
    """A copy with new explanations per slot ("main", "cause"), the EmoBench mirror kept in step."""
    update: dict[str, str] = {}
    if "main" in explanations:
        update["explanation"] = explanations["main"]
        if item.source_format == "emobench_eu":
            update["emotion_explanation"] = explanations["main"]
    if "cause" in explanations:
        update["cause_explanation"] = explanations["cause"]
    return item.model_copy(update=update)


def balance_answer_positions(items: Sequence[DatasetItem], *, seed: int = 0) -> StepResult:
    """Re-order every question's options so the gold letters are uniform, deterministically.

    Within each question group (see :func:`answer_letter_counts`) the items are ranked by a seeded hash of their
    id; the gold answer goes to position ``rank mod n_options``, so letter counts differ by at most one. The
    other options are sorted, then shuffled with a generator seeded by the item id. The result depends only on the
    items' ids, their option *sets* and the seed, so running the step again changes nothing. An explanation that
    cites options by letter ("option B") has each letter rewritten to where its option went
    (``notes["rewritten_citations"]``: item ids). Drops nothing; ``notes`` hold the letter counts and chi-square
    tests before and after.
    """
    ranked: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    for index, item in enumerate(items):
        for slot, options, _, _ in question_slots(item):
            key = (_position_group(item, slot, len(options)), slot, len(options))
            ranked[key].append((derived_seed(seed, item.item_id, slot), index))
    target: dict[tuple[int, str], int] = {}
    for (_, slot, n_options), members in ranked.items():
        for rank, (_, index) in enumerate(sorted(members)):
            target[(index, slot)] = rank % n_options
    out, rewritten = [], []
    for index, item in enumerate(items):
        orders, explanations = {}, {}
        for slot, options, answer, explanation in question_slots(item):
            others = sorted((o for o in options if o != answer), key=lambda o: (o.casefold(), o))
            rng_for(seed, item.item_id, slot, "order").shuffle(others)
            if answer in options:
                others.insert(target[(index, slot)], answer)
            orders[slot] = others
            moved = {LETTERS[i]: LETTERS[others.index(o)] for i, o in enumerate(options)}
            if cited_letters(explanation) and any(old != new for old, new in moved.items()):
                explanations[slot] = rewrite_letter_citations(explanation, moved)
        new = item.with_options(orders["main"], orders.get("cause"))
        if explanations:
            rewritten.append(item.item_id)
            new = _with_explanations(new, explanations)
        out.append(new)
    notes = {"seed": seed, "before": letter_uniformity(answer_letter_counts(items)),
             "after": letter_uniformity(answer_letter_counts(out)),
             "rewritten_citations": rewritten}
    return StepResult(out, StepReport(step="answer positions", n_in=len(items), n_out=len(out), notes=notes))
