"""MADS (Algorithm 1): turn logic, supervisor cadence, stop reasons, category targeting, failures, rejected items,
checkpoints and resume, with a scripted backend; one slow test runs both pipelines on the real embedded model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ec2er_utils.generation import mads
from ec2er_utils.generation.items import CategoryBalancer
from ec2er_utils.generation.run_files import ModelUnreachable, UnreachableWatch
from ec2er_utils.jsonl import read_jsonl
from ec2er_utils.generation.mads import MADSConfig, plan_dialogues, run_mads
from ec2er_utils.generation.runner import run_plan
from ec2er_utils.personas import grid_personas
from ec2er_utils.schemas import DatasetItem
from ec2er_utils.taxonomy import EA_CATEGORIES, EU_CATEGORIES, is_known_emotion
from ec2er_utils.themes import THEMES
from tests.generation_backend import (InjectedCrash, ScriptedGenerationClient, agent_of, assert_stopped_at_quotas,
                                     request_error, turns_in)

PERSONAS = grid_personas(40, seed=1)


def config(**changes) -> MADSConfig:
    settings = dict(num_dialogues=4, concurrency=2, checkpoint_every=2, eu_items=(3, 4), ea_items=(3, 4),
                    max_turns=14, item_max_tokens=700)  # the paper's turns and items (the defaults are the CPU demo's)
    settings.update(changes)
    return MADSConfig(**settings)


def run(tmp_path: Path, client=None, *, folder="run", resume=False, **changes):
    client = client or ScriptedGenerationClient()
    stats = run_mads(client, PERSONAS, THEMES, tmp_path / folder, config(**changes), resume=resume, progress=False)
    return stats, client


def metadata(tmp_path: Path, folder="run") -> list[dict]:
    return read_jsonl(tmp_path / folder / "metadata.jsonl")


def outputs(folder: Path) -> dict[str, object]:
    """Everything a run wrote except wall-clock timings, for comparing runs."""
    meta = [{k: v for k, v in r.items() if k != "timings"} for r in read_jsonl(folder / "metadata.jsonl")]
    files = {name: (folder / name).read_text() for name in ("eu_items.jsonl", "ea_items.jsonl", "dialogues.jsonl")}
    return {"metadata": meta, **files}


# --------------------------------------------------------------------------------------------------------------
# Settings


def test_min_turns_above_max_turns_is_a_clear_error():
    with pytest.raises(ValueError, match=r"min_turns \(8\) is greater than max_turns \(6\)"):
        MADSConfig(min_turns=8, max_turns=6)
    with pytest.raises(ValueError, match="eu_items"):
        MADSConfig(eu_items=(4, 3))
    with pytest.raises(ValueError, match="shard_index"):
        MADSConfig(shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="checkpoint_every"):
        MADSConfig(checkpoint_every=0)
    with pytest.warns(UserWarning, match="differ from the paper"):
        MADSConfig(min_turns=2, max_turns=4)
    # a mixed-emotion EU item (its options are pairs) needs the largest budget
    with pytest.raises(ValueError, match=r"item_max_tokens=200 cannot hold an? EU item .* at least 50 words; "
                                         r"raise item_max_tokens to >= 380"):
        MADSConfig(item_max_tokens=200)


def test_item_schemas_ask_for_scenarios_long_enough_for_the_word_filter():
    from ec2er_utils.generation.items import CHARS_PER_WORD, ea_draft_schema, eu_draft_schema, mcq_draft_schema

    for schema in (eu_draft_schema(700, 50), ea_draft_schema(700, 50), mcq_draft_schema("EU", 500, 50),
                   mcq_draft_schema("EA", 500, 50)):
        scenario = schema["properties"]["scenario"]
        assert scenario["minLength"] == 50 * CHARS_PER_WORD < scenario["maxLength"]
        strings = [p.get("items", p) for p in schema["properties"].values()]
        assert all(p["maxLength"] >= 20 for p in strings if "maxLength" in p)  # room left for the rest
    # The minimum fits inside the budget: scenario + other fields never exceed what max_tokens can hold.
    schema = eu_draft_schema(350, 50)
    lengths = [p.get("items", p).get("maxLength", 0) * p.get("maxItems", 1) for p in schema["properties"].values()]
    assert sum(lengths) <= 350 * 2
    assert eu_draft_schema(200)["properties"]["scenario"]["minLength"] == 20  # no word floor: a short scenario
    with pytest.raises(ValueError, match=r"item_max_tokens=120 cannot hold an EA item; raise it to >= 135"):
        ea_draft_schema(120)


@pytest.mark.parametrize("text, valid", [
    ("Her silence after the call shows she blames herself.", True),
    ("She blames herself for the call.", False),  # 6 words: too short to reason (chapter 03's rule)
    ("} The goal of this response is to help the client", False),  # a JSON remnant
    (", and then she finally told her sister everything that happened", False),  # starts with punctuation
    ('She said "no" to him because she was afraid of him', False),  # JSON syntax inside the text
])
def test_item_schemas_constrain_explanations_as_chapter_03_rules_do(text, valid):
    import jsonschema
    import xgrammar

    from ec2er_utils.generation.items import ea_draft_schema

    schema = ea_draft_schema(700, 50)
    assert jsonschema.Draft202012Validator(schema["properties"]["explanation"]).is_valid(text) is valid
    options = jsonschema.Draft202012Validator(schema["properties"]["other_choices"]["items"])
    assert options.is_valid("Call her sister") and not options.is_valid("Call")  # a fragment
    xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)  # the decoder accepts the patterns


# --------------------------------------------------------------------------------------------------------------
# Turn logic


def test_stops_at_min_turns_when_the_supervisor_is_satisfied_early(tmp_path):
    stats, client = run(tmp_path)  # the scripted supervisor says "all criteria met" from turn 1
    for record in metadata(tmp_path):
        assert record["turns"] == 4 and record["messages"] == 8
        assert record["stop_reason"] == "criteria_met" and record["criteria_met"]
        assert [v["turn"] for v in record["supervisor_verdicts"]] == [2, 4]
        assert record["supervisor_verdicts"][0]["all_met"]  # met at turn 2, but 4 turns is the minimum
    assert stats["stop_reasons"] == {"criteria_met": 4}


def test_runs_to_max_turns_when_criteria_are_never_met(tmp_path):
    client = ScriptedGenerationClient(criteria_at=lambda conversation: None)
    stats, _ = run(tmp_path, client, max_turns=7, min_turns=4)
    for record in metadata(tmp_path):
        assert record["turns"] == 7 and record["messages"] == 14
        assert record["stop_reason"] == "max_turns" and not record["criteria_met"]
        assert [v["turn"] for v in record["supervisor_verdicts"]] == [2, 4, 6]
    assert stats["stop_reasons"] == {"max_turns": 4}


def test_supervisor_judges_every_two_turns_and_stops_at_the_first_verdict_with_all_criteria(tmp_path):
    client = ScriptedGenerationClient(criteria_at=lambda conversation: 5)
    run(tmp_path, client, num_dialogues=2)
    for record in metadata(tmp_path):
        assert record["turns"] == 6 and record["stop_reason"] == "criteria_met"
        assert [(v["turn"], v["all_met"]) for v in record["supervisor_verdicts"]] == [(2, False), (4, False),
                                                                                       (6, True)]
        assert set(record["supervisor_verdicts"][0]) == {"turn", "reason", "scenario", "emotions", "causes",
                                                         "dilemma", "all_met"}
    supervisor_calls = [c for c in client.calls if c["agents"][0] == "supervisor"]
    assert len(supervisor_calls) == 3 and all(c["schema"] == "SupervisorVerdict" for c in supervisor_calls)


def test_unmet_criteria_steer_the_next_turns_and_are_recorded(tmp_path):
    client = ScriptedGenerationClient(criteria_at=lambda conversation: 4)  # dilemma etc. unmet at turn 2
    run(tmp_path, client, num_dialogues=1, max_turns=4)
    (record,) = metadata(tmp_path)
    unmet = ["scenario", "emotions", "dilemma"]  # the verdict after turn 2 holds until the next one, after turn 4
    assert record["supervisor_steering"] == [{"turn": 3, "criteria": unmet}, {"turn": 4, "criteria": unmet}]
    systems = [c for c in client.seen if "supervisor asks you to explore next" in c[0]["content"]]
    assert len(systems) == 2 and "the decision the client is struggling with" in systems[0][0]["content"]
    assert sum("In your next message, open up about" in c[0]["content"] for c in client.seen) == 2
    quiet = ScriptedGenerationClient(criteria_at=lambda conversation: 4)
    run(tmp_path, quiet, folder="off", num_dialogues=1, max_turns=4, supervisor_steering=False)
    assert metadata(tmp_path, "off")[0]["supervisor_steering"] == []
    assert not any("supervisor asks you" in c[0]["content"] for c in quiet.seen)


def test_supervisor_cadence_is_a_parameter(tmp_path):
    client = ScriptedGenerationClient(criteria_at=lambda conversation: None)
    run(tmp_path, client, num_dialogues=1, supervisor_every=3, max_turns=7)
    (record,) = metadata(tmp_path)
    assert [v["turn"] for v in record["supervisor_verdicts"]] == [3, 6]


def test_each_step_is_one_batched_call_over_the_active_dialogues(tmp_path):
    satisfied = []

    def criteria_at(conversation):  # the first dialogue the supervisor sees is satisfied at turn 4, no other
        key = _dialogue_key(conversation)
        if not satisfied:
            satisfied.append(key)
        return 4 if key in satisfied else None

    client = ScriptedGenerationClient(criteria_at=criteria_at)
    run(tmp_path, client, num_dialogues=3, concurrency=3, max_turns=6)
    assert all(len(set(call["agents"])) == 1 for call in client.calls if call["agents"][0] != "extractor")
    assert [c["size"] for c in client.calls if c["agents"][0] == "client"] == [3, 3, 3, 3, 2, 2]
    assert [c["size"] for c in client.calls if c["agents"][0] == "supervisor"] == [3, 3, 2]
    assert Counter(r["stop_reason"] for r in metadata(tmp_path)) == {"criteria_met": 1, "max_turns": 2}
    # Extraction: every EU and EA request of the batch in one call, each with its own schema.
    (extraction,) = [c for c in client.calls if c["agents"][0] == "extractor"]
    requested = sum(len(r["eu_targets"]) + len(r["ea_targets"]) for r in metadata(tmp_path))
    assert extraction["schema"] == "EAItemDraft+EUItemDraft+EUMixedItemDraft" and extraction["size"] == requested > 3


def _dialogue_key(conversation) -> str:
    """The scripted key the client's messages carry, read from a supervisor request's transcript."""
    first_client_line = next(line for line in conversation[-1]["content"].splitlines() if line.startswith("CLIENT"))
    return first_client_line.split("[")[1][:6]


def test_client_opens_and_speakers_alternate(tmp_path):
    run(tmp_path, num_dialogues=1)
    (dialogue,) = read_jsonl(tmp_path / "run" / "dialogues.jsonl")
    speakers = [m["speaker"] for m in dialogue["messages"]]
    assert speakers == ["CLIENT", "THERAPIST"] * 4
    assert dialogue["background"].startswith(("Alex", "Sam"))



def test_extractors_read_the_dialogue_without_turns_a_speaker_repeats(tmp_path):
    """§3.3's redundant-turn removal: the scripted client and therapist say nearly the same line every turn, so the
    extraction agents see each once; the dialogue file keeps every turn and the metadata lists the ones left out."""
    _, client = run(tmp_path, num_dialogues=1)
    (dialogue,) = read_jsonl(tmp_path / "run" / "dialogues.jsonl")
    (record,) = metadata(tmp_path)
    assert len(dialogue["messages"]) == 8
    assert [(t["index"], t["reason"]) for t in record["redundant_turns"]] == [(i, "repeated_turn") for i in range(2, 8)]
    extractions = [c[-1]["content"] for c in client.seen if agent_of(c) == "extractor"]
    assert extractions and all(turns_in([{"content": text}]) == 1 for text in extractions)
    assert all(dialogue["messages"][0]["text"] in text and dialogue["messages"][2]["text"] not in text
               for text in extractions)


# --------------------------------------------------------------------------------------------------------------
# Failures and rejected items


def test_failed_dialogues_are_recorded_with_their_reason_and_the_run_goes_on(tmp_path):
    victim = {}

    def fail(agent, conversation):
        said = sum(m["role"] == "assistant" for m in conversation)
        key = conversation[0]["content"]
        if agent == "client" and said == 1 and (not victim or victim.get("key") == key):
            victim["key"] = key
            return request_error("HTTP 503 from the server")
        return None

    stats, _ = run(tmp_path, ScriptedGenerationClient(fail=fail), num_dialogues=4)
    records = metadata(tmp_path)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 4 and len(failed) == 1
    assert failed[0]["error"]["stage"] == "turn 2 client" and failed[0]["error"]["reason"] == "request_failed"
    assert failed[0]["stop_reason"] == "error" and failed[0]["eu_item_ids"] == []
    assert stats["status"] == {"failed": 1, "ok": 3}
    assert stats["failure_reasons"] == {"turn 2 client: request_failed": 1}
    assert stats["eu_items"] >= 9


def test_a_failed_supervisor_check_is_recorded_and_the_dialogue_goes_on(tmp_path):
    def fail(agent, conversation):
        return request_error() if agent == "supervisor" and turns_in(conversation) == 4 else None

    run(tmp_path, ScriptedGenerationClient(fail=fail), num_dialogues=1)
    (record,) = metadata(tmp_path)
    assert record["status"] == "ok" and record["turns"] == 6
    assert record["supervisor_verdicts"][1]["error"] == "request_failed"


def test_invalid_items_are_rejected_counted_and_never_written(tmp_path):
    def override(title, draft, conversation):
        request = conversation[1]["content"]  # the extractor's request (a re-ask appends messages after it)
        if title in ("EUItemDraft", "EUMixedItemDraft") and "Category: emotional_cues" in request:
            # repeats the cause label
            return {**draft, "cause_distractors": [draft["cause_label"], "He lost a bet", "He was tired"]}
        if title == "EAItemDraft" and "Category: Social-Self" in request:
            return "not json at all"  # every attempt, re-asks included
        return draft

    stats, _ = run(tmp_path, ScriptedGenerationClient(draft_override=override), num_dialogues=2, eu_items=(4, 4),
                   ea_items=(4, 4))
    assert stats["rejection_reasons"] == {"duplicate_options": 2, "invalid_json": 2}
    assert stats["items_rejected"] == 4
    eu = read_jsonl(tmp_path / "run" / "eu_items.jsonl", DatasetItem)
    ea = read_jsonl(tmp_path / "run" / "ea_items.jsonl", DatasetItem)
    assert len(eu) == 6 and len(ea) == 6
    assert "emotional_cues" not in {i.category for i in eu}
    assert "Social-Self" not in {i.category for i in ea}
    rejected = [r for m in metadata(tmp_path) for r in m["rejected_items"]]
    assert {r["target"] for r in rejected if r["task"] == "EU"} == {"emotional_cues/visual_cues",
                                                                    "emotional_cues/vocal_cues"}
    written = {i.item_id for i in eu} | {i.item_id for i in ea}
    assert not written & {r["item_id"] for r in rejected}


def test_written_items_are_valid_emobench_items_with_provenance(tmp_path):
    run(tmp_path, num_dialogues=2)
    eu = read_jsonl(tmp_path / "run" / "eu_items.jsonl", DatasetItem)
    read_jsonl(tmp_path / "run" / "ea_items.jsonl", DatasetItem)  # validates every line
    records = {r["dialogue_id"]: r for r in metadata(tmp_path)}
    for item in eu:
        assert len(item.emotion_choices) == 6 and len(item.cause_choices) == 4
        if " & " in item.emotion_label:  # a mixed-emotion item (always for mixture_of_emotions)
            assert item.emotion_label == "Relief & Guilt" and item.cause_label == "He left his team behind"
        else:
            assert item.emotion_label == "Guilt" and item.cause_label == "He missed the call"
        assert item.source_format == "emobench_eu" and item.options == item.emotion_choices
        assert item.pipeline == "mads" and item.dialogue_id in records
        assert item.theme == records[item.dialogue_id]["theme"]
    raw_ea = json.loads((tmp_path / "run" / "ea_items.jsonl").read_text().splitlines()[0])
    assert raw_ea["question_type"] in ("Action", "Response") and raw_ea["label"] in raw_ea["choices"]
    assert raw_ea["correct_answer"] == raw_ea["label"] and raw_ea["options"] == raw_ea["choices"]
    positions = Counter(i.emotion_choices.index(i.emotion_label) for i in eu)
    assert len(positions) > 1  # options are shuffled, not always first
    for record in records.values():
        assert 3 <= len(record["eu_item_ids"]) <= 4 and 3 <= len(record["ea_item_ids"]) <= 4


# --------------------------------------------------------------------------------------------------------------
# Category targeting


def test_balancer_targets_the_least_represented_category():
    balancer = CategoryBalancer(EU_CATEGORIES)
    for category in ("complex_emotions", "complex_emotions", "complex_emotions", "emotional_cues"):
        balancer.record(category)
    assert balancer.take(2) == ["personal_beliefs_and_experiences", "perspective_taking"]  # reserved, not counted
    assert balancer.take(3) == ["emotional_cues", "personal_beliefs_and_experiences", "perspective_taking"]
    for category in ("personal_beliefs_and_experiences", "perspective_taking"):
        balancer.settle(category, written=False)  # rejected: asked for again
    assert balancer.take(1) == ["personal_beliefs_and_experiences"]
    with pytest.raises(ValueError, match="unknown category"):
        balancer.record("happiness")


def test_targeting_keeps_eu_and_ea_categories_balanced(tmp_path):
    stats, client = run(tmp_path, num_dialogues=9, concurrency=4)
    for key in ("eu_categories", "ea_categories"):
        counts = stats[key].values()
        assert max(counts) - min(counts) <= 1, stats[key]
    assert set(stats["eu_categories"]) == set(EU_CATEGORIES) and set(stats["ea_categories"]) == set(EA_CATEGORIES)
    types = stats["ea_question_types"]
    assert abs(types["Action"] - types["Response"]) <= 1
    extractor_prompts = [c for call in client.calls for c in call["agents"] if c == "extractor"]
    assert len(extractor_prompts) == stats["eu_items"] + stats["ea_items"]


def test_repeated_emotion_options_are_replaced_from_the_vocabulary_and_recorded(tmp_path):
    def override(title, draft, conversation):
        if title == "EUItemDraft":
            return {**draft, "emotion_distractors": ["Guilt", "Joy", "Joy", "Anger", "Guilt"]}  # label + a repeat
        return draft

    stats, _ = run(tmp_path, ScriptedGenerationClient(draft_override=override), num_dialogues=2, eu_items=(1, 1),
                   ea_items=(1, 1), mixed_share=0)
    eu = read_jsonl(tmp_path / "run" / "eu_items.jsonl", DatasetItem)
    assert len(eu) == 2 and stats["items_rejected"] == 0 and stats["items_repaired"] == 2
    for item in eu:
        assert item.emotion_label == "Guilt" and len({c.casefold() for c in item.emotion_choices}) == 6
        assert {"Joy", "Anger"} <= set(item.emotion_choices)  # the model's distinct distractors are kept
    repairs = [r for m in metadata(tmp_path) for r in m["repaired_items"]]
    assert [r["item_id"] for r in repairs] == [i.item_id for i in eu]
    assert all(r["repair"] == "repeated_emotions_replaced" for r in repairs)
    again, _ = run(tmp_path / "again", ScriptedGenerationClient(draft_override=override), num_dialogues=2,
                   eu_items=(1, 1), ea_items=(1, 1), mixed_share=0)
    assert read_jsonl(tmp_path / "again" / "run" / "eu_items.jsonl", DatasetItem) == eu  # seeded repair


def test_mixed_emotion_items_have_pairs_in_emobench_spelling(tmp_path):
    from ec2er_utils.emobench import load_emobench
    from ec2er_utils.generation.items import emotion_options

    run(tmp_path, num_dialogues=4, eu_items=(4, 4), mixed_share=0)
    eu = read_jsonl(tmp_path / "run" / "eu_items.jsonl", DatasetItem)
    mixed = [i for i in eu if i.finegrained_category == "mixture_of_emotions"]
    assert mixed and all(" & " not in o for i in eu if i not in mixed for o in i.options)
    for item in mixed:  # every option a pair, as in EmoBench: all six compound, or none
        assert all(len(o.split(" & ")) == 2 and is_known_emotion(o) for o in item.options)
    requests = [r for m in metadata(tmp_path) for r in m["eu_targets"] if "mixture_of_emotions" in r]
    assert len(requests) == len(mixed)
    # EmoBench's own compound labels pass the same vocabulary check, and a pair named twice is one option
    compound = [i for i in load_emobench("EU", "en") if "&" in i.emotion_label]
    assert len(compound) == 63 and all(is_known_emotion(c) for i in compound for c in i.emotion_choices)
    rng = __import__("random").Random(0)
    options = emotion_options(["Guilt", "Relief"], [["Relief", "Guilt"], ["Joy", "Joy"], ["Anger", "Fear"],
                                                     ["Pride", "Sadness"], ["Fear", "Joy"]], rng)
    assert options[0] == "Guilt & Relief" and len(options) == 6
    assert len({frozenset(o.split(" & ")) for o in options}) == 6  # the repeat and "Joy & Joy" were replaced


def test_quotas_stop_asking_for_full_categories_and_end_the_run(tmp_path):
    quotas = {c: 2 for c in EU_CATEGORIES} | {c: 3 for c in EA_CATEGORIES}
    stats, _ = run(tmp_path, num_dialogues=12, concurrency=1, quotas=quotas)
    assert_stopped_at_quotas(stats, quotas, "dialogues_written", asked=12)
    assert stats["quotas"] == quotas
    from ec2er_utils.generation.items import resolve_quotas
    from ec2er_utils.taxonomy import PAPER_EA_COUNTS, PAPER_EU_COUNTS

    assert resolve_quotas("paper") == {**PAPER_EU_COUNTS, **PAPER_EA_COUNTS}
    with pytest.raises(ValueError, match="unknown categories"):
        MADSConfig(quotas={"happiness": 3})


def test_targeting_makes_up_for_rejected_items(tmp_path):
    seen = Counter()

    def override(title, draft, conversation):  # the first two perspective-taking drafts are invalid
        if title == "EUItemDraft" and "Category: perspective_taking" in conversation[-1]["content"]:
            seen["bad"] += 1
            if seen["bad"] <= 2:
                return {**draft, "cause_distractors": ["He missed the call", "He lost a bet", "He was tired"]}
        return draft

    stats, _ = run(tmp_path, ScriptedGenerationClient(draft_override=override), num_dialogues=8, concurrency=2,
                   eu_items=(3, 3))
    counts = stats["eu_categories"]
    assert stats["rejection_reasons"] == {"duplicate_options": 2}
    assert max(counts.values()) - min(counts.values()) <= 1, counts


# --------------------------------------------------------------------------------------------------------------
# Checkpoints and resume


def test_checkpoint_interval_sets_when_results_reach_disk(tmp_path, monkeypatch):
    appended = []
    real_append = mads.append_jsonl

    def spy(path, records):
        records = list(records)
        if Path(path).name == "metadata.jsonl":
            appended.append(len(records))
        return real_append(path, records)

    monkeypatch.setattr(mads, "append_jsonl", spy)
    run(tmp_path, num_dialogues=7, concurrency=2, checkpoint_every=3)
    assert appended == [4, 3]  # flushed at the first batch end with >= 3 dialogues waiting, then at the end


@pytest.mark.parametrize("crash_point", [0.05, 0.5, 0.95])
def test_resume_after_a_crash_gives_the_same_files_as_an_uninterrupted_run(tmp_path, crash_point):
    settings = dict(num_dialogues=7, concurrency=2, checkpoint_every=2)
    _, reference_client = run(tmp_path, folder="reference", **settings)
    crash_at_call = int(len(reference_client.calls) * crash_point)
    with pytest.raises(InjectedCrash):
        run(tmp_path, ScriptedGenerationClient(crash_at_call=crash_at_call), folder="crashed", **settings)
    written_before = len(metadata(tmp_path, "crashed")) if (tmp_path / "crashed" / "metadata.jsonl").exists() else 0
    stats, client = run(tmp_path, folder="crashed", resume=True, **settings)
    assert outputs(tmp_path / "crashed") == outputs(tmp_path / "reference")
    assert stats["dialogues_written"] == 7
    backgrounds = sum(a == "background" for a in client.agent_counts().elements())
    assert backgrounds == 7 - written_before  # batches written before the crash are not generated again


def test_resume_after_a_crash_while_writing_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    settings = dict(num_dialogues=6, concurrency=2, checkpoint_every=4)
    run(tmp_path, folder="reference", **settings)
    real_append = mads.append_jsonl
    writes = Counter()

    def crash_midway(path, records):
        records = list(records)
        writes[Path(path).name] += 1
        if Path(path).name == "metadata.jsonl" and writes["metadata.jsonl"] == 2:
            real_append(path, records[:1])  # one complete line, then a torn one
            with open(path, "a", encoding="utf-8") as handle:
                handle.write('{"dialogue_id": "mads-s0-000')
            raise InjectedCrash("killed while writing")
        return real_append(path, records)

    monkeypatch.setattr(mads, "append_jsonl", crash_midway)
    with pytest.raises(InjectedCrash):
        run(tmp_path, folder="crashed", **settings)
    monkeypatch.setattr(mads, "append_jsonl", real_append)
    stats, _ = run(tmp_path, folder="crashed", resume=True, **settings)
    ids = [r["dialogue_id"] for r in metadata(tmp_path, "crashed")]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6
    assert outputs(tmp_path / "crashed") == outputs(tmp_path / "reference")


def test_a_run_whose_model_went_away_stops_early_and_resume_finishes_it(tmp_path):
    """The server dies after the first batch: two more batches (4 dialogues) fail in transport, the run stops
    instead of failing the last three batches one retry sequence at a time, says how to resume, and a resume
    against a healthy backend ends with exactly the files of an uninterrupted run."""
    settings = dict(num_dialogues=12, concurrency=2, checkpoint_every=2)
    run(tmp_path, folder="reference", **settings)
    requests = Counter()

    def server_dies_after_the_first_batch(agent, conversation):
        requests[agent] += 1
        return request_error("cannot reach http://127.0.0.1:9/v1") if requests["background"] > 2 else None

    with pytest.raises(ModelUnreachable, match=r"last 4 dialogues in a row could not reach the model .*127.0.0.1:9"
                                               r".* resume=True") as info:
        run(tmp_path, ScriptedGenerationClient(fail=server_dies_after_the_first_batch), folder="died", **settings)
    assert str(tmp_path / "died") in str(info.value)
    assert [r["status"] for r in metadata(tmp_path, "died")] == ["ok"] * 2 + ["failed"] * 4  # all saved
    assert requests["background"] == 6  # batches 4-6 were never started
    stats, client = run(tmp_path, folder="died", resume=True, **settings)
    assert stats["status"] == {"ok": 12}
    assert sum(a == "background" for a in client.agent_counts().elements()) == 10  # the 4 failed + 6 never tried
    assert outputs(tmp_path / "died") == outputs(tmp_path / "reference")


def test_single_dialogues_failing_between_healthy_ones_do_not_stop_a_run(tmp_path):
    """Transport failures of single dialogues (a request the server refuses, not a dead server): three in a row,
    below the limit of four for one dialogue in flight, then a healthy one; the run goes on to the end, as before."""
    plans, _ = plan_dialogues(PERSONAS, THEMES, 10, seed=0)
    refused = {plans[i].persona.describe() for i in (2, 3, 4, 7)}

    def refuse(agent, conversation):
        asked = agent == "background" and any(text in conversation[1]["content"] for text in refused)
        return request_error("HTTP 400 from the server") if asked else None

    stats, _ = run(tmp_path, ScriptedGenerationClient(fail=refuse), num_dialogues=10, concurrency=1)
    assert stats["dialogues_written"] == 10 and stats["status"] == {"ok": 6, "failed": 4}


def test_unreachable_watch_counts_transport_failures_in_a_row():
    watch = UnreachableWatch("dialogue", Path("out"), concurrency=2)
    failed = {"stage": "background", "reason": "request_failed", "message": "HTTP 503"}
    assert watch.limit == 4
    assert not watch.tripped([failed, failed, None])  # an answered unit resets the count
    assert not watch.tripped([failed, failed, failed])
    assert not watch.tripped([{"stage": "turn 1 client", "reason": "empty_reply", "message": ""}])  # not transport
    assert not watch.tripped([failed, failed, failed]) and watch.tripped([failed])
    assert "HTTP 503" in str(watch.error()) and "out" in str(watch.error())
    assert UnreachableWatch("persona", Path("out"), concurrency=8).limit == 16


def test_resume_refuses_changed_settings_and_a_fresh_run_replaces_old_files(tmp_path):
    run(tmp_path, num_dialogues=2)
    with pytest.raises(ValueError, match=r"settings changed \(max_turns: saved 14, now 12\)"):
        run(tmp_path, num_dialogues=2, max_turns=12, resume=True)
    stats, client = run(tmp_path, num_dialogues=2, resume=True)  # nothing left to do
    assert client.calls == [] and stats["dialogues_written"] == 2
    stats, _ = run(tmp_path, num_dialogues=1)
    assert stats["dialogues_written"] == 1 and len(metadata(tmp_path)) == 1


def test_resume_allows_changed_paths_and_server_and_reads_resume_and_folder_from_the_config(tmp_path):
    run(tmp_path, num_dialogues=2)
    moved = config(num_dialogues=2, output_dir=tmp_path / "run", personas_file=tmp_path / "p.jsonl",
                   themes_file=tmp_path / "t.json", base_url="http://elsewhere:8000/v1", checkpoint_every=1,
                   resume=True)
    assert moved.run_dir == tmp_path / "run" and moved.themes_path == tmp_path / "t.json"
    client = ScriptedGenerationClient()
    stats = run_mads(client, PERSONAS, THEMES, config=moved, progress=False)  # folder and resume: the config's
    assert client.calls == [] and stats["dialogues_written"] == 2 and stats["out_dir"] == str(tmp_path / "run")
    with pytest.raises(ValueError, match=r"settings changed \(concurrency: saved 2, now 1\)"):
        run_mads(client, PERSONAS, THEMES, config=moved.model_copy(update={"concurrency": 1}), progress=False)


def test_shards_split_one_plan_without_overlap(tmp_path):
    for shard in range(3):
        run(tmp_path, folder="sharded", num_dialogues=7, shard_index=shard, num_shards=3)
    folders = sorted((tmp_path / "sharded").glob("shard-*-of-03"))
    assert [f.name for f in folders] == ["shard-00-of-03", "shard-01-of-03", "shard-02-of-03"]
    ids = [r["dialogue_id"] for f in folders for r in read_jsonl(f / "metadata.jsonl")]
    plans, _ = plan_dialogues(PERSONAS, THEMES, 7, seed=0)
    assert sorted(ids) == [p.dialogue_id for p in plans]
    first = {r["dialogue_id"]: r for r in read_jsonl(folders[0] / "metadata.jsonl")}
    assert all(first[p.dialogue_id]["persona_id"] == p.persona.persona_id for p in plans[::3])


def test_extract_incomplete_false_skips_dialogues_without_all_criteria(tmp_path):
    client = ScriptedGenerationClient(criteria_at=lambda conversation: None)
    stats, _ = run(tmp_path, client, num_dialogues=2, max_turns=4, extract_incomplete=False)
    assert stats["status"] == {"not_extracted": 2} and stats["eu_items"] == 0
    assert not any(c["agents"][0] == "extractor" for c in client.calls)


def test_metadata_and_statistics_describe_the_run(tmp_path):
    stats, _ = run(tmp_path, num_dialogues=3)
    for record in metadata(tmp_path):
        assert {"persona_id", "theme", "turns", "stop_reason", "supervisor_verdicts", "usage", "timings",
                "attributes", "eu_item_ids", "ea_item_ids", "rejected_items"} <= set(record)
        assert record["usage"]["completion_tokens"] > 0 and record["timings"]["dialogue_s"] >= 0
    saved = json.loads((tmp_path / "run" / "statistics.json").read_text())
    assert saved["eu_categories"] == stats["eu_categories"] and saved["dialogues_written"] == 3
    assert stats["usage"]["calls"] == sum(r["usage"]["calls"] for r in metadata(tmp_path))


def test_run_plan_is_arithmetic_on_a_measured_rate():
    plan = run_plan(3000, 100.0, servers=4, shards=2)
    assert plan == {"num_dialogues": 3000, "servers": 4, "shards": 2, "dialogues_per_shard": 1500,
                    "dialogues_per_hour_per_shard": 200.0, "hours": 7.5}
    with pytest.raises(ValueError, match="each shard needs a server"):
        run_plan(10, 1.0, servers=1, shards=2)


def test_scripted_backend_knows_every_agent():
    assert agent_of([{"role": "system", "content": mads.prompts.SUPERVISOR_SYSTEM}]) == "supervisor"


# --------------------------------------------------------------------------------------------------------------
# The real embedded model


@pytest.mark.slow
def test_tiny_real_runs_with_the_embedded_model(tmp_path):
    from ec2er_utils.generation import make_generator_client
    from ec2er_utils.generation.concise import ConciseConfig, run_concise

    client = make_generator_client("local", concurrency=2, seed=0)
    try:
        with pytest.warns(UserWarning, match="differ from the paper"):
            settings = MADSConfig(num_dialogues=1, min_turns=2, max_turns=4, eu_items=(1, 1), ea_items=(1, 1),
                                  background_words=(30, 50), background_max_tokens=64, turn_max_tokens=32,
                                  supervisor_max_tokens=60, item_max_tokens=280, scenario_min_words=10)
        stats = run_mads(client, PERSONAS, THEMES, tmp_path / "mads", settings, progress=False)
        (record,) = read_jsonl(tmp_path / "mads" / "metadata.jsonl")
        assert record["generator_model"] == "smollm2"
        if record["status"] == "failed":
            pytest.fail(f"the real dialogue failed: {record['error']}")
        assert 2 <= record["turns"] <= 4 and record["stop_reason"] in ("criteria_met", "max_turns")
        assert [v["turn"] for v in record["supervisor_verdicts"]] in ([2], [2, 4])
        assert stats["eu_items"] + stats["ea_items"] + stats["items_rejected"] == 2
        items = (read_jsonl(tmp_path / "mads" / "eu_items.jsonl", DatasetItem)
                 + read_jsonl(tmp_path / "mads" / "ea_items.jsonl", DatasetItem))
        assert all(len(item.scenario) >= 60 for item in items)  # the grammar's floor: 10 words x 6 characters

        summary = run_concise(client, PERSONAS, tmp_path / "concise",
                              ConciseConfig(num_samples=1, rounds=2, eu_items=1, ea_items=1, background_words=(30, 50),
                                            background_max_tokens=64, turn_max_tokens=32, item_max_tokens=240,
                                            scenario_min_words=10),
                              progress=False)
        assert summary["personas_written"] == 1
        assert summary["items"] + summary["items_rejected"] == 2
        (persona,) = json.loads((tmp_path / "concise" / "personas_final.json").read_text())
        assert persona["status"] == "ok" and len(persona["messages"]) == 4
        read_jsonl(tmp_path / "concise" / "items_final.jsonl", DatasetItem)
    finally:
        client.close()


# --------------------------------------------------------------------------------------------------------------
# Scale-out over several servers


def test_replicas_share_the_requests_and_answers_keep_their_order(tmp_path):
    from ec2er_utils.generation import ReplicaClient

    replicas = [ScriptedGenerationClient(), ScriptedGenerationClient()]
    stats, _ = run(tmp_path, ReplicaClient(replicas), folder="replicas", num_dialogues=3, concurrency=3)
    single_stats, _ = run(tmp_path, folder="single", num_dialogues=3, concurrency=3)
    assert outputs(tmp_path / "replicas") == outputs(tmp_path / "single")
    served = [sum(c["size"] for c in r.calls) for r in replicas]
    assert min(served) > 0 and abs(served[0] - served[1]) <= len([c for c in replicas[0].calls])
    assert stats["usage"]["calls"] == single_stats["usage"]["calls"]


def test_several_base_urls_make_a_replica_client(monkeypatch):
    from ec2er_utils.generation import ReplicaClient, make_generator_client

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    client = make_generator_client("openai", "openai/gpt-oss-20b", base_url="http://a:8000/v1, http://b:8000/v1",
                                   concurrency=16)
    assert isinstance(client, ReplicaClient)
    assert [r.base_url for r in client.replicas] == ["http://a:8000/v1", "http://b:8000/v1"]
    assert all(r.concurrency == 16 for r in client.replicas)
    assert "sk-test-secret-123" not in repr(client)
    single = make_generator_client("openai", "openai/gpt-oss-20b", base_url="http://a:8000/v1")
    assert not isinstance(single, ReplicaClient) and single.base_url == "http://a:8000/v1"
    with pytest.raises(ValueError, match="needs model"):
        make_generator_client("openai", None, base_url="http://a:8000/v1")
