"""Preprocessing (paper §3.3-3.4): from the generators' items to a clean, balanced, decontaminated training set.

Notebook 03 calls :func:`run_preprocess` with a :class:`PreprocessConfig`. The steps, one module each, in order:
1 ``load`` (the generators' ``DatasetItem`` JSONL, shards included), 2 ``filters`` (validation), 3 ``quality`` (the
quality gate's cheap rules), 4 ``decontaminate`` (EmoBench near-copies), 5 ``dedup`` (near-identical scenarios),
6 ``judge`` (the quality gate's LLM judge), 7-8 ``balance`` (the category cap, then uniform gold letters), the §3.4
review (:mod:`.review`), 9 ``split``; ``report`` writes the dataset card and report, ``pipeline`` runs it all.
Every step returns ``StepResult(items, report)``: the items it kept and a :class:`StepReport` naming every dropped
item with its reason and "file:line". What each step checks, and the departures from the paper: README, chapter 03.
"""

from .balance import (
    answer_letter_counts,
    balance_answer_positions,
    balance_categories,
    category_cap,
    category_counts,
    letter_uniformity,
)
from .config import OnError, PreprocessConfig
from .decontaminate import decontaminate, load_emobench_scenarios
from .dedup import dedup_groups, deduplicate
from .filters import (
    EMOTION_FORMS,
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
    explanation_contradiction,
    letter_answer,
    rewrite_letter_citations,
    validate_items,
)
from .judge import JUDGE_SYSTEM_PROMPT, JudgeUnavailable, JudgeVerdict, judge_items, make_judge_client
from .load import DEFAULT_INPUTS, find_inputs, input_files, load_items, read_items
from .pipeline import PreprocessRun, preprocess_items, push_dataset, run_preprocess, save_processed
from .quality import QualityRules, check_text_quality, item_quality_problem
from .questions import is_emotion_question, item_questions, question_slots
from .report import counts_vs_paper, dataset_card, skew_summary, steps_table
from .split import SPLITS, load_split, processed_dir, split_train_validation, write_splits
from .steps import Drop, StepReport, StepResult

__all__ = [
    "DEFAULT_INPUTS", "EMOTION_FORMS", "JUDGE_SYSTEM_PROMPT", "SPLITS", "Drop",
    "JudgeUnavailable", "JudgeVerdict", "OnError", "PreprocessConfig", "PreprocessRun", "QualityRules", "StepReport",
    "StepResult", "answer_letter_counts", "balance_answer_positions", "balance_categories", "category_cap",
    "category_counts", "check_answer_in_options", "check_emotion_labels", "check_explanation_consistency",
    "check_label_leak", "check_letter_references", "check_options_distinct", "check_required_fields",
    "check_scenario_length", "check_text_quality", "cited_letters", "conclusion", "counts_vs_paper", "dataset_card",
    "decontaminate", "dedup_groups", "deduplicate", "explanation_contradiction", "find_inputs", "input_files",
    "is_emotion_question", "item_quality_problem", "item_questions", "judge_items", "letter_answer",
    "letter_uniformity", "load_emobench_scenarios", "load_items", "load_split", "make_judge_client",
    "preprocess_items", "processed_dir", "question_slots", "read_items", "rewrite_letter_citations",
    "push_dataset", "run_preprocess", "save_processed", "skew_summary", "split_train_validation", "steps_table",
    "validate_items", "write_splits",
]
