"""A run planned before anything loads: the automatic settings resolved for the device and the data, the run
folder, and the settings table beside what the paper says."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..models import checkpoint_path, model_folder_name, preferred_dtype
from ..paths import runs_dir
from .config import (CPU_DEMO_STEPS, CPU_EVAL_QUESTIONS, CPU_GRADIENT_ACCUMULATION, GPU_GRADIENT_ACCUMULATION,
                     PAPER_NOTES, TrainConfig)
from .device import DeviceReport, ModelTooLargeError, check_fits, detect_device, resolve_load_in_4bit, training_path


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
        """The fields in order for ``config.json``, with the effective batch size and training path before notes."""
        skipped = ("notes", "chat_template_supplied")
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skipped}
        return {**values, "config": self.config.model_dump(), "device": asdict(self.device),
                "run_dir": str(self.run_dir), "effective_batch_size": self.effective_batch_size,
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


def prepare_run(config: TrainConfig, n_train: int, n_eval: int = 0,
                device: DeviceReport | None = None) -> RunPlan:
    """Resolve the automatic settings for this device and data. Raises :class:`ModelTooLargeError` early when the
    estimate of :func:`check_fits` exceeds the free memory (and ``UnknownModelError`` for an unknown model)."""
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
    steps_per_epoch = max(1, math.ceil(math.ceil(n_train / config.per_device_train_batch_size) / accumulation))
    natural_steps = math.ceil(steps_per_epoch * config.num_train_epochs)
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
