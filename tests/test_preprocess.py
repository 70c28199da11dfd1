"""Preprocessing (notebook 03): loading names every bad line, each filter rejects its bad item for the stated reason
and keeps the good ones, and the whole chapter runs end to end on files as the generators write them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ec2er_utils import preprocess as pp
from ec2er_utils.emobench import EmoBenchDataError
from ec2er_utils.formatting import EA_QUESTION, EU_EMOTION_QUESTION, user_prompt
from ec2er_utils.jsonl import JSONLError
from ec2er_utils.parameters import ParameterError
from ec2er_utils.paths import shared_dir
from ec2er_utils.schemas import DatasetItem
from ec2er_utils.taxonomy import SCENARIO_WORDS

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
EMOTIONS = ["Delight", "Anger", "Embarrassment", "Hopeless", "Pride", "Disappointment"]
CAUSES = ["Her daughter enjoyed the baklava despite how it looked", "The baklava turned out perfectly crisp",
          "Her daughter just arrived home", "She wanted to throw the pastry away"]
ACTIONS = ["Promise to keep the secret", "Inform their parents without telling him", "Confront the bullies herself",
           "Encourage her brother to talk to a school counselor"]


def eu_item(**changes) -> DatasetItem:
    """An EU item as MADS writes it (source_format emobench_eu); emotion_* mirror the training fields."""
    fields = {"item_id": "eu1", "task": "EU", "category": "complex_emotions", "source_format": "emobench_eu",
              "scenario": EU_SCENARIO, "question": EU_EMOTION_QUESTION.format(subject="Dorea"),
              "options": EMOTIONS, "correct_answer": "Delight",
              "explanation": "The baklava looked ruined, but her daughter's obvious enjoyment turns the moment "
                             "around, so Dorea ends up feeling delight.",
              "subject": "Dorea", "finegrained_category": "emotion_transition", "cause_choices": CAUSES,
              "cause_label": CAUSES[0],
              "cause_explanation": "Her daughter enjoyed the baklava and asked for more, despite how it looked.",
              **PROVENANCE} | changes
    return DatasetItem(**fields, emotion_choices=fields["options"], emotion_label=fields["correct_answer"],
                       emotion_explanation=fields["explanation"])


def ea_item(**changes) -> DatasetItem:
    """An EA item as MADS writes it (source_format emobench_ea); choices/label mirror options/correct_answer."""
    fields = {"item_id": "ea1", "task": "EA", "category": "Personal-Others", "source_format": "emobench_ea",
              "scenario": EA_SCENARIO, "question": EA_QUESTION.format(question_type="action", subject="Sarah"),
              "options": ACTIONS, "correct_answer": ACTIONS[3],
              "explanation": "A school counselor can support her brother and stop the bullying without Sarah "
                             "breaking his trust, so encouraging him to talk to the counselor is most effective.",
              "subject": "Sarah", "question_type": "Action", **PROVENANCE, "dialogue_id": "d2"} | changes
    return DatasetItem(**fields, choices=fields["options"], label=fields["correct_answer"])


def mcq_item(**changes) -> DatasetItem:
    """An item as the concise pipeline writes it (source_format mcq)."""
    fields = {"item_id": "m1", "task": "EU", "category": "emotional_cues", "source_format": "mcq",
              "scenario": MCQ_SCENARIO, "question": "Which emotion does Malik most likely feel at the end?",
              "options": ["Relief", "Anger", "Fear", "Boredom"], "correct_answer": "Relief",
              "explanation": "After two weeks of waiting, the normal result lifts the weight off him, and the "
                             "long breath shows relief.",
              **PROVENANCE, "pipeline": "concise", "dialogue_id": "c1"}
    return DatasetItem(**fields | changes)


def write_jsonl(path: Path, rows: list) -> Path:
    """Lines as a generator writes them: DatasetItems as JSON, strings verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else r.model_dump_json() if isinstance(r, DatasetItem) else json.dumps(r)
             for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def without_source(items: list[DatasetItem]) -> list[dict]:
    return sorted((i.model_dump(exclude={"source"}) for i in items), key=lambda d: d["item_id"])


