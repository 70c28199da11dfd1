"""Crash-safe JSONL/JSON files and their error messages."""

import json

import pytest
from pydantic import BaseModel

from ec2er_utils.jsonl import (JSONLError, append_jsonl, read_json, read_jsonl, repair_jsonl_tail, write_json_atomic,
                               write_jsonl_atomic)


class Row(BaseModel):
    name: str
    n: int


def test_append_and_read_back_with_validation(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    assert append_jsonl(path, [Row(name="a", n=1), {"name": "b", "n": 2}]) == 2
    assert append_jsonl(path, []) == 0
    assert [r.n for r in read_jsonl(path, Row)] == [1, 2]


def test_bad_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"name": "a", "n": 1}\n\n{"name": "b", "n": \n')
    with pytest.raises(JSONLError, match=r"rows.jsonl, line 3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"name": "a", "n": "many"}\n')
    with pytest.raises(JSONLError, match=r"line 1: n: Input should be a valid integer"):
        read_jsonl(path, Row)
    with pytest.raises(JSONLError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_repair_cuts_only_a_partial_last_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"n": 1}, {"n": 2}])
    assert repair_jsonl_tail(path) is False
    with path.open("a") as handle:
        handle.write('{"n": 3, "na')  # what a SIGKILL mid-write leaves
    assert repair_jsonl_tail(path) is True
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}]


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_jsonl_atomic(tmp_path / "a.jsonl", [{"x": 1}])
    write_json_atomic(tmp_path / "b.json", {"y": [1, 2]})
    assert read_json(tmp_path / "b.json") == {"y": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.json"]
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(JSONLError, match="corrupted"):
        read_json(tmp_path / "b.json")


def test_atomic_write_keeps_the_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl_atomic(path, [{"x": 1}])
    with pytest.raises(TypeError):
        write_jsonl_atomic(path, [{"x": object()}])
    assert json.loads(path.read_text()) == {"x": 1}
