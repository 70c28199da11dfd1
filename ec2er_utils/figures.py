"""The paper's table and figures, regenerated from result files only (notebook 06).

:func:`make_figures` reads what the numbered notebooks wrote and saves each figure as PNG and PDF under
``figures/`` with a stable name:

==========================  ==============================================================================
``pipeline_overview``       the paper's Figure 1 (pipeline), drawn with matplotlib; needs no inputs
``table1_paper``            Table 1 as bars: the paper's *reported* numbers (``ec2er_utils/data/paper_table1.csv``)
``table1_<protocol>``       Table 1 layout with this repository's runs (95% bootstrap CI) beside the paper's
                            (``results/<label>/<protocol>/*.leaderboard.json``, notebook 05)
``finetune_gain_<protocol>`` fine-tuned minus base accuracy per category, paired bootstrap CI, paper's change as
                            a marker (the per-item predictions of a base and a fine-tuned run of one model)
``dataset_categories``      items per EU/EA sub-category, ours vs the paper's counts (``preprocess_report.json``)
``answer_letters``          gold-letter balance before and after answer-position balancing (same report)
``preprocess_drops``        items dropped per preprocessing step and reason (same report)
``mads_dialogues``          MADS dialogue length distribution and supervisor stop reasons (``metadata.jsonl``)
``training_loss``           train and validation loss per model (``runs/<model>/<run-id>/loss_history.json``)
==========================  ==============================================================================

A figure whose inputs do not exist is skipped with the reason (which notebook to run), never faked; a previous
file of a skipped figure is removed, so ``figures/`` never shows results that are no longer there. Re-running
with the same inputs writes byte-identical files: fixed size and dpi, fixed style (matplotlib defaults +
seaborn's ``whitegrid``, whatever the caller's rcParams), and no timestamps or software versions in the files.

Choices worth knowing: figures use English EmoBench (the language the paper's Table 1 matches) unless told
otherwise; when one model has several evaluation runs of the same kind (several adapters, say), the most recently
updated run is shown and the report says which; an evaluation run with the ``openai`` backend counts as a base
model run (the server applies any adapter, so the run files cannot tell).
"""

from __future__ import annotations

import os
import re
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from .jsonl import JSONLError, iter_jsonl, read_json
from .paths import REPO_ROOT
from .taxonomy import EA_CATEGORIES, EU_CATEGORIES, MADS_TURNS, PAPER_EA_COUNTS, PAPER_EU_COUNTS

FIGURES_DIR = REPO_ROOT / "figures"
FORMATS = ("png", "pdf")
DPI = 150
OVERALL = "Overall"
TASK_CATEGORIES = {"EU": (OVERALL, *EU_CATEGORIES), "EA": (OVERALL, *EA_CATEGORIES)}
PAPER_COUNTS = {"EU": PAPER_EU_COUNTS, "EA": PAPER_EA_COUNTS}
PAPER_MODELS = ("mistral", "qwen", "gemma", "llama")  # Table 1's column order
PAPER_CITATION = "Sreedar et al., arXiv 2601.01407"
# Files of the figures this module writes; stale ones of skipped figures are removed.
FIGURE_NAME = re.compile(r"^(pipeline_overview|table1_[\w.+-]+|finetune_gain_[\w.+-]+|dataset_categories|"
                         r"answer_letters|preprocess_drops|mads_dialogues|training_loss)$")
