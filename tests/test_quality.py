"""The quality gate of chapter 03: the cheap rules catch the degenerate items the demo's 135M model writes (and keep
good ones), the LLM judge scores every question, keeps its score and filters at the threshold, and the whole
chapter carries both into the processed set and its card."""

from __future__ import annotations

import json

import pytest

from ec2er_utils import preprocess as pp
from ec2er_utils.llm import LLMInvalidJSONError, LLMRequestError, Usage
from ec2er_utils.preprocess.judge import CRITERIA, JUDGE_SERVER_MAX_TOKENS
from tests.helpers import ScriptedClient
from tests.test_preprocess import ACTIONS, CAUSES, GOOD, ea_item, eu_item, generator_outputs, mcq_item


def problem(item, **thresholds):
    return pp.item_quality_problem(item, pp.QualityRules(**thresholds))


# --- the cheap rules --------------------------------------------------------------------------------------------------

def test_good_items_pass_every_rule():
    kept, report = pp.check_text_quality(GOOD)
    assert kept == GOOD and report.step == "quality rules" and report.dropped == []
    assert report.notes == pp.QualityRules().model_dump()  # the thresholds are in the report


def test_the_demos_degenerate_items_are_caught():
    # the two items of the issue: cause options "Amusem, amusem, amusem" and an explanation of ") and"
    amusem = eu_item(item_id="amusem", cause_choices=["Amusem, amusem, amusem", *CAUSES[1:]])
    assert problem(amusem) == ("repeated_word", "cause option repeats 'amusem' more than 2 times in a row")
    fragment = eu_item(item_id="amusem2", cause_choices=["Amusem", *CAUSES[1:]])
    assert problem(fragment)[0] == "nonword_text" and "Amusem" in problem(fragment)[1]
    and_ = ea_item(item_id="and", explanation=") and")
    assert problem(and_)[0] == "explanation_too_short"
    assert problem(and_, min_explanation_words=0)[0] == "json_remnant"  # and it is the tail of a JSON reply
    kept, report = pp.check_text_quality([*GOOD, amusem, fragment, and_])
    assert kept == GOOD
    assert report.by_reason == {"repeated_word": 1, "nonword_text": 1, "explanation_too_short": 1}


@pytest.mark.parametrize(("change", "reason"), [
    ({"options": ["Call", *ACTIONS[1:]]}, "option_fragment"),  # one word
    ({"options": ["Promise to keep the secret and", *ACTIONS[1:]]}, "option_fragment"),  # cut off mid-phrase
    ({"options": ["... promise to keep the secret", *ACTIONS[1:]]}, "option_fragment"),  # starts with punctuation
    ({"options": [", promise to keep the secret", *ACTIONS[1:]]}, "json_remnant"),  # the tail of a JSON array
    ({"options": ["Promise to keep the secret", "Keep to the secret promise", *ACTIONS[2:]]}, "repeated_word"),
    ({"explanation": 'A counselor can help him without breaking his trust", "answer": "D'}, "json_remnant"),
    ({"explanation": "The counselor {can} help him without breaking trust at all here."}, "json_remnant"),
    ({"explanation": "Shwe blorf the countil vey sprank wib hoom, so tarp is moost effectal."}, "nonword_text"),
    ({"question": "What what what should Sarah do?"}, "repeated_word"),
])
def test_each_rule_on_an_ea_item(change, reason):
    bad = ea_item(item_id="bad", **change)
    assert problem(bad)[0] == reason, problem(bad)


def test_thresholds_are_parameters_and_names_are_words():
    short = ea_item(explanation="A counselor helps without breaking trust.")  # 6 words
    assert problem(short)[0] == "explanation_too_short" and problem(short, min_explanation_words=6) is None
    assert problem(ea_item(options=["Call", *ACTIONS[1:]]), min_option_words=1) is None
    assert problem(eu_item(cause_choices=["Amusem, amusem, amusem", *CAUSES[1:]]), max_word_repeats=3)[0] == \
        "nonword_text"
    # names (capitalised in the scenario, or the subject) are not non-words; one odd word among many is tolerated
    named = ea_item(options=["Ask Sarah's brother to call Tomasz", *ACTIONS[1:]],
                    scenario=ea_item().scenario + " Their cousin Tomasz is a teacher at the school.")
    assert problem(named) is None
    assert problem(ea_item(options=["Stop texting", *ACTIONS[1:]])) is None  # 1 of 2 words unknown: not > 50%
    assert problem(ea_item(options=["Stop texting", *ACTIONS[1:]]), max_nonword_share=0.4)[0] == "nonword_text"
    # emotion options are words of the taxonomy, not phrases: one word is right there
    assert problem(mcq_item()) is None
    config = pp.PreprocessConfig(min_explanation_words=3, max_nonword_share=0.2, judge_backend=None)
    assert config.quality_rules == pp.QualityRules(min_explanation_words=3, max_nonword_share=0.2)


# --- the LLM judge ----------------------------------------------------------------------------------------------------

def verdict(score: int, **criteria: int) -> str:
    return json.dumps(dict.fromkeys(CRITERIA, score) | criteria)