# --- 1. loading ---------------------------------------------------------------------------------------------------

def test_load_reads_the_generators_files_line_by_line_with_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    eu = write_jsonl(tmp_path / "mads" / "eu_items.jsonl", [eu_item(), "", eu_item(item_id="eu2")])
    ea = write_jsonl(tmp_path / "mads" / "ea_items.jsonl", [ea_item()])
    concise = write_jsonl(tmp_path / "concise" / "items_final.jsonl", [mcq_item()])
    items, report = pp.load_items()
    assert [i.item_id for i in items] == ["eu1", "eu2", "ea1", "m1"]
    assert [i.source for i in items] == [f"{eu}:1", f"{eu}:3", f"{ea}:1", f"{concise}:1"]
    assert items[0] == eu_item(source=f"{eu}:1")  # nothing converted: the record is the item
    assert report.notes["files"] == {str(eu): {"lines": 2, "items": 2}, str(ea): {"lines": 1, "items": 1},
                                     str(concise): {"lines": 1, "items": 1}}
    assert (report.step, report.n_in, report.n_out, report.dropped) == ("load", 4, 4, [])


def test_lines_that_are_not_dataset_items_are_dropped_with_the_fields_named(tmp_path):
    mismatched = eu_item().model_dump() | {"emotion_label": "Anger"}  # mirror differs from correct_answer
    path = write_jsonl(tmp_path / "items.jsonl", [
        {"hello": "world"}, eu_item().model_dump(exclude={"scenario"}), ea_item().model_dump() | {"area": "x"},
        mismatched, mcq_item().model_dump() | {"task": "XY"}, mcq_item()])
    items, report = pp.read_items(path)
    assert [i.item_id for i in items] == ["m1"]
    assert report.by_reason == {"schema_error": 5}
    assert [d.source for d in report.dropped] == [f"{path}:{n}" for n in range(1, 6)]
    details = [d.detail for d in report.dropped]
    assert "item_id: Field required" in details[0] and "scenario: Field required" in details[1]
    assert "area: Extra inputs are not permitted" in details[2] and "emotion_label" in details[3]
    assert details[4].startswith("task:")
    assert report.dropped[1].item_id == "eu1"  # the record's id when it has one, else file:line


def test_malformed_lines_raise_with_file_and_line_or_are_dropped(tmp_path):
    path = write_jsonl(tmp_path / "eu.jsonl", [eu_item(), "{not json", "", "[1, 2]", ea_item()])
    with pytest.raises(JSONLError, match=r"eu\.jsonl, line 2: not valid JSON.*on_error = 'skip'"):
        pp.read_items(path)
    items, report = pp.read_items(path, on_error="skip")
    assert len(items) == 2 and [d.reason for d in report.dropped] == ["malformed_json", "malformed_json"]
    assert [d.source for d in report.dropped] == [f"{path}:2", f"{path}:4"]
    assert report.n_in == 4 and report.n_out == 2  # the blank line is not a record
    with pytest.raises(ValueError, match="on_error"):
        pp.read_items(path, on_error="ignore")


def test_missing_inputs_name_the_notebook_to_run_first(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="notebooks/01_mads.ipynb.*inputs"):
        pp.input_files("mads/eu_items.jsonl")
    write_jsonl(tmp_path / "mads" / "eu_items.jsonl", [eu_item()])
    write_jsonl(tmp_path / "mads" / "ea_items.jsonl", [ea_item()])
    with pytest.raises(FileNotFoundError, match="notebooks/02_concise.ipynb"):
        pp.load_items()
    items, report = pp.load_items(["mads/*_items.jsonl"])  # globs, and an explicit list skips the concise file
    assert [i.item_id for i in items] == ["ea1", "eu1"] and len(report.notes["files"]) == 2


