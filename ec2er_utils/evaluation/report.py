"""An evaluation run read back and reported: :class:`EvaluationRun` and its files (:func:`load_run`), the tidy
leaderboard (:func:`leaderboard_frame`) and the tables made from it, answer-letter distributions, paired
comparisons of two runs, and a plain description of the numbers. :mod:`~ec2er_utils.evaluation.runner` writes
the runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..emobench import TASKS
from ..jsonl import read_json, read_jsonl, write_json_atomic
from ..taxonomy import OVERALL
from .orders import BASELINES
from .scoring import DEFAULT_RESAMPLES, DEFAULT_SEED, ITEM_METRICS, Prediction, compare_predictions


@dataclass
class EvaluationRun:
    """The predictions and leaderboards of one run (what :func:`evaluate` wrote, or :func:`load_run` read)."""

    out_dir: Path
    config: dict[str, Any]
    predictions: dict[str, list[Prediction]] = field(default_factory=dict)  # task -> requested items' records
    leaderboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> leaderboard JSON

    @property
    def label(self) -> str:
        return self.config["label"]

    def frame(self):
        """The leaderboards as a tidy table: one row per task, language, metric and category."""
        return leaderboard_frame(self)

    def records(self, task: str, language: str | None = None, *, all_orders: bool = False) -> list[Prediction]:
        """The task's records (of ``language``), in EmoBench's option order only unless ``all_orders``."""
        return [r for r in self.predictions.get(task, [])
                if (language is None or r.language == language) and (all_orders or r.shift == 0)]


def predictions_path(out_dir: Path, task: str, language: str) -> Path:
    return Path(out_dir) / f"{task}-{language}.predictions.jsonl"


def leaderboard_path(out_dir: Path, task: str) -> Path:
    return Path(out_dir) / f"{task}.leaderboard.json"


def load_run(out_dir: str | os.PathLike) -> EvaluationRun:
    """Read a run folder written by :func:`evaluate` (all languages found there)."""
    out_dir = Path(out_dir)
    if not (out_dir / "run.json").exists():
        raise FileNotFoundError(f"{out_dir}: no run.json, so no evaluation run there; run notebooks/05_evaluate.ipynb "
                                "(or ec2er_utils.evaluation.evaluate) first")
    run = EvaluationRun(out_dir, read_json(out_dir / "run.json"))
    for task in TASKS:
        board = leaderboard_path(out_dir, task)
        if board.exists():
            run.leaderboards[task] = read_json(board)
        records = [record for path in sorted(out_dir.glob(f"{task}-*.predictions.jsonl"))
                   for record in read_jsonl(path, Prediction)]
        if records:
            run.predictions[task] = records
    return run


def leaderboard_frame(*runs: EvaluationRun):
    """One tidy table for any number of runs: label, protocol, task, language, metric, category, accuracy, CI,
    n, chance, the letter-prior baselines (one column each, see :data:`~ec2er_utils.evaluation.orders.BASELINES`)
    and the parse-failure rate. ``metric`` is ``accuracy`` (EmoBench's option order: the official number),
    ``emotion_only``/``cause_only`` (EU), and with ``orders="cyclic"`` ``order_mean`` and ``strict``."""
    import pandas as pd

    rows = []
    for run in runs:
        for task, board in run.leaderboards.items():
            for lang, summary in board["languages"].items():
                metrics = {"accuracy": {OVERALL: summary["overall"], **summary["categories"]},
                           **{part: summary[part] for part in ("emotion_only", "cause_only") if part in summary},
                           **{metric: table for metric, table in summary.get("orders", {}).items()
                              if metric in ("order_mean", "strict")}}
                for metric, table in metrics.items():
                    for category, entry in table.items():
                        baselines = entry.get("baselines", {})
                        rows.append({"label": board["label"], "protocol": board["protocol"], "task": task,
                                     "language": lang, "metric": metric, "category": category,
                                     "accuracy": entry["accuracy"], "ci_low": entry["ci_low"],
                                     "ci_high": entry["ci_high"], "n": entry["n"],
                                     "chance": entry.get("chance", float("nan")),
                                     **{name: baselines.get(name, float("nan")) for name in BASELINES},
                                     "parse_failure_rate": summary["parse_failure_rate"]})
    return pd.DataFrame(rows)


def robust_table(frame, *, language: str = "en", category: str = OVERALL):
    """Per run and task: the official accuracy, the accuracy averaged over option orders and the strict accuracy,
    each with its 95% CI and the letter-prior baselines scored the same way (rows: label, task, metric)."""
    import pandas as pd

    data = frame[(frame["language"] == language) & (frame["category"] == category)
                 & frame["metric"].isin(ITEM_METRICS)]
    if data.empty:
        raise ValueError(f"no rows for language {language!r} and category {category!r} in the leaderboard")
    table = data.assign(**{"95% CI": [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(data["ci_low"], data["ci_high"],
                                                                                 strict=True)]})
    order = {metric: i for i, metric in enumerate(ITEM_METRICS)}
    table = table.sort_values(["label", "task", "metric"], key=lambda c: c.map(order) if c.name == "metric" else c,
                              kind="stable")
    columns = ["label", "task", "metric", "accuracy", "95% CI", "n", "chance", *BASELINES]
    return pd.DataFrame(table[columns]).set_index(["label", "task", "metric"])


def letter_table(*runs: EvaluationRun, language: str = "en"):
    """Each run's answer-letter distribution beside the gold letters', per task and question: shares in
    EmoBench's order (``answered``, ``gold``) and, for runs asked under several orders, over all orders
    (``answered, all orders``; the gold letters are then spread evenly by construction)."""
    import pandas as pd

    rows = []
    for run in runs:
        for task, board in run.leaderboards.items():
            summary = board["languages"].get(language)
            if summary is None:
                continue
            every = summary.get("orders", {}).get("letters", {})
            for part, counts in summary["letters"].items():
                all_orders = every.get(part, {}).get("predicted", {})
                n_all = sum(all_orders.values())
                for letter in sorted({*counts["predicted"], *counts["gold"], *all_orders}):
                    rows.append({"label": board["label"], "task": task, "question": part, "letter": letter,
                                 "answered": counts["predicted"].get(letter, 0) / summary["n"],
                                 "gold": counts["gold"].get(letter, 0) / summary["n"],
                                 "answered, all orders": all_orders.get(letter, 0) / n_all if n_all else float("nan")})
    if not rows:
        raise ValueError(f"no leaderboard for language {language!r} in these runs")
    return pd.DataFrame(rows).set_index(["label", "task", "question", "letter"])


def compare_runs(run_a: EvaluationRun, run_b: EvaluationRun, *, tasks: Sequence[str] | None = None,
                 language: str = "en", metric: str = "correct", allow_partial: bool = False,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                 out_path: str | os.PathLike | None = None):
    """Paired comparison of run B against run A (e.g. base vs fine-tuned) per task and category, as a table of
    :func:`~ec2er_utils.evaluation.scoring.compare_predictions` rows (its ``metric``s); with ``out_path`` also
    written as JSON."""
    import pandas as pd

    rows = []
    for task in tasks or [t for t in TASKS if t in run_a.predictions and t in run_b.predictions]:
        records_a = run_a.records(task, language, all_orders=True)
        records_b = run_b.records(task, language, all_orders=True)
        if not records_a or not records_b:
            missing = run_a.label if not records_a else run_b.label
            raise ValueError(f"run {missing!r} has no {task}-{language} predictions to compare")
        for row in compare_predictions(records_a, records_b, metric=metric, allow_partial=allow_partial,
                                       n_resamples=n_resamples, seed=seed):
            rows.append({"task": task, "language": language, "run_a": run_a.label, "run_b": run_b.label,
                         "metric": metric, **row})
    table = pd.DataFrame(rows)
    if out_path is not None:
        write_json_atomic(Path(out_path), table.to_dict(orient="records"))
    return table


def leaderboard_table(frame, *, language: str = "en", metric: str = "accuracy"):
    """A readable leaderboard: rows (task, category), per run its accuracy and 95% CI, plus n and chance."""
    import pandas as pd

    data = frame[(frame["language"] == language) & (frame["metric"] == metric)]
    if data.empty:
        raise ValueError(f"no {metric!r} rows for language {language!r}")
    columns: dict[str, Any] = {}
    for label, group in data.groupby("label", sort=False):
        indexed = group.set_index(["task", "category"])
        columns[label] = indexed["accuracy"].round(3)
        columns[f"{label} 95% CI"] = [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(indexed["ci_low"],
                                                                                indexed["ci_high"], strict=True)]
        columns["n"] = indexed["n"]
        if metric == "accuracy":
            columns["chance"] = indexed["chance"].round(3)
    return pd.DataFrame(columns)


def describe_run(run: EvaluationRun, language: str = "en") -> str:
    """One plain sentence per task: who produced the numbers, the overall accuracy with its interval, and chance."""
    from ..models import resolve_model

    config = run.config
    who = config["model"]
    if config["backend"] == "local":
        spec = resolve_model(config["model"])
        size = f", {spec.params_billion}B parameters" if spec.params_billion else ""
        who = f"{spec.display_name} ({spec.hf_id}{size})"
    who += f" with the adapter {config['adapter']}" if config.get("adapter") else ", base model without adapter"
    lines = [f"Model: {who}; protocol {config['protocol']}{' + CoT' if config.get('cot') else ''}; "
             f"EmoBench {language}."]
    for task, board in run.leaderboards.items():
        summary = board["languages"].get(language)
        if summary is None:
            continue
        overall = summary["overall"]
        chance = overall.get("chance", float("nan"))
        if overall["ci_high"] < chance:
            verdict = "below chance (worse than guessing: a strong bias towards some letters)"
        elif overall["ci_low"] > chance:
            verdict = "above chance"
        else:
            verdict = "the interval includes chance: no evidence it beats guessing"
        lines.append(f"{task}: {overall['accuracy']:.3f} (95% CI {overall['ci_low']:.3f}-{overall['ci_high']:.3f}, "
                     f"n={overall['n']}) vs chance {chance:.3f}; {verdict}; parse failures "
                     f"{summary['parse_failure_rate']:.0%}.")
        baselines = overall.get("baselines")
        if baselines:
            lines.append(f"  letter priors on the same items: always 'A' {baselines['always_A']:.3f}, always the "
                         f"most common gold letter {baselines['majority_gold']:.3f}, answering at random with this "
                         f"model's own letter shares {baselines['own_letters']:.3f}.")
        orders = summary.get("orders")
        if orders:
            mean, strict = orders["order_mean"][OVERALL], orders["strict"][OVERALL]
            lines.append(f"  over the cyclic option orders: {mean['accuracy']:.3f} on average (95% CI "
                         f"{mean['ci_low']:.3f}-{mean['ci_high']:.3f}; always 'A' "
                         f"{mean['baselines']['always_A']:.3f}), right under every order {strict['accuracy']:.3f} "
                         f"({strict['ci_low']:.3f}-{strict['ci_high']:.3f}).")
        for part, counts in summary.get("letters", {}).items():
            letter, times = max(counts["predicted"].items(), key=lambda kv: kv[1])
            if times >= 0.8 * overall["n"]:
                gold_share = counts["gold"].get(letter, 0) / overall["n"]
                lines.append(f"  {task} {part}: answered {letter!r} for {times / overall['n']:.0%} of the items, "
                             f"and {letter!r} is the gold answer of {gold_share:.0%}: a near-constant guess.")
    return "\n".join(lines)
