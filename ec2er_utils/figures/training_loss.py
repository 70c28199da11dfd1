"""Training loss (chapter 04): one figure for one run (``training.save_run`` writes it as the run's ``loss.png``)
and for every run of every model (notebook 06's ``training_loss``), from ``training.loss_history``'s format."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from ..jsonl import read_json
from .style import FigureInputError, colour_cycle, new_figure, styled, suptitle


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


@styled
def plot_training_loss(histories: dict[str, dict[str, dict]], title: str | None = None):
    """Train loss (line) and validation loss (dashed, markers) against the optimizer step, one panel per model,
    one colour per run. ``histories`` is ``{model: {run id: loss history}}`` (:func:`load_loss_histories`)."""
    if not histories:
        raise FigureInputError("no loss histories to plot")
    models = list(histories)
    columns = min(len(models), 3)
    rows = -(-len(models) // columns)
    figure, axes = new_figure(5.0 * columns, 3.8 * rows, rows, columns)
    for index, ax in enumerate(axes.flat):
        if index >= len(models):
            ax.axis("off")
            continue
        model = models[index]
        runs = histories[model]
        for colour, (run_id, history) in zip(colour_cycle(len(runs)), runs.items(), strict=True):
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
    suptitle(figure, title or "LoRA fine-tuning loss per model (notebook 04)")
    return figure