def test_shards_are_read_beside_their_file_and_records_read_twice_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    shards = [write_jsonl(tmp_path / "mads" / f"shard-{n}" / "eu_items.jsonl", [eu_item(item_id=f"eu{n}")])
              for n in (10, 2)]
    assert pp.input_files("mads/eu_items.jsonl") == shards[::-1]  # shard-2 before shard-10
    merged = write_jsonl(tmp_path / "mads" / "eu_items.jsonl", [eu_item(item_id="eu2"), eu_item(item_id="eu10")])
    assert pp.input_files("mads/eu_items.jsonl") == [merged, *shards[::-1]]
    items, report = pp.load_items(["mads/eu_items.jsonl"])
    assert [i.item_id for i in items] == ["eu2", "eu10"] and report.by_reason == {"duplicate_record": 2}
    assert report.dropped[0].source == f"{shards[1]}:1" and f"{merged}:1" in report.dropped[0].detail


def test_colliding_ids_are_renamed_not_lost(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [eu_item(), eu_item(scenario=EU_SCENARIO + " Then she laughed.")])
    items, report = pp.load_items([str(path)])
    assert [i.item_id for i in items] == ["eu1", "eu1~2"]
    assert report.notes["renamed_ids"] == {"eu1~2": f"{path}:2"}


def test_config_names_bad_parameters():
    config = pp.PreprocessConfig.from_parameters({"seed": 3, "inputs": None, "pd": object()})
    assert config.seed == 3 and config.inputs is None and config.on_error == "skip"
    with pytest.raises(ParameterError) as caught:
        pp.PreprocessConfig.from_parameters({"on_error": "ignore", "validation_fraction": 1.0, "inputs": []})
    message = str(caught.value)
    assert all(f"'{name}'" in message for name in ("on_error", "validation_fraction", "inputs"))
    assert "min_words" not in pp.PreprocessConfig.model_fields  # the paper's limits are one constant
    assert SCENARIO_WORDS == (50, 500)


# --- 3. validation filters: a good and a bad item for each ------------------------------------------------------

GOOD = [eu_item(), ea_item(), mcq_item()]


def assert_filter(step, bad: DatasetItem, reason: str, **kwargs):
    kept, report = step([*GOOD, bad], **kwargs)
    assert [i.item_id for i in kept] == [i.item_id for i in GOOD], report.dropped
    assert len(report.dropped) == 1 and report.dropped[0].reason == reason
    assert report.dropped[0].item_id == bad.item_id and report.n_in == 4 and report.n_out == 3
    return report.dropped[0]


def test_required_fields():
    assert_filter(pp.check_required_fields, mcq_item(item_id="bad").model_copy(update={"explanation": " "}),
                  "missing_field")
    five = eu_item(item_id="bad")
    five = five.model_copy(update={"options": five.options[:5], "emotion_choices": five.options[:5]})
    assert "expected 6" in assert_filter(pp.check_required_fields, five, "option_count").detail
    wrong = assert_filter(pp.check_required_fields, ea_item(item_id="bad", category="personal-others"),
                          "unknown_category")
    assert "Personal-Others" in wrong.detail and wrong.source is None  # built here, not read from a file


def test_an_ea_question_has_four_options_in_either_format():
    three = mcq_item(item_id="bad", task="EA", category="Personal-Others", question="What should Malik do?",
                     options=["Call his doctor back", "Go for a long walk", "Tell his sister the news"],
                     correct_answer="Tell his sister the news")
    assert "expected 4" in assert_filter(pp.check_required_fields, three, "option_count").detail
    four = three.model_copy(update={"item_id": "ok", "options": [*three.options, "Book a holiday"]})
    assert pp.check_required_fields([four]).items == [four]


def test_answer_in_options_and_case_repair():
    assert_filter(pp.check_answer_in_options, mcq_item(item_id="bad", correct_answer="Joy"), "answer_not_in_options")
    assert_filter(pp.check_answer_in_options, eu_item(item_id="bad", cause_label="Because of the weather"),
                  "answer_not_in_options")
    kept, report = pp.check_answer_in_options([ea_item(correct_answer="encourage her brother to talk to a SCHOOL "
                                                                      "counselor")])
    assert kept[0].correct_answer == kept[0].label == "Encourage her brother to talk to a school counselor"
    assert report.notes["repaired"] == ["ea1"]


