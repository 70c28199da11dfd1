"""EmoBench results as figures: notebook 05's leaderboard plots, and notebook 06's Table 1 (the paper's numbers,
ours beside them) and fine-tuning gain, from the run folders :func:`ec2er_utils.evaluation.evaluate` writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jsonl import JSONLError
from ..taxonomy import OVERALL, PAPER_MODELS, TASK_CATEGORIES
from .style import (FigureInputError, category_label, colour_cycle, grouped_bars, new_figure, shared_legend, styled,
                    suptitle)

# Table 1's columns per task: the overall accuracy, then each category.
TABLE1_CATEGORIES = {task: (OVERALL, *categories) for task, categories in TASK_CATEGORIES.items()}


@styled
def plot_leaderboard(frame, *, language: str = "en", metric: str = "accuracy"):
    """One panel per task: accuracy per category for each run of ``frame``
    (:func:`~ec2er_utils.evaluation.leaderboard_frame`), 95% bootstrap intervals, chance as a dashed line."""
    import numpy as np
    import seaborn as sns

    data = frame[(frame["language"] == language) & (frame["metric"] == metric)].copy()
    if data.empty:
        raise ValueError(f"nothing to plot for language {language!r} and metric {metric!r}")
    data["run"] = data["label"] + " / " + data["protocol"]
    tasks = [t for t in TASK_CATEGORIES if t in set(data["task"])]
    figure, axes = new_figure(6.5 * len(tasks), 4.2, 1, len(tasks))
    for ax, task in zip(axes[0], tasks, strict=True):
        part = data[data["task"] == task]
        order = [OVERALL, *sorted(set(part["category"]) - {OVERALL})]
        runs = list(dict.fromkeys(part["run"]))
        sns.barplot(part, x="category", y="accuracy", hue="run", order=order, hue_order=runs, ax=ax,
                    palette="deep", errorbar=None)
        width = 0.8 / len(runs)
        for k, run in enumerate(runs):  # the intervals come from the bootstrap, not from seaborn
            rows = part[part["run"] == run].set_index("category").reindex(order)
            x = np.arange(len(order)) - 0.4 + width * (k + 0.5)
            errors = [rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]]
            ax.errorbar(x, rows["accuracy"], yerr=errors, fmt="none", ecolor="black", capsize=3, linewidth=1)
        chance = part.drop_duplicates("category").set_index("category").reindex(order)["chance"]
        _hline_per_category(ax, chance, "chance", "grey", "dashed", half_width=0.4)
        ax.set_title(f"EmoBench {task} ({language}): {metric.replace('_', ' ')}, 95% CI")
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
        ax.set_xticks(range(len(order)), [category_label(c, 16) for c in order], fontsize=8)
        ax.legend(fontsize=8, loc="upper right")
    return figure


@styled
def plot_against_paper(frame, *, language: str = "en", category: str = OVERALL):
    """Overall (or one category's) accuracy of every Table 1 row and of the runs in ``frame``, per task."""
    import seaborn as sns

    from ..evaluation.paper_table import paper_long_with_ours

    data = paper_long_with_ours(frame, language=language)
    data = data[data["category"] == category]
    figure, axes = new_figure(13.0, 4.2, 1, len(TASK_CATEGORIES))
    for ax, task in zip(axes[0], TASK_CATEGORIES, strict=True):
        part = data[data["task"] == task].sort_values("accuracy")
        colours = ["tab:orange" if "(ours" in s else "tab:blue" for s in part["source"]]
        sns.barplot(part, y="source", x="accuracy", hue="source", palette=colours, legend=False, ax=ax)
        ours = part[part["source"].str.contains(r"\(ours")]
        for _, row in ours.iterrows():
            y = list(part["source"]).index(row["source"])
            errors = [[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]]
            ax.errorbar(row["accuracy"], y, xerr=errors, fmt="none", ecolor="black", capsize=3)
        ax.set_title(f"{task}: {category}", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylabel("")
    suptitle(figure, f"EmoBench ({language}) accuracy, {category}: the paper's Table 1 as reported (blue, no CI) "
                     "and our runs (orange, 95% bootstrap CI)")
    return figure


def paper_alias(model: str) -> str:
    """A model name as Table 1's alias (mistral, qwen, gemma, llama, smollm2) when the registry knows it."""
    from ..models import MODEL_REGISTRY

    lowered = model.strip().lower()
    for alias, spec in MODEL_REGISTRY.items():
        if lowered in {alias, spec.hf_id.lower(), (spec.gpu_4bit_id or "").lower()}:
            return alias
    return model


def _model_order(aliases) -> list[str]:
    aliases = set(aliases)
    return [a for a in PAPER_MODELS if a in aliases] + sorted(aliases - set(PAPER_MODELS))


def _paper_rows() -> dict[tuple[str, bool, str, str], float]:
    from ..evaluation.paper_table import paper_table1

    return {(row.alias, bool(row.fine_tuned), row.task, row.category): float(row.accuracy)
            for row in paper_table1().itertuples()}


def _paper_series(paper, alias: str, task: str) -> list[tuple[str, list[float], None]]:
    """The paper's base and fine-tuned accuracy per Table 1 category of ``task``, as :func:`grouped_bars` series."""
    return [(f"paper {state}", [paper.get((alias, tuned, task, c), float("nan")) for c in TABLE1_CATEGORIES[task]],
             None) for state, tuned in (("base", False), ("fine-tuned", True))]


@styled
def plot_table1_paper():
    """Table 1 as bars: the paper's reported EU/EA accuracy per category, base vs fine-tuned, for its 4 models.
    These are the paper's numbers, transcribed, not measured here (and the paper gives no intervals)."""
    from ..evaluation.paper_table import paper_table1

    paper = _paper_rows()
    table = paper_table1()
    names = dict(zip(table["alias"], table["model"], strict=True))
    figure, axes = new_figure(15.0, 7.0, 2, len(PAPER_MODELS), sharey=True)
    for column, alias in enumerate(PAPER_MODELS):
        for row, task in enumerate(("EU", "EA")):
            ax = axes[row, column]
            grouped_bars(ax, TABLE1_CATEGORIES[task], _paper_series(paper, alias, task))
            ax.set_title(f"{names[alias]}: {task}", fontsize=10)
            if column == 0:
                ax.set_ylabel("accuracy")
    shared_legend(figure, axes)
    suptitle(figure, "Table 1 as reported by the paper (Sreedar et al., arXiv 2601.01407): EmoBench accuracy, base vs "
                     "fine-tuned. Transcribed numbers, not measured by this repository; no intervals were reported.")
    return figure


@dataclass
class EvaluationEntry:
    """One evaluation run as the figures use it."""

    run: Any  # ec2er_utils.evaluation.EvaluationRun
    alias: str
    fine_tuned: bool
    protocol: str  # with "-cot" for chain of thought
    updated: str

    def summary(self, task: str, language: str) -> dict[str, Any] | None:
        board = self.run.leaderboards.get(task)
        return None if board is None else board["languages"].get(language)


def load_evaluations(results: str | os.PathLike) -> list[EvaluationEntry]:
    """Every evaluation run folder (``run.json`` + ``*.leaderboard.json``) under ``results``, sorted by folder."""
    from ..evaluation import load_run

    results = Path(results)
    entries = []
    for config_path in sorted(results.rglob("run.json")) if results.is_dir() else []:
        folder = config_path.parent
        if not any(folder.glob("*.leaderboard.json")):
            continue
        try:
            run = load_run(folder)
            config = run.config
            protocol = config["protocol"] + ("-cot" if config.get("cot") else "")
            entries.append(EvaluationEntry(run, paper_alias(config["model"]), config.get("adapter") is not None,
                                           protocol, str(config.get("updated", ""))))
        except (JSONLError, KeyError, TypeError) as err:
            raise FigureInputError(f"{folder}: not a readable evaluation run ({err}); re-run notebooks/"
                                   "05_evaluate.ipynb for it or delete the folder") from None
    return entries


def latest_runs(entries: list[EvaluationEntry], protocol: str) -> dict[tuple[str, bool], EvaluationEntry]:
    """Per (model alias, fine-tuned?) the most recently updated run of ``protocol`` (ties: the label)."""
    return {(entry.alias, entry.fine_tuned): entry for entry in sorted(entries, key=lambda e: (e.updated, e.run.label))
            if entry.protocol == protocol}


# Letter-prior baselines drawn across each category of Table 1 (see ec2er_utils.evaluation.orders): line styles.
BASELINE_LINES = {"always_A": ("always A", "black", ":"), "majority_gold": ("majority gold letter", "tab:red", "-.")}


def _hline_per_category(ax, levels, label: str, colour: str, style: str, half_width: float = 0.42) -> None:
    for i, level in enumerate(levels):
        if level == level:  # not NaN
            ax.hlines(level, i - half_width, i + half_width, colors=colour, linestyles=style, linewidth=1,
                      label=label if i == 0 else None)


@styled
def plot_table1_ours(entries: list[EvaluationEntry], protocol: str, *, language: str = "en"):
    """Table 1's layout for this repository's runs of one protocol: per model and task, accuracy per category with
    95% bootstrap intervals (official: EmoBench's option order; for runs with ``orders="cyclic"`` also the
    accuracy averaged over option orders), chance (grey dashes) and the letter-prior baselines always "A" and
    always the most common gold letter (lines), the paper's reported base/fine-tuned numbers beside them."""
    runs = latest_runs(entries, protocol)
    models = _model_order(alias for alias, _ in runs)
    if not models:
        raise FigureInputError(f"no {protocol!r} evaluation runs to plot")
    paper = _paper_rows()
    figure, axes = new_figure(max(6.0, 4.2 * len(models)), 7.4, 2, len(models), sharey=True)
    described = [f"{alias} {'fine-tuned' if tuned else 'base'} = {entry.run.label}"
                 for (alias, tuned), entry in sorted(runs.items())]
    for column, alias in enumerate(models):
        for row, task in enumerate(("EU", "EA")):
            ax = axes[row, column]
            categories = TABLE1_CATEGORIES[task]
            series = _paper_series(paper, alias, task) if alias in PAPER_MODELS else []
            chance, baselines, n = [], {}, None
            for state, tuned in (("base", False), ("fine-tuned", True)):
                entry = runs.get((alias, tuned))
                summary = entry.summary(task, language) if entry else None
                if summary is None:
                    continue
                table = {OVERALL: summary["overall"], **summary["categories"]}
                series.append((f"ours {state}", *_values_and_intervals(table, categories)))
                over_orders = summary.get("orders", {}).get("order_mean")
                if over_orders:
                    series.append((f"ours {state}, over orders", *_values_and_intervals(over_orders, categories)))
                cells = [table.get(c, {}) for c in categories]
                chance = [cell.get("chance", float("nan")) for cell in cells]
                baselines = {name: [cell.get("baselines", {}).get(name, float("nan")) for cell in cells]
                             for name in BASELINE_LINES}
                n = summary["n"]
            grouped_bars(ax, categories, series)
            _hline_per_category(ax, chance, "chance", "grey", "dashed")
            for name, levels in baselines.items():
                _hline_per_category(ax, levels, *BASELINE_LINES[name])
            suffix = f", n={n}" if n else ", no run"
            ax.set_title(f"{alias}: {task}{suffix}", fontsize=10)
            if column == 0:
                ax.set_ylabel("accuracy")
    shared_legend(figure, axes)
    suptitle(figure, f"EmoBench ({language}), protocol {protocol}: this repository's runs (95% bootstrap CI; "
                     "official order and, where asked, averaged over option orders; chance and letter-prior "
                     "baselines as lines) beside the paper's reported Table 1 (no CI). Runs: " + "; ".join(described))
    return figure


def _values_and_intervals(table: dict[str, Any], categories) -> tuple[list[float], list[tuple[float, float]]]:
    nan = float("nan")
    values = [table[c]["accuracy"] if c in table else nan for c in categories]
    intervals = [(table[c]["ci_low"], table[c]["ci_high"]) if c in table else (nan, nan) for c in categories]
    return values, intervals


def finetune_deltas(entries: list[EvaluationEntry], protocol: str, *, language: str = "en",
                    metrics: tuple[str, ...] = ("correct", "order_mean")):
    """Paired comparison (fine-tuned - base, :func:`ec2er_utils.evaluation.compare_runs`) per model with both kinds
    of ``protocol`` run, metric (``correct``; for runs asked under every option order ``order_mean`` or ``strict``),
    task and category, with ``letter_habit_delta``: the change of the ``own_letters`` baseline, what the letter
    habit alone would give. Returns the table and notes on what could not be compared."""
    import pandas as pd

    from ..evaluation import compare_runs

    tables, notes = [], []
    runs = latest_runs(entries, protocol)
    for alias in _model_order(a for a, _ in runs):
        base, tuned = runs.get((alias, False)), runs.get((alias, True))
        if base is None or tuned is None:
            continue
        for metric in metrics:
            try:
                table = compare_runs(base.run, tuned.run, language=language, metric=metric)
            except ValueError as err:
                notes.append(f"{alias} {metric}: not compared ({err})")
                continue
            habit = [_own_letters(tuned, task, language, metric, category)
                     - _own_letters(base, task, language, metric, category)
                     for task, category in zip(table["task"], table["category"], strict=True)]
            tables.append(table.assign(alias=alias, letter_habit_delta=habit))
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), notes


def _own_letters(entry: EvaluationEntry, task: str, language: str, metric: str, category: str) -> float:
    summary = entry.summary(task, language) or {}
    if metric == "correct":
        table = {OVERALL: summary.get("overall", {}), **summary.get("categories", {})}
    else:
        table = summary.get("orders", {}).get(metric, {})
    return table.get(category, {}).get("baselines", {}).get("own_letters", float("nan"))


@styled
def plot_finetune_gain(deltas, protocol: str, *, language: str = "en"):
    """Fine-tuned minus base accuracy per category (bars, paired bootstrap 95% CI), the paper's reported change as
    a diamond for its models, and the change that the letter habit alone would give (the ``own_letters``
    baseline's change) as a cross. One row of panels per metric of ``deltas`` (:func:`finetune_deltas`: official;
    averaged over option orders where the runs were asked under every order)."""
    import numpy as np

    if deltas.empty:
        raise FigureInputError("no paired comparison to plot")
    metrics = list(dict.fromkeys(deltas["metric"]))
    titles = {"correct": "official order", "order_mean": "averaged over option orders",
              "strict": "right under every order"}
    paper = _paper_rows()
    models = _model_order(set(deltas["alias"]))
    palette = dict(zip(models, colour_cycle(len(models)), strict=True))
    figure, axes = new_figure(13.0, 5.2 * len(metrics), len(metrics), 2, sharex=True)
    height = 0.8 / len(models)
    for (metric, task), ax in zip([(m, t) for m in metrics for t in ("EU", "EA")], axes.flat, strict=True):
        categories = TABLE1_CATEGORIES[task]
        y = np.arange(len(categories))
        for k, alias in enumerate(models):
            rows = deltas[(deltas["alias"] == alias) & (deltas["task"] == task) & (deltas["metric"] == metric)]
            rows = rows.set_index("category").reindex(list(categories))
            positions = y - 0.4 + height * (k + 0.5)
            n = int(rows["n"].max()) if rows["n"].notna().any() else 0
            ax.barh(positions, rows["delta"], height * 0.9, color=palette[alias], label=f"{alias} (ours, n={n})")
            errors = [(rows["delta"] - rows["ci_low"]).fillna(0), (rows["ci_high"] - rows["delta"]).fillna(0)]
            ax.errorbar(rows["delta"], positions, xerr=errors, fmt="none", ecolor="black", capsize=2, linewidth=0.9)
            ax.scatter(rows["letter_habit_delta"], positions, marker="x", s=22, color="tab:red", zorder=3,
                       label="letter habit alone (own-letters baseline)" if k == 0 else None)
            if alias in PAPER_MODELS and metric == "correct":
                reported = [paper.get((alias, True, task, c), np.nan) - paper.get((alias, False, task, c), np.nan)
                            for c in categories]
                ax.scatter(reported, positions, marker="D", s=22, color="black", zorder=3,
                           label="paper's reported change" if k == 0 else None)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(y, [category_label(c, 40) for c in categories], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{task}: fine-tuned - base, {titles.get(metric, metric)}", fontsize=10)
        ax.set_xlabel("accuracy difference")
    low, high = axes[0, 0].get_xlim()  # shared by every panel
    axes[0, 0].set_xlim(min(low, -0.05), max(high, 0.05))  # no change at all still reads on a 0.1-wide axis
    shared_legend(figure, axes)
    suptitle(figure, f"Effect of fine-tuning on EmoBench ({language}), protocol {protocol}: paired bootstrap 95% CI "
                     "over the same items; diamonds are the paper's reported change (no CI), crosses the change "
                     "the model's letter habit alone would give")
    return figure
