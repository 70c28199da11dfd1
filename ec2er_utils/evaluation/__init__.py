"""EmoBench evaluation (notebook 05; README, chapter 05): the protocols, each in EmoBench's option order or under
all its cyclic shifts, resumable runs, leaderboards with bootstrap intervals and letter-prior baselines, paired
comparisons, the paper's Table 1, and controls of the train -> evaluate loop (:mod:`.controls`).

>>> from ec2er_utils.evaluation import EvalConfig, evaluate
>>> run = evaluate(EvalConfig(model="smollm2", adapter=None, protocol="choice"))   # doctest: +SKIP
>>> run.frame()                                                                     # doctest: +SKIP
"""

from .adapter_check import AdapterNotApplied
from .choice import ChoiceScorer
from .orders import item_shifts, rotated
from .paper_table import compare_with_paper, paper_table1
from .parsing import STATUSES, parse_official_reply
from .prompts import gold_letters, official_messages, official_system_prompt, official_user_prompt, paper_questions
from .protocols import predict_choice, predict_cloze, predict_official, predict_paper, predict_reason_score
from .report import (EvaluationRun, compare_runs, describe_run, leaderboard_frame, leaderboard_table, letter_table,
                     load_run, robust_table)
from .runner import EvalConfig, evaluate
from .scoring import (Prediction, bootstrap_ci, compare_predictions, mcnemar_exact_p, official_result_rows,
                      official_scores, summarize)

__all__ = [
    "AdapterNotApplied", "STATUSES", "bootstrap_ci", "ChoiceScorer", "compare_predictions", "compare_runs",
    "compare_with_paper", "describe_run", "EvalConfig", "evaluate", "EvaluationRun", "gold_letters", "item_shifts",
    "leaderboard_frame", "leaderboard_table", "letter_table", "load_run", "mcnemar_exact_p", "official_messages",
    "official_result_rows", "official_scores", "official_system_prompt", "official_user_prompt", "paper_questions",
    "paper_table1", "parse_official_reply", "predict_choice", "predict_cloze", "predict_official", "predict_paper",
    "predict_reason_score", "Prediction", "robust_table", "rotated", "summarize",
]
