"""Step 9, split: a train/validation split stratified by task and category, written and read back as JSONL
(``data/processed/train.jsonl``, ``validation.jsonl``) plus a ``datasets`` copy (``hf/``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..jsonl import read_jsonl, write_jsonl_atomic
from ..paths import data_dir
from ..schemas import DatasetItem

SPLITS = ("train", "validation")


@contextlib.contextmanager
def _quiet_datasets():
    """Hide ``datasets``' progress bars (they only clutter notebook output for a few thousand rows)."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


def split_train_validation(items: Sequence[DatasetItem], *, validation_fraction: float = 0.1,
                           seed: int = 0) -> tuple[dict[str, list[DatasetItem]], dict[str, Any]]:
    """Train/validation split stratified by task/category with ``datasets``' ``train_test_split``.

    Falls back to a plain (unstratified) seeded split when some stratum is too small to stratify, and to
    "everything in train" below two items; the returned notes say which happened and why.
    """
    from datasets import Dataset

    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    items = list(items)
    if len(items) < 2 or validation_fraction == 0.0:
        why = "fewer than 2 items" if len(items) < 2 else "validation_fraction is 0"
        return {"train": items, "validation": []}, {"method": "none", "reason": f"{why}: everything in train"}
    with _quiet_datasets():
        table = Dataset.from_dict({"index": list(range(len(items))),
                                   "stratum": [f"{i.task}/{i.category}" for i in items]})
        table = table.class_encode_column("stratum")
        try:
            parts = table.train_test_split(test_size=validation_fraction, stratify_by_column="stratum", seed=seed)
            notes = {"method": "stratified", "strata": len(set(table["stratum"]))}
        except ValueError as err:
            notes = {"method": "plain", "reason": f"stratified split impossible ({err}); used a plain random split"}
            try:
                parts = table.train_test_split(test_size=validation_fraction, seed=seed)
            except ValueError as plain_err:
                return {"train": items, "validation": []}, {
                    "method": "none", "reason": f"no split possible ({plain_err}): everything in train"}
    split = {"train": [items[i] for i in sorted(parts["train"]["index"])],
             "validation": [items[i] for i in sorted(parts["test"]["index"])]}
    return split, notes


def _features():
    from datasets import Features, Sequence, Value

    features = {}
    for name, field in DatasetItem.model_fields.items():
        text = str(field.annotation)
        features[name] = (Sequence(Value("string")) if "list" in text else Value("float64") if "float" in text
                          else Value("bool") if "bool" in text else Value("string"))
    return Features(features)


def processed_dir(folder: str | os.PathLike | None = None) -> Path:
    return Path(folder) if folder else data_dir() / "processed"


def load_split(split: str = "train", folder: str | os.PathLike | None = None) -> list[DatasetItem]:
    """Read ``<folder>/<split>.jsonl`` (default ``data/processed``) as :class:`DatasetItem` s."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = processed_dir(folder) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/03_preprocess.ipynb first (it writes the "
                                "processed train/validation splits)")
    return read_jsonl(path, DatasetItem)


def write_splits(split: dict[str, list[DatasetItem]], folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """``train.jsonl``, ``validation.jsonl`` and ``hf/`` (``DatasetDict.save_to_disk``) in ``folder``
    (default ``data/processed``), each replaced in one step."""
    from datasets import Dataset, DatasetDict

    out = processed_dir(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in SPLITS:
        paths[name] = out / f"{name}.jsonl"
        write_jsonl_atomic(paths[name], split.get(name, []))
    features = _features()
    hf = DatasetDict({name: Dataset.from_dict({column: [getattr(i, column) for i in split.get(name, [])]
                                               for column in features}, features=features)
                      for name in SPLITS})
    paths["hf"] = out / "hf"
    staging = out / ".hf.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with _quiet_datasets():
        hf.save_to_disk(str(staging))
    shutil.rmtree(paths["hf"], ignore_errors=True)
    staging.rename(paths["hf"])
    return paths
