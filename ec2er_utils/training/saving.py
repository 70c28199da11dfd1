"""A finished run: the adapter, its settings, losses, metrics and model card saved in ``runs/<model>/<run-id>/``,
an optional merged 16-bit copy, the adapter loaded back for inference, and the run pushed to the Hugging Face Hub."""

from __future__ import annotations

import os
import shutil
from contextlib import suppress
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..figures import plot_training_loss
from ..hub import download_adapter, is_repo_id, publish_folder
from ..jsonl import read_json, write_json_atomic
from ..models import ADAPTER_DIR, model_folder_name
from .card import model_card
from .device import detect_device
from .plan import RunPlan
from .trainer import TrainingResult, trainable_parameters


def _versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "trl", "peft", "unsloth", "unsloth-zoo", "datasets", "bitsandbytes"):
        with suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
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
    write_json_atomic(run_dir / "metrics.json", {k: v for k, v in asdict(result).items() if k != "history"})
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
    """``(model, tokenizer)`` for inference: the base model with the LoRA adapter of ``run_dir`` (a run folder of
    notebook 04, an adapter folder or a Hub repository id) on top. The base model is the alias in the run's
    ``config.json``, so the embedded model loads on any machine; the tokenizer, with the chat template used in
    training, comes from the adapter folder."""
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


def push_to_hub(run_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = True,
                scores: dict[str, float] | None = None, dataset_ids: Sequence[str] = ()) -> str:
    """Upload a run's adapter, tokenizer, config, metrics, loss plot and model card to the Hugging Face Hub; returns
    the repo URL. ``token`` defaults to ``HF_TOKEN`` / the cached login. A failed upload raises :class:`HubPushError`
    saying how to push the run, still on disk, later."""
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
    return "\n".join(str(path) for path in sorted(Path(run_dir).rglob("*")) if path.is_file())
