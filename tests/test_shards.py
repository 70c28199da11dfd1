"""A run split over machines: two shards of notebook 01 write where they say, and notebook 03 merges every shard
folder it finds into exactly the items of the unsharded run (same ids, nothing twice). The generator is a canned
OpenAI-compatible server on loopback, so the notebooks run as a user runs them against vLLM, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ec2er_utils.jsonl import read_jsonl
from ec2er_utils.paths import REPO_ROOT
from ec2er_utils.personas import write_personas
from ec2er_utils.themes import save_themes
from tests.test_reliability import FAKE_KEY, PERSONAS, FaultyOpenAIServer

NOTEBOOKS = REPO_ROOT / "notebooks"


def execute(notebook: str, out: Path, **parameters) -> None:
    import papermill

    papermill.execute_notebook(str(NOTEBOOKS / notebook), str(out), parameters=parameters, cwd=str(NOTEBOOKS),
                               kernel_name="python3", progress_bar=False)


def item_ids(folder: Path) -> list[str]:
    return sorted(r["item_id"] for name in ("eu_items.jsonl", "ea_items.jsonl")
                  for path in sorted(folder.rglob(name)) for r in read_jsonl(path))


@pytest.mark.slow
def test_two_shards_through_notebooks_01_and_03_equal_the_unsharded_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FaultyOpenAIServer() as server:
        generation = dict(backend="openai", base_url=server.base_url, generator_model="scripted-model",
                          num_dialogues=4, concurrency=2, temperature=0.0, item_max_tokens=700)
        runs = {"whole": [{}], "sharded": [{"num_shards": 2, "shard_index": 0}, {"num_shards": 2, "shard_index": 1}]}
        for name, shards in runs.items():
            data = tmp_path / name / "data"
            write_personas(data / "personas" / "personas.jsonl", PERSONAS)
            save_themes(data / "personas" / "themes.json")
            monkeypatch.setenv("EC2ER_DATA_DIR", str(data))
            for number, shard in enumerate(shards):
                execute("01_mads.ipynb", tmp_path / name / f"01-{number}.ipynb", **generation, **shard)

    whole, sharded = tmp_path / "whole" / "data" / "mads", tmp_path / "sharded" / "data" / "mads"
    assert sorted(p.name for p in sharded.iterdir()) == ["shard-00-of-02", "shard-01-of-02"]  # not nested twice
    assert not list((sharded / "shard-00-of-02").glob("shard-*"))
    assert item_ids(sharded) == item_ids(whole) and len(set(item_ids(whole))) == len(item_ids(whole)) > 0

    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path / "sharded" / "data"))
    execute("03_preprocess.ipynb", tmp_path / "sharded" / "03.ipynb",
            inputs=[str(sharded / "eu_items.jsonl"), str(sharded / "ea_items.jsonl")], judge_backend=None)
    report = json.loads((tmp_path / "sharded" / "data" / "processed" / "preprocess_report.json").read_text())
    read = json.dumps(report["inputs"])
    assert "shard-00-of-02" in read and "shard-01-of-02" in read  # chapter 03 says which shard files it merged
    load = next(step for step in report["steps"] if step["step"] == "load")
    assert load["n_out"] == len(item_ids(whole))  # every item once: none lost, none twice