def test_a_letter_answer_becomes_the_option_it_names():
    # "B" is what generators write most often instead of the option's text
    for answer in ("B", "(B)", "B)", "Option B", "option: B", "B) Anger", "B. anger"):
        kept, report = pp.check_answer_in_options([mcq_item(correct_answer=answer)])
        assert [i.correct_answer for i in kept] == ["Anger"], answer
        assert report.notes["letter_answers"] == ["m1"] and report.notes["repaired"] == ["m1"]
    kept, _ = pp.check_answer_in_options([ea_item(correct_answer="D"),
                                          eu_item(cause_label="A")])
    assert kept[0].correct_answer == kept[0].label == ACTIONS[3] and kept[1].cause_label == CAUSES[0]
    # ambiguous or contradictory letters are dropped, and the detail says why
    beyond = assert_filter(pp.check_answer_in_options, mcq_item(item_id="bad", correct_answer="F"),
                           "answer_not_in_options")
    assert "only 4 options" in beyond.detail
    clash = assert_filter(pp.check_answer_in_options, mcq_item(item_id="bad", correct_answer="B) Fear"),
                          "answer_not_in_options")
    assert "letter B is 'Anger', not 'Fear'" in clash.detail
    letters = mcq_item(item_id="bad", options=["A", "B", "C", "D"], correct_answer="(B)")
    assert "ambiguous" in assert_filter(pp.check_answer_in_options, letters, "answer_not_in_options").detail


def test_options_distinct():
    assert_filter(pp.check_options_distinct, mcq_item(item_id="bad", options=["Relief", "relief ", "Fear", "Joy"]),
                  "duplicate_options")


def test_emotion_labels_in_taxonomy():
    bad = eu_item(item_id="bad", options=["Delight", "Flabbergasted", "Embarrassment", "Hopeless", "Pride",
                                          "Disappointment"])
    assert "Flabbergasted" in assert_filter(pp.check_emotion_labels, bad, "emotion_not_in_taxonomy").detail
    cause_mcq = mcq_item(question="What caused this emotion?", options=["His test came back normal", "He lost his "
                         "phone"], correct_answer="His test came back normal", explanation="The normal result.")
    assert not pp.is_emotion_question(cause_mcq) and pp.check_emotion_labels([cause_mcq]).items == [cause_mcq]
    compound = eu_item(options=["Delight & Pride", "Anger", "Embarrassment", "Hopeless", "Pride",
                                        "Disappointment"], correct_answer="Delight & Pride")
    assert pp.check_emotion_labels([compound]).items == [compound]  # EmoBench-style compounds are known


def test_scenario_length():
    assert_filter(pp.check_scenario_length, mcq_item(item_id="bad", scenario="Malik got good news."),
                  "scenario_too_short")
    assert_filter(pp.check_scenario_length, mcq_item(item_id="bad", scenario=MCQ_SCENARIO * 8), "scenario_too_long")
    assert pp.check_scenario_length([mcq_item(scenario="Malik got good news.")], (3, 500)).items
    with pytest.raises(ValueError, match="shortest is larger"):
        pp.check_scenario_length([], (10, 5))


def test_label_leak():
    leak = EU_SCENARIO.replace("smiled widely", "and Dorea was delighted")
    assert_filter(pp.check_label_leak, eu_item(item_id="bad", scenario=leak), "label_leak")
    assert_filter(pp.check_label_leak, mcq_item(item_id="bad", scenario=MCQ_SCENARIO + " What a relief."),
                  "label_leak")
    negated = EU_SCENARIO.replace("smiled widely", "and Dorea was not delighted at first")
    assert pp.check_label_leak([eu_item(scenario=negated)]).items  # a negated mention does not give it away


