"""LoRA fine-tuning on the paper's instruction format (§5), with Unsloth; used by ``notebooks/04_train.ipynb``.

Two hardware paths, one code path:

- **GPU (Colab Pro+ A100, the paper's set-up):** ``FastLanguageModel`` loads Unsloth's pre-quantised 4-bit
  checkpoint of the model (QLoRA), adds LoRA adapters with Unsloth's kernels and its offloaded gradient
  checkpointing; TRL's ``SFTTrainer`` (patched by Unsloth) trains with 8-bit AdamW in bf16.
- **CPU (this repository's CI and demo):** ``import unsloth`` finds no GPU and switches to its CPU backend, where
  the same ``FastLanguageModel`` calls run on stock transformers + PEFT + TRL (16-bit LoRA, bf16 where the CPU has
  native bf16, fused AdamW). Should Unsloth's loader refuse a model, the code falls back to plain
  transformers + PEFT and says so.

**Loss on the response only.** Each question becomes a TRL *conversational prompt-completion* record: the user
turn is the prompt, the assistant's JSON is the completion. TRL renders both with the model's own chat template and
labels every prompt token -100 (``completion_only_loss``, on by default for this format), which is TRL's equivalent
of Unsloth's ``train_on_responses_only`` without per-template marker strings; Unsloth's GPU trainer reads the same
format. The loss is the plain mean over the response tokens: the JSON answer plus the template's end-of-turn
token(s), so the model also learns to stop. That is the paper's "uniform loss over all tokens in the JSON response".

**Chat templates.** Every model is trained with its own chat template. The paper's Llama-3.1-8B is a base model
whose tokenizer has none, so :func:`ensure_chat_template` supplies Unsloth's ``alpaca`` template: it uses only the
BOS/EOS tokens the base model was pre-trained with (the Llama 3 chat header tokens were reported untrained in the
base models). The template is saved with the adapter's tokenizer, so inference uses the same one.

**Where the paper is silent** (it names LoRA, the prompt format, the loss, Transformers/PyTorch and A100 40 GB, and
nothing else), the defaults are Unsloth's documented starting points; :data:`PAPER_NOTES` and
:func:`config_table` say which value comes from where. LoRA goes into the attention projections by default because
§5 says "LoRA introduces trainable low-rank matrices into transformer attention layers"; ``"all-linear"``
(attention + MLP, Unsloth's default) is the documented alternative.

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
