"""LoRA fine-tuning on the paper's instruction format (§5), with Unsloth on GPU and its CPU backend without one; used
by ``notebooks/04_train.ipynb``. Loss, chat templates, defaults: README, chapter 04; the modules: ARCHITECTURE.md.
"""

# Unsloth patches transformers, TRL and PEFT when imported, so it must come first. Without a GPU it switches to
# its CPU backend (stock transformers + PEFT + TRL) and prints which path runs.
import unsloth  # noqa: F401, I001

from .card import model_card
from .config import CPU_DEMO_STEPS, CPU_EVAL_QUESTIONS, PAPER_NOTES, TrainConfig
from .data import (NoTrainingDataError, ensure_chat_template, load_eval_questions, load_questions, masking_summary,
                   render_example, require_questions, token_statistics, training_records)
from .device import (DeviceReport, ModelTooLargeError, check_fits, detect_device, parameter_count_billion,
                     training_path)
from .plan import config_table, new_run_dir, prepare_run
from .saving import describe_run, load_adapter, push_to_hub, save_merged_16bit, save_run
from .trainer import build_trainer, load_model_for_training, loss_history, run_training, trainable_parameters

__all__ = [
    "CPU_DEMO_STEPS", "CPU_EVAL_QUESTIONS", "DeviceReport", "ModelTooLargeError", "NoTrainingDataError",
    "PAPER_NOTES", "TrainConfig", "build_trainer", "check_fits", "config_table", "describe_run", "detect_device",
    "ensure_chat_template", "load_adapter", "load_eval_questions", "load_model_for_training", "load_questions",
    "loss_history", "masking_summary", "model_card", "new_run_dir", "parameter_count_billion", "prepare_run",
    "push_to_hub", "render_example", "require_questions", "run_training", "save_merged_16bit", "save_run",
    "token_statistics", "trainable_parameters", "training_path", "training_records",
]