def test_letter_citations_are_kept_and_rewritten_when_the_options_move():
    cites = ea_item(explanation="Option D is best because a counselor can help him, unlike (A) or option C.")
    assert pp.cited_letters(cites.explanation) == ["D", "A", "C"]
    kept, report = pp.check_letter_references([*GOOD, cites.model_copy(update={"item_id": "cites"})])
    assert len(kept) == 4 and report.notes["cites_letters"] == ["cites"]
    items = [cites.model_copy(update={"item_id": f"ea{n}"}) for n in range(8)]
    shuffled, report = pp.balance_answer_positions(items, seed=3)
    for new in shuffled:
        letter = {o: "ABCD"[new.options.index(o)] for o in new.options}
        d, a, c = letter[ACTIONS[3]], letter[ACTIONS[0]], letter[ACTIONS[2]]
        assert new.explanation == (f"Option {d} is best because a counselor can help him, unlike ({a}) or "
                                   f"option {c}.")
    assert set(report.notes["rewritten_citations"]) == {i.item_id for i, s in zip(items, shuffled, strict=True)
                                                        if s.options != i.options}
    assert pp.balance_answer_positions(shuffled, seed=3).items == shuffled  # idempotent, letters included
    # an EU item: each explanation follows its own question's options, and the emotion mirror follows too
    eu = eu_item(explanation="Her daughter's thumbs-up turns the ruined baklava into delight, option A.",
                 cause_explanation="Option A: her daughter enjoyed the baklava and asked for a second piece.")
    (moved,), _ = pp.balance_answer_positions([eu], seed=0)
    assert moved.explanation.endswith(f"option {'ABCDEF'[moved.options.index('Delight')]}.")
    assert moved.emotion_explanation == moved.explanation
    assert moved.cause_explanation.startswith(f"Option {'ABCD'[moved.cause_choices.index(CAUSES[0])]}:")
    assert pp.rewrite_letter_citations("Option B, not (D).", {"B": "D", "D": "B"}) == "Option D, not (B)."


def test_a_letter_citation_that_cannot_be_rewritten_is_dropped_and_says_so():
    bad = ea_item(item_id="bad", explanation="Option F is best because a counselor can help him and stop it.")
    dropped = assert_filter(pp.check_letter_references, bad, "explanation_cites_letter")
    assert "option F" in dropped.detail and "cannot be rewritten" in dropped.detail
    fine = ea_item(explanation="A counselor is the answer; a trusted adult can help him.")
    assert pp.check_letter_references([fine]).report.notes["cites_letters"] == []  # the article "a" is no letter


def test_explanation_consistency():
    angry = eu_item(item_id="bad", explanation="Seeing the ruined pastry, Dorea feels anger at herself.")
    assert "Anger" in assert_filter(pp.check_explanation_consistency, angry, "self_contradiction").detail
    wrong_cause = eu_item(item_id="bad2", cause_explanation="She wanted to throw the pastry away, so the pastry made "
                                                        "her want to throw it away.")
    assert_filter(pp.check_explanation_consistency, wrong_cause, "self_contradiction")
    tell_parents = ea_item(item_id="bad", explanation="Sarah should inform their parents without telling him, since "
                                                  "parents must know.")
    assert_filter(pp.check_explanation_consistency, tell_parents, "self_contradiction")
    # mentioning a distractor to reject it, next to the answer, is not a contradiction
    both = eu_item(explanation="Not anger or disappointment: her daughter's thumbs-up brings delight.")
    assert pp.check_explanation_consistency([both]).items == [both]