def test_the_judge_scores_every_question_keeps_the_score_and_filters():
    def script(_call, _index, conversation):
        text = conversation[-1]["content"]
        if "Why would Dorea feel" in text:  # the EU item's cause question is its weak one
            return verdict(3, distractors_plausible=1)
        return verdict(5) if "Sarah" in text else verdict(4)
    client = ScriptedClient(script)
    kept, report = pp.judge_items(GOOD, client, threshold=0.7)
    assert [i.item_id for i in kept] == ["ea1", "m1"] and [i.quality_score for i in kept] == [1.0, 0.75]
    (dropped,) = report.dropped
    assert dropped.item_id == "eu1" and dropped.reason == "judge_below_threshold"
    assert "score 0.38 < 0.7 (EU-cause: grammar 3, unambiguous 3, distractors_plausible 1" in dropped.detail
    assert report.notes["scores"] == {"eu1": 0.375, "ea1": 1.0, "m1": 0.75} and report.notes["questions"] == 4
    assert [v["question"] for v in report.notes["verdicts"]["eu1"]] == ["EU-emotion", "EU-cause"]
    assert report.notes["model"] == "scripted-model" and report.notes["threshold"] == 0.7
    # what the judge saw: the rubric, the scenario, lettered options and the marked answer; greedy, one schema
    (call,) = client.calls
    system, user = call["conversations"][0]
    assert system["content"] == pp.JUDGE_SYSTEM_PROMPT and "distractors_plausible" in system["content"]
    assert "Scenario: Dorea had spent" in user["content"] and "F) Disappointment" in user["content"]
    assert f"Marked answer: A) {CAUSES[0]}" in call["conversations"][1][1]["content"]
    assert call["schema"].name == "JudgeVerdict"


def test_a_floor_keeps_the_best_scored_items_of_a_tiny_run():
    scores = {"eu1": 1, "ea1": 3, "m1": 2}  # all below a threshold of 0.75, as from the 135M demo judge

    def script(_call, _index, conversation):
        text = conversation[-1]["content"]
        return verdict(next(v for k, v in {"Dorea": scores["eu1"], "Sarah": scores["ea1"]}.items() if k in text)
                       if any(k in text for k in ("Dorea", "Sarah")) else scores["m1"])
    kept, report = pp.judge_items(GOOD, ScriptedClient(script), threshold=0.75, min_keep=2)
    assert [(i.item_id, i.quality_score) for i in kept] == [("ea1", 0.5), ("m1", 0.25)]
    assert report.notes["kept_below_threshold"] == ["ea1", "m1"] and report.by_reason == {"judge_below_threshold": 1}
    kept, report = pp.judge_items(GOOD, ScriptedClient(script), threshold=0.4, min_keep=2)
    assert [i.item_id for i in kept] == ["ea1", "m1"] and report.notes["kept_below_threshold"] == ["m1"]
    kept, report = pp.judge_items(GOOD, ScriptedClient(script), threshold=0.75)
    assert kept == [] and report.notes["kept_below_threshold"] == []


def test_judge_errors_are_drops_and_an_unreachable_judge_stops():
    invalid = LLMInvalidJSONError("no schema-valid JSON", raw_text="{", attempts=2, usage=Usage())
    client = ScriptedClient(lambda _c, i, _m: invalid if i == 0 else verdict(5))
    kept, report = pp.judge_items(GOOD, client)
    assert [i.item_id for i in kept] == ["ea1", "m1"] and report.by_reason == {"judge_error": 1}
    assert "EU-emotion: LLMInvalidJSONError" in report.dropped[0].detail
    down = ScriptedClient(lambda *_: LLMRequestError("connection refused"))
    with pytest.raises(pp.JudgeUnavailable, match="judge_backend = None"):
        pp.judge_items(GOOD, down)
    kept, report = pp.judge_items(GOOD, None)
    assert kept == GOOD and report.notes == {"disabled": True}


def test_a_served_judge_has_room_to_reason_before_its_verdict():
    """vLLM counts gpt-oss-20b's reasoning against max_tokens: the in-process budget (64) would cut it off."""
    served = pp.make_judge_client("openai", "openai/gpt-oss-20b", base_url="http://127.0.0.1:9/v1")
    assert served.max_tokens == JUDGE_SERVER_MAX_TOKENS >= 1000 and served.temperature == 0.0


def test_the_chapter_keeps_judge_scores_in_the_processed_set_and_its_card(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    generator_outputs(tmp_path)
    config = pp.PreprocessConfig(balance_min_cap=1, validation_fraction=0, workers=1, judge_threshold=0.5,
                                 judge_backend=None)
    judge = ScriptedClient(lambda _c, i, _m: verdict(1) if i == 0 else verdict(4))
    run = pp.run_preprocess(config, references=[], judge=judge)
    step = run.report("quality judge")
    assert step.n_in == 9 and step.by_reason == {"judge_below_threshold": 1} and step.n_out == 8
    train = pp.load_split("train", tmp_path / "processed")
    assert len(train) == 8 and {i.quality_score for i in train} == {0.75}
    card = (tmp_path / "processed" / "README.md").read_text()
    assert "LLM judge `scripted-model` (scripted), threshold 0.5: 9 -> 8, rejected 11%" in card
    report = json.loads((tmp_path / "processed" / "preprocess_report.json").read_text())
    assert report["parameters"]["judge_backend"] is None  # a client passed in is used


@pytest.mark.slow
def test_the_embedded_model_judges_real_items():
    """The demo's judge: the embedded 135M model in-process, schema-constrained. It must answer for every question
    (no parse failures thanks to the grammar); its scores are not asserted: a 135M judge scores near random."""
    client = pp.make_judge_client("local")
    items = [eu_item(), ea_item()]
    kept, report = pp.judge_items(items, client, threshold=0.75)
    assert report.notes["questions"] == 3 and not report.by_reason.get("judge_error")
    assert set(report.notes["scores"]) == {"eu1", "ea1"}
    assert all(0.0 <= s <= 1.0 for s in report.notes["scores"].values())
    assert len(kept) + len(report.dropped) == 2 and all(i.quality_score >= 0.75 for i in kept)
    assert all(set(CRITERIA) <= set(v) for vs in report.notes["verdicts"].values() for v in vs)
