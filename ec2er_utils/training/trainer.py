"""The model and the trainer: LoRA adapters through Unsloth's ``FastLanguageModel`` (plain transformers + PEFT
only where Unsloth cannot run, said loudly), TRL's ``SFTTrainer`` on the response tokens, and a measured run."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..formatting import Question
from .data import ensure_chat_template, training_records
from .plan import RunPlan

# What "Unsloth cannot run here" looks like: it is not installed or does not support this platform. Out of memory,
# a CUDA error or a bad checkpoint name are real failures and are raised, never turned into a slower run.
UNSLOTH_UNAVAILABLE = (ImportError, NotImplementedError)
GPU_MEMORY_ADVICE = ("Lower per_device_train_batch_size or max_seq_length, keep load_in_4bit on (None or True), or "
                     "use a GPU with more memory (Colab: Runtime > Change runtime type > A100).")


def load_model_for_training(plan: RunPlan):
    """``(model, tokenizer, backend)``: the base model with fresh LoRA adapters through Unsloth's ``FastLanguageModel``;
    ``backend`` is "unsloth-gpu", "unsloth-cpu" or "transformers+peft (fallback: ...)"."""
    import torch
    from transformers import set_seed
    from unsloth import FastLanguageModel

    config = plan.config
    set_seed(config.seed)
    dtype = getattr(torch, plan.dtype)
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=plan.base_checkpoint, max_seq_length=config.max_seq_length, dtype=dtype,
            load_in_4bit=plan.load_in_4bit, token=os.environ.get("HF_TOKEN") or None)
        model = FastLanguageModel.get_peft_model(
            model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules), bias="none",
            use_gradient_checkpointing="unsloth" if plan.gradient_checkpointing else False,
            random_state=config.seed, max_seq_length=config.max_seq_length)
        backend = "unsloth-gpu" if plan.device.is_gpu else "unsloth-cpu"
    except UNSLOTH_UNAVAILABLE as err:  # Unsloth cannot run here; anything else is a real failure
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        rule = "=" * 100
        print(f"{rule}\nUNSLOTH NOT USED: it cannot load {plan.base_checkpoint} here ({reason}).\nTraining falls back "
              "to plain transformers + PEFT + TRL with the same settings: slower, more memory, and recorded as the "
              f"backend in config.json and the model card.\n{rule}", flush=True)
        model, tokenizer = _load_with_transformers(plan, dtype)
        backend = f"transformers+peft (fallback: {reason})"
    except RuntimeError as err:  # torch raises out-of-memory and other CUDA errors as RuntimeError (subclasses)
        if "OutOfMemoryError" in type(err).__name__ or "CUDA" in str(err) or "out of memory" in str(err):
            raise RuntimeError(f"loading {plan.base_checkpoint} for training failed on the GPU: {err}. "
                               + GPU_MEMORY_ADVICE) from err
        raise
    plan.chat_template_supplied = ensure_chat_template(tokenizer, config.spec)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer, backend


def _load_with_transformers(plan: RunPlan, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = plan.config
    tokenizer = AutoTokenizer.from_pretrained(plan.base_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(plan.base_checkpoint, dtype=dtype,
                                                 device_map="cuda" if plan.device.is_gpu else "cpu")
    if plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), tokenizer


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def build_trainer(model, tokenizer, plan: RunPlan, train_questions: Sequence[Question],
                  eval_questions: Sequence[Question] = ()):
    """TRL's ``SFTTrainer`` (Unsloth-patched) on prompt-completion records: loss on the response tokens only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = plan.config
    eval_questions = list(eval_questions)[:plan.max_eval_questions]  # None keeps all
    eval_dataset = Dataset.from_list(training_records(eval_questions)) if eval_questions else None
    saving = config.save_steps is not None
    args = SFTConfig(
        output_dir=str(plan.run_dir / "checkpoints"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        num_train_epochs=config.num_train_epochs, max_steps=plan.max_steps,
        learning_rate=config.learning_rate, lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay, optim=plan.optim,
        bf16=plan.dtype == "bfloat16", fp16=plan.dtype == "float16",
        seed=config.seed, data_seed=config.seed,
        max_length=config.max_seq_length, packing=False, completion_only_loss=True,
        logging_steps=plan.logging_steps, logging_first_step=True,
        eval_strategy="steps" if eval_dataset is not None else "no", eval_steps=plan.eval_steps,
        eval_on_start=eval_dataset is not None,
        save_strategy="steps" if saving else "no", save_steps=config.save_steps or 500, save_total_limit=2,
        include_num_input_tokens_seen="non_padding", report_to="none", dataset_num_proc=None,
        dataloader_num_workers=0,
    )
    return SFTTrainer(model=model, processing_class=tokenizer, args=args,
                      train_dataset=Dataset.from_list(training_records(train_questions)), eval_dataset=eval_dataset,
                      callbacks=[progress_lines()])


def progress_lines():
    """A Trainer callback printing one plain line per log (step, loss, elapsed, ETA): papermill and the Colab
    launcher show stdout as it comes, while widget progress bars and the Trainer's HTML table stay frozen there."""
    from transformers import TrainerCallback

    class PlainProgress(TrainerCallback):
        started: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.started is None or not logs:
                return
            elapsed = time.perf_counter() - self.started
            done = state.global_step / state.max_steps if state.max_steps else 0.0
            eta = f"{elapsed / done - elapsed:.0f}s" if done > 0 else "?"
            values = " ".join(f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "eval_loss", "learning_rate"))
            print(f"[train] step {state.global_step}/{state.max_steps} ({100 * done:.0f}%) {values} | "
                  f"elapsed {elapsed:.0f}s, eta {eta}", flush=True)

    return PlainProgress()


