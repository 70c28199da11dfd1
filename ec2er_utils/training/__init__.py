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
"""

from __future__ import annotations

# Unsloth patches transformers, TRL and PEFT when imported, so it must come first. Without a GPU it switches to
# its CPU backend (stock transformers + PEFT + TRL) and prints which path runs.
import unsloth  # noqa: F401, I001

import math
import os
import platform
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..figures import plot_training_loss
from ..formatting import Question, chat_messages
from ..hub import download_adapter, is_repo_id, publish_folder
from ..jsonl import read_json, write_json_atomic
from ..models import (
    ADAPTER_DIR,
    DEFAULT_MODEL,
    ModelSpec,
    checkpoint_path,
    model_folder_name,
    preferred_dtype,
    resolve_model,
)
from ..parameters import StageConfig
from ..paths import runs_dir

ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR_MODULES = (*ATTENTION_MODULES, "gate_proj", "up_proj", "down_proj")
TARGET_MODULE_PRESETS = {"attention": ATTENTION_MODULES, "all-linear": ALL_LINEAR_MODULES}
BASE_MODEL_TEMPLATE = "alpaca"  # Unsloth's template for tokenizers without one (the llama base model)
FEW_QUESTIONS = 8  # below this a run only proves the machinery, and the notebook says so

# Automatic values (a setting left at None) per device. On a 2-core CPU the embedded model trains at only some
# 15-50 tokens/s (benchmarks/training_throughput.py), so the CPU demo takes a few small steps: it proves the
# machinery; the GPU run is the reproduction.
GPU_GRADIENT_ACCUMULATION = 4
CPU_GRADIENT_ACCUMULATION = 1
CPU_DEMO_STEPS = 4
CPU_EVAL_QUESTIONS = 4
# Larger models are refused on a CPU (a 7B model would take hours per step, after a 15 GB download): the usual
# cause is a Colab notebook without a GPU runtime. EC2ER_ALLOW_CPU_TRAINING=1 overrides.
CPU_MAX_PARAMS_BILLION = 2.0

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


class ModelTooLargeError(RuntimeError):
    """The chosen model cannot be trained on this device's memory."""


class NoTrainingDataError(RuntimeError):
    """There are no training questions to train on."""


# --------------------------------------------------------------------------------------------------------------
# Configuration


