"""EmoBench evaluation (notebook 05): three protocols, each in EmoBench's option order or under all its cyclic
shifts, batched local and OpenAI-compatible backends, resumable runs, leaderboards with bootstrap intervals and
letter-prior baselines, paired comparisons, the paper's Table 1 for reference, and controls of the train ->
evaluate loop (:mod:`~ec2er_utils.evaluation.controls`). Its plots are in :mod:`ec2er_utils.figures`.

>>> from ec2er_utils.evaluation import EvalConfig, evaluate
>>> run = evaluate(EvalConfig(model="smollm2", adapter=None, protocol="choice"))   # doctest: +SKIP
>>> run.frame()                                                                     # doctest: +SKIP
"""

from .adapter_check import AdapterNotApplied, check_adapter_applied
from .choice import ChoiceScorer, best_letter
from .orders import BASELINES, ORDERS, item_shifts, rotated
from .paper_table import compare_with_paper, paper_long_with_ours, paper_table1
from .parsing import STATUSES, ParsedReply, parse_official_reply
from .prompts import (
    CHOICE_ANSWER_PREFIX,
    gold_letters,
    lettered_choices,
    official_messages,
    official_system_prompt,
    official_user_prompt,
    paper_questions,
)
from .report import (
    EvaluationRun,
    compare_runs,
    describe_run,
    leaderboard_frame,
    leaderboard_table,
    letter_table,
    load_run,
    predictions_path,
    robust_table,
)
from .protocols import predict_choice, predict_cloze, predict_official, predict_paper, predict_reason_score
from .runner import BACKENDS, PROTOCOLS, EvalConfig, evaluate, model_label, run_folder
from .scoring import (
    Prediction,
    bootstrap_ci,
    compare_predictions,
    mcnemar_exact_p,
    official_result_rows,
    official_scores,
    paired_bootstrap_ci,
    summarize,
)

__all__ = [
    "AdapterNotApplied", "BACKENDS", "BASELINES", "CHOICE_ANSWER_PREFIX", "PROTOCOLS", "STATUSES", "best_letter",
    "bootstrap_ci", "check_adapter_applied", "ChoiceScorer", "compare_predictions",
    "compare_runs", "compare_with_paper", "describe_run", "EvalConfig",
    "evaluate", "EvaluationRun", "gold_letters", "item_shifts", "leaderboard_frame", "leaderboard_table",
    "letter_table", "lettered_choices", "load_run", "mcnemar_exact_p", "model_label", "ORDERS", "official_messages",
    "official_result_rows", "official_scores", "official_system_prompt", "official_user_prompt",
    "paired_bootstrap_ci", "paper_long_with_ours", "paper_questions", "paper_table1", "parse_official_reply",
    "ParsedReply", "predict_choice", "predict_cloze", "predict_official", "predict_paper", "predict_reason_score",
    "Prediction", "predictions_path", "robust_table", "rotated", "run_folder", "summarize",
]
