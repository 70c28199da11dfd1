"""Step 1: find the generators' JSONL files (with the shards of a sharded run, ``<folder>/shard-*/<name>`` beside
``<folder>/<name>``) and read every line as a :class:`~ec2er_utils.schemas.DatasetItem`, the record both generators
write, so reading is validation only.
"""
from __future__ import annotations

import glob
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from ..jsonl import JSONLError
from ..paths import data_dir
from ..schemas import DatasetItem
from .config import OnError
from .steps import Drop, StepReport, StepResult

DEFAULT_INPUTS = ("mads/eu_items.jsonl", "mads/ea_items.jsonl", "concise/items_final.jsonl")
RUN_FIRST = {"mads": "notebooks/01_mads.ipynb (it writes data/mads/)",
             "concise": "notebooks/02_concise.ipynb (it writes data/concise/)"}


def _natural(path: Path) -> list:
    """Sort key that puts shard-2 before shard-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def input_files(pattern: str | os.PathLike) -> list[Path]:
    """The files of one input: a path or glob (relative to ``data_dir()`` unless absolute), then its shards
    (the same name in ``shard-*/`` folders beside it), in natural order. Raises FileNotFoundError naming the
    notebook to run first when nothing matches."""
    base = Path(pattern).expanduser()
    if not base.is_absolute():
        base = data_dir() / base
    found = [Path(p) for p in sorted(glob.glob(str(base)), key=lambda p: _natural(Path(p)))]
    shards = sorted((Path(p) for p in glob.glob(str(base.parent / "shard-*" / base.name))), key=_natural)
    files = [p for p in found + shards if p.is_file()]
    if not files:
        pipeline = next((name for name in RUN_FIRST if name in base.parts), None)
        first = f"Run {RUN_FIRST[pipeline]} first, or" if pipeline else "Either create it, or"
        raise FileNotFoundError(f"{base}: no such file (nor shard-*/{base.name} beside it). {first} set the "
                                "notebook parameter inputs to the files to read (paths or globs under data/).")
    return files


def find_inputs(inputs: Sequence[str] | None = None) -> list[Path]:
    """Every input's files (:func:`input_files`), each file once; ``None`` means :data:`DEFAULT_INPUTS`."""
    files: list[Path] = []
    for pattern in DEFAULT_INPUTS if inputs is None else inputs:
        files += [f for f in input_files(pattern) if f not in files]
    return files


def _schema_problem(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}" for e in error.errors())[:500]


def read_items(path: str | os.PathLike, *, on_error: OnError = "raise") -> StepResult:
    """Each non-blank line of a JSONL file as a :class:`DatasetItem` whose ``source`` is "file:line".

    A line that is not a JSON object stops the read with a :class:`JSONLError` naming file and line
    (``on_error="raise"``) or is dropped as ``malformed_json`` (``on_error="skip"``). A JSON object that is not a
    valid ``DatasetItem`` (missing, mistyped or unknown fields) is always dropped as ``schema_error``, with the
    fields named.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    items, dropped = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                value = json.loads(line)
                problem = None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
            except json.JSONDecodeError as err:
                problem = f"not valid JSON ({err.msg} at column {err.colno})"
            if problem is not None:
                if on_error == "raise":
                    raise JSONLError(f"{path}, line {number}: {problem}; fix or delete that line, or set "
                                     "on_error = 'skip' to drop malformed lines and report them")
                dropped.append(Drop(item_id=where, reason="malformed_json", detail=problem, source=where))
                continue
            try:
                items.append(DatasetItem.model_validate(value | {"source": where}))
            except ValidationError as err:
                dropped.append(Drop(item_id=str(value.get("item_id", where)), reason="schema_error",
                                    detail=_schema_problem(err), source=where))
    return StepResult(items, StepReport(step=f"read {path.name}", n_in=len(items) + len(dropped),
                                        n_out=len(items), dropped=dropped))


def load_items(inputs: Sequence[str] | None = None, *, on_error: OnError = "skip") -> StepResult:
    """Step 1: every input file's items, in input order, as one step.

    Besides :func:`read_items`' drops, a record read twice (same id, same content: a shard and a merged file both
    read) is dropped as ``duplicate_record``; different items sharing an id get ``~2``, ``~3``... appended
    (``notes["renamed_ids"]``), so every item keeps a unique id. ``notes["files"]`` lists each file read with its
    lines and items.
    """
    items: list[DatasetItem] = []
    dropped: list[Drop] = []
    files: dict[str, dict[str, int]] = {}
    for path in find_inputs(inputs):
        file_items, report = read_items(path, on_error=on_error)
        items += file_items
        dropped += report.dropped
        files[str(path)] = {"lines": report.n_in, "items": report.n_out}
    kept: list[DatasetItem] = []
    first_source: dict[str, str | None] = {}
    ids: Counter = Counter()
    renamed: dict[str, str | None] = {}
    for item in items:
        content = item.model_dump_json(exclude={"source"})
        if content in first_source:
            dropped.append(Drop(item_id=item.item_id, reason="duplicate_record", source=item.source,
                                detail=f"the same record as {first_source[content]}"))
            continue
        first_source[content] = item.source
        ids[item.item_id] += 1
        if ids[item.item_id] > 1:
            new_id = f"{item.item_id}~{ids[item.item_id]}"
            renamed[new_id] = item.source
            item = item.model_copy(update={"item_id": new_id})
        kept.append(item)
    return StepResult(kept, StepReport(step="load", n_in=sum(f["lines"] for f in files.values()), n_out=len(kept),
                                       dropped=dropped, notes={"files": files, "renamed_ids": renamed}))