def test_an_explanation_that_argues_for_another_options_text_is_caught():
    # it covers the answer's words too, but concludes for a distractor: caught by its conclusion
    argues = ea_item(item_id="bad", explanation="Encouraging her brother to talk to a school counselor sounds "
                     "caring, but it is too slow; the most effective action is to confront the bullies herself.")
    detail = assert_filter(pp.check_explanation_consistency, argues, "self_contradiction").detail
    assert "concludes" in detail and "Confront the bullies herself" in detail
    turns = eu_item(item_id="bad", explanation="Dorea could feel some delight at the thumbs-up, but the ruined "
                    "pastry stays with her, so she ultimately feels embarrassment.")
    assert "Embarrassment" in assert_filter(pp.check_explanation_consistency, turns, "self_contradiction").detail
    # a distractor's words in a negated clause argue against it: kept
    rejects = ea_item(explanation="She should not confront the bullies herself; encouraging her brother to talk "
                                  "to a school counselor is the most effective action.")
    assert pp.check_explanation_consistency([rejects]).items == [rejects]
    assert pp.conclusion("It hurts, so she cries.") == "so she cries." and pp.conclusion("It hurts.") is None


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
    def eu_row(item: DatasetItem, qid, language="en") -> dict:  # EmoBench's EU.jsonl fields
        return {"qid": qid, "language": language, "coarse_category": item.category, "finegrained_category":
                item.finegrained_category, "scenario": item.scenario, "subject": item.subject, "emotion_choices":
                item.options, "emotion_label": item.correct_answer, "cause_choices": item.cause_choices,
                "cause_label": item.cause_label}

    def ea_row(item: DatasetItem, qid, language="en") -> dict:  # EmoBench's EA.jsonl fields
        return {"qid": qid, "language": language, "category": item.category, "question type": item.question_type,
                "scenario": item.scenario, "subject": item.subject, "choices": item.options, "label":
                item.correct_answer}
    write_jsonl(tmp_path / "EU.jsonl", [eu_row(eu_item(), 9)])
    chinese = ea_row(ea_item(scenario="莎拉发现弟弟被欺负。"), "2", "zh")
    write_jsonl(tmp_path / "EA.jsonl", [ea_row(ea_item(), "1"), chinese])
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
    assert kept == GOOD and report.dropped[0].item_id == "copied"


def test_deduplication_drops_near_duplicates_within_a_question_kind():
    near = EU_SCENARIO.replace("whole afternoon", "entire afternoon").replace("widely", "broadly")
    twin = eu_item(item_id="eu2", scenario=near)
    ea_same_moment = ea_item(item_id="ea2", scenario=EU_SCENARIO)  # an EA item on the same moment teaches other things
    kept, report = pp.deduplicate([*GOOD, twin, ea_same_moment])
    assert [i.item_id for i in kept] == [*[i.item_id for i in GOOD], "ea2"]
    assert report.dropped[0].reason == "near_duplicate" and "eu1" in report.dropped[0].detail


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
    assert [i.item_id for i in kept if i.category == "complex_emotions"] == [f"m{n}" for n in range(3)]
    assert report.by_reason == {"over_category_cap": 7} and report.notes["after"]["EU"]["complex_emotions"] == 3
    eu_rows = [r for r in pp.counts_vs_paper(kept) if r["task"] == "EU"]
    assert {r["category"]: (r["ours"], r["paper"]) for r in eu_rows}["complex_emotions"] == (3, 382)
    assert pp.balance_categories(items, ratio=None).items == items


# --- 7. answer positions --------------------------------------------------------------------------------------------

def test_answer_positions_become_uniform_deterministic_and_idempotent():
    items = [mcq_item(item_id=f"m{n}") for n in range(40)] + [ea_item(item_id=f"ea{n}") for n in range(40)]
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
    items = [eu_item(item_id=f"eu{n}") for n in range(12)]
    shuffled, _ = pp.balance_answer_positions(items)
    counts = pp.answer_letter_counts(shuffled)
    assert counts["EU-emotion/6"] == dict.fromkeys("ABCDEF", 2) and counts["EU-cause/4"] == dict.fromkeys("ABCD", 3)
    assert all(i.emotion_choices == i.options and i.cause_label in i.cause_choices for i in shuffled)


# --- 7. split, outputs, the whole chapter ---------------------------------------------------------------------------

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


