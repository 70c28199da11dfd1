"""LoRA fine-tuning on the paper's instruction format (§5), with Unsloth; used by ``notebooks/04_train.ipynb``.

One code path, two hardware paths: on a GPU, ``FastLanguageModel`` loads Unsloth's pre-quantised 4-bit checkpoint
(QLoRA) with its kernels and offloaded gradient checkpointing, and TRL's ``SFTTrainer`` (patched by Unsloth)
trains with 8-bit AdamW in bf16; on a CPU, ``import unsloth`` switches to its CPU backend, where the same calls run
on stock transformers + PEFT + TRL (16-bit LoRA, fused AdamW). Should Unsloth's loader refuse a model, the code
falls back to plain transformers + PEFT and says so. Each question is a TRL *conversational prompt-completion*
record, so TRL's ``completion_only_loss`` masks the prompt without per-template marker strings (TRL's equivalent of
Unsloth's ``train_on_responses_only``; Unsloth's GPU trainer reads the same format). :data:`PAPER_NOTES` and
:func:`config_table` say where each default comes from. Loss, chat templates, defaults: README, chapter 04.

The modules follow notebook 04's order: :mod:`.config` (the settings), :mod:`.device` (what it runs on, whether
the model fits), :mod:`.data` (questions, records, chat template, masking), :mod:`.plan` (the automatic settings
resolved, the run folder), :mod:`.trainer` (model, trainer, the measured run), :mod:`.saving` (the run on disk,
loaded back, on the Hub) and :mod:`.card` (its model card).
"""

# Unsloth patches transformers, TRL and PEFT when imported, so it must come first. Without a GPU it switches to
# its CPU backend (stock transformers + PEFT + TRL) and prints which path runs.
import unsloth  # noqa: F401, I001

from .card import model_card
from .config import CPU_DEMO_STEPS, CPU_EVAL_QUESTIONS, PAPER_NOTES, TrainConfig
from .data import (NoTrainingDataError, ensure_chat_template, load_eval_questions, load_questions, masking_summary,
                   render_example, require_questions, token_statistics, training_records)
from .device import (DeviceReport, FitCheck, ModelTooLargeError, check_fits, detect_device, parameter_count_billion,
                     training_path)
from .plan import RunPlan, config_table, new_run_dir, prepare_run
from .saving import MERGED_DIR, adapter_folder, describe_run, load_adapter, push_to_hub, save_merged_16bit, save_run
from .trainer import (TrainingResult, build_trainer, load_model_for_training, loss_history, run_training,
                      trainable_parameters)

__all__ = [
    "CPU_DEMO_STEPS", "CPU_EVAL_QUESTIONS", "DeviceReport", "FitCheck", "MERGED_DIR", "ModelTooLargeError",
    "NoTrainingDataError", "PAPER_NOTES", "RunPlan", "TrainConfig", "TrainingResult", "adapter_folder",
    "build_trainer", "check_fits", "config_table", "describe_run", "detect_device", "ensure_chat_template",
    "load_adapter", "load_eval_questions", "load_model_for_training", "load_questions", "loss_history",
    "masking_summary", "model_card", "new_run_dir", "parameter_count_billion", "prepare_run", "push_to_hub",
    "render_example", "require_questions", "run_training", "save_merged_16bit", "save_run", "token_statistics",
    "trainable_parameters", "training_path", "training_records",
]
