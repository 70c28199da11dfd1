"""Per-item prediction records, EmoBench's scoring, bootstrap intervals and paired comparisons of two runs.

Scoring follows EmoBench's ``evaluate_results`` (``src/data.py``): an EU item is correct only when BOTH the emotion
and the cause are right, "Overall" is the mean over items (not over categories), and an unreadable reply counts as
wrong (and as a parse failure). Intervals and tests: README, chapter 05.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..taxonomy import OVERALL
from .orders import BASELINES, baseline_predictors
from .parsing import OK

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 1234  # the official harness's seed


class Prediction(BaseModel):
    """One scored item, one line of a ``*.predictions.jsonl`` file. ``gold`` and ``predicted`` hold letters keyed
    ``emotion``/``cause`` (EU) or ``answer`` (EA) in the option order ``shift`` (``predicted`` is ``""`` where no
    answer could be read); ``raw`` is the model's reply (per question for ``paper``), ``status`` a
    :mod:`~ec2er_utils.evaluation.parsing` status, ``option_logprobs`` the per-letter scores of the scoring
    protocols."""

    model_config = ConfigDict(extra="forbid")

    qid: str
    language: str
    task: Literal["EU", "EA"]
    category: str
    protocol: str
    gold: dict[str, str]
    predicted: dict[str, str]
    raw: str | dict[str, str] | None = None
    status: str = OK
    detail: str = ""
    attempts: int = 1
    option_logprobs: dict[str, dict[str, float]] | None = None
    chance: float | None = None  # accuracy of uniform guessing on this item
    shift: int = 0  # cyclic shift of the options (:mod:`~ec2er_utils.evaluation.orders`); 0: EmoBench's order

    @property
    def key(self) -> tuple[str, str]:
        return self.language, self.qid

    @property
    def parts_correct(self) -> dict[str, bool]:
        return {part: self.predicted.get(part, "") == gold for part, gold in self.gold.items()}

    @property
    def correct(self) -> bool:
        return all(self.parts_correct.values())

    @property
    def parse_failed(self) -> bool:
        return self.status != OK


def official_scores(records: Iterable[Prediction]) -> dict[str, float]:
    """EmoBench's numbers: ``{category: accuracy, ..., "Overall": accuracy}`` as fractions (categories sorted)."""
    records = list(records)
    if not records:
        raise ValueError("no predictions to score")
    by_category: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        by_category[record.category].append(record.correct)
    scores = {category: sum(right) / len(right) for category, right in sorted(by_category.items())}
    scores[OVERALL] = sum(r.correct for r in records) / len(records)
    return scores


def official_result_rows(records: Iterable[Prediction]) -> list[dict[str, Any]]:
    """The records in the official harness's results format (its ``results/<task>/<model>.jsonl`` lines), so its
    own ``--eval_only`` scoring can be run on our predictions."""
    rows = []
    for record in records:
        row: dict[str, Any] = {"qid": record.qid, "lang": record.language}
        if record.task == "EU":
            row.update(coarse_category=record.category, emo_label=record.gold["emotion"],
                       emo_answer=record.predicted.get("emotion", ""), cause_label=record.gold["cause"],
                       cause_answer=record.predicted.get("cause", ""))
        else:
            row.update(category=record.category, label=record.gold["answer"],
                       answer=record.predicted.get("answer", ""))
        rows.append(row)
    return rows


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``nan`` bounds for fewer than 2 values)."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return float("nan"), float("nan")
    if np.all(data == data[0]):  # every resample has the same mean
        return float(data[0]), float(data[0])
    result = bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                        n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(b) - mean(a)``, resampling items (pairs) together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same length, got {a.size} and {b.size}")
    return bootstrap_ci(b - a, confidence=confidence, n_resamples=n_resamples, seed=seed)


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (A right & B wrong, A wrong & B right)."""
    from scipy.stats import binomtest

    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be >= 0")
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_b, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def _accuracy_entry(values: list[float], *, n_resamples: int, seed: int) -> dict[str, Any]:
    low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
    return {"n": len(values), "accuracy": float(np.mean(values)) if values else float("nan"), "ci_low": low,
            "ci_high": high}


# How an item's records (one per option order) become one value: EmoBench's order only, the mean over orders,
# or the product over orders (for 0/1 scores: right under every order).
ITEM_METRICS = ("accuracy", "order_mean", "strict")


def item_value(metric: str, records: Sequence[Prediction], score) -> float:
    """``score(record)`` of one item's records, combined as ``metric`` says (see :data:`ITEM_METRICS`)."""
    if metric == "accuracy":
        official = [r for r in records if r.shift == 0]
        if not official:
            raise ValueError(f"item {records[0].qid} has no prediction in EmoBench's option order (shift 0)")
        return float(score(official[0]))
    values = [float(score(r)) for r in records]
    if metric == "order_mean":
        return float(np.mean(values))
    if metric == "strict":
        return float(np.prod(values))
    raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(ITEM_METRICS)}")


