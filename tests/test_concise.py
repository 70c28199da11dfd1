"""The concise pipeline (Algorithm 2) with a scripted backend: sampling, rounds, inline validated MCQs, checkpoints,
resume and the returned summary. The real-model run is in tests/test_mads.py (one slow test for both pipelines)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ec2er_utils.generation import concise
from ec2er_utils.generation.concise import ConciseConfig, run_concise
from ec2er_utils.generation.run_files import ModelUnreachable
from ec2er_utils.jsonl import read_jsonl
from ec2er_utils.personas import grid_personas
from ec2er_utils.schemas import DatasetItem
from ec2er_utils.taxonomy import EA_CATEGORIES, EU_CATEGORIES, is_known_emotion
from tests.generation_backend import (InjectedCrash, ScriptedGenerationClient, agent_of, assert_stopped_at_quotas,
                                     request_error)

PERSONAS = grid_personas(30, seed=2)


def run(tmp_path: Path, client=None, *, personas=PERSONAS, folder="run", resume=False, **changes):
    settings = dict(num_samples=5, concurrency=2, eu_items=1, ea_items=1)  # one question of each task per persona
    settings.update(changes)
    client = client or ScriptedGenerationClient()
    summary = run_concise(client, personas, tmp_path / folder, ConciseConfig(**settings), resume=resume,
                          progress=False)
    return summary, client


def final(tmp_path: Path, folder="run") -> tuple[list[dict], list[DatasetItem]]:
    personas = json.loads((tmp_path / folder / "personas_final.json").read_text())
    return personas, read_jsonl(tmp_path / folder / "items_final.jsonl", DatasetItem)


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"rounds\n.*less than or equal to 5"):
        ConciseConfig(rounds=6)
    with pytest.raises(ValueError, match="at least one item"):
        ConciseConfig(eu_items=0, ea_items=0)
    with pytest.raises(ValueError, match=r"num_samples\n.*greater than or equal to 1"):
        ConciseConfig(num_samples=-1)
    with pytest.raises(ValueError, match=r"item_max_tokens=200 cannot hold an EU question .* raise item_max_tokens"):
        ConciseConfig(item_max_tokens=200)
    ConciseConfig(item_max_tokens=200, scenario_min_words=0)  # a short scenario fits
    with pytest.raises(ValueError, match=r"background_words must be \(low, high\) .* got \(150, 80\)"):
        ConciseConfig(background_words=[150, 80])
    with pytest.raises(ValueError, match=r"temperature\n.*greater than or equal to 0"):
        ConciseConfig(temperature=-0.1)
    with pytest.raises(ValueError, match="shard_index=2, num_shards=2"):
        ConciseConfig(shard_index=2, num_shards=2)
    assert ConciseConfig(background_words=[60, 90]).background_words == (60, 90)  # JSON lists become tuples


def test_samples_min_of_num_samples_and_personas_with_attributes(tmp_path):
    summary, _ = run(tmp_path, personas=PERSONAS[:3], num_samples=10)
    personas, items = final(tmp_path)
    assert summary["personas_sampled"] == 3 and summary["personas_written"] == 3
    assert sorted(p["persona"]["persona_id"] for p in personas) == sorted(p.persona_id for p in PERSONAS[:3])
    assert all(set(p["attributes"]) >= {"eu_area", "ea_area", "conflict_domain", "coping_style"} for p in personas)
    again, _ = run(tmp_path, personas=PERSONAS, folder="again", num_samples=4, seed=3)
    other, _ = run(tmp_path, personas=PERSONAS, folder="other", num_samples=4, seed=4)
    ids = [[p["persona"]["persona_id"] for p in final(tmp_path, f)[0]] for f in ("again", "other")]
    assert ids[0] != ids[1]


def test_five_rounds_make_at_most_ten_messages(tmp_path):
    run(tmp_path, num_samples=2)
    personas, _ = final(tmp_path)
    for record in personas:
        assert [m["speaker"] for m in record["messages"]] == ["CLIENT", "THERAPIST"] * 5
    run(tmp_path, folder="short", num_samples=1, rounds=2)
    (record,), _ = final(tmp_path, "short")
    assert len(record["messages"]) == 4



def test_item_writers_read_the_conversation_without_repeated_turns(tmp_path):
    """§3.3: the scripted speakers repeat themselves every round; the item writers see each line once, the persona
    record keeps every message and lists the ones left out."""
    _, client = run(tmp_path, num_samples=1)
    (record,), _ = final(tmp_path)
    assert len(record["messages"]) == 10
    assert [t["index"] for t in record["redundant_turns"]] == list(range(2, 10))
    writers = [c[-1]["content"] for c in client.seen if agent_of(c) == "extractor"]
    assert writers and all(w.count("CLIENT: ") == 1 and w.count("THERAPIST: ") == 1 for w in writers)

def test_items_are_mcq_records_with_valid_options_and_balanced_categories(tmp_path):
    summary, client = run(tmp_path, num_samples=8, concurrency=4)
    personas, items = final(tmp_path)
    assert summary["items"] == len(items) == 16
    for item in items:
        assert item.correct_answer in item.options and len(item.options) == 4
        assert item.pipeline == "concise" and item.source_format == "mcq"
        if item.task == "EU":
            assert all(is_known_emotion(o) for o in item.options)
    assert summary["eu_categories"] == {c: 2 for c in EU_CATEGORIES}
    assert summary["ea_categories"] == {c: 2 for c in EA_CATEGORIES}
    schemas = Counter(call["schema"] for call in client.calls if call["schema"])
    assert schemas == {"EAMCQDraft+EUMCQDraft": 2}  # one batched request per batch, one schema per request
    by_persona = {p["sample_id"]: p["item_ids"] for p in personas}
    assert sorted(i.item_id for i in items) == sorted(i for ids in by_persona.values() for i in ids)


def test_invalid_items_are_rejected_counted_and_never_written(tmp_path):
    def override(title, draft, conversation):
        request = conversation[1]["content"]
        if title == "EUMCQDraft" and "Category: emotional_cues" in request:
            return {**draft, "correct_answer": "Happyish"}  # not an emotion of the vocabulary: fails the schema
        if title == "EAMCQDraft" and "Category: Social-Self" in request:
            # repeats the answer
            return {**draft, "distractors": ["Talk to his sister", "Leave the house", "Shout at her"]}
        return draft

    summary, _ = run(tmp_path, ScriptedGenerationClient(draft_override=override), num_samples=4)
    personas, items = final(tmp_path)
    # Two batches of two: emotional_cues is asked for again in the second batch, because it is still missing.
    assert summary["rejection_reasons"] == {"duplicate_options": 1, "invalid_json": 2}
    assert summary["items"] == len(items) == 5
    assert ("EU", "emotional_cues") not in {(i.task, i.category) for i in items}
    assert ("EA", "Social-Self") not in {(i.task, i.category) for i in items}
    rejected = [r for p in personas for r in p["rejected_items"]]
    assert {r["item_id"] for r in rejected}.isdisjoint(i.item_id for i in items)


def test_failed_personas_are_recorded_and_the_run_goes_on(tmp_path):
    def fail(agent, conversation):
        return request_error() if agent == "background" and "optimistic" in conversation[1]["content"] else None

    summary, _ = run(tmp_path, ScriptedGenerationClient(fail=fail), num_samples=10)
    personas, items = final(tmp_path)
    failed = [p for p in personas if p["status"] == "failed"]
    assert failed and len(personas) == 10
    assert all(p["error"]["stage"] == "background" and p["item_ids"] == [] for p in failed)
    assert summary["failure_reasons"] == {"background: request_failed": len(failed)}
    assert len(items) == 2 * (10 - len(failed))


def test_checkpoint_every_ten_personas_then_resume_matches_an_uninterrupted_run(tmp_path):
    settings = dict(num_samples=25, concurrency=5)
    run(tmp_path, folder="reference", **settings)
    calls_per_batch = 1 + 2 * 5 + 1  # background, 5 rounds of client and therapist, one call for all items
    with pytest.raises(InjectedCrash):  # dies in the third batch, after the first checkpoint
        run(tmp_path, ScriptedGenerationClient(crash_at_call=2 * calls_per_batch + 4), folder="crashed", **settings)
    folder = tmp_path / "crashed"
    assert len(json.loads((folder / "personas_checkpoint.json").read_text())) == 10
    assert len(read_jsonl(folder / "items_checkpoint.jsonl")) == 20
    assert not (folder / "personas_final.json").exists()
    summary, client = run(tmp_path, folder="crashed", resume=True, **settings)
    assert summary["personas_written"] == 25
    assert sum(a == "background" for a in client.agent_counts().elements()) == 15
    for name in ("items_final.jsonl", "personas_final.json"):
        reference = (tmp_path / "reference" / name).read_text()
        resumed = (folder / name).read_text()
        if name.endswith(".json"):
            strip = lambda text: [{k: v for k, v in r.items() if k != "timings"} for r in json.loads(text)]  # noqa: E731
            reference, resumed = strip(reference), strip(resumed)
        assert resumed == reference


def test_a_run_whose_model_went_away_stops_early_and_resume_finishes_it(tmp_path):
    settings = dict(num_samples=10, concurrency=2)
    run(tmp_path, folder="reference", **settings)
    backgrounds = Counter()

    def server_dies_after_the_first_batch(agent, conversation):
        backgrounds[agent] += 1
        return request_error("cannot reach the server") if backgrounds["background"] > 2 else None

    with pytest.raises(ModelUnreachable, match=r"last 4 personas in a row could not reach the model"):
        run(tmp_path, ScriptedGenerationClient(fail=server_dies_after_the_first_batch), folder="died", **settings)
    saved = json.loads((tmp_path / "died" / "personas_checkpoint.json").read_text())
    assert [r["status"] for r in saved] == ["ok"] * 2 + ["failed"] * 4 and backgrounds["background"] == 6
    summary, _ = run(tmp_path, folder="died", resume=True, **settings)
    assert summary["status"] == {"ok": 10}
    assert (tmp_path / "died" / "items_final.jsonl").read_text() == \
        (tmp_path / "reference" / "items_final.jsonl").read_text()


def test_resume_drops_items_of_personas_not_marked_complete(tmp_path, monkeypatch):
    settings = dict(num_samples=6, concurrency=2, checkpoint_every=2)
    run(tmp_path, folder="reference", **settings)
    real_write = concise.write_json_atomic
    writes = Counter()

    def crash_before_marking(path, value, **kwargs):
        if Path(path).name == "personas_checkpoint.json":
            writes["checkpoint"] += 1
            if writes["checkpoint"] == 2:
                raise InjectedCrash("killed after the items, before the personas file")
        return real_write(path, value, **kwargs)

    monkeypatch.setattr(concise, "write_json_atomic", crash_before_marking)
    with pytest.raises(InjectedCrash):
        run(tmp_path, folder="crashed", **settings)
    assert len(read_jsonl(tmp_path / "crashed" / "items_checkpoint.jsonl")) == 8  # 4 of them not marked complete
    monkeypatch.setattr(concise, "write_json_atomic", real_write)
    run(tmp_path, folder="crashed", resume=True, **settings)
    assert (tmp_path / "crashed" / "items_final.jsonl").read_text() == \
        (tmp_path / "reference" / "items_final.jsonl").read_text()


def test_summary_names_paths_counts_and_distributions(tmp_path):
    summary, _ = run(tmp_path, num_samples=3)
    assert Path(summary["paths"]["personas_final"]).name == "personas_final.json"
    assert Path(summary["paths"]["items_final"]).name == "items_final.jsonl"
    assert summary["items_by_task"] == {"EU": 3, "EA": 3}
    assert set(summary["eu_categories"]) == set(EU_CATEGORIES)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["items"] == summary["items"]
    assert summary["usage"]["completion_tokens"] > 0


def test_quotas_end_a_concise_run_once_every_category_is_full(tmp_path):
    quotas = {c: 1 for c in EU_CATEGORIES} | {c: 2 for c in EA_CATEGORIES}
    summary, _ = run(tmp_path, num_samples=20, concurrency=2, quotas=quotas)
    assert_stopped_at_quotas(summary, quotas, "personas_written", asked=20)
