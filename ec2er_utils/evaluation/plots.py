"""Figures for notebook 05: per-category accuracy with 95% intervals and chance, and ours next to the paper's."""

from __future__ import annotations

import numpy as np

from .paper_table import paper_long_with_ours
from .scoring import OVERALL


def _ordered_categories(frame, task: str) -> list[str]:
    categories = sorted(set(frame.loc[frame["task"] == task, "category"]) - {OVERALL})
    return [OVERALL, *categories]


def plot_leaderboard(frame, *, language: str = "en", metric: str = "accuracy"):
    """One panel per task: accuracy per category for each run, 95% bootstrap intervals, chance as a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = frame[(frame["language"] == language) & (frame["metric"] == metric)].copy()
    if data.empty:
        raise ValueError(f"nothing to plot for language {language!r} and metric {metric!r}")
    data["run"] = data["label"] + " / " + data["protocol"]
    tasks = [t for t in ("EU", "EA") if t in set(data["task"])]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        part = data[data["task"] == task]
        order = _ordered_categories(part, task)
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
        for i, value in enumerate(chance):
            if not np.isnan(value):
                ax.hlines(value, i - 0.4, i + 0.4, colors="grey", linestyles="dashed", linewidth=1,
                          label="chance" if i == 0 else None)
        ax.set_title(f"EmoBench {task} ({language}): {metric.replace('_', ' ')}, 95% CI")
        ax.set_xlabel("")
        ax.set_ylim(0, 1)
        plt.setp(ax.get_xticklabels(), rotation=25, ha="right")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_against_paper(frame, *, language: str = "en", category: str = OVERALL):
    """Overall (or one category's) accuracy of every Table 1 row and of our runs, per task."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = paper_long_with_ours(frame, language=language)
    data = data[data["category"] == category]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, task in zip(axes, ("EU", "EA"), strict=True):
        part = data[data["task"] == task].sort_values("accuracy")
        colours = ["tab:orange" if "(ours" in s else "tab:blue" for s in part["source"]]
        sns.barplot(part, y="source", x="accuracy", hue="source", palette=colours, legend=False, ax=ax)
        ours = part[part["source"].str.contains(r"\(ours")]
        for _, row in ours.iterrows():
            y = list(part["source"]).index(row["source"])
            errors = [[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]]
            ax.errorbar(row["accuracy"], y, xerr=errors, fmt="none", ecolor="black", capsize=3)
        ax.set_title(f"{task} {category}: paper Table 1 (blue) vs ours (orange, 95% CI)")
        ax.set_xlim(0, 1)
        ax.set_ylabel("")
    fig.tight_layout()
    return fig