def by_item(records: Iterable[Prediction]) -> dict[tuple[str, str], list[Prediction]]:
    """Records grouped per item ((language, qid)), each item's sorted by shift."""
    items: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for record in records:
        items[record.key].append(record)
    return {key: sorted(group, key=lambda r: r.shift) for key, group in items.items()}


def summarize(records: Iterable[Prediction], *, n_resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Leaderboard entry for the predictions of one task and language (one record per item and option order).
    Keys: ``n``, ``overall`` and ``categories`` (accuracy with 95% CI, chance and the letter-prior ``baselines``),
    ``emotion_only``/``cause_only`` (EU), ``parse_failures``, ``parse_failure_rate``, ``statuses``, ``letters``
    (predicted and gold letter counts per question) and ``official`` (the harness's numbers), all in EmoBench's
    order (shift 0); when the items were also asked in other orders, ``orders`` holds ``shifts`` (how many items
    had how many orders), ``order_mean`` and ``strict`` tables (like ``overall``/``categories``, "Overall" first)
    and ``letters`` over all orders."""
    records = list(records)
    if not records:
        raise ValueError("no predictions to summarize")
    tasks = {r.task for r in records}
    if len(tasks) != 1:
        raise ValueError(f"summarize one task at a time, got {sorted(tasks)}")
    items = by_item(records)
    # by_item sorts each item's records by shift: EmoBench's order (shift 0) comes first
    official = [group[0] for group in items.values()]
    if any(r.shift != 0 for r in official):
        raise ValueError("some items have no prediction in EmoBench's option order (shift 0); evaluate them with "
                         "orders='original' or 'cyclic'")
    by_category: dict[str, list[list[Prediction]]] = defaultdict(list)
    for group in items.values():
        by_category[group[0].category].append(group)
    groups = {OVERALL: list(items.values()), **dict(sorted(by_category.items()))}
    baselines = {"accuracy": baseline_predictors(official), "order_mean": baseline_predictors(records)}
    baselines["strict"] = baselines["order_mean"]

    def table(metric: str, score=lambda r: r.correct, with_baselines: bool = True) -> dict[str, Any]:
        result = {}
        for name, group in groups.items():
            entry = _accuracy_entry([item_value(metric, rs, score) for rs in group], n_resamples=n_resamples,
                                    seed=seed)
            if all(r.chance is not None for rs in group for r in rs):
                entry["chance"] = float(np.mean([item_value(metric, rs, lambda r: r.chance) for rs in group]))
            if with_baselines:
                entry["baselines"] = {b: float(np.mean([item_value(metric, rs, baselines[metric][b])
                                                        for rs in group])) for b in BASELINES}
            result[name] = entry
        return result

    accuracy = table("accuracy")
    summary: dict[str, Any] = {"n": len(items), "overall": accuracy.pop(OVERALL), "categories": accuracy}
    if tasks == {"EU"}:
        for part in ("emotion", "cause"):
            part_table = table("accuracy", lambda r, part=part: r.parts_correct[part], with_baselines=False)
            for entry in part_table.values():
                entry.pop("chance", None)  # chance of the combined answer; meaningless per part
            summary[f"{part}_only"] = part_table
    failures = sum(r.parse_failed for r in official)
    statuses = Counter(r.status for r in official)
    summary.update(parse_failures=failures, parse_failure_rate=failures / len(official), statuses=dict(statuses),
                   letters=_letters(official), official=official_scores(official))
    if len(records) > len(official):
        summary["orders"] = {"shifts": {str(k): v for k, v in sorted(Counter(len(rs) for rs in items.values())
                                                                     .items())},
                             "order_mean": table("order_mean"), "strict": table("strict"),
                             "letters": _letters(records)}
    return summary


def _letters(records: list[Prediction]) -> dict[str, dict[str, dict[str, int]]]:
    return {part: {"predicted": _counts(r.predicted.get(part, "") for r in records),
                   "gold": _counts(r.gold[part] for r in records)} for part in records[0].gold}


def _counts(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(value or "(none)" for value in values).items()))


def compare_predictions(run_a: Iterable[Prediction], run_b: Iterable[Prediction], *, metric: str = "correct",
                        allow_partial: bool = False, n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Per-category (and Overall) comparison of run B against run A on the same items (matched by language and
    qid). ``metric``: ``correct`` (in EmoBench's order), for EU ``emotion``/``cause``, or over the option orders both
    runs were asked in, ``strict`` or ``order_mean``. Each row: ``category``, ``n``, ``accuracy_a``, ``accuracy_b``,
    ``delta`` (B - A) with its paired bootstrap ``ci_low``/``ci_high``, ``only_a``/``only_b`` (items where that run
    scored higher) with ``mcnemar_p`` (exact; for ``order_mean`` the sign test), and ``left_out``. Runs over
    different items (or orders) raise unless ``allow_partial``, which compares the shared ones."""
    a, b = by_item(run_a), by_item(run_b)
    tasks = {r.task for rs in (*a.values(), *b.values()) for r in rs}
    if len(tasks) != 1:
        raise ValueError(f"compare runs of one task at a time, got {sorted(tasks)}")
    shared = sorted(a.keys() & b.keys())
    left_out = len(a.keys() ^ b.keys())
    if not shared:
        raise ValueError("the two runs have no items in common")
    if left_out and not allow_partial:
        raise ValueError(f"the runs cover different items ({len(a)} vs {len(b)}, {len(shared)} shared); finish "
                         "both runs on the same items, or pass allow_partial=True to compare the shared ones")
    robust = metric in ("strict", "order_mean")
    if robust:
        if all(len(rs) == 1 for rs in (*a.values(), *b.values())):
            raise ValueError(f"metric {metric!r} needs predictions under several option orders; evaluate both runs "
                             "with orders='cyclic'")
        differ = [key for key in shared if [r.shift for r in a[key]] != [r.shift for r in b[key]]]
        if differ and not allow_partial:
            raise ValueError(f"{len(differ)} items were asked in different option orders by the two runs (e.g. "
                             f"{differ[0][1]}); evaluate both with the same orders, or pass allow_partial=True")
        left_out += len(differ)
        shared = [key for key in shared if key not in set(differ)]
    elif metric != "correct" and metric not in next(iter(a.values()))[0].gold:
        raise ValueError(f"unknown metric {metric!r} for {next(iter(tasks))}; use 'correct', 'strict', "
                         f"'order_mean' or one of {list(next(iter(a.values()))[0].gold)}")

    def value(records: list[Prediction]) -> float:
        score = (lambda r: r.correct) if robust or metric == "correct" else (lambda r: r.parts_correct[metric])
        return item_value(metric if robust else "accuracy", records, score)

    by_category: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in shared:
        by_category[a[key][0].category].append(key)
    rows = []
    for category, keys in [(OVERALL, shared), *sorted(by_category.items())]:
        values_a = np.array([value(a[k]) for k in keys])
        values_b = np.array([value(b[k]) for k in keys])
        only_a = int(np.sum(values_a > values_b))
        only_b = int(np.sum(values_b > values_a))
        low, high = paired_bootstrap_ci(values_a, values_b, n_resamples=n_resamples, seed=seed)
        rows.append({"category": category, "n": len(keys), "accuracy_a": float(values_a.mean()),
                     "accuracy_b": float(values_b.mean()), "delta": float(values_b.mean() - values_a.mean()),
                     "ci_low": low, "ci_high": high, "only_a": only_a, "only_b": only_b,
                     "mcnemar_p": mcnemar_exact_p(only_a, only_b), "left_out": left_out})
    return rows