class TrainConfig(StageConfig):
    """Every training setting: notebook 04's parameters (the CPU demo; the paper's set-up is
    ``recipes/paper/04_train.yaml``), with the defaults of :data:`PAPER_NOTES`, then settings only programmatic
    callers change. :func:`prepare_run` resolves the ``None`` (automatic) ones for the device."""

    model: str = Field(DEFAULT_MODEL, description="alias (smollm2, mistral, qwen, gemma, llama), HF id or folder")
    train_file: str | None = Field(None, description="JSONL of schemas.DatasetItem records; None = "
                                                     "data/processed/train.jsonl (notebook 03)")
    eval_file: str | None = Field(None, description="validation JSONL; None = data/processed/validation.jsonl "
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
    output_dir: str | None = Field(None, description="root of the runs; None = runs_dir() (EC2ER_RUNS_DIR)")
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


# --------------------------------------------------------------------------------------------------------------
# Device and memory


@dataclass(frozen=True)
class DeviceReport:
    """What the training will run on."""

    kind: str  # "cuda" or "cpu"
    name: str
    total_gb: float
    free_gb: float
    bf16: bool
    threads: int

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    def describe(self) -> str:
        if self.is_gpu:
            return (f"GPU: {self.name}, {self.total_gb:.1f} GB ({self.free_gb:.1f} GB free), "
                    f"bf16 {'yes' if self.bf16 else 'no (fp16)'}")
        return (f"no GPU: CPU {self.name}, {self.threads} threads, {self.total_gb:.1f} GB RAM "
                f"({self.free_gb:.1f} GB available), native bf16 {'yes' if self.bf16 else 'no (fp32)'}")


def detect_device() -> DeviceReport:
    """The first CUDA GPU if there is one, else the CPU (with its RAM)."""
    import psutil
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        return DeviceReport("cuda", torch.cuda.get_device_name(0), total / 2**30, free / 2**30,
                            torch.cuda.is_bf16_supported(), torch.get_num_threads())
    from ..models import cpu_supports_bf16

    memory = psutil.virtual_memory()
    return DeviceReport("cpu", _cpu_name(), memory.total / 2**30, memory.available / 2**30, cpu_supports_bf16(),
                        torch.get_num_threads())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_path(device: DeviceReport, use_4bit: bool) -> str:
    """One line saying which code path trains, for the notebook and the run's config."""
    if device.is_gpu:
        weights = "4-bit QLoRA (Unsloth's pre-quantised checkpoint)" if use_4bit else "16-bit LoRA"
        return f"Unsloth GPU path: FastLanguageModel + Unsloth kernels, {weights}, TRL SFTTrainer"
    return ("Unsloth CPU fallback (no GPU): the same FastLanguageModel / SFTTrainer calls on stock transformers + "
            "PEFT + TRL, 16-bit LoRA")


def parameter_count_billion(spec: ModelSpec) -> float | None:
    """Parameters in billions: from the registry, or counted from a local folder's safetensors headers."""
    if spec.params_billion is not None:
        return spec.params_billion
    folder = Path(spec.hf_id)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total / 1e9


def estimate_training_memory_gb(params_billion: float, *, use_4bit: bool, dtype_bytes: int) -> float:
    """A deliberately simple, conservative estimate of what LoRA training needs.

    Frozen weights (0.55 bytes/parameter in NF4 with its scales, else the dtype's size) plus 10%, plus 2 GB for
    activations at batch 2 x 2048 tokens with gradient checkpointing, the LoRA weights with their gradients and
    AdamW states (under 1% of the parameters x 16 bytes) and the CUDA context / Python process. Unsloth reports
    7-8B QLoRA in 6-8 GB, which this matches.
    """
    weights = params_billion * (0.55 if use_4bit else dtype_bytes)
    return weights * 1.1 + 2.0


@dataclass(frozen=True)
class FitCheck:
    needed_gb: float | None
    available_gb: float
    fits: bool
    message: str


def check_fits(config: TrainConfig, device: DeviceReport) -> FitCheck:
    """Whether the chosen model fits this device's free memory; :func:`prepare_run` refuses when it does not."""
    import torch

    spec = config.spec
    use_4bit = resolve_load_in_4bit(config, device)
    dtype_bytes = torch.tensor([], dtype=preferred_dtype(device.kind)).element_size()
    params = parameter_count_billion(spec)
    where = "GPU memory" if device.is_gpu else "RAM"
    if params is None:
        return FitCheck(None, device.free_gb, True, f"{spec.display_name}: size unknown (not in the registry, not a "
                                                    "local folder), so the memory check is skipped")
    needed = estimate_training_memory_gb(params, use_4bit=use_4bit, dtype_bytes=dtype_bytes)
    weights = "4-bit" if use_4bit else f"{dtype_bytes * 8}-bit"
    if needed > device.free_gb:
        advice = ("use a larger GPU (the paper used an A100 40 GB), keep load_in_4bit on, or pick a smaller model"
                  if device.is_gpu else "use a GPU (Colab A100: see the notebook's Colab section) or the embedded "
                                        "model smollm2")
        return FitCheck(needed, device.free_gb, False,
                        f"{spec.display_name} ({params:.2f}B parameters, {weights} weights) needs about "
                        f"{needed:.1f} GB of {where} to train, but only {device.free_gb:.1f} GB is free: {advice}.")
    if not device.is_gpu and params > CPU_MAX_PARAMS_BILLION and os.environ.get("EC2ER_ALLOW_CPU_TRAINING") != "1":
        return FitCheck(needed, device.free_gb, False,
                        f"No GPU found, and {spec.display_name} ({params:.1f}B parameters) would train for hours per "
                        "step on a CPU. Use a GPU (on Colab: Runtime > Change runtime type > A100 GPU), or the "
                        "embedded model smollm2 here; set EC2ER_ALLOW_CPU_TRAINING=1 to try anyway.")
    message = (f"{spec.display_name}: {params:.2f}B parameters, {weights} weights, needs about {needed:.1f} GB of "
               f"{where}; {device.free_gb:.1f} GB free")
    return FitCheck(needed, device.free_gb, True, message)


def resolve_load_in_4bit(config: TrainConfig, device: DeviceReport) -> bool:
    """4-bit (QLoRA) only on a GPU: Unsloth's pre-quantised checkpoint for the aliases, bitsandbytes NF4 on load for
    other Hub ids, never for the embedded model (it is small, and its checkpoint is a local 16-bit folder)."""
    if not device.is_gpu:
        return False
    wanted = True if config.load_in_4bit is None else config.load_in_4bit
    spec = config.spec
    return bool(wanted and (spec.gpu_4bit_id or not spec.embedded))


# --------------------------------------------------------------------------------------------------------------
# The training examples


def training_records(questions: Sequence[Question]) -> list[dict[str, list[dict[str, str]]]]:
    """TRL conversational prompt-completion records: the user turn as prompt, the JSON answer as completion."""
    records = []
    for index, question in enumerate(questions):
        try:
            messages = chat_messages(question, with_answer=True)
        except ValueError as err:
            raise ValueError(f"training question {index} ({question.kind or 'unknown kind'}, scenario "
                             f"{question.scenario[:60]!r}...) cannot be trained on: {err}") from None
        records.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return records


def ensure_chat_template(tokenizer, spec: ModelSpec | None = None) -> str | None:
    """Give a tokenizer without a chat template (the llama base model) Unsloth's ``alpaca`` template.

    Returns the name of the template supplied, or None when the tokenizer already had one (which is then used).
    """
    if getattr(tokenizer, "chat_template", None):
        return None
    from unsloth.chat_templates import CHAT_TEMPLATES, DEFAULT_SYSTEM_MESSAGE

    template = CHAT_TEMPLATES[BASE_MODEL_TEMPLATE][0]
    tokenizer.chat_template = template.replace("{system_message}", DEFAULT_SYSTEM_MESSAGE[BASE_MODEL_TEMPLATE])
    name = spec.display_name if spec else "this model"
    print(f"{name}'s tokenizer has no chat template (a base model): using Unsloth's {BASE_MODEL_TEMPLATE!r} "
          "template, saved with the adapter")
    return BASE_MODEL_TEMPLATE


def render_example(question: Question, tokenizer) -> dict[str, str]:
    """The prompt text the model sees and the response text it is trained on, through the chat template."""
    messages = chat_messages(question, with_answer=True)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside the full conversation; "
                         "response-only masking needs the prompt to be a prefix")
    return {"prompt": prompt, "response": full[len(prompt):]}


