"""Per-item prediction records, EmoBench's scoring, bootstrap intervals and paired comparisons of two runs.

Scoring follows EmoBench's ``evaluate_results`` (``src/data.py``): an item is correct when its predicted letter
equals the gold letter, an EU item only when BOTH the emotion and the cause are right; accuracy is reported per
``coarse_category`` (EU) / ``category`` (EA), and "Overall" is the mean over items (not over categories).
A reply that could not be parsed counts as wrong, as in the official harness (its empty answer never equals a
letter); it is also counted as a parse failure here.

EmoBench has only 200 items per task and language, so every accuracy carries a 95% percentile bootstrap interval
(``scipy.stats.bootstrap``, seeded) and a comparison of two runs on the same items reports, per category, the
difference with a paired bootstrap interval and the exact McNemar p-value (a two-sided binomial test on the
discordant items, ``scipy.stats.binomtest``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..taxonomy import OVERALL
from .parsing import OK

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 1234  # the official harness's seed


class Prediction(BaseModel):
    """One scored item, one line of a ``*.predictions.jsonl`` file.

    ``gold`` and ``predicted`` hold letters keyed ``emotion``/``cause`` (EU) or ``answer`` (EA); ``predicted``
    is ``""`` where no answer could be read. ``raw`` is the model's reply (per question for the ``paper``
    protocol), ``status`` a :mod:`~ec2er_utils.evaluation.parsing` status, ``option_logprobs`` the per-letter
    log-probabilities of the ``choice`` protocol.
    """

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


# --------------------------------------------------------------------------------------------------------------
# Official scoring


def official_scores(records: Iterable[Prediction]) -> dict[str, float]:
    """EmoBench's numbers: ``{category: accuracy, ..., "Overall": accuracy}`` as fractions (categories sorted)."""
    records = list(records)
    if not records:
        raise ValueError("no predictions to score")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        totals[record.category][0] += record.correct
        totals[record.category][1] += 1
    scores = {category: right / n for category, (right, n) in sorted(totals.items())}
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


# --------------------------------------------------------------------------------------------------------------
# Intervals and tests


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


# --------------------------------------------------------------------------------------------------------------
# Leaderboard


def _accuracy_entry(values: list[float], *, n_resamples: int, seed: int, chance: list[float | None] | None = None,
                    ) -> dict[str, Any]:
    low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
    entry: dict[str, Any] = {"n": len(values), "accuracy": float(np.mean(values)) if values else float("nan"),
                             "ci_low": low, "ci_high": high}
    if chance and all(c is not None for c in chance):
        entry["chance"] = float(np.mean(chance))
    return entry


def summarize(records: Iterable[Prediction], *, n_resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Leaderboard entry for the predictions of one task and language.

    Keys: ``n``, ``overall`` and ``categories`` (accuracy with 95% CI and chance level), ``emotion_only`` and
    ``cause_only`` per category for EU, ``parse_failures`` and ``parse_failure_rate``, ``statuses`` (counts),
    ``letters`` (how often each letter was predicted and was gold, per question: a small model that always says
    "A" scores the share of items whose answer is A) and ``official`` (the official harness's numbers, the same
    values as ``accuracy``).
    """
    records = list(records)
    if not records:
        raise ValueError("no predictions to summarize")
    tasks = {r.task for r in records}
    if len(tasks) != 1:
        raise ValueError(f"summarize one task at a time, got {sorted(tasks)}")
    by_category: dict[str, list[Prediction]] = defaultdict(list)
    for record in records:
        by_category[record.category].append(record)
    groups = {OVERALL: records, **dict(sorted(by_category.items()))}

    def table(metric) -> dict[str, Any]:
        return {name: _accuracy_entry([float(metric(r)) for r in group], n_resamples=n_resamples, seed=seed,
                                      chance=[r.chance for r in group])
                for name, group in groups.items()}

    accuracy = table(lambda r: r.correct)
    summary: dict[str, Any] = {"n": len(records), "overall": accuracy.pop(OVERALL), "categories": accuracy}
    if tasks == {"EU"}:
        for part in ("emotion", "cause"):
            part_table = table(lambda r, part=part: r.parts_correct[part])
            for entry in part_table.values():
                entry.pop("chance", None)  # chance of the combined answer; meaningless per part
            summary[f"{part}_only"] = part_table
    failures = sum(r.parse_failed for r in records)
    statuses: dict[str, int] = defaultdict(int)
    for record in records:
        statuses[record.status] += 1
    letters = {part: {"predicted": _counts(r.predicted.get(part, "") for r in records),
                      "gold": _counts(r.gold[part] for r in records)} for part in records[0].gold}
    summary.update(parse_failures=failures, parse_failure_rate=failures / len(records), statuses=dict(statuses),
                   letters=letters, official=official_scores(records))
    return summary


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value or "(none)"] += 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------------------------
# Paired comparison


def compare_predictions(run_a: Iterable[Prediction], run_b: Iterable[Prediction], *, metric: str = "correct",
                        allow_partial: bool = False, n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Per-category (and Overall) comparison of run B against run A on the same items.

    ``metric`` is ``correct`` (the EmoBench rule), or for EU ``emotion`` / ``cause``. Each row: ``category``,
    ``n``, ``accuracy_a``, ``accuracy_b``, ``delta`` (B - A) with its paired bootstrap ``ci_low``/``ci_high``,
    ``only_a`` / ``only_b`` (items only that run got right) and ``mcnemar_p`` (exact). Items are matched by
    (language, qid); runs over different items raise unless ``allow_partial`` (then the shared items are used
    and the row says how many were left out).
    """
    a = {r.key: r for r in run_a}
    b = {r.key: r for r in run_b}
    tasks = {r.task for r in (*a.values(), *b.values())}
    if len(tasks) != 1:
        raise ValueError(f"compare runs of one task at a time, got {sorted(tasks)}")
    shared = sorted(a.keys() & b.keys())
    left_out = len(a.keys() ^ b.keys())
    if not shared:
        raise ValueError("the two runs have no items in common")
    if left_out and not allow_partial:
        raise ValueError(f"the runs cover different items ({len(a)} vs {len(b)}, {len(shared)} shared); finish "
                         "both runs on the same items, or pass allow_partial=True to compare the shared ones")

    def value(record: Prediction) -> float:
        if metric == "correct":
            return float(record.correct)
        if metric in record.gold:
            return float(record.parts_correct[metric])
        raise ValueError(f"unknown metric {metric!r} for {record.task}; use 'correct' or one of {list(record.gold)}")

    by_category: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in shared:
        by_category[a[key].category].append(key)
    rows = []
    for category, keys in [(OVERALL, shared), *sorted(by_category.items())]:
        values_a = np.array([value(a[k]) for k in keys])
        values_b = np.array([value(b[k]) for k in keys])
        only_a = int(np.sum((values_a == 1) & (values_b == 0)))
        only_b = int(np.sum((values_a == 0) & (values_b == 1)))
        low, high = paired_bootstrap_ci(values_a, values_b, n_resamples=n_resamples, seed=seed)
        rows.append({"category": category, "n": len(keys), "accuracy_a": float(values_a.mean()),
                     "accuracy_b": float(values_b.mean()), "delta": float(values_b.mean() - values_a.mean()),
                     "ci_low": low, "ci_high": high, "only_a": only_a, "only_b": only_b,
                     "mcnemar_p": mcnemar_exact_p(only_a, only_b), "left_out": left_out})
    return rows
