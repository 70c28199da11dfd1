"""The whole chapter in one call: :func:`run_preprocess` (notebook 03), its item steps :func:`preprocess_items`,
and :func:`save_processed` (splits, dataset card, report)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..jsonl import write_json_atomic
from ..llm import LLMClient
from ..schemas import DatasetItem
from .balance import balance_answer_positions, balance_categories
from .config import PreprocessConfig
from .decontaminate import decontaminate, load_emobench_scenarios
from .dedup import deduplicate
from .filters import validate_items
from .judge import judge_items, make_judge_client
from .load import load_items
from .quality import check_text_quality
from .report import counts_vs_paper, dataset_card, skew_summary
from .review import review_folder, review_step
from .split import SPLITS, processed_dir, split_train_validation, write_splits
from .steps import StepReport, StepResult, run_steps


def _judge(items: Sequence[DatasetItem], config: PreprocessConfig, client: LLMClient | None) -> StepResult:
    """The LLM judge step: ``client`` if given, else one made from the config (not loaded when nothing is left
    to judge); ``judge_backend = None`` disables it."""
    if config.judge_backend is None and client is None:
        return judge_items(items, None)
    if not items:
        return StepResult([], StepReport(step="quality judge", n_in=0, n_out=0,
                                         notes={"skipped": "no items left to judge"}))
    if client is None:
        client = make_judge_client(config.judge_backend, config.judge_model, base_url=config.judge_base_url,
                                   seed=config.seed)
    return judge_items(items, client, threshold=config.judge_threshold, min_keep=config.judge_min_keep)


def preprocess_items(items: Sequence[DatasetItem], references: Sequence[tuple[str, str]] = (),
                     config: PreprocessConfig | None = None, *, judge: LLMClient | None = None) -> StepResult:
    """Steps 2-8 on loaded items: validation, the quality rules, decontamination against ``references``
    (``(id, scenario)`` pairs), de-duplication, the LLM judge (``judge``, else the config's ``judge_backend``),
    category balance, answer positions. ``notes["reports"]`` holds every step's report."""
    config = config or PreprocessConfig()
    return run_steps("preprocess", items, (
        validate_items,
        lambda xs: check_text_quality(xs, config.quality_rules),
        lambda xs: decontaminate(xs, references, threshold=config.contamination_threshold,
                                 containment=config.containment, workers=config.workers),
        lambda xs: deduplicate(xs, threshold=config.dedup_threshold, workers=config.workers),
        lambda xs: _judge(xs, config, judge),
        lambda xs: balance_categories(xs, ratio=config.balance_ratio, min_cap=config.balance_min_cap),
        lambda xs: balance_answer_positions(xs, seed=config.seed)))


def save_processed(split: dict[str, list[DatasetItem]], reports: Sequence[StepReport], split_notes: dict[str, Any],
                   folder: str | os.PathLike | None = None, *, inputs: Sequence[str] = (),
                   extra_report: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the splits (:func:`~ec2er_utils.preprocess.split.write_splits`), ``README.md`` (dataset card) and
    ``preprocess_report.json`` (every step's counts and drops, plus ``extra_report``) into ``folder``
    (default ``data/processed``)."""
    paths = write_splits(split, folder)
    out = processed_dir(folder)
    paths["card"] = out / "README.md"
    paths["card"].write_text(dataset_card(split, reports, split_notes, inputs=inputs), encoding="utf-8")
    paths["report"] = out / "preprocess_report.json"
    report = {"inputs": list(inputs),
              "steps": [r.model_dump() | {"by_reason": r.by_reason} for r in reports],
              "split": split_notes | {name: len(split.get(name, [])) for name in SPLITS},
              "counts_vs_paper": counts_vs_paper([i for part in split.values() for i in part])}
    write_json_atomic(paths["report"], report | (extra_report or {}))
    return paths


@dataclass
class PreprocessRun:
    """What :func:`run_preprocess` did: the files read, every step's report, the final items, the split and the
    files written."""

    config: PreprocessConfig
    files: list[str]
    reports: list[StepReport]
    items: list[DatasetItem]
    split: dict[str, list[DatasetItem]]
    split_notes: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    def report(self, step: str) -> StepReport:
        """The report of the step named ``step`` ("load", "validation", "decontamination", ...)."""
        for report in self.reports:
            if report.step == step:
                return report
        raise KeyError(f"no step {step!r}; steps: {[r.step for r in self.reports]}")


def run_preprocess(config: PreprocessConfig | None = None, *, references: Sequence[tuple[str, str]] | None = None,
                   judge: LLMClient | None = None) -> PreprocessRun:
    """Chapter 03: load the generators' items, run steps 2-8, the §3.4 review step (:func:`.review.review_step`),
    split, and save to ``config.output_dir``. ``references``: the ``(id, scenario)`` pairs to decontaminate against
    (default: EmoBench's English scenarios); ``judge``: the judge's client (default: from ``config.judge_backend``).
    """
    config = config or PreprocessConfig()
    items, load_report = load_items(config.inputs, on_error=config.on_error)
    if references is None:
        references = load_emobench_scenarios(config.emobench_dir)
    final, steps = preprocess_items(items, references, config, judge=judge)
    final, review = review_step(final, sample_size=config.review_sample_size, seed=config.seed,
                                folder=review_folder(config.output_dir), sheets=config.review_sheets)
    split, split_notes = split_train_validation(final, validation_fraction=config.validation_fraction,
                                                seed=config.seed)
    reports = [load_report, *steps.notes["reports"], review]
    files = list(load_report.notes["files"])
    extra = {"parameters": config.model_dump(), "skew": skew_summary(final)}
    paths = save_processed(split, reports, split_notes, config.output_dir, inputs=files, extra_report=extra)
    return PreprocessRun(config, files, reports, final, split, split_notes, paths)


def push_dataset(folder: str | os.PathLike | None, repo_id: str, *, token: str | None = None,
                 private: bool = True) -> str:
    """Publish the processed set (``train.jsonl``, ``validation.jsonl`` and the dataset card, whose YAML header
    makes ``datasets.load_dataset(repo_id)`` read them) as a Hugging Face dataset; returns its URL."""
    from ..hub import publish_folder

    out = processed_dir(folder)
    return publish_folder(out, repo_id, repo_type="dataset", files=["train.jsonl", "validation.jsonl", "README.md"],
                          token=token, private=private, commit_message="EC2ER processed set (ec2er_utils.preprocess)",
                          later=f"ec2er_utils.preprocess.push_dataset({str(out)!r}, {repo_id!r})")
