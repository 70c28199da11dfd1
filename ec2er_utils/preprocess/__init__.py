"""Preprocessing (paper §3.3-3.4): from the generators' items to a clean, balanced, decontaminated training set.

Notebook 03 calls :func:`run_preprocess` with a :class:`PreprocessConfig`. The steps, one module each, in order;
every step returns ``StepResult(items, report)``: the items it kept and a :class:`StepReport` naming every dropped
item with its reason and "file:line", so nothing disappears silently.

1. ``load``: read the generators' JSONL (MADS's and the concise pipeline's ``DatasetItem`` records, shards
   included) and validate each line.
2. ``filters``: validation (fields, category and option count, answer among the options with letter answers
   mapped, distinct options, emotion taxonomy, scenario length, no label leak, letter citations that can be
   rewritten, explanation consistent with the answer).
3. ``quality``: the quality gate's cheap rules (explanations too short, option fragments, repeated words,
   non-words, JSON remnants), thresholds as parameters.
4. ``decontaminate``: drop scenarios that are near-copies of EmoBench's.
5. ``dedup``: fuzzy de-duplication of near-identical scenarios (Levenshtein; MinHash-LSH candidates at scale).
6. ``judge``: the quality gate's optional LLM judge (grammar, ambiguity, distractor plausibility, explanation
   supports the answer); the score is kept in ``DatasetItem.quality_score``.
7. ``balance``: no EU/EA sub-category above 1.5x its expected share;
8. ``balance``: options re-ordered so the gold letters are uniform, cited letters in explanations rewritten.
9. ``split``: stratified train/validation split; ``report``: dataset card and report; ``pipeline``: all of it,
   with the §3.4 manual review (:mod:`.review`) between 8 and 9.

Departures from the paper, chosen and documented here:

- Decontamination runs *before* de-duplication and balancing (the paper lists it last), so the 1.5x cap holds on
  the final set.
- The paper balanced categories *during* generation by regenerating; after the fact we can only reject (the
  earliest items are kept; see :mod:`~ec2er_utils.preprocess.balance`).
- The paper names its linguistic checks (grammatical, unambiguous questions; plausible but wrong distractors) but
  not how they were made: here cheap rules plus an LLM judge with a rubric (any model behind ``make_client``).
  The label-leak, letter-reference and self-contradiction checks are our additions that make §3.3's
  "self-contradictory explanations" filter concrete.
- Near-duplicates are only compared within the same kind of question (emotion, cause, EA).
- §3.4's review: items both annotators judge wrong are dropped (the paper corrected its prompts and filters
  instead); ambiguous items are kept with a confidence, as in the paper.
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