def test_item_questions_for_each_source_format():
    emotion, cause = pp.item_questions(eu_item())
    assert (emotion.kind, emotion.options[emotion.answer_index], emotion.explanation.endswith("delight.")) == \
        ("EU-emotion", "Delight", True)
    assert cause.kind == "EU-cause" and cause.options[cause.answer_index].startswith("Her daughter enjoyed")
    (action,) = pp.item_questions(ea_item())
    assert action.question == "In this scenario, what is the most effective action for Sarah?"
    (generic,) = pp.item_questions(mcq_item())
    assert generic.question == mcq_item().question and generic.answer_letter == "A"
    assert "<options>\nA) Relief" in user_prompt(generic)


def generator_outputs(data: Path) -> None:
    """data/mads/ (EA items in a shard) and data/concise/ as the generators write them: one clean item per EU and
    EA category, a contaminated copy, a near-duplicate, a too-short scenario and a broken line."""
    eu_categories = ["complex_emotions", "personal_beliefs_and_experiences", "perspective_taking"]  # + m1's
    ea_categories = ["Personal-Others", "Personal-Self", "Social-Others", "Social-Self"]
    words = (EU_SCENARIO + " " + EA_SCENARIO + " " + MCQ_SCENARIO).replace("relief", "").split()

    def scenario(n: int) -> str:
        return " ".join(random.Random(n).sample(words, 60))
    write_jsonl(data / "mads" / "eu_items.jsonl",
                [eu_item(), *[eu_item(item_id=f"eu{n}", category=c, scenario=scenario(n))
                              for n, c in enumerate(eu_categories, 2)], "{broken"])
    write_jsonl(data / "mads" / "shard-0" / "ea_items.jsonl",
                [ea_item(item_id=f"ea{n}", category=c, scenario=scenario(10 + n)) for n, c in enumerate(ea_categories)])
    write_jsonl(data / "concise" / "items_final.jsonl",
                [mcq_item(scenario=scenario(20)), mcq_item(item_id="m2", scenario=scenario(20) + " Later."),
                 mcq_item(item_id="short", scenario="Malik got good news.")])


def test_run_preprocess_end_to_end_is_idempotent_and_reads_its_own_output(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    generator_outputs(tmp_path)
    references = [("EU:7", EU_SCENARIO)]
    config = pp.PreprocessConfig(balance_min_cap=1, validation_fraction=0.25, workers=1, judge_backend=None)
    run = pp.run_preprocess(config, references=references)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in run.files] == [
        "mads/eu_items.jsonl", "mads/shard-0/ea_items.jsonl", "concise/items_final.jsonl"]
    assert run.report("load").by_reason == {"malformed_json": 1}
    assert run.report("validation").by_reason == {"scenario_too_short": 1}
    assert run.report("decontamination").dropped[0].item_id == "eu1"
    assert run.report("de-duplication").dropped[0].item_id == "m2"
    assert run.report("category balance").dropped == []
    assert sorted(i.item_id for i in run.items) == ["ea0", "ea1", "ea2", "ea3", "eu2", "eu3", "eu4", "m1"]
    out = tmp_path / "processed"
    assert run.paths["train"] == out / "train.jsonl" and sum(map(len, run.split.values())) == 8
    files = {p.name: p.read_bytes() for p in out.glob("*.*")}
    assert set(files) == {"train.jsonl", "validation.jsonl", "README.md", "preprocess_report.json"}
    report = json.loads(files["preprocess_report.json"])
    assert [s["step"] for s in report["steps"]] == ["load", "validation", "quality rules", "decontamination",
                                                    "de-duplication", "quality judge", "category balance",
                                                    "answer positions", "review"]
    assert report["steps"][5]["notes"] == {"disabled": True}
    assert report["steps"][-1]["notes"]["sample"] == [i.item_id for i in run.items]  # fewer than 50: all
    assert (out / "review" / "annotator_1.csv").is_file() and "Manual review (§3.4)" in files["README.md"].decode()
    assert report["inputs"] == run.files and report["parameters"]["balance_min_cap"] == 1
    card = files["README.md"].decode()
    assert "| EU | complex_emotions |" in card and "License" in card and "shard-0/ea_items.jsonl" in card
    # the same run again writes the same bytes
    pp.run_preprocess(config, references=references)
    assert files == {p.name: p.read_bytes() for p in out.glob("*.*")}
    # the processed splits are DatasetItems too: reading them back gives the same items
    again = pp.run_preprocess(config.model_copy(update={"inputs": [str(out / "*.jsonl")],
                                                        "output_dir": str(tmp_path / "again")}),
                              references=references)
    assert not again.report("load").dropped and without_source(again.items) == without_source(run.items)
    loaded = pp.load_split("train", out) + pp.load_split("validation", out)
    assert without_source(loaded) == without_source(run.items)
    from datasets import load_from_disk
    hf = load_from_disk(str(out / "hf"))
    assert hf["train"].num_rows + hf["validation"].num_rows == len(run.items)


