"""Every figure of the repository, regenerated from result files only: notebook 06 makes them all, notebook 05 shows
two of them, and chapter 04 saves each run's loss curve. :func:`make_figures` saves each as PNG and PDF under
``figures/`` with a stable name; what each shows and reads:

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

Skipped figures, byte-identical re-runs and which runs are shown: README, chapter 06; the modules: ARCHITECTURE.md.
"""

from .dataset import (drop_rows, load_mads_metadata, load_preprocess_report, plot_answer_letters,
                      plot_dataset_categories, plot_mads_dialogues, plot_preprocess_drops, plot_review)
from .make import FIGURES_DIR, FigureReport, FiguresConfig, make_figures
from .pipeline import plot_pipeline
from .results import (finetune_deltas, load_evaluations, paper_alias, plot_against_paper, plot_finetune_gain,
                      plot_leaderboard, plot_table1_ours, plot_table1_paper)
from .style import save_figure
from .training_loss import load_loss_histories, plot_training_loss

__all__ = [
    "FIGURES_DIR", "FigureReport", "FiguresConfig", "drop_rows", "finetune_deltas", "load_evaluations",
    "load_loss_histories", "load_mads_metadata", "load_preprocess_report", "make_figures", "paper_alias",
    "plot_against_paper", "plot_answer_letters", "plot_dataset_categories", "plot_finetune_gain",
    "plot_leaderboard", "plot_mads_dialogues", "plot_pipeline", "plot_preprocess_drops", "plot_review",
    "plot_table1_ours", "plot_table1_paper", "plot_training_loss", "save_figure",
]