def token_statistics(questions: Sequence[Question], tokenizer, max_seq_length: int) -> dict[str, Any]:
    """Token counts per example (prompt + response), and how many exceed ``max_seq_length`` (TRL truncates them)."""
    lengths, response_lengths = [], []
    for question in questions:
        parts = render_example(question, tokenizer)
        prompt_ids = tokenizer(parts["prompt"], add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(parts["response"], add_special_tokens=False)["input_ids"]
        lengths.append(len(prompt_ids) + len(response_ids))
        response_lengths.append(len(response_ids))
    too_long = sum(n > max_seq_length for n in lengths)
    return {"examples": len(lengths), "tokens": sum(lengths), "response_tokens": sum(response_lengths),
            "mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0, "max_tokens": max(lengths, default=0),
            "over_max_seq_length": too_long, "max_seq_length": max_seq_length}


def load_questions(split: str = "train", *, file: str | os.PathLike | None = None,
                   folder: str | os.PathLike | None = None, min_confidence: float | None = None) -> list[Question]:
    """Questions of a processed split (``data/processed/<split>.jsonl``, notebook 03) or of any JSONL of
    :class:`~ec2er_utils.schemas.DatasetItem` s (``file``). EU items give two questions, EA items one.
    ``min_confidence`` drops reviewed items (§3.4) whose confidence is below it; unreviewed items are kept."""
    from ..jsonl import read_jsonl
    from ..preprocess import item_questions, load_split
    from ..schemas import DatasetItem

    if file is not None:
        path = Path(file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"train_file {path} not found: point it at a JSONL of DatasetItems (notebook 03 "
                                    "writes data/processed/train.jsonl), or set train_file = None")
        items = read_jsonl(path, DatasetItem)
    else:
        items = load_split(split, folder=Path(folder) if folder is not None else None)
    if min_confidence is not None:
        items = [i for i in items if i.confidence is None or i.confidence >= min_confidence]
    return [question for item in items for question in item_questions(item)]


def load_eval_questions(train_file: str | os.PathLike | None = None, eval_file: str | os.PathLike | None = None,
                        folder: str | os.PathLike | None = None) -> tuple[list[Question], str]:
    """Validation questions and where they came from: ``eval_file`` if given; else, when training on the processed
    split (no ``train_file``), ``data/processed/validation.jsonl`` if notebook 03 wrote one; else none."""
    if eval_file is not None:
        return load_questions(file=eval_file), str(eval_file)
    if train_file is not None:
        return [], "none (train_file given without eval_file)"
    from ..preprocess import processed_dir

    path = processed_dir(Path(folder) if folder is not None else None) / "validation.jsonl"
    if not path.is_file():
        return [], f"none ({path} not found)"
    return load_questions("validation", folder=folder), str(path)


def masking_summary(example: dict[str, list[int]], tokenizer) -> dict[str, Any]:
    """How a prepared training example is labelled: prompt tokens -100 (no loss), response tokens trained."""
    labels = example["labels"]
    trained = [token for token, label in zip(example["input_ids"], labels, strict=True) if label != -100]
    first_trained = next((i for i, label in enumerate(labels) if label != -100), len(labels))
    return {"tokens": len(labels), "masked_prompt_tokens": sum(label == -100 for label in labels),
            "trained_tokens": len(trained), "masked_tokens_all_before_response":
                all(label == -100 for label in labels[:first_trained]) and -100 not in labels[first_trained:],
            "trained_text": tokenizer.decode(trained)}


def require_questions(questions: Sequence[Question], source: str) -> str:
    """Refuse to train on nothing; say plainly when there is too little data for more than a smoke test."""
    if not questions:
        raise NoTrainingDataError(
            f"{source} holds no training questions. Run notebooks/03_preprocess.ipynb first (it writes "
            "data/processed/train.jsonl from the generated items), or point train_file at a JSONL of DatasetItems.")
    if len(questions) < FEW_QUESTIONS:
        return (f"Only {len(questions)} training question(s) in {source}: this run proves the training machinery "
                "works, it cannot teach the model anything measurable. Generate more items (notebooks 01/02) for a "
                "real run.")
    return f"{len(questions)} training questions from {source}"


# --------------------------------------------------------------------------------------------------------------
# Planning a run


@dataclass
class RunPlan:
    """A config resolved for one device and one dataset: everything the trainer needs, and where it writes."""

    config: TrainConfig
    device: DeviceReport
    run_dir: Path
    base_checkpoint: str
    load_in_4bit: bool
    dtype: str
    gradient_checkpointing: bool
    optim: str
    gradient_accumulation_steps: int
    max_steps: int
    total_steps: int
    logging_steps: int
    eval_steps: int | None
    max_eval_questions: int | None  # None = all
    notes: list[str] = field(default_factory=list)
    chat_template_supplied: str | None = None  # set when the tokenizer had no chat template (the llama base model)

    @property
    def resume_checkpoint(self) -> str | None:
        """The newest ``checkpoints/checkpoint-N`` of this run when ``resume`` is on (None: start from step 0)."""
        from transformers.trainer_utils import get_last_checkpoint

        folder = self.run_dir / "checkpoints"
        return get_last_checkpoint(str(folder)) if self.config.resume and folder.is_dir() else None

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step (per-device batch x gradient accumulation x 1 device)."""
        return self.config.per_device_train_batch_size * self.gradient_accumulation_steps

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(), "device": asdict(self.device), "run_dir": str(self.run_dir),
                "base_checkpoint": self.base_checkpoint, "load_in_4bit": self.load_in_4bit, "dtype": self.dtype,
                "gradient_checkpointing": self.gradient_checkpointing, "optim": self.optim,
                "gradient_accumulation_steps": self.gradient_accumulation_steps, "max_steps": self.max_steps,
                "total_steps": self.total_steps, "logging_steps": self.logging_steps,
                "eval_steps": self.eval_steps, "max_eval_questions": self.max_eval_questions,
                "effective_batch_size": self.effective_batch_size,
                "training_path": training_path(self.device, self.load_in_4bit), "notes": self.notes}


def new_run_dir(config: TrainConfig) -> Path:
    """A new run folder ``runs/<model>/<run-id>``, or, with ``resume``, the folder of the run to continue."""
    root = Path(config.output_dir).expanduser() if config.output_dir else runs_dir()
    base = root / model_folder_name(config.spec)
    if config.resume:
        if config.run_id:
            return base / config.run_id
        earlier = sorted(p for p in base.glob("*") if (p / "checkpoints").is_dir()) if base.is_dir() else []
        if earlier:
            return earlier[-1]
    run_id = config.run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate, suffix = base / run_id, 2
    while candidate.exists():  # never overwrite an earlier run
        candidate, suffix = base / f"{run_id}-{suffix}", suffix + 1
    return candidate


def steps_per_epoch(n_examples: int, batch_size: int, gradient_accumulation_steps: int) -> int:
    batches = math.ceil(n_examples / batch_size)
    return max(1, math.ceil(batches / gradient_accumulation_steps))


def prepare_run(config: TrainConfig, n_train: int, n_eval: int = 0,
                device: DeviceReport | None = None) -> RunPlan:
    """Resolve the automatic settings for this device and data; refuse early if the model cannot fit.

    Raises :class:`~ec2er_utils.models.UnknownModelError` for an unknown model and :class:`ModelTooLargeError`
    when the estimate of :func:`check_fits` exceeds the free memory.
    """
    spec = config.spec  # unknown names fail here, before anything heavy
    device = device or detect_device()
    fit = check_fits(config, device)
    if not fit.fits:
        raise ModelTooLargeError(fit.message)
    notes = [fit.message]
    use_4bit = resolve_load_in_4bit(config, device)
    if device.is_gpu and config.load_in_4bit is None and not use_4bit:
        notes.append(f"{spec.display_name} has no pre-quantised 4-bit checkpoint: 16-bit LoRA")
    dtype = str(preferred_dtype(device.kind)).replace("torch.", "")
    accumulation = config.gradient_accumulation_steps or (GPU_GRADIENT_ACCUMULATION if device.is_gpu
                                                          else CPU_GRADIENT_ACCUMULATION)
    natural_steps = math.ceil(steps_per_epoch(n_train, config.per_device_train_batch_size, accumulation)
                              * config.num_train_epochs)
    max_steps = config.max_steps
    if max_steps is None:
        max_steps = -1 if device.is_gpu else min(CPU_DEMO_STEPS, natural_steps)
        if not device.is_gpu:
            notes.append(f"CPU demo: {max_steps} optimizer step(s) of batch {config.per_device_train_batch_size} x "
                         f"accumulation {accumulation} (all {config.num_train_epochs:g} epoch(s) would take "
                         f"{natural_steps}); set max_steps=-1 for all")
    elif max_steps == 0 or max_steps < -1:
        raise ValueError(f"max_steps={max_steps}: use None (automatic), -1 (all epochs) or a positive number")
    total_steps = max_steps if max_steps > 0 else natural_steps
    logging_steps = config.logging_steps or max(1, total_steps // 50)
    eval_cap = config.max_eval_questions
    if eval_cap is None:
        eval_cap = -1 if device.is_gpu else CPU_EVAL_QUESTIONS
    eval_cap = None if eval_cap < 0 else eval_cap
    n_eval_used = n_eval if eval_cap is None else min(n_eval, eval_cap)
    if n_eval_used < n_eval:
        notes.append(f"validation loss on the first {n_eval_used} of {n_eval} validation questions "
                     "(max_eval_questions; -1 = all)")
    eval_steps = None
    if n_eval_used:  # on GPU 4 evaluations per run; on CPU only before and after training (each costs time)
        eval_steps = config.eval_steps or (max(1, math.ceil(total_steps / 4)) if device.is_gpu else total_steps)
    gradient_checkpointing = device.is_gpu if config.gradient_checkpointing is None else config.gradient_checkpointing
    optim = config.optim if device.is_gpu else "adamw_torch"  # bitsandbytes' 8-bit AdamW needs a GPU
    return RunPlan(config, device, new_run_dir(config), checkpoint_path(spec.display_name, use_4bit=use_4bit),
                   use_4bit, dtype, gradient_checkpointing, optim, accumulation, max_steps, total_steps,
                   logging_steps, eval_steps, eval_cap, notes)


def config_table(plan: RunPlan):
    """The settings of a run next to what the paper says (a pandas DataFrame for the notebook)."""
    import pandas as pd

    config = plan.config
    rows = []
    for name in ("model", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
                 "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length",
                 "seed", "load_in_4bit"):
        value = {"load_in_4bit": plan.load_in_4bit,
                 "gradient_accumulation_steps": plan.gradient_accumulation_steps}.get(name, getattr(config, name))
        paper, ours = PAPER_NOTES[name]
        rows.append({"setting": name, "value": ", ".join(value) if isinstance(value, list) else value,
                     "paper (§5)": paper, "source of our default": ours})
    rows += [
        {"setting": "effective batch size", "value": plan.effective_batch_size, "paper (§5)": "not given",
         "source of our default": "per-device batch x gradient accumulation x 1 device"},
        {"setting": "optimizer steps", "value": plan.total_steps, "paper (§5)": "not given",
         "source of our default": (f"max_steps={plan.max_steps}" if plan.max_steps > 0
                                   else f"{config.num_train_epochs:g} epoch(s)")
         + ("" if config.max_steps is not None or plan.device.is_gpu else " (CPU demo; max_steps=-1 for all)")},
        {"setting": "loss", "value": "response tokens only", "paper (§5)": PAPER_NOTES["loss"][0],
         "source of our default": PAPER_NOTES["loss"][1]},
        {"setting": "dtype / optimizer", "value": f"{plan.dtype} / {plan.optim}", "paper (§5)": "not given",
         "source of our default": "models.preferred_dtype(); 8-bit AdamW on GPU (Unsloth's default)"},
    ]
    return pd.DataFrame(rows).set_index("setting").astype(str)


# --------------------------------------------------------------------------------------------------------------
# Model, trainer, training


def load_model_for_training(plan: RunPlan):
    """The base model with fresh LoRA adapters, through Unsloth's ``FastLanguageModel``.

    Returns ``(model, tokenizer, backend)``; ``backend`` names the path that ran ("unsloth-gpu", "unsloth-cpu" or
    "transformers+peft (fallback: ...)").
    """
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
        print(fallback_banner(plan.base_checkpoint, reason), flush=True)
        model, tokenizer = _load_with_transformers(plan, dtype)
        backend = f"transformers+peft (fallback: {reason})"
    except RuntimeError as err:
        if is_cuda_failure(err):
            raise RuntimeError(f"loading {plan.base_checkpoint} for training failed on the GPU: {err}. "
                               + GPU_MEMORY_ADVICE) from err
        raise
    plan.chat_template_supplied = ensure_chat_template(tokenizer, config.spec)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer, backend


# What "Unsloth cannot run here" looks like: it is not installed or does not support this platform. Out of memory,
# a CUDA error or a bad checkpoint name are real failures and are raised, never turned into a slower run.
UNSLOTH_UNAVAILABLE = (ImportError, NotImplementedError)
GPU_MEMORY_ADVICE = ("Lower per_device_train_batch_size or max_seq_length, keep load_in_4bit on (None or True), or "
                     "use a GPU with more memory (Colab: Runtime > Change runtime type > A100).")


def is_cuda_failure(error: BaseException) -> bool:
    """An out-of-memory or other CUDA error (torch raises them as RuntimeError subclasses or with "CUDA" in them)."""
    return "OutOfMemoryError" in type(error).__name__ or "CUDA" in str(error) or "out of memory" in str(error)


def fallback_banner(checkpoint: str, reason: str) -> str:
    rule = "=" * 100
    return (f"{rule}\nUNSLOTH NOT USED: it cannot load {checkpoint} here ({reason}).\nTraining falls back to plain "
            "transformers + PEFT + TRL with the same settings: slower, more memory, and recorded as the backend in "
            f"config.json and the model card.\n{rule}")


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
        def fmt(value):
            return "n/a" if value is None else f"{value:.4f}"

        return (f"{self.global_step} steps ({self.epochs:.2f} epochs) in {self.train_runtime_s:.0f}s; "
                f"train loss {fmt(self.first_loss)} -> {fmt(self.last_loss)}; eval loss {fmt(self.eval_loss_start)}"
                f" -> {fmt(self.eval_loss_end)}; {self.tokens_per_second:.0f} tokens/s, "
                f"{self.samples_per_second:.2f} samples/s; peak memory {self.peak_memory_gb:.2f} GB "
                f"({self.peak_memory_kind})")


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


# --------------------------------------------------------------------------------------------------------------
# Saving, loading, sharing


def _versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "trl", "peft", "unsloth", "unsloth-zoo", "datasets", "bitsandbytes"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def save_run(model, tokenizer, plan: RunPlan, result: TrainingResult, *, backend: str,
             data: dict[str, Any] | None = None) -> Path:
    """Write the adapter + tokenizer, the resolved config, loss history (JSON + PNG), metrics and a model card."""
    run_dir = plan.run_dir
    data = data or {}
    adapter_dir = run_dir / ADAPTER_DIR
    adapter_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    trainable, total = trainable_parameters(model)
    resolved = {**plan.as_dict(), "backend": backend, "chat_template_supplied": plan.chat_template_supplied,
                "base_model": plan.config.spec.hf_id, "trainable_parameters": trainable, "total_parameters": total,
                "data": data, "versions": _versions(),
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(run_dir / "config.json", resolved)
    write_json_atomic(run_dir / "loss_history.json", result.history)
    metrics = {k: v for k, v in asdict(result).items() if k != "history"}
    write_json_atomic(run_dir / "metrics.json", metrics)
    loss_plot = plot_training_loss({model_folder_name(plan.config.spec): {run_dir.name: result.history}},
                                   title=f"{plan.config.spec.display_name}: LoRA, "
                                         f"{data.get('train_questions', '?')} questions")
    loss_plot.savefig(run_dir / "loss.png")
    (run_dir / "README.md").write_text(model_card(run_dir), encoding="utf-8")
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    return run_dir


MERGED_DIR = "merged_16bit"


def save_merged_16bit(run_dir: str | os.PathLike, model=None, tokenizer=None) -> Path:
    """The base model with the run's adapter merged in, in 16 bits, in ``<run>/merged_16bit``: a plain checkpoint
    that serves without PEFT. With an Unsloth model on a GPU (``model``/``tokenizer`` given), Unsloth's
    ``save_pretrained_merged`` (it dequantises a 4-bit base); otherwise PEFT's ``merge_and_unload`` on the saved
    adapter loaded afresh, so the model in memory keeps its adapter."""
    folder = Path(run_dir) / MERGED_DIR
    if model is not None and hasattr(model, "save_pretrained_merged") and detect_device().is_gpu:
        model.save_pretrained_merged(str(folder), tokenizer, save_method="merged_16bit")
        return folder
    import torch

    reloaded, reloaded_tokenizer = load_adapter(run_dir, dtype=torch.bfloat16)
    merged = reloaded.merge_and_unload()
    merged.save_pretrained(str(folder), safe_serialization=True)
    reloaded_tokenizer.save_pretrained(str(folder))
    return folder


def adapter_folder(run_dir: str | os.PathLike) -> Path:
    """The adapter inside a run folder (or the folder itself when it is an adapter)."""
    path = Path(run_dir).expanduser()
    for candidate in (path / ADAPTER_DIR, path):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise FileNotFoundError(f"no LoRA adapter in {path} (expected {path / ADAPTER_DIR}/adapter_config.json): pass "
                            "a run folder written by notebooks/04_train.ipynb, runs/<model>/<run-id>/")


def load_adapter(run_dir: str | os.PathLike, *, device: str | None = None, dtype: Any = None):
    """Load a trained run for inference: ``(model, tokenizer)``, the base model with the LoRA adapter on top.
    ``run_dir`` is a run folder of notebook 04, an adapter folder, or a Hub repository id of a pushed adapter.

    The base model comes from the run's ``config.json`` (the alias, so the embedded model loads on any machine),
    the tokenizer from the adapter folder (it carries the chat template used in training). Padding is on the left,
    as batched generation needs. Goes through :func:`ec2er_utils.models.load_model_and_tokenizer`, the loader
    the ``local`` LLM client uses.
    """
    from transformers import AutoTokenizer

    from ..models import load_model_and_tokenizer

    adapter_dir = download_adapter(str(run_dir)) if is_repo_id(str(run_dir)) else adapter_folder(run_dir)
    config_file = adapter_dir.parent / "config.json"
    if config_file.is_file():
        base = read_json(config_file)["config"]["model"]
    else:
        base = read_json(adapter_dir / "adapter_config.json")["base_model_name_or_path"]
    model, _ = load_model_and_tokenizer(base, adapter=adapter_dir, dtype=dtype, device=device)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def model_card(run_dir: str | os.PathLike, scores: dict[str, float] | None = None,
               dataset_ids: Sequence[str] = ()) -> str:
    """A Hugging Face model card for a run: a YAML header (base model, ``library_name: peft``, the training datasets
    on the Hub), data, hyperparameters, measured losses, EmoBench scores, and how to load it."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    settings = config["config"]
    data = config.get("data", {})
    from huggingface_hub import ModelCardData

    header = ModelCardData(base_model=config["base_model"], library_name="peft", datasets=dataset_ids or None,
                           pipeline_tag="text-generation",
                           tags=["lora", "unsloth", "trl", "sft", "emotional-reasoning", "emobench"]).to_yaml()
    lines = ["---", header, "---", "",
             f"# {model_folder_name(resolve_model(settings['model']))} + LoRA: emotional chain-of-thought (EC2ER)", "",
             "LoRA adapter trained with `ec2er_utils.training` (notebook `04_train.ipynb`) on synthetic emotion "
             "multiple-choice questions with chain-of-thought explanations, reproducing §5 of *From Emotion "
             "Classification to Emotional Reasoning* (arXiv:2601.01407).", "",
             "## Training data", "",
             f"- {data.get('train_questions', '?')} training questions ({data.get('train_source', 'unknown source')})"
             f", {data.get('eval_questions', 0)} validation questions",
             "- Format: the paper's `<scenario>/<question>/<options>` prompt; the answer is "
             '`{"reasoning": ..., "answer": "<letter>"}`; loss on the answer tokens only.', "",
             "## Hyperparameters", "", "| setting | value |", "|---|---|"]
    for key in ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "num_train_epochs",
                "per_device_train_batch_size", "gradient_accumulation_steps", "max_seq_length", "seed"):
        value = config[key] if key == "gradient_accumulation_steps" else settings[key]
        lines.append(f"| {key} | {', '.join(value) if isinstance(value, list) else value} |")
    lines += [f"| effective batch size | {config['effective_batch_size']} |",
              f"| optimizer steps | {metrics.get('global_step', config['total_steps'])} |",
              f"| weights | {'4-bit (QLoRA)' if config['load_in_4bit'] else config['dtype']} |",
              f"| path | {config['backend']} on {config['device']['name']} |", ""]
    if str(config["backend"]).startswith("transformers+peft"):
        lines += [f"**Trained without Unsloth** ({config['backend']}): plain transformers + PEFT + TRL, same settings.",
                  ""]
    if metrics:
        def fmt(value):
            return "n/a" if value is None else f"{value:.4f}"

        lines += ["## Measured", "",
                  f"- train loss {fmt(metrics.get('first_loss'))} -> {fmt(metrics.get('last_loss'))}, validation "
                  f"loss {fmt(metrics.get('eval_loss_start'))} -> {fmt(metrics.get('eval_loss_end'))}",
                  f"- {metrics.get('tokens_per_second', 0):.0f} tokens/s, peak memory "
                  f"{metrics.get('peak_memory_gb', 0):.2f} GB ({metrics.get('peak_memory_kind')})", ""]
    lines += ["## EmoBench", ""]
    if scores:
        lines += ["| metric | score |", "|---|---:|", *[f"| {k} | {v:.4f} |" for k, v in scores.items()], ""]
    else:
        lines += ["Not measured yet: run `notebooks/05_evaluate.ipynb` with `adapter=<this run>/adapter`.", ""]
    lines += ["## Use", "", "With PEFT (the adapter's repository id or this folder):", "", "```python",
              "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
              "model = AutoPeftModelForCausalLM.from_pretrained('<repository id or adapter folder>')",
              "tokenizer = AutoTokenizer.from_pretrained('<repository id or adapter folder>')", "```", "",
              "With this repository (same loader as notebook 05; a Hub id works too):", "", "```python",
              "from ec2er_utils.training import load_adapter",
              "model, tokenizer = load_adapter('<run folder or repository id>')", "```", ""]
    return "\n".join(lines)


