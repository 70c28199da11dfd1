"""Chapter 06's one call: :func:`make_figures` makes every figure whose inputs exist, from a :class:`FiguresConfig`
(notebook 06's parameters), and reports what it made, skipped (with the reason) and removed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..jsonl import JSONLError
from ..parameters import StageConfig
from ..paths import REPO_ROOT
from .dataset import (load_mads_metadata, load_preprocess_report, plot_answer_letters, plot_dataset_categories,
                      plot_mads_dialogues, plot_preprocess_drops)
from .pipeline import plot_pipeline
from .results import (finetune_deltas, latest_runs, load_evaluations, plot_finetune_gain, plot_table1_ours,
                      plot_table1_paper)
from .style import FIGURE_NAME, FORMATS, FigureInputError, save_figure
from .training_loss import load_loss_histories, plot_training_loss

FIGURES_DIR = REPO_ROOT / "figures"


class FiguresConfig(StageConfig):
    """Notebook 06's parameters: where the figures go, where the earlier chapters' files are, and two choices.
    ``None`` folders are :mod:`ec2er_utils.paths`' defaults (``figures/``, ``results/``, ``runs/``, ``data/``)."""

    figures_dir: Path | None = None
    results_dir: Path | None = None  # notebook 05's evaluation runs
    runs_dir: Path | None = None  # notebook 04's training runs
    data_dir: Path | None = None  # notebooks 01-03's generated data
    language: Literal["en", "zh"] = "en"  # EmoBench language of the Table 1 figures (the paper's: en)
    max_runs_per_model: int = Field(5, ge=1)  # training loss: the newest runs per model


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
        lines += [f"  skipped  {name}: {reason}" for name, reason in self.skipped.items()]
        lines += [f"  removed  {path.name} (stale: its figure was not made this time)" for path in self.removed]
        return "\n".join(lines)

    def png(self, name: str) -> Path:
        return next(p for p in self.made[name] if p.suffix == ".png")


def make_figures(config: FiguresConfig | None = None, *, verbose: bool = True) -> FigureReport:
    """Make every figure whose inputs exist (see :mod:`ec2er_utils.figures`); returns (and prints) what was made
    and skipped. A malformed input file skips its figure with the file named in the reason."""
    from .. import paths

    config = config or FiguresConfig()
    language = config.language
    folder = config.figures_dir or FIGURES_DIR
    results = config.results_dir or paths.results_dir()
    runs = config.runs_dir or paths.runs_dir()
    data = config.data_dir or paths.data_dir()
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
    attempt("training_loss", lambda: plot_training_loss(load_loss_histories(runs, config.max_runs_per_model)))

    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix[1:] in FORMATS and FIGURE_NAME.match(path.stem) and path.stem not in report.made:
                path.unlink()
                report.removed.append(path)
    if verbose:
        print(report)
    return report
