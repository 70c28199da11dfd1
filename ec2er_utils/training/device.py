"""What the training runs on: the device, whether the model fits its memory, and 4-bit or 16-bit weights."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..models import ModelSpec, preferred_dtype
from .config import TrainConfig

# Larger models are refused on a CPU (a 7B model would take hours per step, after a 15 GB download): the usual
# cause is a Colab notebook without a GPU runtime. EC2ER_ALLOW_CPU_TRAINING=1 overrides.
CPU_MAX_PARAMS_BILLION = 2.0


class ModelTooLargeError(RuntimeError):
    """The chosen model cannot be trained on this device's memory."""


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
    """A deliberately simple, conservative estimate of what LoRA training needs: frozen weights (0.55 bytes/parameter
    in NF4 with its scales, else the dtype's size) plus 10%, plus 2 GB for activations (batch 2 x 2048 tokens,
    gradient checkpointing), LoRA weights, gradients, AdamW states and the CUDA context. Unsloth reports 7-8B QLoRA
    in 6-8 GB, which this matches."""
    weights = params_billion * (0.55 if use_4bit else dtype_bytes)
    return weights * 1.1 + 2.0


@dataclass(frozen=True)
class FitCheck:
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
        return FitCheck(True, f"{spec.display_name}: size unknown (not in the registry, not a local folder), so the "
                              "memory check is skipped")
    needed = estimate_training_memory_gb(params, use_4bit=use_4bit, dtype_bytes=dtype_bytes)
    weights = "4-bit" if use_4bit else f"{dtype_bytes * 8}-bit"
    if needed > device.free_gb:
        advice = ("use a larger GPU (the paper used an A100 40 GB), keep load_in_4bit on, or pick a smaller model"
                  if device.is_gpu else "use a GPU (Colab A100: see the notebook's Colab section) or the embedded "
                                        "model smollm2")
        return FitCheck(False, f"{spec.display_name} ({params:.2f}B parameters, {weights} weights) needs about "
                               f"{needed:.1f} GB of {where} to train, but only {device.free_gb:.1f} GB is free: "
                               f"{advice}.")
    if not device.is_gpu and params > CPU_MAX_PARAMS_BILLION and os.environ.get("EC2ER_ALLOW_CPU_TRAINING") != "1":
        return FitCheck(False, f"No GPU found, and {spec.display_name} ({params:.1f}B parameters) would train for "
                               "hours per step on a CPU. Use a GPU (on Colab: Runtime > Change runtime type > A100 "
                               "GPU), or the embedded model smollm2 here; set EC2ER_ALLOW_CPU_TRAINING=1 to try "
                               "anyway.")
    return FitCheck(True, f"{spec.display_name}: {params:.2f}B parameters, {weights} weights, needs about "
                          f"{needed:.1f} GB of {where}; {device.free_gb:.1f} GB free")


def resolve_load_in_4bit(config: TrainConfig, device: DeviceReport) -> bool:
    """4-bit (QLoRA) only on a GPU: Unsloth's pre-quantised checkpoint for the aliases, bitsandbytes NF4 on load for
    other Hub ids, never for the embedded model (it is small, and its checkpoint is a local 16-bit folder)."""
    if not device.is_gpu:
        return False
    wanted = True if config.load_in_4bit is None else config.load_in_4bit
    spec = config.spec
    return bool(wanted and (spec.gpu_4bit_id or not spec.embedded))