@dataclass
class TrainingResult:
    """What a finished run measured (also written to ``metrics.json``)."""

    global_step: int
    epochs: float
    train_runtime_s: float
    train_loss: float | None
    first_loss: float | None
    last_loss: float | None
    eval_loss_start: float | None
    eval_loss_end: float | None
    eval_runtime_s: float  # inside train_runtime_s; throughput excludes it
    tokens_seen: int  # non-padding tokens (prompt + response) of the training batches
    tokens_per_second: float
    samples_per_second: float
    peak_memory_gb: float
    peak_memory_kind: str
    history: dict[str, list[dict[str, float]]]

    def summary(self) -> str:
        return (f"{self.global_step} steps ({self.epochs:.2f} epochs) in {self.train_runtime_s:.0f}s; "
                f"train loss {loss_text(self.first_loss)} -> {loss_text(self.last_loss)}; eval loss "
                f"{loss_text(self.eval_loss_start)} -> {loss_text(self.eval_loss_end)}; "
                f"{self.tokens_per_second:.0f} tokens/s, {self.samples_per_second:.2f} samples/s; peak memory "
                f"{self.peak_memory_gb:.2f} GB ({self.peak_memory_kind})")


def loss_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def loss_history(log_history: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Train and eval loss points from ``trainer.state.log_history``."""
    train = [{"step": e["step"], "epoch": e.get("epoch", 0.0), "loss": e["loss"],
              "learning_rate": e.get("learning_rate")} for e in log_history if "loss" in e]
    evaluation = [{"step": e["step"], "epoch": e.get("epoch", 0.0), "eval_loss": e["eval_loss"]}
                  for e in log_history if "eval_loss" in e]
    return {"train": train, "eval": evaluation}


def run_training(trainer, plan: RunPlan, n_train: int) -> TrainingResult:
    """Train, evaluate once more at the end if the last step was not an evaluation step, and measure."""
    import torch

    if plan.device.is_gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    checkpoint = plan.resume_checkpoint
    if plan.config.resume:
        print(f"resume: continuing from {checkpoint}" if checkpoint else
              f"resume: no checkpoint in {plan.run_dir / 'checkpoints'} yet, training from step 0")
    output = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.perf_counter() - started
    state = trainer.state
    eval_seconds = sum(e["eval_runtime"] for e in state.log_history if "eval_runtime" in e)  # inside train()
    if trainer.eval_dataset is not None and not any(e.get("step") == state.global_step and "eval_loss" in e
                                                    for e in state.log_history):
        trainer.evaluate()
    # accelerate wrapped forward() in bf16/fp16 autocast for training; restore it, so the model in memory computes
    # exactly like the saved adapter loaded back.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    history = loss_history(state.log_history)
    train_seconds = max(runtime - eval_seconds, 1e-9)
    if plan.device.is_gpu:
        peak, kind = torch.cuda.max_memory_allocated() / 2**30, "torch.cuda.max_memory_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak RSS of this process"
    tokens = int(state.num_input_tokens_seen or 0)
    samples = state.epoch * n_train if state.epoch else 0.0
    losses = [point["loss"] for point in history["train"]]
    evals = [point["eval_loss"] for point in history["eval"]]
    return TrainingResult(
        global_step=state.global_step, epochs=float(state.epoch or 0.0), train_runtime_s=runtime,
        train_loss=output.training_loss, first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None, eval_loss_start=evals[0] if evals else None,
        eval_loss_end=evals[-1] if evals else None, eval_runtime_s=eval_seconds, tokens_seen=tokens,
        tokens_per_second=tokens / train_seconds, samples_per_second=samples / train_seconds, peak_memory_gb=peak,
        peak_memory_kind=kind, history=history)