# No timestamps or versions in the files, so equal inputs give equal bytes.
_SAVE_METADATA = {"png": {"Software": None},
                  "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
_COLOURS = {"paper base": "#a6c8e0", "paper fine-tuned": "#1f5f99", "ours base": "#f5c28a",
            "ours fine-tuned": "#d9640f"}


class FigureInputError(ValueError):
    """A result file exists but cannot be used; the message names the file and what is wrong with it."""


# --------------------------------------------------------------------------------------------------------------
# Style and saving


def _style_rc() -> dict[str, Any]:
    import seaborn as sns

    return {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85),
            "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "standard", "axes.titleweight": "bold"}


@contextmanager
def figure_style() -> Iterator[None]:
    """matplotlib's defaults + seaborn's whitegrid, independent of the caller's rcParams; restored afterwards."""
    import matplotlib as mpl

    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(_style_rc())
        yield


def _styled(function: Callable) -> Callable:
    @wraps(function)
    def wrapper(*args, **kwargs):
        with figure_style():
            return function(*args, **kwargs)

    return wrapper


def _new_figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    """A headless figure (no pyplot, no global backend change) and a 2-D array of axes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, **options)
    return figure, axes


@_styled
def save_figure(figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``<folder>/<name>.png`` and ``.pdf`` without timestamps or versions (equal figures, equal bytes)."""
    if not FIGURE_NAME.match(name):
        raise ValueError(f"{name!r} is not one of this module's figure names ({FIGURE_NAME.pattern})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = folder / f"{name}.{fmt}"
        figure.savefig(path, format=fmt, dpi=DPI, metadata=_SAVE_METADATA[fmt])
        paths.append(path)
    return paths


def _category_label(category: str, width: int = 11) -> str:
    text = category.replace("personal_beliefs_and_experiences", "personal_beliefs").replace("_", " ")
    return textwrap.fill(text, width)


# --------------------------------------------------------------------------------------------------------------
# Figure 1: the pipeline


_BOX_W, _BOX_H = 0.19, 0.22
_PIPELINE_BOXES = {
    # key: (centre x, centre y, title, body, notebook)
    "personas": (0.105, 0.71, "Personas + themes", "PersonaHub or the paper's\nattribute grid; compatible\n"
                 "persona-theme pairs", "00"),
    "mads": (0.35, 0.86, "MADS (Algorithm 1)", "background, client <-> therapist,\nsupervisor every 2 turns\n"
             "(4-14 turns)", "01"),
    "concise": (0.35, 0.56, "Concise (Algorithm 2)", "background + 5-round\nconversation, items inline", "02"),
    "items": (0.60, 0.71, "EU / EA items", "3-4 EU + 3-4 EA per dialogue,\nchain-of-thought explanations,\n"
              "EmoBench format (JSONL)", "01, 02"),
    "preprocess": (0.86, 0.71, "Preprocessing", "schema + taxonomy checks,\nfuzzy de-duplication,\n"
                   "1.5x balance, decontamination", "03"),
    "train": (0.86, 0.17, "LoRA fine-tuning (PEFT)", "Unsloth; Mistral-7B, Qwen2.5-7B,\nGemma-7B-IT, Llama-3.1-8B;\n"
              "loss on the JSON response", "04"),
    "evaluate": (0.60, 0.17, "EmoBench evaluation", "held-out EU / EA,\nbase vs fine-tuned,\n95% bootstrap CI", "05"),
    "figures": (0.35, 0.17, "Figures", "Table 1, dataset\ncomposition, loss curves", "06"),
    "generator": (0.105, 0.17, "Generator LLM", "gpt-oss-20b behind vLLM\n(paper); any OpenAI-\ncompatible server",
                  ""),
}
_COLUMN_GAP = 0.06


def _side(key: str, side: str, shift: float = 0.0) -> tuple[float, float]:
    x, y = _PIPELINE_BOXES[key][:2]
    return {"left": (x - _BOX_W / 2, y + shift), "right": (x + _BOX_W / 2, y + shift),
            "top": (x + shift, y + _BOX_H / 2), "bottom": (x + shift, y - _BOX_H / 2)}[side]


# (from, side, to, side, label); shifts keep two arrows into one side apart
_PIPELINE_ARROWS = [(("personas", "right", 0.03), ("mads", "left", 0.0), ""),
                    (("personas", "right", -0.03), ("concise", "left", 0.0), ""),
                    (("mads", "right", 0.0), ("items", "left", 0.03), ""),
                    (("concise", "right", 0.0), ("items", "left", -0.03), ""),
                    (("items", "right", 0.0), ("preprocess", "left", 0.0), ""),
                    (("preprocess", "bottom", 0.0), ("train", "top", 0.0), "train / validation splits"),
                    (("train", "left", 0.0), ("evaluate", "right", 0.0), "adapter"),
                    (("evaluate", "left", 0.0), ("figures", "right", 0.0), "results"),
                    (("generator", "top", 0.0), ("concise", "bottom", -0.04), "LLM calls of\nnotebooks 01, 02")]


@_styled
def plot_pipeline():
    """The paper's Figure 1 (persona and theme selection -> supervised multi-agent dialogues -> EU/EA items ->
    preprocessing -> LoRA fine-tuning -> EmoBench evaluation), drawn from code, with this repository's notebooks."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    figure, axes = _new_figure(13.0, 6.4)
    ax = axes[0, 0]
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    palette = {"00": "#dbe9f6", "01": "#dbe9f6", "02": "#dbe9f6", "01, 02": "#e6f2e0", "03": "#e6f2e0",
               "04": "#fde8d4", "05": "#fde8d4", "06": "#fde8d4", "": "#eeeeee"}
    for x, y, title, body, notebook in _PIPELINE_BOXES.values():
        ax.add_patch(FancyBboxPatch((x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H,
                                    boxstyle="round,pad=0,rounding_size=0.015", linewidth=1.2,
                                    edgecolor="#333333", facecolor=palette[notebook]))
        ax.text(x, y + _BOX_H / 2 - 0.035, title, ha="center", va="center", fontsize=10.5, fontweight="bold")
        ax.text(x, y - 0.02, body, ha="center", va="center", fontsize=8.3, linespacing=1.3)
        if notebook:
            ax.text(x + _BOX_W / 2 - 0.008, y - _BOX_H / 2 + 0.02, f"notebook {notebook}", ha="right",
                    va="center", fontsize=7, color="#555555", style="italic")
    for (start, start_side, start_shift), (end, end_side, end_shift), label in _PIPELINE_ARROWS:
        a, b = _side(start, start_side, start_shift), _side(end, end_side, end_shift)
        dashed = start == "generator"
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=14, linewidth=1.1 if dashed else 1.4,
                                     color="#777777" if dashed else "#333333", linestyle="--" if dashed else "-",
                                     shrinkA=0, shrinkB=0))
        if label:
            horizontal = a[1] == b[1]
            ax.text((a[0] + b[0]) / 2 + (0 if horizontal else 0.01), (a[1] + b[1]) / 2 + (0.02 if horizontal else 0),
                    label, fontsize=8, color="#333333", ha="center" if horizontal else "left", va="center")
    ax.set_title("Pipeline (after the paper's Figure 1): synthetic emotional-reasoning data, LoRA fine-tuning, "
                 "EmoBench evaluation", fontsize=11)
    return figure


# --------------------------------------------------------------------------------------------------------------
# Table 1


def paper_alias(model: str) -> str:
    """A model name as Table 1's alias (mistral, qwen, gemma, llama, smollm2) when the registry knows it."""
    from .models import MODEL_REGISTRY

    lowered = model.strip().lower()
    for alias, spec in MODEL_REGISTRY.items():
        if lowered in {alias, spec.hf_id.lower(), (spec.gpu_4bit_id or "").lower()}:
            return alias
    return model


def _model_order(aliases) -> list[str]:
    aliases = set(aliases)
    return [a for a in PAPER_MODELS if a in aliases] + sorted(aliases - set(PAPER_MODELS))


def _paper_rows() -> dict[tuple[str, bool, str, str], float]:
    from .evaluation.paper_table import paper_table1

    table = paper_table1()
    return {(row.alias, bool(row.fine_tuned), row.task, row.category): float(row.accuracy)
            for row in table.itertuples()}


def _grouped_bars(ax, categories, series: list[tuple[str, list[float], list[tuple[float, float]] | None]]) -> None:
    """Bars per category, one per series; a series may carry (low, high) intervals drawn as error bars."""
    import numpy as np

    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for k, (name, values, intervals) in enumerate(series):
        positions = x - 0.4 + width * (k + 0.5)
        ax.bar(positions, values, width * 0.95, label=name, color=_COLOURS.get(name.split(" (")[0], None),
               edgecolor="white", linewidth=0.5)
        tops = [hi if intervals is not None and hi == hi else v for v, (_, hi) in
                zip(values, intervals or [(0.0, float("nan"))] * len(values), strict=True)]
        for position, value, top in zip(positions, values, tops, strict=True):
            if value == value:  # above the bar, or above its error bar
                ax.text(position, top + 0.015, _value_label(value), ha="center", va="bottom", fontsize=6,
                        rotation=90 if len(series) > 2 else 0)
        if intervals is not None:
            low = [v - lo if lo == lo else 0.0 for v, (lo, _) in zip(values, intervals, strict=True)]
            high = [hi - v if hi == hi else 0.0 for v, (_, hi) in zip(values, intervals, strict=True)]
            ax.errorbar(positions, values, yerr=[low, high], fmt="none", ecolor="black", capsize=2.5,
                        linewidth=0.9)
    ax.set_xticks(x, [_category_label(c) for c in categories], fontsize=8)
    ax.set_xlim(-0.5, len(categories) - 0.5)  # a category without data keeps its place
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, 1)


def _value_label(value: float) -> str:
    """Two decimals, three where the third is not zero (Table 1 prints 0.105, 0.62, ...)."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def _shared_legend(figure, axes) -> None:
    """One legend for all panels, below them (every label once, in first-seen order)."""
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=len(handles), fontsize=8,
                  frameon=False)


def _suptitle(figure, text: str) -> None:
    width_inches = figure.get_size_inches()[0]
    figure.suptitle(textwrap.fill(text, int(width_inches * 15)), fontsize=9)


@_styled
def plot_table1_paper():
    """Table 1 as bars: the paper's reported EU/EA accuracy per category, base vs fine-tuned, for its 4 models.
    These are the paper's numbers, transcribed, not measured here (and the paper gives no intervals)."""
    paper = _paper_rows()
    figure, axes = _new_figure(15.0, 7.0, 2, len(PAPER_MODELS), sharey=True)
    names = _paper_model_names()
    for column, alias in enumerate(PAPER_MODELS):
        for row, task in enumerate(("EU", "EA")):
            ax = axes[row, column]
            categories = TASK_CATEGORIES[task]
            series = [(f"paper {state}", [paper.get((alias, tuned, task, c), float("nan")) for c in categories], None)
                      for state, tuned in (("base", False), ("fine-tuned", True))]
            _grouped_bars(ax, categories, series)
            ax.set_title(f"{names[alias]}: {task}", fontsize=10)
            if column == 0:
                ax.set_ylabel("accuracy")
    _shared_legend(figure, axes)
    _suptitle(figure, f"Table 1 as reported by the paper ({PAPER_CITATION}): EmoBench accuracy, base vs "
                      "fine-tuned. Transcribed numbers, not measured by this repository; no intervals were reported.")
    return figure


def _paper_model_names() -> dict[str, str]:
    from .evaluation.paper_table import paper_table1

    table = paper_table1()
    return dict(zip(table["alias"], table["model"], strict=True))


@dataclass
class EvaluationEntry:
    """One evaluation run as the figures use it."""

    run: Any  # ec2er_utils.evaluation.EvaluationRun
    alias: str
    fine_tuned: bool
    protocol: str  # with "-cot" for chain of thought
    updated: str

    @property
    def label(self) -> str:
        return self.run.label

    def summary(self, task: str, language: str) -> dict[str, Any] | None:
        board = self.run.leaderboards.get(task)
        return None if board is None else board["languages"].get(language)


def load_evaluations(results: str | os.PathLike) -> list[EvaluationEntry]:
    """Every evaluation run folder (``run.json`` + ``*.leaderboard.json``) under ``results``, sorted by folder."""
    from .evaluation import load_run

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
    chosen: dict[tuple[str, bool], EvaluationEntry] = {}
    for entry in sorted(entries, key=lambda e: (e.updated, e.label)):
        if entry.protocol == protocol:
            chosen[(entry.alias, entry.fine_tuned)] = entry
    return chosen


@_styled
def plot_table1_ours(entries: list[EvaluationEntry], protocol: str, *, language: str = "en"):
    """Table 1's layout for this repository's runs of one protocol: per model and task, accuracy per category with
    95% bootstrap intervals and chance (dashes), the paper's reported base/fine-tuned numbers beside them."""
    runs = latest_runs(entries, protocol)
    models = _model_order(alias for alias, _ in runs)
    if not models:
        raise FigureInputError(f"no {protocol!r} evaluation runs to plot")
    paper = _paper_rows()
    figure, axes = _new_figure(max(6.0, 4.2 * len(models)), 7.4, 2, len(models), sharey=True)
    described = [f"{alias} {'fine-tuned' if tuned else 'base'} = {entry.label}"
                 for (alias, tuned), entry in sorted(runs.items())]
    for column, alias in enumerate(models):
        for row, task in enumerate(("EU", "EA")):
            ax = axes[row, column]
            categories = TASK_CATEGORIES[task]
            series = []
            if alias in PAPER_MODELS:
                series += [(f"paper {state}", [paper.get((alias, tuned, task, c), float("nan")) for c in categories],
                            None) for state, tuned in (("base", False), ("fine-tuned", True))]
            chance = None
            n = None
            for state, tuned in (("base", False), ("fine-tuned", True)):
                entry = runs.get((alias, tuned))
                summary = entry.summary(task, language) if entry else None
                if summary is None:
                    continue
                table = {OVERALL: summary["overall"], **summary["categories"]}
                values = [table[c]["accuracy"] if c in table else float("nan") for c in categories]
                intervals = [(table[c]["ci_low"], table[c]["ci_high"]) if c in table else (float("nan"),) * 2
                             for c in categories]
                series.append((f"ours {state}", values, intervals))
                chance = [table[c].get("chance", float("nan")) if c in table else float("nan") for c in categories]
                n = summary["n"]
            _grouped_bars(ax, categories, series)
            for i, level in enumerate(chance or []):
                if level == level:
                    ax.hlines(level, i - 0.42, i + 0.42, colors="grey", linestyles="dashed", linewidth=1,
                              label="chance" if i == 0 else None)
            suffix = f", n={n}" if n else ", no run"
            ax.set_title(f"{alias}: {task}{suffix}", fontsize=10)
            if column == 0:
                ax.set_ylabel("accuracy")
    _shared_legend(figure, axes)
    _suptitle(figure, f"EmoBench ({language}), protocol {protocol}: this repository's runs (95% bootstrap CI, "
                      "chance dashed) beside the paper's reported Table 1 (no CI). Runs: " + "; ".join(described))
    return figure


def finetune_pairs(entries: list[EvaluationEntry], protocol: str) -> list[tuple[str, EvaluationEntry,
                                                                                   EvaluationEntry]]:
    """(alias, base run, fine-tuned run) for every model with both kinds of ``protocol`` run."""
    runs = latest_runs(entries, protocol)
    return [(alias, runs[(alias, False)], runs[(alias, True)]) for alias in _model_order(a for a, _ in runs)
            if (alias, False) in runs and (alias, True) in runs]


def finetune_deltas(entries: list[EvaluationEntry], protocol: str, *, language: str = "en"):
    """Paired comparison (fine-tuned - base) per model, task and category, from the per-item predictions
    (:func:`ec2er_utils.evaluation.compare_runs`: paired bootstrap 95% CI, exact McNemar p). Returns the table and
    notes on models that could not be compared (e.g. runs over different items)."""
    import pandas as pd

    from .evaluation import compare_runs

    tables, notes = [], []
    for alias, base, tuned in finetune_pairs(entries, protocol):
        try:
            table = compare_runs(base.run, tuned.run, language=language)
        except ValueError as err:
            notes.append(f"{alias}: not compared ({err})")
            continue
        tables.append(table.assign(alias=alias))
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), notes