def push_to_hub(run_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = True,
                scores: dict[str, float] | None = None, dataset_ids: Sequence[str] = ()) -> str:
    """Upload a run's adapter, tokenizer, config, metrics, loss plot and model card to the Hugging Face Hub.

    ``token`` defaults to ``HF_TOKEN`` / the cached login; it is never printed or written. Returns the repo URL.
    A failed upload raises :class:`HubPushError`: the run stays on disk, and the message says how to push it later.
    """
    run_dir = Path(run_dir)
    adapter_dir = adapter_folder(run_dir)
    (run_dir / "README.md").write_text(model_card(run_dir, scores, dataset_ids), encoding="utf-8")
    staging = run_dir / ".hub_upload"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(adapter_dir, staging)
    for name in ("README.md", "config.json", "metrics.json", "loss_history.json", "loss.png"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, staging / ("training_config.json" if name == "config.json" else name))
    try:
        return publish_folder(staging, repo_id, repo_type="model", token=token, private=private,
                              commit_message="EC2ER LoRA adapter (ec2er_utils.training)",
                              later=f"ec2er_utils.training.push_to_hub({str(run_dir)!r}, {repo_id!r})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def describe_run(run_dir: str | os.PathLike) -> str:
    """A short listing of what a run folder holds."""
    run_dir = Path(run_dir)
    files = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file())
    return "\n".join(f"{run_dir}/{p}" for p in files)