def test_empty_input_does_not_crash(tmp_path):
    final, report = pp.preprocess_items([], [], pp.PreprocessConfig(judge_backend="local"))  # no model loaded
    assert report.notes["reports"][4].notes == {"skipped": "no items left to judge"}
    split, notes = pp.split_train_validation(final)
    paths = pp.save_processed(split, report.notes["reports"], notes, tmp_path)
    assert pp.load_split("validation", tmp_path) == [] and paths["hf"].is_dir()


def test_load_split_says_which_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_preprocess"):
        pp.load_split("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        pp.load_split("test", tmp_path)


def test_the_dataset_card_header_is_valid_and_the_push_sends_the_splits(tmp_path, monkeypatch):
    """The card's YAML header (huggingface_hub's DatasetCard) names the split files; the push goes through a local
    stand-in for the Hub API (no network here), and a failed push says the files are safe."""
    import huggingface_hub
    from huggingface_hub import DatasetCard

    from ec2er_utils.hub import HubPushError

    split = {"train": [mcq_item()], "validation": [mcq_item(item_id="m2")]}
    paths = pp.save_processed(split, [], {"method": "test"}, tmp_path / "processed")
    card = DatasetCard(paths["card"].read_text(encoding="utf-8"))
    assert card.data.configs == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train.jsonl"}, {"split": "validation", "path": "validation.jsonl"}]}]
    assert "multiple-choice-qa" in card.data.task_ids and card.data.size_categories == ["n<1K"]
    calls = []

    class StandIn:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **options):
            calls.append(("create", repo_id, options["repo_type"]))
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **options):
            if options["repo_id"] == "ada/broken":
                raise ConnectionError("unreachable")
            calls.append(("upload", options["folder_path"], options["allow_patterns"]))

    monkeypatch.setattr(huggingface_hub, "HfApi", StandIn)
    assert pp.push_dataset(tmp_path / "processed", "ada/ec2er-items") == "https://huggingface.co/datasets/ada/ec2er-items"
    assert calls == [("create", "ada/ec2er-items", "dataset"),
                     ("upload", str(tmp_path / "processed"), ["train.jsonl", "validation.jsonl", "README.md"])]
    with pytest.raises(HubPushError, match="files are safe on disk .*push_dataset"):
        pp.push_dataset(tmp_path / "processed", "ada/broken")
    with pytest.raises(ValueError, match="hub_dataset_id is None"):
        pp.PreprocessConfig(push_to_hub=True)


def test_the_dataset_card_counts_mixed_emotion_labels(tmp_path):
    mixed = mcq_item(item_id="m3", options=["Relief & Guilt", "Anger & Fear", "Joy & Pride", "Fear & Sadness"],
                     correct_answer="Relief & Guilt",
                     explanation="He is relieved the wait is over and guilty that he doubted his doctor.")
    paths = pp.save_processed({"train": [mcq_item(), mixed], "validation": []}, [], {"method": "test"},
                              tmp_path / "processed")
    assert "1 of 2 EU emotion questions have a mixed-emotion label" in paths["card"].read_text(encoding="utf-8")
