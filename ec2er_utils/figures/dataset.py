"""What chapters 01 and 03 produced, as figures: the processed set's categories against the paper's counts, the
answer-letter balance, the preprocessing drops (``preprocess_report.json``) and the MADS dialogues
(``metadata.jsonl``)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..jsonl import iter_jsonl, read_json
from ..taxonomy import MADS_TURNS, PAPER_COUNTS, PAPER_KAPPA
from .style import COLOURS, FigureInputError, category_label, colour_cycle, new_figure, styled, suptitle


def load_preprocess_report(data: str | os.PathLike) -> dict[str, Any]:
    """``<data>/processed/preprocess_report.json`` (notebook 03)."""
    path = Path(data) / "processed" / "preprocess_report.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/03_preprocess.ipynb first")
    report = read_json(path)
    if not isinstance(report, dict) or not isinstance(report.get("steps"), list):
        raise FigureInputError(f"{path}: no 'steps' list; re-run notebooks/03_preprocess.ipynb to rewrite it")
    report["_path"] = str(path)
    return report


@styled
def plot_dataset_categories(report: dict[str, Any]):
    """Share of items per EU/EA sub-category in our processed set vs the paper's final counts (§3.3), with the
    counts written on the bars (ours are usually far fewer: the shares are what can be compared)."""
    import numpy as np

    rows = report.get("counts_vs_paper")
    if not rows:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no 'counts_vs_paper' rows")
    figure, axes = new_figure(12.0, 4.6, 1, 2)
    for ax, task in zip(axes[0], ("EU", "EA"), strict=True):
        part = [r for r in rows if r["task"] == task]
        totals = {"ours": sum(r["ours"] for r in part), "paper": sum(PAPER_COUNTS[task].values())}
        x = np.arange(len(part))
        for offset, name in ((-0.2, "ours"), (0.2, "paper")):
            counts = [r[name] for r in part]
            shares = [count / totals[name] if totals[name] else 0.0 for count in counts]
            bars = ax.bar(x + offset, shares, 0.38, color=COLOURS[f"{name} fine-tuned"],
                          label=f"{name} (n={sum(counts)})")
            ax.bar_label(bars, [str(c) for c in counts], fontsize=7, padding=2)
        ax.axhline(0.25, color="grey", linestyle="dashed", linewidth=1, label="uniform (1/4)")
        ax.set_xticks(x, [category_label(r["category"]) for r in part], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of the task's items")
        ax.set_title(f"{task} items per sub-category", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    suptitle(figure, "Processed training set (notebook 03) vs the paper's final dataset (§3.3); counts on the bars")
    return figure


@styled
def plot_answer_letters(report: dict[str, Any]):
    """Gold-letter counts per question group before and after answer-position balancing, uniform as a dashed line,
    with each group's chi-square p-value against uniform."""
    import numpy as np

    notes = next((step.get("notes", {}) for step in report["steps"] if step.get("step") == "answer positions"), None)
    if notes is None:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no 'answer positions' step; re-run "
                               "notebooks/03_preprocess.ipynb")
    before, after = notes.get("before", {}), notes.get("after", {})
    groups = [g for g in after if after[g].get("n")]
    if not groups:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no items in the answer-position balance")
    figure, axes = new_figure(max(5.0, 3.6 * len(groups)), 3.8, 1, len(groups))
    for ax, group in zip(axes[0], groups, strict=True):
        letters = list(after[group]["counts"])
        x = np.arange(len(letters))
        old = [before.get(group, {}).get("counts", {}).get(letter, 0) for letter in letters]
        new = [after[group]["counts"][letter] for letter in letters]
        ax.bar(x - 0.2, old, 0.38, color=COLOURS["ours base"], label="before")
        ax.bar(x + 0.2, new, 0.38, color=COLOURS["ours fine-tuned"], label="after")
        ax.axhline(after[group]["n"] / len(letters), color="grey", linestyle="dashed", linewidth=1,
                   label="uniform")
        ax.set_xticks(x, letters)
        p_before, p_after = before.get(group, {}).get("p_value"), after[group].get("p_value")
        ax.set_title(f"{group} (n={after[group]['n']})\nchi2 p: before {_p(p_before)}, after {_p(p_after)}",
                     fontsize=9)
        ax.set_xlabel("gold letter")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("questions")
    suptitle(figure, "Answer-letter balance of the processed set (notebook 03, step 7)")
    return figure


def _p(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3g}"


def drop_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """(step, n_in, n_out, by_reason) per preprocessing step, the validation step expanded into its filters."""
    rows = []
    for step in report["steps"]:
        inner = step.get("notes", {}).get("steps") if step.get("step") == "validation" else None
        for sub in inner or [step]:
            reasons = sub.get("by_reason") or dict(Counter(d["reason"] for d in sub.get("dropped", [])))
            rows.append({"step": sub["step"], "n_in": sub["n_in"], "n_out": sub["n_out"], "by_reason": reasons})
    return rows


@styled
def plot_preprocess_drops(report: dict[str, Any]):
    """Items dropped at each preprocessing step, stacked by reason, with items in -> out written beside."""
    import numpy as np

    from matplotlib.ticker import MaxNLocator

    rows = drop_rows(report)
    if not rows:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no preprocessing steps")
    reasons = sorted({r for row in rows for r in row["by_reason"]})
    colours = dict(zip(reasons, colour_cycle(len(reasons)), strict=True))
    figure, axes = new_figure(11.0, 0.9 + 0.42 * len(rows))
    ax = axes[0, 0]
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for reason in reasons:
        counts = np.array([row["by_reason"].get(reason, 0) for row in rows], dtype=float)
        ax.barh(y, counts, left=left, color=colours[reason], label=reason, height=0.7)
        left += counts
    for i, row in enumerate(rows):
        ax.text(left[i], i, f"  {row['n_in']} -> {row['n_out']}", va="center", fontsize=8)
    ax.set_yticks(y, [row["step"] for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1) * 1.25)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("items dropped (stacked by reason); text: items in -> out")
    if reasons:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Preprocessing drops per step (notebook 03)", fontsize=10)
    return figure


