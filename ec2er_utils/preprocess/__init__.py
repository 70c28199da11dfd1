"""Preprocessing (paper §3.3-3.4): from the generators' items to a clean, balanced, decontaminated training set.

Notebook 03 calls :func:`run_preprocess` with a :class:`PreprocessConfig`; one module per step, in the order
:func:`preprocess_items` runs them: load, filters, quality, decontaminate, dedup, judge, balance, review, split.
Every step returns ``StepResult(items, report)``, the report naming each dropped item, its reason and "file:line".
What each step checks, and the departures from the paper: README, chapter 03.
"""

from .balance import answer_letter_counts, balance_answer_positions, balance_categories, category_cap
from .config import PreprocessConfig
from .decontaminate import decontaminate, load_emobench_scenarios
from .dedup import deduplicate
from .filters import (
    check_answer_in_options,
    check_emotion_labels,
    check_explanation_consistency,
    check_label_leak,
    check_letter_references,
    check_options_distinct,
    check_required_fields,
    check_scenario_length,
    cited_letters,
    conclusion,
    rewrite_letter_citations,
    validate_items,
)
from .judge import JUDGE_SYSTEM_PROMPT, JudgeUnavailable, judge_items, make_judge_client
from .load import input_files, load_items, read_items
from .pipeline import preprocess_items, push_dataset, run_preprocess, save_processed
from .quality import QualityRules, check_text_quality, item_quality_problem
from .questions import is_emotion_question, item_questions
from .report import counts_vs_paper, skew_summary, steps_table
from .split import load_split, processed_dir, split_train_validation

__all__ = [
    "JUDGE_SYSTEM_PROMPT", "JudgeUnavailable", "PreprocessConfig", "QualityRules", "answer_letter_counts",
    "balance_answer_positions", "balance_categories", "category_cap", "check_answer_in_options",
    "check_emotion_labels", "check_explanation_consistency", "check_label_leak", "check_letter_references",
    "check_options_distinct", "check_required_fields", "check_scenario_length", "check_text_quality",
    "cited_letters", "conclusion", "counts_vs_paper", "decontaminate", "deduplicate", "input_files",
    "is_emotion_question", "item_quality_problem", "item_questions", "judge_items", "load_emobench_scenarios",
    "load_items", "load_split", "make_judge_client", "preprocess_items", "processed_dir", "push_dataset",
    "read_items", "rewrite_letter_citations", "run_preprocess", "save_processed", "skew_summary",
    "split_train_validation", "steps_table", "validate_items",
]
