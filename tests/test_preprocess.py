"""Preprocessing steps (issue 4): every filter rejects its bad item for the stated reason and keeps the good one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ec2er_utils import preprocess as pp
from ec2er_utils.emobench import EmoBenchDataError
from ec2er_utils.formatting import user_prompt
from ec2er_utils.jsonl import JSONLError
from ec2er_utils.paths import shared_dir
from ec2er_utils.schemas import GeneratedEAItem, GeneratedEUItem, MCQItem, Provenance

PROVENANCE = {"pipeline": "mads", "generator_model": "hand-written", "persona_id": "p1", "dialogue_id": "d1",
              "theme": "family"}
EU_SCENARIO = ("Dorea had spent the whole afternoon baking a baklava for her daughter's birthday party. When she "
               "pulled the tray out of the oven, the pastry was soggy and the sweet filling had spilled across the "
               "pan. Just then her daughter walked into the kitchen, tasted a corner of it, smiled widely and gave "
               "her mother a thumbs-up before asking for a second piece right away.")
EA_SCENARIO = ("Sarah found out that her younger brother is being bullied by two older boys at school. He showed her "
               "the messages they send him every evening, but he begged her not to tell their parents because he "
               "thinks it would make everything worse. Sarah is worried that the messages are getting meaner every "
               "week and that her brother has stopped wanting to go to school at all.")
MCQ_SCENARIO = ("Malik had been waiting for the results of his medical test for almost two weeks, barely sleeping "
                "and checking his phone every hour. On Friday afternoon his doctor finally called and told him that "
                "everything was normal and there was nothing to treat. Malik put the phone down, leaned back in his "
                "chair and let out a long breath while staring at the ceiling for a while.")


def eu_record(**changes) -> dict:
    record = {"qid": "1", "coarse_category": "complex_emotions", "finegrained_category": "emotion_transition",
              "scenario": EU_SCENARIO, "subject": "Dorea",
              "emotion_choices": ["Delight", "Anger", "Embarrassment", "Hopeless", "Pride", "Disappointment"],
              "emotion_label": "Delight",
              "cause_choices": ["Her daughter enjoyed the baklava despite how it looked",
                                "The baklava turned out perfectly crisp", "Her daughter just arrived home",
                                "She wanted to throw the pastry away"],
              "cause_label": "Her daughter enjoyed the baklava despite how it looked",
              "emotion_explanation": "The baklava looked ruined, but her daughter's obvious enjoyment turns the "
                                     "moment around, so Dorea ends up feeling delight.",
              "cause_explanation": "Her daughter enjoyed the baklava and asked for more, despite how it looked.",
              "provenance": PROVENANCE}
    return record | changes


def ea_record(**changes) -> dict:
    record = {"qid": "1", "category": "Personal-Others", "question type": "Action", "scenario": EA_SCENARIO,
              "subject": "Sarah",
              "choices": ["Promise to keep the secret", "Inform their parents without telling him",
                          "Confront the bullies herself", "Encourage her brother to talk to a school counselor"],
              "label": "Encourage her brother to talk to a school counselor",
              "explanation": "A school counselor can support her brother and stop the bullying without Sarah "
                             "breaking his trust, so encouraging him to talk to the counselor is most effective.",
              "provenance": PROVENANCE | {"dialogue_id": "d2"}}
    return record | changes


def mcq_record(**changes) -> dict:
    record = {"item_id": "m1", "task": "EU", "category": "emotional_cues", "scenario": MCQ_SCENARIO,
              "question": "Which emotion does Malik most likely feel at the end?",
              "options": ["Relief", "Anger", "Fear", "Boredom"], "correct_answer": "Relief",
              "explanation": "After two weeks of waiting, the normal result lifts the weight off him, and the "
                             "long breath shows relief."}
    return record | changes


def merged(*records: dict, hint: str = "mads") -> list[pp.DatasetItem]:
    items, report = pp.merge_records([pp.RawRecord(f"test.jsonl:{n}", r, hint) for n, r in enumerate(records, 1)])
    assert not report.dropped, report.dropped
    return items


def eu_item(**changes) -> pp.DatasetItem:
    return merged(eu_record(**changes))[0]


def ea_item(**changes) -> pp.DatasetItem:
    return merged(ea_record(**changes))[0]


def mcq_item(**changes) -> pp.DatasetItem:
    return merged(mcq_record(**changes), hint="concise")[0]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --- fixtures are what the shared schemas accept ---------------------------------------------------------------

def test_fixture_records_are_valid_generator_outputs():
    GeneratedEUItem.model_validate(eu_record())
    GeneratedEAItem.model_validate(ea_record())
    MCQItem.model_validate(mcq_record())
    Provenance.model_validate(PROVENANCE)


# --- 1. reading and merging --------------------------------------------------------------------------------------

def test_merge_detects_all_three_shapes_and_keeps_native_and_training_fields():
    eu, ea, mcq = merged(eu_record(), ea_record(), mcq_record() | {"provenance": None})
    assert (eu.source_format, ea.source_format, mcq.source_format) == ("emobench_eu", "emobench_ea", "mcq")
    assert eu.item_id == "mads:EU:1" and ea.item_id == "mads:EA:1" and mcq.item_id == "mads:EU:m1"
    assert eu.options == eu.emotion_choices and eu.correct_answer == "Delight" and eu.cause_label.startswith("Her")
    assert eu.question == "What emotion(s) would Dorea ultimately feel in this situation?"
    assert ea.question_type == "Action" and ea.choices == ea.options and ea.label == ea.correct_answer
    assert (eu.pipeline, eu.persona_id, eu.dialogue_id, eu.theme, eu.generator_model) == \
        ("mads", "p1", "d1", "family", "hand-written")
    assert mcq.pipeline == "mads" and mcq.persona_id is None  # no provenance: the file's pipeline hint
    assert eu.source == "test.jsonl:1"


def test_merge_drops_unknown_shapes_and_schema_errors_with_file_and_line():
    records = [pp.RawRecord("a.jsonl:1", {"hello": "world"}, "mads"),
               pp.RawRecord("a.jsonl:2", {k: v for k, v in eu_record().items() if k != "scenario"}, "mads"),
               pp.RawRecord("a.jsonl:3", eu_record(coarse_category="happiness"), "mads"),
               pp.RawRecord("a.jsonl:4", ea_record(category="personal-others"), "mads")]
    items, report = pp.merge_records(records)
    assert [d.reason for d in report.dropped] == ["unknown_record_shape", "schema_error", "unknown_category"]
    assert [d.source for d in report.dropped] == ["a.jsonl:1", "a.jsonl:2", "a.jsonl:3"]
    assert "scenario" in report.dropped[1].detail
    assert [i.category for i in items] == ["Personal-Others"]  # paper spelling normalised to EmoBench's
    assert report.n_in == 4 and report.n_out == 1


def test_merge_leaves_content_errors_to_the_validation_filters():
    items = merged(eu_record(emotion_label="Joy"))  # the schema's "label not in choices" is a content error
    result = pp.check_answer_in_options(items)
    assert result.items == [] and result.report.dropped[0].reason == "answer_not_in_options"


def test_unknown_extra_fields_are_counted_not_fatal():
    items, report = pp.merge_records([pp.RawRecord("x:1", ea_record(area="boundary_setting"), "mads")])
    assert len(items) == 1 and report.notes["ignored_fields"] == {"area": 1}


def test_colliding_ids_are_renamed_not_lost():
    items, report = pp.merge_records([pp.RawRecord(f"x:{n}", eu_record(), "mads") for n in (1, 2)])
    assert [i.item_id for i in items] == ["mads:EU:1", "mads:EU:1~2"]
    assert report.notes["renamed_ids"] == {"mads:EU:1~2": "x:2"}


def test_malformed_lines_raise_with_file_and_line_or_are_counted(tmp_path):
    path = write_jsonl(tmp_path / "eu.jsonl", [eu_record(), "{not json", "", "[1, 2]", ea_record()])
    with pytest.raises(JSONLError, match=r"eu\.jsonl, line 2: not valid JSON.*on_error='skip'"):
        pp.read_records(path)
    records, report = pp.read_records(path, pipeline_hint="mads", on_error="skip")
    assert len(records) == 2 and [d.reason for d in report.dropped] == ["malformed_json", "malformed_json"]
    assert [d.source for d in report.dropped] == [f"{path}:2", f"{path}:4"]
    assert report.n_in == 4 and report.n_out == 2  # the blank line is not a record
    with pytest.raises(ValueError, match="on_error"):
        pp.read_records(path, on_error="ignore")


def test_missing_inputs_name_the_notebook_to_run_first(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="notebooks/01"):
        pp.resolve_input("mads/eu_items.jsonl", "mads")
    write_jsonl(tmp_path / "mads" / "EU_items_run1.jsonl", [eu_record()])
    write_jsonl(tmp_path / "mads" / "clean.jsonl", [ea_record()])
    assert pp.resolve_input("mads/eu_items.jsonl", "mads", fallback_token="eu") == \
        [tmp_path / "mads" / "EU_items_run1.jsonl"]
    with pytest.raises(FileNotFoundError, match="notebooks/01"):
        pp.resolve_input("mads/ea_items.jsonl", "mads", fallback_token="ea")  # "clean" is not an EA file
    assert len(pp.resolve_input("mads/*.jsonl", "mads")) == 2
    records, reports, files = pp.read_inputs([("mads/*.jsonl", "mads", None), ("mads/clean.jsonl", "mads", None),
                                              ("", "concise", None)])
    assert len(records) == 2 and len(reports) == 2 and files[0].name == "EU_items_run1.jsonl"
    assert pp.optional_inputs("mads/*dialogue*.jsonl, mads/clean.jsonl,") == [tmp_path / "mads" / "clean.jsonl"]
    assert pp.optional_inputs("") == []


# --- 2. dialogue cleaning -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag, expected", [
    ("CLIENT", "CLIENT"), ("client:", "CLIENT"), ("Patient", "CLIENT"), ("Therapist (Dr. Lee):", "THERAPIST"),
    ("therapist_agent", "THERAPIST"), ("Dr. Lee (counsellor)", "THERAPIST"), ("Quality Supervisor", "SUPERVISOR"),
    ("SUPERVISOR AGENT", "SUPERVISOR"), ("narrator", None), ("client and therapist", None)])
def test_speaker_tags_are_normalised(tag, expected):
    assert pp.normalise_speaker(tag) == expected


def test_unknown_speakers_are_reported_and_aliases_fix_them():
    turns = [{"speaker": "Maria", "text": "I can't sleep."}, {"speaker": "Therapist", "text": "Since when?"}]
    kept, report = pp.normalise_speakers(turns, dialogue_id="d9")
    assert [t["speaker"] for t in kept] == ["THERAPIST"]
    assert report.dropped[0].reason == "unknown_speaker" and report.dropped[0].item_id == "d9#0"
    kept, report = pp.normalise_speakers(turns, {"maria": "CLIENT"})
    assert [t["speaker"] for t in kept] == ["CLIENT", "THERAPIST"] and not report.dropped


def test_redundant_turns_are_removed_and_informative_ones_kept():
    turns = [{"speaker": "client", "text": "I feel so tired and sad since my mother moved away."},
             {"speaker": "Client", "text": "Sad and tired, yes."},  # adds nothing to the previous client turn
             {"speaker": "THERAPIST", "text": "That sounds really hard. When did she move?"},
             {"speaker": "CLIENT", "text": "Last spring, right after my birthday."},
             {"speaker": "THERAPIST", "text": "That sounds really hard.  When did she move?"},  # repeated
             {"speaker": "CLIENT", "text": "   "},  # empty
             {"speaker": "CLIENT", "text": "Yes."},
             {"speaker": "THERAPIST", "text": "Yes."},  # another speaker's short reply is not compared
             {"speaker": "SUPERVISOR", "text": "Good pacing; ask about her support network next."}]
    kept, report = pp.clean_dialogue(turns)
    assert [t["text"] for t in kept] == [turns[0]["text"], turns[2]["text"], turns[3]["text"], "Yes.", "Yes.",
                                         turns[8]["text"]]
    assert [d.reason for d in report.dropped] == ["adds_no_information", "repeated_turn", "empty_turn"]
    assert [t["speaker"] for t in kept] == ["CLIENT", "THERAPIST", "CLIENT", "CLIENT", "THERAPIST", "SUPERVISOR"]
    again, report_again = pp.clean_dialogue(kept)
    assert again == kept and not report_again.dropped


def test_dialogue_records_with_any_key_names_are_cleaned():
    records = [pp.RawRecord("d.jsonl:1", {"dialogue_id": "d1", "messages": [
                   {"role": "client", "content": "Hello."}, {"role": "client", "content": "Hello."}]}, "mads"),
               pp.RawRecord("d.jsonl:2", {"id": "d2", "turns": ["THERAPIST: How are you?", "CLIENT: Fine."]}, "mads"),
               pp.RawRecord("d.jsonl:3", {"persona_id": "p1", "n_items": 4}, "mads")]
    cleaned, report = pp.clean_dialogue_records(records)
    assert [c["dialogue_id"] for c in cleaned] == ["d1", "d2"]
    assert cleaned[1]["turns"] == [{"speaker": "THERAPIST", "text": "How are you?"},
                                   {"speaker": "CLIENT", "text": "Fine."}]
    assert report.notes["records_without_transcript"] == 1 and report.by_reason == {"repeated_turn": 1}


# --- 3. validation filters: a good and a bad item for each ------------------------------------------------------

GOOD = [eu_item(), ea_item(), mcq_item()]


def assert_filter(step, bad: pp.DatasetItem, reason: str, **kwargs):
    kept, report = step([*GOOD, bad], **kwargs)
    assert [i.item_id for i in kept] == [i.item_id for i in GOOD], report.dropped
    assert len(report.dropped) == 1 and report.dropped[0].reason == reason
    assert report.dropped[0].item_id == bad.item_id and report.n_in == 4 and report.n_out == 3
    return report.dropped[0]


def test_required_fields():
    assert_filter(pp.check_required_fields, mcq_item(item_id="bad").model_copy(update={"explanation": " "}),
                  "missing_field")
    five = eu_item(qid="bad")
    five = five.model_copy(update={"options": five.options[:5], "emotion_choices": five.options[:5]})
    assert "expected 6" in assert_filter(pp.check_required_fields, five, "option_count").detail


def test_answer_in_options_and_case_repair():
    assert_filter(pp.check_answer_in_options, mcq_item(item_id="bad", correct_answer="Joy"), "answer_not_in_options")
    assert_filter(pp.check_answer_in_options, eu_item(qid="bad", cause_label="Because of the weather"),
                  "answer_not_in_options")
    kept, report = pp.check_answer_in_options([ea_item(label="encourage her brother to talk to a SCHOOL counselor")])
    assert kept[0].correct_answer == kept[0].label == "Encourage her brother to talk to a school counselor"
    assert report.notes["repaired"] == ["mads:EA:1"]


def test_options_distinct():
    assert_filter(pp.check_options_distinct, mcq_item(item_id="bad", options=["Relief", "relief ", "Fear", "Joy"]),
                  "duplicate_options")


def test_emotion_labels_in_taxonomy():
    bad = eu_item(qid="bad", emotion_choices=["Delight", "Flabbergasted", "Embarrassment", "Hopeless", "Pride",
                                              "Disappointment"])
    assert "Flabbergasted" in assert_filter(pp.check_emotion_labels, bad, "emotion_not_in_taxonomy").detail
    cause_mcq = mcq_item(question="What caused this emotion?", options=["His test came back normal", "He lost his "
                         "phone"], correct_answer="His test came back normal", explanation="The normal result.")
    assert not pp.is_emotion_question(cause_mcq) and pp.check_emotion_labels([cause_mcq]).items == [cause_mcq]
    compound = eu_item(emotion_choices=["Delight & Pride", "Anger", "Embarrassment", "Hopeless", "Pride",
                                        "Disappointment"], emotion_label="Delight & Pride")
    assert pp.check_emotion_labels([compound]).items == [compound]  # EmoBench-style compounds are known


def test_scenario_length():
    assert_filter(pp.check_scenario_length, mcq_item(item_id="bad", scenario="Malik got good news."),
                  "scenario_too_short")
    assert_filter(pp.check_scenario_length, mcq_item(item_id="bad", scenario=MCQ_SCENARIO * 8), "scenario_too_long")
    assert pp.check_scenario_length([mcq_item(scenario="Malik got good news.")], min_words=3).items
    with pytest.raises(ValueError, match="min_words"):
        pp.check_scenario_length([], min_words=10, max_words=5)


def test_label_leak():
    leak = EU_SCENARIO.replace("smiled widely", "and Dorea was delighted")
    assert_filter(pp.check_label_leak, eu_item(qid="bad", scenario=leak), "label_leak")
    assert_filter(pp.check_label_leak, mcq_item(item_id="bad", scenario=MCQ_SCENARIO + " What a relief."),
                  "label_leak")
    negated = EU_SCENARIO.replace("smiled widely", "and Dorea was not delighted at first")
    assert pp.check_label_leak([eu_item(scenario=negated)]).items  # a negated mention does not give it away


def test_no_letter_references():
    bad = ea_item(qid="bad", explanation="Option D is best because a counselor can help him.")
    assert_filter(pp.check_no_letter_references, bad, "explanation_cites_letter")
    assert_filter(pp.check_no_letter_references, mcq_item(item_id="bad", explanation="Relief (A) fits the sigh."),
                  "explanation_cites_letter")
    fine = ea_item(explanation="A counselor is the answer; a trusted adult can help him.")
    assert pp.check_no_letter_references([fine]).items  # the article "a" is not a letter


def test_explanation_consistency():
    angry = eu_item(qid="bad", emotion_explanation="Seeing the ruined pastry, Dorea feels anger at herself.")
    assert "Anger" in assert_filter(pp.check_explanation_consistency, angry, "self_contradiction").detail
    wrong_cause = eu_item(qid="bad2", cause_explanation="She wanted to throw the pastry away, so the pastry made "
                                                        "her want to throw it away.")
    assert_filter(pp.check_explanation_consistency, wrong_cause, "self_contradiction")
    tell_parents = ea_item(qid="bad", explanation="Sarah should inform their parents without telling him, since "
                                                  "parents must know.")
    assert_filter(pp.check_explanation_consistency, tell_parents, "self_contradiction")
    # mentioning a distractor to reject it, next to the answer, is not a contradiction
    both = eu_item(emotion_explanation="Not anger or disappointment: her daughter's thumbs-up brings delight.")
    assert pp.check_explanation_consistency([both]).items == [both]


def test_validate_items_runs_every_filter_and_reports_each():
    items = [*GOOD, mcq_item(item_id="short", scenario="Too short."), mcq_item(item_id="dup", options=["A", "a"],
                                                                               correct_answer="A")]
    kept, report = pp.validate_items(items)
    assert [i.item_id for i in kept] == [i.item_id for i in GOOD]
    assert report.by_reason == {"scenario_too_short": 1, "duplicate_options": 1}
    assert len(report.notes["steps"]) == 8


# --- 4.-5. decontamination and de-duplication --------------------------------------------------------------------

def test_decontamination_drops_copies_and_padded_copies_of_emobench():
    references = [("EU:7", EU_SCENARIO), ("EA:3", "Natalie's friend calls her every hour since the break-up.")]
    copy = mcq_item(item_id="copy", scenario=EU_SCENARIO.replace("whole afternoon", "entire afternoon"))
    padded = mcq_item(item_id="padded", scenario="It had been a long week at work. " + references[1][1] +
                      " Natalie has not slept well for days and her own exams start on Monday morning.")
    kept, report = pp.decontaminate([*GOOD[1:], copy, padded], references)
    assert [i.item_id for i in kept] == [i.item_id for i in GOOD[1:]]
    assert [d.reason for d in report.dropped] == ["emobench_overlap"] * 2
    assert "EU:7" in report.dropped[0].detail and "contained" in report.dropped[1].detail


def test_emobench_loader_reads_a_folder_and_the_environment(tmp_path, monkeypatch):
    def emobench_row(record: dict) -> dict:
        return {k: v for k, v in record.items() if "explanation" not in k and k != "provenance"}
    write_jsonl(tmp_path / "EU.jsonl", [emobench_row(eu_record(qid=9, language="en"))])
    chinese = ea_record(qid="2", language="zh", scenario="莎拉发现弟弟被欺负。")
    write_jsonl(tmp_path / "EA.jsonl", [emobench_row(ea_record(language="en")), emobench_row(chinese)])
    assert pp.load_emobench_scenarios(tmp_path) == [("EU:9", EU_SCENARIO), ("EA:1", EA_SCENARIO)]
    monkeypatch.setenv("EMOBENCH_DIR", str(tmp_path))
    assert pp.load_emobench_scenarios(language="all")[-1] == ("EA:2", "莎拉发现弟弟被欺负。")
    with pytest.raises(EmoBenchDataError, match="EMOBENCH_DIR"):
        pp.load_emobench_scenarios(tmp_path / "nowhere")


@pytest.mark.skipif(shared_dir() is None or not (shared_dir() / "emobench").is_dir(), reason="no shared EmoBench")
def test_real_emobench_scenarios_are_caught():
    references = pp.load_emobench_scenarios()  # shared/emobench, as the evaluation loads it
    assert len(references) == 400  # 200 EU + 200 EA English items
    copied = mcq_item(item_id="copied", scenario=references[0][1])
    kept, report = pp.decontaminate([*GOOD, copied], references)
    assert kept == GOOD and report.dropped[0].item_id == "concise:EU:copied"


def test_deduplication_drops_near_duplicates_within_a_question_kind():
    near = EU_SCENARIO.replace("whole afternoon", "entire afternoon").replace("widely", "broadly")
    twin = eu_item(qid="2", scenario=near)
    ea_same_moment = ea_item(qid="2", scenario=EU_SCENARIO)  # an EA item about the same moment teaches other things
    kept, report = pp.deduplicate([*GOOD, twin, ea_same_moment])
    assert [i.item_id for i in kept] == [*[i.item_id for i in GOOD], "mads:EA:2"]
    assert report.dropped[0].reason == "near_duplicate" and "mads:EU:1" in report.dropped[0].detail


def test_deduplication_recall_on_planted_duplicates():
    words = (EU_SCENARIO + " " + EA_SCENARIO + " " + MCQ_SCENARIO).split()
    base = [mcq_item(item_id=f"m{n}", scenario=" ".join(random.Random(n).sample(words, 60))) for n in range(30)]
    planted = []
    for n, item in enumerate(base[::2]):  # a copy of every other scenario with one or two words edited
        edited = item.scenario.split()
        edited[n % 50] = "Malick"
        if n % 3 == 0:
            del edited[-1]
        planted.append(item.model_copy(update={"item_id": item.item_id + "-copy", "scenario": " ".join(edited)}))
    for method in ("lsh", "exhaustive"):
        kept, report = pp.deduplicate([*base, *planted], method=method)
        assert [i.item_id for i in kept] == [b.item_id for b in base]
        assert {d.item_id for d in report.dropped} == {p.item_id for p in planted}
        assert {d.reason for d in report.dropped} == {"near_duplicate"}


# --- 6. category balance ------------------------------------------------------------------------------------------

def test_category_cap_enforces_the_one_and_a_half_rule():
    for counts in ([10, 2, 2, 2], [100, 100, 100, 0], [5, 5, 5, 5], [40, 1, 0, 0], [0, 0, 0, 0]):
        cap = pp.category_cap(counts, 1.5)
        cut = [min(c, cap) for c in counts]
        assert all(c <= 1.5 * sum(cut) / 4 + 1e-9 for c in cut)
        if cap < max(counts):  # and it is the largest cap that does
            bigger = [min(c, cap + 1) for c in counts]
            assert any(c > 1.5 * sum(bigger) / 4 for c in bigger)
    assert pp.category_cap([10, 2, 2, 2], 1.5) == 3
    assert pp.category_cap([3, 0, 0, 0], 1.5) == 0 and pp.category_cap([3, 0, 0, 0], 1.5, min_cap=2) == 2


def test_balancing_keeps_the_earliest_items_and_reports_paper_counts():
    categories = ["complex_emotions"] * 10 + ["emotional_cues", "perspective_taking",
                                              "personal_beliefs_and_experiences"] * 2
    items = [mcq_item(item_id=f"m{n}", category=c) for n, c in enumerate(categories)]
    kept, report = pp.balance_categories(items)
    assert report.notes["caps"]["EU"] == 3
    assert [i.item_id for i in kept if i.category == "complex_emotions"] == [f"concise:EU:m{n}" for n in range(3)]
    assert report.by_reason == {"over_category_cap": 7} and report.notes["after"]["EU"]["complex_emotions"] == 3
    eu_rows = [r for r in pp.counts_vs_paper(kept) if r["task"] == "EU"]
    assert {r["category"]: (r["ours"], r["paper"]) for r in eu_rows}["complex_emotions"] == (3, 382)
    assert pp.balance_categories(items, ratio=None).items == items


# --- 7. answer positions --------------------------------------------------------------------------------------------

def test_answer_positions_become_uniform_deterministic_and_idempotent():
    items = [mcq_item(item_id=f"m{n}") for n in range(40)] + [ea_item(qid=str(n)) for n in range(40)]
    assert pp.answer_letter_counts(items)["MCQ-EU/4"] == {"A": 40, "B": 0, "C": 0, "D": 0}
    shuffled, report = pp.balance_answer_positions(items, seed=1)
    counts = pp.answer_letter_counts(shuffled)
    assert counts["MCQ-EU/4"] == {"A": 10, "B": 10, "C": 10, "D": 10} and counts["EA/4"] == dict.fromkeys("ABCD", 10)
    assert report.notes["before"]["MCQ-EU/4"]["p_value"] < 1e-6 and report.notes["after"]["EA/4"]["p_value"] == 1.0
    for old, new in zip(items, shuffled, strict=True):
        assert sorted(old.options) == sorted(new.options) and old.correct_answer == new.correct_answer
        assert new.choices in (None, new.options)
    assert pp.balance_answer_positions(shuffled, seed=1).items == shuffled
    assert pp.balance_answer_positions(items, seed=1).items == shuffled
    assert pp.balance_answer_positions(items, seed=2).items != shuffled


def test_eu_items_shuffle_both_questions_and_keep_mirrors():
    items = [eu_item(qid=str(n)) for n in range(12)]
    shuffled, _ = pp.balance_answer_positions(items)
    counts = pp.answer_letter_counts(shuffled)
    assert counts["EU-emotion/6"] == dict.fromkeys("ABCDEF", 2) and counts["EU-cause/4"] == dict.fromkeys("ABCD", 3)
    assert all(i.emotion_choices == i.options and i.cause_label in i.cause_choices for i in shuffled)


# --- 8. split, outputs, contract for training --------------------------------------------------------------------

def test_split_is_stratified_when_possible_and_falls_back_otherwise():
    categories = ["complex_emotions", "emotional_cues", "perspective_taking", "personal_beliefs_and_experiences"]
    items = [mcq_item(item_id=f"m{n}", category=categories[n % 4]) for n in range(40)]
    split, notes = pp.split_train_validation(items, validation_fraction=0.2)
    assert notes["method"] == "stratified" and len(split["validation"]) == 8
    assert sorted(i.category for i in split["validation"]) == sorted(categories * 2)
    split, notes = pp.split_train_validation(items[:5], validation_fraction=0.2)
    assert notes["method"] == "plain" and "stratified split impossible" in notes["reason"]
    assert len(split["train"]) + len(split["validation"]) == 5
    for few in ([], items[:1]):
        split, notes = pp.split_train_validation(few)
        assert split == {"train": few, "validation": []} and notes["method"] == "none"


def test_item_questions_for_each_record_shape():
    emotion, cause = pp.item_questions(eu_item())
    assert (emotion.kind, emotion.options[emotion.answer_index], emotion.explanation.endswith("delight.")) == \
        ("EU-emotion", "Delight", True)
    assert cause.kind == "EU-cause" and cause.options[cause.answer_index].startswith("Her daughter enjoyed")
    (action,) = pp.item_questions(ea_item())
    assert action.question == "In this scenario, what is the most effective action for Sarah?"
    (generic,) = pp.item_questions(mcq_item())
    assert generic.question == mcq_record()["question"] and generic.answer_letter == "A"
    assert "<options>\nA) Relief" in user_prompt(generic)


def run_everything(raw_files: list[Path], out: Path, references) -> list[pp.DatasetItem]:
    records = [r for path in raw_files for r in pp.read_records(path, pipeline_hint="mads").items]
    items, merge_report = pp.merge_records(records)
    final, report = pp.preprocess_items(items, references, min_cap=1)
    split, notes = pp.split_train_validation(final, validation_fraction=0.25)
    pp.save_processed(split, [merge_report, *report.notes["reports"]], notes, out, inputs=[str(p) for p in raw_files])
    return final


def test_end_to_end_outputs_and_idempotence(tmp_path):
    references = [("EU:1", EU_SCENARIO)]
    rows = [eu_record(qid="1"), eu_record(qid="2", scenario=EA_SCENARIO, emotion_label="Anger",
                                          emotion_explanation="Sarah feels anger at the bullies."),
            ea_record(qid="1"), ea_record(qid="2", category="Social-Self"), mcq_record(),
            mcq_record(item_id="m2", category="perspective_taking", scenario=EA_SCENARIO)]
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    final = run_everything([raw], tmp_path / "once", references)
    assert "mads:EU:1" not in {i.item_id for i in final}  # contaminated
    files = {p.name: p.read_bytes() for p in (tmp_path / "once").glob("*.*")}
    assert set(files) == {"train.jsonl", "validation.jsonl", "README.md", "preprocess_report.json"}
    # running again on the same input, and on its own output, changes nothing
    run_everything([raw], tmp_path / "twice", references)
    assert files == {p.name: p.read_bytes() for p in (tmp_path / "twice").glob("*.*")}
    processed = [tmp_path / "once" / "train.jsonl", tmp_path / "once" / "validation.jsonl"]
    again = run_everything(processed, tmp_path / "thrice", references)
    assert sorted(again, key=lambda i: i.item_id) == sorted(final, key=lambda i: i.item_id)
    # the contract for training and the saved artefacts
    loaded = pp.load_split("train", tmp_path / "once") + pp.load_split("validation", tmp_path / "once")
    assert sorted(i.item_id for i in loaded) == sorted(i.item_id for i in final)
    from datasets import load_from_disk
    hf = load_from_disk(str(tmp_path / "once" / "hf"))
    assert hf["train"].num_rows + hf["validation"].num_rows == len(final)
    report = json.loads(files["preprocess_report.json"])
    assert [s["step"] for s in report["steps"]][:2] == ["merge", "validation"]
    assert report["steps"][2]["by_reason"] == {"emobench_overlap": 1}
    card = files["README.md"].decode()
    assert "| EU | complex_emotions |" in card and "License" in card and "decontamination" in card


def test_empty_input_does_not_crash(tmp_path):
    final, report = pp.preprocess_items([], [])
    split, notes = pp.split_train_validation(final)
    paths = pp.save_processed(split, report.notes["reports"], notes, tmp_path)
    assert pp.load_split("validation", tmp_path) == [] and paths["hf"].is_dir()


def test_load_split_says_which_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_preprocess"):
        pp.load_split("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        pp.load_split("test", tmp_path)