@_styled
def plot_finetune_gain(deltas, protocol: str, *, language: str = "en"):
    """Fine-tuned minus base accuracy per category (bars, paired bootstrap 95% CI), the paper's reported change as
    a diamond for its models."""
    import numpy as np

    if deltas.empty:
        raise FigureInputError("no paired comparison to plot")
    paper = _paper_rows()
    models = _model_order(set(deltas["alias"]))
    palette = dict(zip(models, _palette(len(models)), strict=True))
    figure, axes = _new_figure(13.0, 5.2, 1, 2, sharex=True)
    height = 0.8 / len(models)
    for ax, task in zip(axes[0], ("EU", "EA"), strict=True):
        categories = TASK_CATEGORIES[task]
        y = np.arange(len(categories))
        for k, alias in enumerate(models):
            rows = deltas[(deltas["alias"] == alias) & (deltas["task"] == task)].set_index("category")
            rows = rows.reindex(list(categories))
            positions = y - 0.4 + height * (k + 0.5)
            n = int(rows["n"].max()) if rows["n"].notna().any() else 0
            ax.barh(positions, rows["delta"], height * 0.9, color=palette[alias], label=f"{alias} (ours, n={n})")
            errors = [(rows["delta"] - rows["ci_low"]).fillna(0), (rows["ci_high"] - rows["delta"]).fillna(0)]
            ax.errorbar(rows["delta"], positions, xerr=errors, fmt="none", ecolor="black", capsize=2, linewidth=0.9)
            if alias in PAPER_MODELS:
                reported = [paper.get((alias, True, task, c), np.nan) - paper.get((alias, False, task, c), np.nan)
                            for c in categories]
                ax.scatter(reported, positions, marker="D", s=22, color="black", zorder=3,
                           label="paper's reported change" if k == 0 else None)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(y, [_category_label(c, 40) for c in categories], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{task}: fine-tuned - base", fontsize=10)
        ax.set_xlabel("accuracy difference")
    _shared_legend(figure, axes)
    _suptitle(figure, f"Effect of fine-tuning on EmoBench ({language}), protocol {protocol}: paired bootstrap 95% CI "
                    "over the same items; diamonds are the paper's reported change (no CI)")
    return figure


def _palette(n: int) -> list:
    import seaborn as sns

    return list(sns.color_palette("deep", n))


# --------------------------------------------------------------------------------------------------------------
# Dataset composition


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


@_styled
def plot_dataset_categories(report: dict[str, Any]):
    """Share of items per EU/EA sub-category in our processed set vs the paper's final counts (§3.3), with the
    counts written on the bars (ours are usually far fewer: the shares are what can be compared)."""
    import numpy as np

    rows = report.get("counts_vs_paper")
    if not rows:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no 'counts_vs_paper' rows")
    figure, axes = _new_figure(12.0, 4.6, 1, 2)
    for ax, task in zip(axes[0], ("EU", "EA"), strict=True):
        part = [r for r in rows if r["task"] == task]
        ours_total = sum(r["ours"] for r in part)
        paper_total = sum(PAPER_COUNTS[task].values())
        x = np.arange(len(part))
        ours = [r["ours"] / ours_total if ours_total else 0.0 for r in part]
        paper = [r["paper"] / paper_total for r in part]
        for offset, values, counts, name, colour in ((-0.2, ours, [r["ours"] for r in part], "ours",
                                                      _COLOURS["ours fine-tuned"]),
                                                     (0.2, paper, [r["paper"] for r in part], "paper",
                                                      _COLOURS["paper fine-tuned"])):
            bars = ax.bar(x + offset, values, 0.38, color=colour, label=f"{name} (n={sum(counts)})")
            ax.bar_label(bars, [str(c) for c in counts], fontsize=7, padding=2)
        ax.axhline(0.25, color="grey", linestyle="dashed", linewidth=1, label="uniform (1/4)")
        ax.set_xticks(x, [_category_label(r["category"]) for r in part], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of the task's items")
        ax.set_title(f"{task} items per sub-category", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    _suptitle(figure, "Processed training set (notebook 03) vs the paper's final dataset (§3.3); counts on the bars")
    return figure


def answer_position_notes(report: dict[str, Any]) -> dict[str, Any]:
    for step in report["steps"]:
        if step.get("step") == "answer positions":
            return step.get("notes", {})
    raise FigureInputError(f"{report.get('_path', 'the report')}: no 'answer positions' step; re-run "
                           "notebooks/03_preprocess.ipynb")


@_styled
def plot_answer_letters(report: dict[str, Any]):
    """Gold-letter counts per question group before and after answer-position balancing, uniform as a dashed line,
    with each group's chi-square p-value against uniform."""
    import numpy as np

    notes = answer_position_notes(report)
    before, after = notes.get("before", {}), notes.get("after", {})
    groups = [g for g in after if after[g].get("n")]
    if not groups:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no items in the answer-position balance")
    figure, axes = _new_figure(max(5.0, 3.6 * len(groups)), 3.8, 1, len(groups))
    for ax, group in zip(axes[0], groups, strict=True):
        letters = list(after[group]["counts"])
        x = np.arange(len(letters))
        old = [before.get(group, {}).get("counts", {}).get(letter, 0) for letter in letters]
        new = [after[group]["counts"][letter] for letter in letters]
        ax.bar(x - 0.2, old, 0.38, color=_COLOURS["ours base"], label="before")
        ax.bar(x + 0.2, new, 0.38, color=_COLOURS["ours fine-tuned"], label="after")
        ax.axhline(after[group]["n"] / len(letters), color="grey", linestyle="dashed", linewidth=1,
                   label="uniform")
        ax.set_xticks(x, letters)
        p_before, p_after = before.get(group, {}).get("p_value"), after[group].get("p_value")
        ax.set_title(f"{group} (n={after[group]['n']})\nchi2 p: before {_p(p_before)}, after {_p(p_after)}",
                     fontsize=9)
        ax.set_xlabel("gold letter")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("questions")
    _suptitle(figure, "Answer-letter balance of the processed set (notebook 03, step 7)")
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


@_styled
def plot_preprocess_drops(report: dict[str, Any]):
    """Items dropped at each preprocessing step, stacked by reason, with items in -> out written beside."""
    import numpy as np

    from matplotlib.ticker import MaxNLocator

    rows = drop_rows(report)
    if not rows:
        raise FigureInputError(f"{report.get('_path', 'the report')}: no preprocessing steps")
    reasons = sorted({r for row in rows for r in row["by_reason"]})
    colours = dict(zip(reasons, _palette(len(reasons)), strict=True))
    figure, axes = _new_figure(11.0, 0.9 + 0.42 * len(rows))
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


# --------------------------------------------------------------------------------------------------------------
# MADS dialogues


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


@_styled
def plot_mads_dialogues(records: list[dict[str, Any]]):
    """Dialogue length in turns (stacked by the supervisor's stop reason; the paper's 4-14 shaded) and the count of
    each stop reason (failed dialogues included)."""
    import numpy as np

    if not records:
        raise FigureInputError("no MADS dialogues to plot")
    completed = [r for r in records if r["status"] != "failed"]
    reasons = sorted({str(r["stop_reason"]) for r in records})
    colours = dict(zip(reasons, _palette(len(reasons)), strict=True))
    figure, axes = _new_figure(12.0, 4.2, 1, 2, width_ratios=[2.2, 1])
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
    _suptitle(figure, f"MADS dialogues (notebook 01), generator: {', '.join(models)}; {len(records)} dialogues")
    return figure


# --------------------------------------------------------------------------------------------------------------
# Training loss


def load_loss_histories(runs: str | os.PathLike, max_runs_per_model: int = 5) -> dict[str, dict[str, dict]]:
    """``{model folder: {run id: loss history}}`` from ``<runs>/<model>/<run-id>/loss_history.json`` (notebook 04),
    the newest ``max_runs_per_model`` runs per model (run ids are UTC timestamps, so they sort by time)."""
    runs = Path(runs)
    found: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in sorted(runs.glob("*/*/loss_history.json")) if runs.is_dir() else []:
        history = read_json(path)
        if not isinstance(history, dict) or not {"train", "eval"} <= set(history):
            raise FigureInputError(f"{path}: expected {{'train': [...], 'eval': [...]}} (training.loss_history)")
        found[path.parent.parent.name][path.parent.name] = history
    if not found:
        raise FileNotFoundError(f"no <model>/<run-id>/loss_history.json under {runs}: run notebooks/04_train.ipynb "
                                "first")
    return {model: dict(sorted(histories.items())[-max_runs_per_model:]) for model, histories in sorted(found.items())}


@_styled
def plot_training_loss(histories: dict[str, dict[str, dict]]):
    """Train loss (line) and validation loss (dashed, markers) against the optimizer step, one panel per model,
    one colour per run."""
    if not histories:
        raise FigureInputError("no loss histories to plot")
    models = list(histories)
    columns = min(len(models), 3)
    rows = -(-len(models) // columns)
    figure, axes = _new_figure(5.0 * columns, 3.8 * rows, rows, columns)
    for index, ax in enumerate(axes.flat):
        if index >= len(models):
            ax.axis("off")
            continue
        model = models[index]
        runs = histories[model]
        for colour, (run_id, history) in zip(_palette(len(runs)), runs.items(), strict=True):
            train, evaluation = history["train"], history["eval"]
            if train:
                ax.plot([p["step"] for p in train], [p["loss"] for p in train], color=colour,
                        marker="." if len(train) < 10 else None, label=f"{run_id} train")
            if evaluation:
                ax.plot([p["step"] for p in evaluation], [p["eval_loss"] for p in evaluation], "o--", color=colour,
                        label=f"{run_id} validation")
        ax.set_title(f"{model} ({len(runs)} run{'s' if len(runs) != 1 else ''})", fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (response tokens)")
        ax.legend(fontsize=7)
    _suptitle(figure, "LoRA fine-tuning loss per model (notebook 04)")
    return figure


# --------------------------------------------------------------------------------------------------------------
# All figures


@dataclass
class FigureReport:
    """What :func:`make_figures` made (name -> files), skipped (name -> reason), removed, and notes per figure."""

    folder: Path
    made: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"figures in {self.folder}:"]
        for name, paths in self.made.items():
            lines.append(f"  made     {name}: {', '.join(p.name for p in paths)}")
            lines += [f"           {note}" for note in self.notes.get(name, [])]
        for name, reason in self.skipped.items():
            lines.append(f"  skipped  {name}: {reason}")
        for path in self.removed:
            lines.append(f"  removed  {path.name} (stale: its figure was not made this time)")
        return "\n".join(lines)

    def png(self, name: str) -> Path:
        return next(p for p in self.made[name] if p.suffix == ".png")


def make_figures(figures_dir: str | os.PathLike | None = None, *, results_dir: str | os.PathLike | None = None,
                 runs_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                 language: str = "en", max_runs_per_model: int = 5, verbose: bool = True) -> FigureReport:
    """Make every figure whose inputs exist (see the module docstring); returns (and prints) what was made/skipped.

    Folders default to :mod:`ec2er_utils.paths` (``figures/``, ``results/``, ``runs/``, ``data/``, each movable by
    its environment variable). A malformed input file skips its figure with the file named in the reason.
    """
    from . import paths

    folder = Path(figures_dir) if figures_dir is not None else FIGURES_DIR
    results = Path(results_dir) if results_dir is not None else paths.results_dir()
    runs = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    data = Path(data_dir) if data_dir is not None else paths.data_dir()
    report = FigureReport(folder)

    def attempt(name: str, build: Callable[[], Any], notes: list[str] | None = None) -> None:
        try:
            figure = build()
        except (FileNotFoundError, FigureInputError, JSONLError) as err:
            report.skipped[name] = str(err)
            return
        report.made[name] = save_figure(figure, folder, name)
        if notes:
            report.notes[name] = notes

    attempt("pipeline_overview", plot_pipeline)
    attempt("table1_paper", plot_table1_paper, ["the paper's reported numbers (transcribed), not measured here"])

    try:
        entries = load_evaluations(results)
    except FigureInputError as err:
        entries, reason = [], str(err)
    else:
        reason = (f"no evaluation runs (run.json + *.leaderboard.json) under {results}: run "
                  "notebooks/05_evaluate.ipynb first")
    usable = [e for e in entries if any(e.summary(t, language) for t in ("EU", "EA"))]
    protocols = sorted({e.protocol for e in usable})
    if not protocols:
        if entries:
            reason = f"the evaluation runs under {results} have no {language!r} results"
        report.skipped["table1_<protocol>"] = reason
        report.skipped["finetune_gain_<protocol>"] = reason
    for protocol in protocols:
        chosen = latest_runs(usable, protocol)
        notes = [f"{alias} {'fine-tuned' if tuned else 'base'}: {entry.run.out_dir}"
                 for (alias, tuned), entry in sorted(chosen.items())]
        attempt(f"table1_{protocol}", lambda p=protocol: plot_table1_ours(usable, p, language=language), notes)
        deltas, why = finetune_deltas(usable, protocol, language=language)
        if deltas.empty:
            report.skipped[f"finetune_gain_{protocol}"] = "; ".join(why) or (
                "no model has both a base and a fine-tuned (adapter) run of this protocol: run notebook 05 with "
                "adapter= a folder from notebook 04")
        else:
            attempt(f"finetune_gain_{protocol}",
                    lambda d=deltas, p=protocol: plot_finetune_gain(d, p, language=language), why)

    try:
        preprocess_report = load_preprocess_report(data)
    except (FileNotFoundError, FigureInputError, JSONLError) as err:
        for name in ("dataset_categories", "answer_letters", "preprocess_drops"):
            report.skipped[name] = str(err)
    else:
        source = [f"from {preprocess_report['_path']}"]
        attempt("dataset_categories", lambda: plot_dataset_categories(preprocess_report), source)
        attempt("answer_letters", lambda: plot_answer_letters(preprocess_report), source)
        attempt("preprocess_drops", lambda: plot_preprocess_drops(preprocess_report), source)

    attempt("mads_dialogues", lambda: plot_mads_dialogues(load_mads_metadata(data)))
    attempt("training_loss", lambda: plot_training_loss(load_loss_histories(runs, max_runs_per_model)))

    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix[1:] in FORMATS and FIGURE_NAME.match(path.stem) and path.stem not in report.made:
                path.unlink()
                report.removed.append(path)
    if verbose:
        print(report)
    return report
