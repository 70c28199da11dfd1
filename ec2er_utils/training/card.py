"""A run's Hugging Face model card: what it was trained on and how, what it measured, and how to load it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..jsonl import read_json
from ..models import model_folder_name, resolve_model
from .trainer import loss_text


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
        lines += ["## Measured", "",
                  f"- train loss {loss_text(metrics.get('first_loss'))} -> {loss_text(metrics.get('last_loss'))}, "
                  f"validation loss {loss_text(metrics.get('eval_loss_start'))} -> "
                  f"{loss_text(metrics.get('eval_loss_end'))}",
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
