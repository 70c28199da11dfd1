"""How every figure looks and is saved: one fixed style, headless figures, byte-identical files (fixed size and dpi,
no timestamps or versions), shared bar helpers."""

from __future__ import annotations

import io
import os
import re
import textwrap
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path
from typing import Any

FORMATS = ("png", "pdf")
DPI = 150
# Files of the figures this package writes; stale ones of skipped figures are removed.
FIGURE_NAME = re.compile(r"^(pipeline_overview|table1_[\w.+-]+|finetune_gain_[\w.+-]+|dataset_categories|"
                         r"answer_letters|preprocess_drops|mads_dialogues|training_loss)$")
# No timestamps or versions in the files, so equal inputs give equal bytes.
_SAVE_METADATA = {"png": {"Software": None},
                  "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
# The paper's numbers in blues, ours in oranges (darker: averaged over option orders).
COLOURS = {"paper base": "#a6c8e0", "paper fine-tuned": "#1f5f99", "ours base": "#f5c28a",
           "ours fine-tuned": "#d9640f", "ours base, over orders": "#c98a3d", "ours fine-tuned, over orders": "#8a3b06"}


class FigureInputError(ValueError):
    """A result file exists but cannot be used; the message names the file and what is wrong with it."""


def styled(function: Callable) -> Callable:
    """Draw ``function``'s figure in matplotlib's defaults + seaborn's whitegrid, whatever the caller's rcParams."""

    @wraps(function)
    def wrapper(*args, **kwargs):
        import matplotlib as mpl
        import seaborn as sns

        with mpl.rc_context():
            mpl.rcdefaults()
            mpl.rcParams.update({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85),
                                 "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "standard",
                                 "axes.titleweight": "bold"})
            return function(*args, **kwargs)

    return wrapper


@cache
def _notebook_figure_class() -> type:
    from matplotlib.figure import Figure

    class NotebookFigure(Figure):
        """Shows itself as PNG in a notebook: a figure made without pyplot has no notebook display otherwise."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png", dpi=DPI)
            return buffer.getvalue()

    return NotebookFigure


def new_figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    """A headless figure (no pyplot, no global backend change) and a 2-D array of axes."""
    figure = _notebook_figure_class()(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, **options)
    return figure, axes


@styled
def save_figure(figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``<folder>/<name>.png`` and ``.pdf`` without timestamps or versions (equal figures, equal bytes)."""
    if not FIGURE_NAME.match(name):
        raise ValueError(f"{name!r} is not one of the figure names ({FIGURE_NAME.pattern})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{fmt}" for fmt in FORMATS]
    for path, fmt in zip(paths, FORMATS, strict=True):
        figure.savefig(path, format=fmt, dpi=DPI, metadata=_SAVE_METADATA[fmt])
    return paths


def category_label(category: str, width: int = 11) -> str:
    """A category as an axis label: spaces for underscores, the longest name shortened as Table 1 does, wrapped."""
    text = category.replace("personal_beliefs_and_experiences", "personal_beliefs").replace("_", " ")
    return textwrap.fill(text, width)


def grouped_bars(ax, categories, series: list[tuple[str, list[float], list[tuple[float, float]] | None]]) -> None:
    """Bars per category, one per series; a series may carry (low, high) intervals drawn as error bars."""
    import numpy as np

    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for k, (name, values, intervals) in enumerate(series):
        positions = x - 0.4 + width * (k + 0.5)
        ax.bar(positions, values, width * 0.95, label=name, color=COLOURS.get(name.split(" (")[0], None),
               edgecolor="white", linewidth=0.5)
        bounds = intervals or [(float("nan"), float("nan"))] * len(values)
        for position, value, (_, high) in zip(positions, values, bounds, strict=True):
            if value == value:  # above the bar, or above its error bar
                top = high if high == high else value
                ax.text(position, top + 0.015, value_label(value), ha="center", va="bottom", fontsize=6,
                        rotation=90 if len(series) > 2 else 0)
        if intervals is not None:
            low = [v - lo if lo == lo else 0.0 for v, (lo, _) in zip(values, intervals, strict=True)]
            high = [hi - v if hi == hi else 0.0 for v, (_, hi) in zip(values, intervals, strict=True)]
            ax.errorbar(positions, values, yerr=[low, high], fmt="none", ecolor="black", capsize=2.5,
                        linewidth=0.9)
    ax.set_xticks(x, [category_label(c) for c in categories], fontsize=8)
    ax.set_xlim(-0.5, len(categories) - 0.5)  # a category without data keeps its place
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, 1)


def value_label(value: float) -> str:
    """Two decimals, three where the third is not zero (Table 1 prints 0.105, 0.62, ...)."""
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def shared_legend(figure, axes, fontsize: float = 8) -> None:
    """One legend for all panels, below them (every label once, in first-seen order), in as many columns as fit
    the figure's width."""
    from matplotlib.textpath import TextPath

    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if not handles:
        return
    # A column: its widest label plus the handle and the spacing (about 4.8 font sizes), in inches.
    column = (max(TextPath((0, 0), label, size=fontsize).get_extents().width for label in handles)
              + 4.8 * fontsize) / 72
    columns = max(1, min(len(handles), int(figure.get_size_inches()[0] // column)))
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=columns, fontsize=fontsize,
                  frameon=False)


def suptitle(figure, text: str) -> None:
    """A figure title wrapped to the figure's width."""
    width_inches = figure.get_size_inches()[0]
    figure.suptitle(textwrap.fill(text, int(width_inches * 15)), fontsize=9)


def colour_cycle(n: int) -> list:
    """``n`` distinct colours (seaborn's "deep" palette), for runs, models or reasons."""
    import seaborn as sns

    return list(sns.color_palette("deep", n))
