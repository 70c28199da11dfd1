"""Notebook 04's settings: :class:`TrainConfig`, with where each default comes from (:data:`PAPER_NOTES`) and the
automatic values a setting left at None takes on each device."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..models import DEFAULT_MODEL, ModelSpec, resolve_model
from ..parameters import StageConfig

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR_MODULES = (*ATTENTION_MODULES, "gate_proj", "up_proj", "down_proj")
TARGET_MODULE_PRESETS = {"attention": ATTENTION_MODULES, "all-linear": ALL_LINEAR_MODULES}

# Automatic values (a setting left at None) per device. On a 2-core CPU the embedded model trains at only some
# 15-50 tokens/s (benchmarks/training_throughput.py), so the CPU demo takes a few small steps: it proves the
# machinery; the GPU run is the reproduction.
GPU_GRADIENT_ACCUMULATION = 4
CPU_GRADIENT_ACCUMULATION = 1
CPU_DEMO_STEPS = 4
CPU_EVAL_QUESTIONS = 4

# What §5 says about each setting, next to where our default comes from.
PAPER_NOTES: dict[str, tuple[str, str]] = {
    "model": ("Mistral-7B, Qwen2.5-7B-Instruct, Gemma-7B-IT, Llama-3.1-8B", "smollm2 (embedded 135M) runs on CPU; "
              "-p model mistral|qwen|gemma|llama for the paper's models"),
    "lora_r": ("not given", "16, Unsloth's default"),
    "lora_alpha": ("not given", "16, Unsloth's default (alpha = r)"),
    "lora_dropout": ("not given", "0, Unsloth's optimised default"),
    "target_modules": ("LoRA in the attention layers, 0.1-1% of the parameters trainable",
                       "attention (q,k,v,o); 'all-linear' adds the MLP (Unsloth's default)"),
    "learning_rate": ("not given", "2e-4 (issue #5; Unsloth's default)"),
    "num_train_epochs": ("not given", "3"),
    "per_device_train_batch_size": ("not given", "2, Unsloth's default"),
    "gradient_accumulation_steps": ("not given", "4 on GPU, Unsloth's default (effective batch 8); 1 on CPU "
                                                 "(demo)"),
    "max_seq_length": ("not given", "2048; our prompts + answers are far shorter"),
    "seed": ("not given", "3407, Unsloth's default"),
    "load_in_4bit": ("not given (A100 40 GB)", "4-bit QLoRA on GPU (Unsloth's checkpoints), 16-bit on CPU"),
    "loss": ("causal LM loss, uniform over the JSON response tokens, teacher forcing",
             "TRL completion-only loss: prompt tokens labelled -100"),
}


class TrainConfig(StageConfig):
    """Every training setting: notebook 04's parameters (the CPU demo; the paper's set-up is
    ``recipes/paper/04_train.yaml``), with the defaults of :data:`PAPER_NOTES`, then settings only programmatic
    callers change. :func:`prepare_run` resolves the ``None`` (automatic) ones for the device."""

    model: str = Field(DEFAULT_MODEL, description="alias (smollm2, mistral, qwen, gemma, llama), HF id or folder")
    train_file: Path | None = Field(None, description="JSONL of schemas.DatasetItem records; None = "
                                                     "data/processed/train.jsonl (notebook 03)")
    eval_file: Path | None = Field(None, description="validation JSONL; None = data/processed/validation.jsonl "
                                                    "when train_file is None, else no validation loss")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field("attention", validate_default=True,
                                      description="module names, or the presets 'attention' / 'all-linear'")
    learning_rate: float = Field(2e-4, gt=0.0)
    num_train_epochs: float = Field(3.0, gt=0.0)
    per_device_train_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=1, description="None = 4 on GPU, 1 on CPU")
    max_seq_length: int = Field(2048, ge=64)
    seed: int = 3407
    max_steps: int | None = Field(None, description="None = all epochs on GPU, 4 steps on CPU (demo); -1 = all "
                                                    "epochs everywhere; N > 0 = stop after N optimizer steps")
    max_eval_questions: int | None = Field(None, description="validation questions used for the eval loss; None "
                                                             "= all on GPU, 4 on CPU; -1 = all")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    lr_scheduler_type: str = "linear"
    optim: str = Field("adamw_8bit", description="GPU optimizer (bitsandbytes); the CPU uses fused torch AdamW")
    load_in_4bit: bool | None = Field(None, description="None = 4-bit on GPU, 16-bit on CPU")
    gradient_checkpointing: bool | None = Field(None, description="None = Unsloth's on GPU, off on CPU "
                                                                  "(plenty of RAM; recomputation costs time)")
    logging_steps: int | None = Field(None, ge=1, description="None = about 50 log points per run")
    eval_steps: int | None = Field(None, ge=1, description="None = 4 evaluations per run (+ one before training)")
    save_steps: int | None = Field(None, ge=1, description="intermediate checkpoints (resumable on Colab); "
                                                           "None = only the final adapter")
    output_dir: Path | None = Field(None, description="root of the runs; None = runs_dir() (EC2ER_RUNS_DIR)")
    run_id: str | None = Field(None, description="None = UTC timestamp")
    min_confidence: float | None = Field(None, ge=0, le=1, description="train only on items whose §3.4 review "
                                         "confidence is at least this (unreviewed items are kept); None: all")
    resume: bool = Field(False, description="continue from the newest checkpoint of run_id (None: this model's newest "
                                            "run): a disconnected Colab run goes on where it stopped")
    merged_16bit: bool = Field(False, description="also save the base model with the adapter merged in, 16-bit, "
                                                  "in <run>/merged_16bit (to serve without PEFT, e.g. with vLLM)")
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = True

    @field_validator("target_modules", mode="before")
    @classmethod
    def _expand_preset(cls, value):
        if isinstance(value, str):
            key = value.strip().lower()
            if key not in TARGET_MODULE_PRESETS:
                raise ValueError(f"target_modules {value!r}: use 'attention', 'all-linear' or a list of module "
                                 f"names such as {list(ALL_LINEAR_MODULES)}")
            return list(TARGET_MODULE_PRESETS[key])
        if not value:
            raise ValueError("target_modules is empty; use 'attention', 'all-linear' or a list of module names")
        return list(value)

    @model_validator(mode="after")
    def _hub_target(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub is True but hub_model_id is None: set hub_model_id to e.g. "
                             "'your-name/ec2er-mistral-lora', or push_to_hub to False")
        return self

    @property
    def spec(self) -> ModelSpec:
        """The resolved model; raises :class:`~ec2er_utils.models.UnknownModelError` for an unknown name."""
        return resolve_model(self.model)