def load_mads_metadata(data: str | os.PathLike) -> list[dict[str, Any]]:
    """Every dialogue's metadata line under ``<data>/mads`` (``metadata.jsonl``, shards included; notebook 01)."""
    folder = Path(data) / "mads"
    files = sorted(folder.rglob("metadata.jsonl")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no metadata.jsonl under {folder}: run notebooks/01_mads.ipynb first")
    records = []
    for path in files:
        for number, record in enumerate(iter_jsonl(path), start=1):
            missing = [key for key in ("turns", "stop_reason", "status") if key not in record]
            if missing:
                raise FigureInputError(f"{path}, line {number}: no {', '.join(missing)}; not a MADS metadata line")
            records.append(record)
    return records


@styled
def plot_mads_dialogues(records: list[dict[str, Any]]):
    """Dialogue length in turns (stacked by the supervisor's stop reason; the paper's 4-14 shaded) and the count of
    each stop reason (failed dialogues included)."""
    import numpy as np

    if not records:
        raise FigureInputError("no MADS dialogues to plot")
    completed = [r for r in records if r["status"] != "failed"]
    reasons = sorted({str(r["stop_reason"]) for r in records})
    colours = dict(zip(reasons, colour_cycle(len(reasons)), strict=True))
    figure, axes = new_figure(12.0, 4.2, 1, 2, width_ratios=[2.2, 1])
    ax = axes[0, 0]
    top = max([MADS_TURNS[1], *(r["turns"] for r in records)])
    turns = np.arange(0, top + 1)
    bottom = np.zeros(len(turns))
    ax.axvspan(MADS_TURNS[0] - 0.5, MADS_TURNS[1] + 0.5, color="#eeeeee", zorder=0, label="paper: 4-14 turns")
    for reason in reasons:
        counts = Counter(r["turns"] for r in completed if str(r["stop_reason"]) == reason)
        heights = np.array([counts.get(t, 0) for t in turns], dtype=float)
        if heights.any():
            ax.bar(turns, heights, bottom=bottom, color=colours[reason], label=reason, width=0.8)
            bottom += heights
    ax.set_xticks(turns)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("turns (one turn = client + therapist message)")
    ax.set_ylabel("dialogues")
    ax.set_title(f"Dialogue length ({len(completed)} completed dialogues)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    counts = Counter(str(r["stop_reason"]) for r in records)
    bars = ax.bar(reasons, [counts[r] for r in reasons], color=[colours[r] for r in reasons])
    ax.bar_label(bars, fontsize=8, padding=2)
    ax.set_ylim(0, max(counts.values()) * 1.2)
    ax.set_title("Supervisor stop reasons", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    models = sorted({str(r.get("generator_model", "unknown")) for r in records})
    suptitle(figure, f"MADS dialogues (notebook 01), generator: {', '.join(models)}; {len(records)} dialogues")
    return figure


def plot_review(notes: dict[str, Any]):
    """The review as a figure: the two annotators' 2x2 table on *appropriate* (left) and each kappa with its 95%
    interval, the paper's 0.78 dashed (right). ``notes`` are the review step's (``preprocess_report.json``).
    Raises ValueError when the review has not been annotated yet: a figure is never drawn from nothing."""
    from matplotlib.figure import Figure

    found = notes.get("agreement")
    if not found:
        raise ValueError(f"no review agreement to draw: {notes.get('status', 'the review step did not run')}")
    figure = Figure(figsize=(10.0, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    table = found["table"]
    left.imshow(table, cmap="Blues")
    for i in range(2):
        for j in range(2):
            dark = table[i][j] > max(max(row) for row in table) / 2
            left.text(j, i, str(table[i][j]), ha="center", va="center", fontsize=12,
                      color="white" if dark else "black")
    left.set_xticks([0, 1], ["no", "yes"])
    left.set_yticks([0, 1], ["no", "yes"])
    left.set_xlabel("annotator 2: appropriate?")
    left.set_ylabel("annotator 1: appropriate?")
    left.set_title(f"n = {found['n']} items judged by both", fontsize=10)
    names = list(found["per_question"])
    for y, name in enumerate(names):
        result = found["per_question"][name]
        if result["kappa"] is None:
            right.text(0, y, "  undefined (no variation)", va="center", fontsize=8)
            continue
        if result["ci_low"] is None:
            right.plot(result["kappa"], y, "o", color="C0")
            right.text(result["kappa"], y, "  no interval (one annotator never varied)", va="center", fontsize=8)
            continue
        right.errorbar(result["kappa"], y, xerr=[[result["kappa"] - result["ci_low"]],
                                                 [result["ci_high"] - result["kappa"]]], fmt="o", capsize=4,
                       color="C0")
    right.axvline(PAPER_KAPPA, color="grey", linestyle="dashed", label=f"paper (appropriate): {PAPER_KAPPA}")
    right.axvline(0, color="black", linewidth=0.8)
    right.set_yticks(range(len(names)), names)
    right.set_ylim(len(names) - 0.5, -0.5)
    right.set_xlim(-1, 1)
    right.set_xlabel("Cohen's kappa (95% CI)")
    right.legend(fontsize=8, loc="lower left")
    kappa = found["kappa"]
    figure.suptitle(f"§3.4 manual review: Cohen's kappa on 'appropriate' = "
                    f"{'undefined' if kappa is None else f'{kappa:.2f}'} (paper 0.78)", fontsize=11)
    return figure
