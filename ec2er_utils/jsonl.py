"""JSON Lines and JSON files that survive crashes (fsynced appends, atomic replacement, repair of a partial last
line) and name the file and line of bad input."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


class JSONLError(ValueError):
    """A JSONL file that cannot be read: names the file, the line and what to do."""


def _to_json(record: Any) -> str:
    if isinstance(record, BaseModel):
        return record.model_dump_json()
    return json.dumps(record, ensure_ascii=False)


def iter_jsonl(path: str | os.PathLike, model: type[BaseModel] | None = None) -> Iterator[Any]:
    """Yield each line's record (validated into ``model`` when given, blank lines skipped); raise
    :class:`JSONLError` on a bad line."""
    path = Path(path)
    if not path.is_file():
        raise JSONLError(f"{path}: no such file")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise JSONLError(f"{path}, line {number}: not valid JSON ({err.msg} at column {err.colno}); "
                                 "fix or delete that line") from None
            if model is not None:
                try:
                    value = model.model_validate(value)
                except ValidationError as err:
                    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
                                         for e in err.errors())
                    raise JSONLError(f"{path}, line {number}: {problems}") from None
            yield value


def read_jsonl(path: str | os.PathLike, model: type[BaseModel] | None = None) -> list[Any]:
    return list(iter_jsonl(path, model))


def append_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Append records as whole lines and fsync; returns how many were written."""
    lines = [_to_json(r) + "\n" for r in records]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def repair_jsonl_tail(path: str | os.PathLike) -> bool:
    """Cut a partial last line (left by a process killed mid-write); returns whether anything was cut."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return False
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` via a fsynced temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Replace ``path`` with these records in one step; readers see the old file or the new one, never half."""
    lines = [_to_json(r) + "\n" for r in records]
    write_text_atomic(path, "".join(lines))
    return len(lines)


def write_json_atomic(path: str | os.PathLike, value: Any, *, indent: int = 2) -> None:
    text = value.model_dump_json(indent=indent) if isinstance(value, BaseModel) else \
        json.dumps(value, ensure_ascii=False, indent=indent, default=str)
    write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JSONLError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise JSONLError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); the file is "
                         "corrupted: delete it to start over") from None
