"""EmoBench evaluation: official prompt text, parsing, scoring against an independent re-implementation of the
official harness, intervals and tests, retries, resume, the paper's Table 1, and real runs of every protocol."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ec2er_utils.emobench import load_emobench
from ec2er_utils.evaluation import (
    STATUSES,
    ChoiceScorer,
    Prediction,
    bootstrap_ci,
    compare_predictions,
    compare_runs,
    compare_with_paper,
    EvalConfig,
    evaluate,
    gold_letters,
    load_run,
    mcnemar_exact_p,
    official_messages,
    official_result_rows,
    official_scores,
    official_system_prompt,
    official_user_prompt,
    paper_questions,
    paper_table1,
    parse_official_reply,
    predict_official,
    summarize,
)
from ec2er_utils.formatting import user_prompt
from ec2er_utils.jsonl import read_jsonl
from ec2er_utils.llm import LLMRequestError
from ec2er_utils.parameters import ParameterError
from tests.helpers import SHARED, ScriptedClient, needs_emobench


# --------------------------------------------------------------------------------------------------------------
# The official harness's prompt configuration, transcribed verbatim from github.com/Sahandfer/EmoBench
# (src/configs/prompts.yaml and src/configs/response.yaml), whitespace included, and parsed with PyYAML as the
# harness does. The test assembles the prompts from it the way src/utils.py and src/model.py do.

OFFICIAL_PROMPTS_YAML = (
    "sys:\n  en: |\n    # Instructions\n    \n    In this task, you are presented with a scenario, a question, and "
    "multiple choices. \n    Carefully analyze the scenario and take the perspective of the individual involved.\n"
    "    Then, select the option that best reflects their perspective or emotional response.\n\n    # Output\n"
    "  zh: |\n    # 说明\n    在这个任务中，你会面临一个场景、一个问题和多个选项。\n"
    "    仔细分析场景，并从相关人员的角度进行思考。\n"
    "    然后，选择最能反映他们的观点或情绪反应的选项。\n\n    # 输出\n"
    "EA:\n  en: |\n    ## Scenario\n    {scenario}\n    \n    ## Question \n    In this scenario, what is the most "
    "effective {q_type} for {subject}?\n    \n    ## Choices\n    {choices}\n"
    "  zh: |\n    ## 场景\n    {scenario}\n    \n    ## 问题\n"
    "    在这个场景中，{subject}最有效的{q_type}是什么？\n    \n"
    "    ## 选项\n    {choices}\n"
    "EU:\n  en: |\n    ## Scenario\n    {scenario}\n    \n    ## Question 1\n    What emotion(s) would {subject} "
    "ultimately feel in this situation?\n    \n    ## Choices for Question 1\n    {emo_choices}\n\n    ## Question 2\n"
    "    Why would {subject} feel these emotions in this situation?\n\n    ## Choices for Question 2\n"
    "    {cause_choices}\n"
    "  zh: |\n    ## 场景\n    {scenario}\n    \n    ## 问题 1\n"
    "    在这种情况下，{subject}最终会感受到什么情绪？\n    \n"
    "    ## 问题 1 的选项\n    {emo_choices}\n\n    ## 问题 2\n    {subject}为什么会在这种情况下感受到这些情绪？\n\n"
    "    ## 问题 2 的选项\n    {cause_choices}"
)
OFFICIAL_RESPONSE_YAML = (
    "base: \n  en: >\n      Provide only one single correct answer to this question. \n      Do not provide any "
    "additional information or explanations.\n      The response should be in the following JSON format:\n"
    "  zh: >\n      只提供一个正确的答案。\n      不要提供任何额外的信息或解释。\n      回复应采用以下JSON格式：\n"
    "cot: \n  en: >\n    Provide a step-by-step reasoning that explores each option's potential impact on the "
    "individual(s) in question, considering their emotions, previous experiences mentioned in the scenario, and the "
    "possible outcomes of each choice.\n    Then, select the most appropriate answer based on your reasoning.\n"
    "    The response should be in the following JSON format:\n"
    "  zh: >\n    提供逐步推理，探索每个选项对相关个人的潜在影响，"
    "考虑他们的情绪、场景中提到的先前经历以及每个选择的可能结果。\n"
    "    然后，根据你的推理选择最合适的答案。\n    回复应采用以下JSON格式：\n"
    'EA: \n  en: |\n    "answer": "<Respond with the corresponding letter numbering>"\n'
    '  zh: |\n    "answer": "<用相应的字母进行回答>"\n'
    'EU:\n  en: |\n    "answer_q1": "<Respond to the Question 1 with the corresponding letter numbering>",\n'
    '    "answer_q2": "<Respond to the Question 2 with the corresponding letter numbering>"\n'
    '  zh: |\n    "answer_q1": "<用相应的字母进行回答问题1>",\n    "answer_q2": "<用相应的字母进行回答问题2>"\n'
    'reasoning: \n  en: |\n    "reasoning": "<Step by step reasoning>"\n  zh: |\n    "reasoning": "<逐步推理>"'
)
PROMPTS = yaml.safe_load(OFFICIAL_PROMPTS_YAML)
RESPONSE = yaml.safe_load(OFFICIAL_RESPONSE_YAML)
OFFICIAL_FORMAT = "\n{statement}\n```json\n    {{\n    {conditions}\n    }}\n``` \n    "


def reference_system_prompt(task: str, lang: str, cot: bool) -> str:
    statement = RESPONSE["cot" if cot else "base"][lang]
    conditions = RESPONSE[task][lang]
    if cot:
        conditions = RESPONSE["reasoning"][lang] + ",\n" + conditions
    return PROMPTS["sys"][lang] + OFFICIAL_FORMAT.format(statement=statement, conditions=conditions)


def reference_choices(choices: list[str]) -> str:
    return "\n".join(f"{'ABCDEFGH'[i]}) {c}" for i, c in enumerate(choices))


@pytest.fixture(scope="module")
def items() -> dict[str, list]:
    if SHARED is None:
        pytest.skip("needs the shared/ folder beside the checkout")
    folder = SHARED / "emobench"
    return {task: load_emobench(task, "all", folder) for task in ("EU", "EA")}


# --------------------------------------------------------------------------------------------------------------
# Official prompts


@pytest.mark.parametrize("task", ["EU", "EA"])
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("cot", [False, True])
def test_official_system_prompt_matches_the_harness(task, lang, cot):
    assert official_system_prompt(task, lang, cot) == reference_system_prompt(task, lang, cot)


def test_qwen_gets_no_think_only_without_cot():
    assert official_system_prompt("EA", "en", model_name="Qwen/Qwen2.5-7B-Instruct").startswith("/no_think\n\n")
    assert not official_system_prompt("EA", "en", cot=True, model_name="Qwen2.5").startswith("/no_think")
    assert not official_system_prompt("EA", "en", model_name="mistral").startswith("/no_think")


@needs_emobench
def test_official_user_prompts_match_the_harness_for_every_item(items):
    for item in items["EU"]:
        expected = PROMPTS["EU"][item.language].format(
            scenario=item.scenario, subject=item.subject, emo_choices=reference_choices(item.emotion_choices),
            cause_choices=reference_choices(item.cause_choices))
        assert official_user_prompt(item) == expected
    for item in items["EA"]:
        expected = PROMPTS["EA"][item.language].format(scenario=item.scenario, subject=item.subject,
                                                       choices=reference_choices(item.choices),
                                                       q_type=item.question_type)
        assert official_user_prompt(item) == expected


@needs_emobench
def test_official_prompt_text_for_one_eu_and_one_ea_item(items):
    eu, ea = items["EU"][0], items["EA"][0]
    assert official_user_prompt(eu) == (
        "## Scenario\nDorea was trying to cook a Baklava. When she took it out of the oven, the Baklava was ruined "
        "as the bread was not crispy, and the filling was bursting all over the pan. At that moment, her daughter "
        "came home and noticed her mom's fresh yet ruined Baklava. She tasted it and gave a thumbs-up to her "
        "mother.\n\n## Question 1\nWhat emotion(s) would Dorea ultimately feel in this situation?\n\n"
        "## Choices for Question 1\nA) Delight\nB) Anger\nC) Embarrassment\nD) Hopeless\nE) Pride\n"
        "F) Disappointment\n\n## Question 2\nWhy would Dorea feel these emotions in this situation?\n\n"
        "## Choices for Question 2\nA) Her daughter tried to make her feel better, despite not enjoying the Baklava\n"
        "B) Her daughter enjoyed the Baklava despite it being ruined\nC) The Baklava was not ruined\n"
        "D) Her daughter just arrived home\n")
    assert official_user_prompt(ea) == (
        "## Scenario\nSarah found out that her younger brother is being bullied at school but he begged her not to "
        "tell their parents.\n\n## Question \nIn this scenario, what is the most effective Action for Sarah?\n\n"
        "## Choices\nA) Promise to keep the secret\nB) Inform their parents anyway\nC) Confront the bullies "
        "herself\nD) Suggest her brother to talk to a teacher or a school counselor\n")
    system = official_messages(ea)[0]["content"]
    assert system.endswith('"answer": "<Respond with the corresponding letter numbering>"\n\n    }\n``` \n    ')
    assert "question.  Do not provide" in system  # the folded YAML keeps the trailing space: two spaces
    assert gold_letters(eu) == {"emotion": "A", "cause": "B"} and gold_letters(ea) == {"answer": "D"}


@needs_emobench
def test_paper_questions_use_the_training_format(items):
    questions = paper_questions(items["EU"][0])
    assert list(questions) == ["emotion", "cause"]
    assert "<question>\nWhat emotion(s) would Dorea ultimately feel" in user_prompt(questions["emotion"])
    assert '"answer": "A/B/C/D/E/F"' in user_prompt(questions["emotion"])
    assert '"answer": "A/B/C/D"' in user_prompt(questions["cause"])


# --------------------------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("text, status, answers", [
    ('{"answer_q1": "B", "answer_q2": "D"}', "ok", {"emotion": "B", "cause": "D"}),
    ('Sure!\n```json\n{"answer_q1": "A",\n "answer_q2": "C"}\n```\nHope it helps', "ok",
     {"emotion": "A", "cause": "C"}),
    ('```json\n    {\n    "answer_q1": "E",\n"answer_q2": "A"\n    }\n``` ', "ok", {"emotion": "E", "cause": "A"}),
    ('{"answer_q1": "B", "answer_q2": "', "truncated", {"emotion": "", "cause": ""}),
    ("I think Dorea feels delighted because", "no_json", {"emotion": "", "cause": ""}),
    ('{"answer_q1": "B"}', "missing_keys", {"emotion": "B", "cause": ""}),
    ('["B", "D"]', "not_an_object", {"emotion": "", "cause": ""}),
    ('{"answer_q1": "b) Anger", "answer_q2": 3}', "ok", {"emotion": "b) Anger", "cause": "3"}),
])
def test_parse_official_eu_replies(text, status, answers):
    parsed = parse_official_reply(text, "EU")
    assert (parsed.status, parsed.answers) == (status, answers)


def test_parse_official_ea_and_leniency():
    assert parse_official_reply('{"answer": "C"}', "EA").answers == {"answer": "C"}
    chatty = 'The answer is {"answer": "C"} as explained.'
    assert parse_official_reply(chatty, "EA").status == "no_json"  # the official parser rejects this
    assert parse_official_reply(chatty, "EA", lenient=True).answers == {"answer": "C"}
    bare_fence = '```\n{"answer": "B"}\n```'
    assert parse_official_reply(bare_fence, "EA").status == "no_json"
    assert parse_official_reply(bare_fence, "EA", lenient=True).status == "ok"
    assert parse_official_reply('{"answer": "B"', "EA", finish_reason="length").status == "truncated"
    assert parse_official_reply("", "EA").status == "no_json"
    assert parse_official_reply(None, "EA").answers == {"answer": ""}


# --------------------------------------------------------------------------------------------------------------
# Scoring


def official_harness_scores(rows: list[dict], task: str, lang: str, tmp_path: Path) -> dict[str, float]:
    """EmoBench's ``evaluate_results`` (src/data.py), re-implemented with pandas step by step, on results written
    and read back in its own JSONL format."""
    path = tmp_path / f"{task}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    responses = pd.read_json(path_or_buf=path, lines=True, encoding="utf-8")
    responses = responses[responses["lang"] == lang]
    if task == "EA":
        responses["accuracy"] = responses["label"] == responses["answer"]
        results = responses.groupby("category")["accuracy"].mean().reset_index()
        results = results.set_index("category").to_dict()["accuracy"]
    else:
        responses["accuracy"] = (responses["emo_label"] == responses["emo_answer"]) & (
            responses["cause_label"] == responses["cause_answer"])
        results = responses.groupby("coarse_category")["accuracy"].mean().reset_index()
        results = results.set_index("coarse_category").to_dict()["accuracy"]
    results["Overall"] = responses["accuracy"].mean()
    return results


def random_records(items, seed: int) -> list[Prediction]:
    """Predictions that are right, wrong, empty (parse failure) or malformed, at random."""
    rng = random.Random(seed)
    records = []
    for item in items:
        gold = gold_letters(item)
        predicted = {part: rng.choice([letter, letter, "A", "B", "C", "", letter.lower()])
                     for part, letter in gold.items()}
        status = "no_json" if "" in predicted.values() else "ok"
        records.append(Prediction(qid=item.qid, language=item.language, task="EU" if len(gold) == 2 else "EA",
                                  category=getattr(item, "coarse_category", None) or item.category,
                                  protocol="official", gold=gold, predicted=predicted, status=status))
    return records


@needs_emobench
@pytest.mark.parametrize("task", ["EU", "EA"])
@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_the_official_harness(items, task, lang, seed, tmp_path):
    records = random_records([i for i in items[task] if i.language == lang], seed)
    ours = official_scores(records)
    theirs = official_harness_scores(official_result_rows(records), task, lang, tmp_path)
    assert ours == theirs  # exact: same counts, same divisions
    assert 0 < ours["Overall"] < 1


def _hand(qid, category, gold, predicted, task="EU", status="ok", language="en"):
    return Prediction(qid=qid, language=language, task=task, category=category, protocol="official", gold=gold,
                      predicted=predicted, status=status)


def test_eu_needs_both_emotion_and_cause_and_overall_is_a_mean_over_items():
    records = [
        _hand("1", "complex_emotions", {"emotion": "A", "cause": "B"}, {"emotion": "A", "cause": "B"}),  # right
        _hand("2", "complex_emotions", {"emotion": "A", "cause": "B"}, {"emotion": "A", "cause": "C"}),  # cause wrong
        _hand("3", "complex_emotions", {"emotion": "A", "cause": "B"}, {"emotion": "D", "cause": "B"}),  # emotion wrong
        _hand("4", "emotional_cues", {"emotion": "C", "cause": "A"}, {"emotion": "C", "cause": "A"}),  # right
        _hand("5", "complex_emotions", {"emotion": "A", "cause": "B"}, {"emotion": "", "cause": ""},
              status="no_json"),
    ]
    scores = official_scores(records)
    assert scores == {"complex_emotions": 0.25, "emotional_cues": 1.0, "Overall": 0.4}  # not (0.25 + 1) / 2
    summary = summarize(records, n_resamples=1000)
    assert summary["overall"]["accuracy"] == 0.4
    assert summary["emotion_only"]["Overall"]["accuracy"] == 0.6
    assert summary["cause_only"]["Overall"]["accuracy"] == 0.6
    assert summary["categories"]["complex_emotions"]["n"] == 4
    assert summary["parse_failures"] == 1 and summary["parse_failure_rate"] == 0.2
    assert summary["statuses"] == {"ok": 4, "no_json": 1}
    assert summary["official"] == scores


# --------------------------------------------------------------------------------------------------------------
# Intervals and tests


def test_bootstrap_ci_contains_the_estimate_narrows_with_n_and_is_seeded():
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.3
    large = rng.random(2000) < 0.3
    low_s, high_s = bootstrap_ci(small, n_resamples=2000)
    low_l, high_l = bootstrap_ci(large, n_resamples=2000)
    assert low_s <= small.mean() <= high_s and low_l <= large.mean() <= high_l
    assert (high_l - low_l) < (high_s - low_s) / 3  # width shrinks like 1/sqrt(n)
    assert bootstrap_ci(small, n_resamples=2000, seed=7) == bootstrap_ci(small, n_resamples=2000, seed=7)
    # For a proportion the percentile interval is close to the normal one, p +- 1.96 sqrt(p(1-p)/n).
    half = 1.96 * np.sqrt(large.mean() * (1 - large.mean()) / large.size)
    assert (high_l - low_l) / 2 == pytest.approx(half, rel=0.1)
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([1])))


def test_mcnemar_exact_p_on_known_tables():
    # 1 vs 9 discordant pairs: 2 * P(X <= 1 | n=10, p=1/2) = 2 * 11/1024.
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar_exact_p(9, 1) == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64, abs=1e-12)
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(0, 0) == 1.0


def test_paired_comparison_per_category():
    gold = {"answer": "A"}
    a, b = [], []
    # Personal-Self: B fixes 6 items A got wrong and breaks none; Social-Self: both identical.
    for i in range(10):
        right_a = i >= 6
        a.append(_hand(str(i), "Personal-Self", gold, {"answer": "A" if right_a else "B"}, task="EA"))
        b.append(_hand(str(i), "Personal-Self", gold, {"answer": "A"}, task="EA"))
    for i in range(10, 14):
        answer = {"answer": "A" if i % 2 else "C"}
        a.append(_hand(str(i), "Social-Self", gold, answer, task="EA"))
        b.append(_hand(str(i), "Social-Self", gold, answer, task="EA"))
    rows = {r["category"]: r for r in compare_predictions(a, b, n_resamples=2000)}
    personal = rows["Personal-Self"]
    assert (personal["accuracy_a"], personal["accuracy_b"], personal["delta"]) == (0.4, 1.0, pytest.approx(0.6))
    assert (personal["only_a"], personal["only_b"]) == (0, 6)
    assert personal["mcnemar_p"] == pytest.approx(2 / 64)
    assert personal["ci_low"] > 0
    assert rows["Social-Self"]["delta"] == 0 and rows["Social-Self"]["mcnemar_p"] == 1.0
    assert rows["Overall"]["n"] == 14 and rows["Overall"]["only_b"] == 6
    with pytest.raises(ValueError, match="different items"):
        compare_predictions(a, b[:-1])
    assert compare_predictions(a, b[:-1], allow_partial=True, n_resamples=200)[0]["left_out"] == 1


# --------------------------------------------------------------------------------------------------------------
# Retries, resume, the paper protocol's bookkeeping (scripted backend: turn logic only)


def _ea_reply_by_scenario(replies: dict[str, list[str]]):
    """Script: the n-th call for a conversation answers the n-th reply listed for its scenario's first word."""
    calls: dict[str, int] = {}

    def script(call_index, conversation_index, conversation):
        text = conversation[-1]["content"]
        key = next(k for k in replies if k in text)
        n = calls.get(key, 0)
        calls[key] = n + 1
        return replies[key][min(n, len(replies[key]) - 1)]

    return script


@needs_emobench
def test_official_retries_really_retry_and_record_failures(items):
    sarah, natalie, third = items["EA"][:3]
    script = _ea_reply_by_scenario({
        sarah.scenario[:40]: ['{"answer": "D"}'],
        natalie.scenario[:40]: ["I am not sure.", '{"answer": "B"}'],
        third.scenario[:40]: ["no", "still no", LLMRequestError("server down")],
    })
    client = ScriptedClient(script)
    records = predict_official([sarah, natalie, third], client, attempts=3, seed=10)
    assert [len(c) for c in client.conversations] == [3, 2, 1]  # only unreadable replies are asked again
    assert [c["temperature"] for c in client.calls] == [0.0, 0.6, 0.6]  # greedy first, then sampled
    assert [c["seed"] for c in client.calls] == [10, 11, 12]
    assert all(c["max_tokens"] == 50 for c in client.calls)  # the official budget without CoT
    assert client.conversations[0][0][0]["role"] == "system"
    assert [(r.status, r.attempts, r.predicted) for r in records] == [
        ("ok", 1, {"answer": "D"}), ("ok", 2, {"answer": "B"}), ("request_failed", 3, {"answer": ""})]
    assert records[0].correct and not records[2].correct
    assert records[1].raw == '{"answer": "B"}'


@needs_emobench
def test_resume_skips_scored_items_and_repairs_a_partial_line(tmp_path):
    client = ScriptedClient(lambda call, index, conversation: '{"answer": "A"}')
    config = EvalConfig(adapter=None, protocol="official", tasks=("EA",), emobench_dir=SHARED / "emobench",
                        out_dir=tmp_path, n_resamples=200, limit=3, orders="original")
    first = evaluate(config, client=client, progress=False)
    assert sum(len(c) for c in client.conversations) == 3
    assert len(first.predictions["EA"]) == 3
    config.limit = 5
    evaluate(config, client=client, progress=False)
    assert sum(len(c) for c in client.conversations) == 5  # only items 4 and 5 were new
    path = tmp_path / "EA-en.predictions.jsonl"
    with path.open("a") as handle:
        handle.write('{"qid": "6", "language": "en", "ta')  # a run killed mid-write
    config.limit = 6
    run = evaluate(config, client=client, progress=False)
    assert sum(len(c) for c in client.conversations) == 6
    assert [r.qid for r in read_jsonl(path, Prediction)] == ["1", "2", "3", "4", "5", "6"]
    board = json.loads((tmp_path / "EA.leaderboard.json").read_text())
    assert board["languages"]["en"]["n"] == 6 == run.leaderboards["EA"]["languages"]["en"]["n"]
    assert load_run(tmp_path).records("EA", "en") == run.records("EA", "en")
    with pytest.raises(ValueError, match="other settings .*temperature"):
        evaluate(config.model_copy(update={"temperature": 0.7}), client=client, progress=False)


@needs_emobench
def test_paper_protocol_groups_by_option_count_and_records_invalid_json(items):
    eu = items["EU"][0]

    def script(call, index, conversation):
        prompt = conversation[0]["content"]
        if "Why would" in prompt:
            return "not JSON at all"
        return json.dumps({"reasoning": "Her daughter liked it.", "answer": "A"})

    client = ScriptedClient(script, max_reasks=1)
    from ec2er_utils.evaluation import predict_paper

    (record,) = predict_paper([eu], client)
    schemas = [c["schema"].json_schema["properties"]["answer"]["enum"] for c in client.calls]
    assert ["A", "B", "C", "D"] in schemas and ["A", "B", "C", "D", "E", "F"] in schemas
    assert record.predicted == {"emotion": "A", "cause": ""}
    assert record.status == "invalid_json" and "cause: invalid_json" in record.detail
    assert record.raw["emotion"].startswith("{") and record.raw["cause"] == "not JSON at all"
    assert record.attempts == 2 and not record.correct


def test_eval_config_rejects_bad_settings_naming_them():
    with pytest.raises(ValueError, match="Unknown protocol 'mcq'; use one of official, paper"):
        EvalConfig(protocol="mcq")
    with pytest.raises(ValueError, match="Unknown backend 'vllm'; use one of local, openai"):
        EvalConfig(backend="vllm")
    with pytest.raises(ValueError, match="choice.*local"):
        EvalConfig(protocol="choice", backend="openai")
    with pytest.raises(ValueError, match="enable-lora"):
        EvalConfig(model="served", protocol="official", backend="openai", adapter="runs/x")
    with pytest.raises(ValueError, match="Unknown EmoBench language"):
        EvalConfig(language="de")
    with pytest.raises(ValueError, match="Unknown EmoBench task"):
        EvalConfig(tasks=("EU", "EX"))
    with pytest.raises(ValueError, match="base_url.*backend to 'openai'"):
        EvalConfig(base_url="http://localhost:8000/v1")
    with pytest.raises(ValueError, match="cot.*official"):
        EvalConfig(protocol="paper", cot=True)
    with pytest.raises(ParameterError, match=r"'limit'.*'ten'"):  # as the notebook reports a papermill -p value
        EvalConfig.from_parameters({"limit": "ten", "unrelated_variable": object()})
    with pytest.raises(FileNotFoundError, match="adapter folder"):
        evaluate(EvalConfig(adapter="/no/such/adapter"))


def test_latest_adapter_is_the_newest_of_notebook_04_or_none(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_RUNS_DIR", str(tmp_path))
    assert EvalConfig().resolved().adapter is None  # nothing trained: the base model
    for run_id in ("20250101-000000", "20250301-000000"):
        (tmp_path / "smollm2" / run_id / "adapter").mkdir(parents=True)
        (tmp_path / "smollm2" / run_id / "adapter" / "adapter_config.json").write_text("{}")
    newest = tmp_path / "smollm2" / "20250301-000000" / "adapter"
    assert EvalConfig().resolved().adapter == newest
    assert EvalConfig(adapter=None).resolved().adapter is None
    assert EvalConfig(model="served", protocol="paper", backend="openai").resolved().adapter is None
    assert EvalConfig().resolved().base_model().adapter is None


# --------------------------------------------------------------------------------------------------------------
# The paper's Table 1


def test_paper_table1_transcription():
    table = paper_table1()
    assert len(table) == 80  # 4 models x base/fine-tuned x (EU: Overall + 4, EA: Overall + 4)
    value = table.set_index(["alias", "fine_tuned", "task", "category"])["accuracy"]
    assert value[("mistral", False, "EU", "Overall")] == 0.105
    assert value[("mistral", True, "EA", "Overall")] == 0.625
    assert value[("qwen", False, "EU", "complex_emotions")] == 0.43
    assert value[("llama", True, "EU", "personal_beliefs_and_experiences")] == 0.16
    # The paper's Overall is the item-weighted mean over English EmoBench's categories (within rounding).
    sizes = {"complex_emotions": 49, "emotional_cues": 28, "personal_beliefs_and_experiences": 56,
             "perspective_taking": 67}
    for (alias, tuned), group in table[table["task"] == "EU"].groupby(["alias", "fine_tuned"]):
        by_category = group.set_index("category")["accuracy"]
        weighted = sum(by_category[c] * n for c, n in sizes.items()) / 200
        assert weighted == pytest.approx(by_category["Overall"], abs=0.003), (alias, tuned)


def test_compare_with_paper_lines_up_our_rows():
    frame = pd.DataFrame([
        {"label": "smollm2", "protocol": "choice", "task": task, "language": "en", "metric": "accuracy",
         "category": category, "accuracy": 0.1, "ci_low": 0.05, "ci_high": 0.2, "n": 10, "chance": 0.25,
         "parse_failure_rate": 0.0}
        for task, category in [("EU", "Overall"), ("EU", "complex_emotions"), ("EA", "Overall")]])
    table = compare_with_paper(frame)
    assert table.index[0] == ("EU", "Overall") and ("EA", "Social-Self") in table.index
    assert table.loc[("EU", "Overall"), "smollm2"] == 0.1
    assert table.loc[("EA", "Overall"), "Mistral-7B (fine-tuned)"] == 0.625
    assert np.isnan(table.loc[("EA", "Social-Self"), "smollm2"])


# --------------------------------------------------------------------------------------------------------------
# Real runs with the embedded model


@pytest.mark.slow
@needs_emobench
def test_choice_on_real_items_with_the_embedded_model(tmp_path):
    import torch

    scorer = ChoiceScorer("smollm2", batch_size=8, dtype=torch.float32)
    run = evaluate(EvalConfig(adapter=None, protocol="choice", limit=10, emobench_dir=SHARED / "emobench",
                              out_dir=tmp_path, n_resamples=500, orders="cyclic"), scorer=scorer, progress=False)
    for task in ("EU", "EA"):
        records = run.records(task)  # EmoBench's order
        every_order = run.records(task, all_orders=True)
        assert len(records) == 10 and len(every_order) >= 10 * (6 if task == "EU" else 4)
        assert {r.status for r in every_order} == {"ok"}
        for record in every_order:
            for part, scores in record.option_logprobs.items():
                assert record.predicted[part] == max(scores, key=scores.get)
                assert sum(np.exp(list(scores.values()))) <= 1.0 + 1e-6
        summary = run.leaderboards[task]["languages"]["en"]
        assert summary["parse_failure_rate"] == 0
        assert summary["official"]["Overall"] == official_scores(records)["Overall"]
        assert (tmp_path / f"{task}.leaderboard.json").exists()
    # Batching must not change the numbers: left padding is masked and positions count real tokens only.
    questions = [q for item in load_emobench("EU", data_dir=SHARED / "emobench", limit=2)
                 for q in paper_questions(item).values()]
    batched = scorer.option_logprobs(questions)
    scorer.batch_size = 1
    single = scorer.option_logprobs(questions)
    for a, b in zip(batched, single, strict=True):
        assert a.keys() == b.keys()
        assert max(abs(a[k] - b[k]) for k in a) < 2e-3


def test_shared_prefix_plan_shares_only_whole_common_prefixes():
    from ec2er_utils.evaluation.choice import _shared_prefix_plan

    # Two questions on scenario "s" (common prefix 1 2 3 4), one alone on "t", all starting with 1 2.
    tokens = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 7], [1, 2, 9, 9, 9]]
    assert _shared_prefix_plan(tokens, ["s", "s", "t"]) == (2, [([0, 1], 4), ([2], 4)])
    # Identical prompts share all but their last token, which each computes to yield its logits; the root ends
    # one token earlier, so that the group still computes a token of its own.
    assert _shared_prefix_plan([[1, 2, 3], [1, 2, 3]], ["s", "s"]) == (1, [([0, 1], 2)])
    # Same scenario but nothing in common: each question is its own sequence.
    assert _shared_prefix_plan([[1, 2], [3, 4]], ["s", "s"]) == (0, [([0], 1), ([1], 1)])
    assert _shared_prefix_plan([[5, 6, 7]], ["s"]) == (2, [([0], 2)])


def _least_cost_batches(ordered, budget):
    from ec2er_utils.cpu_speedups import least_cost_batches

    return least_cost_batches(ordered, [len(row.tokens) for row in ordered], budget)


def _budget_batches(ordered, budget):
    from ec2er_utils.evaluation.choice import _budget_batches

    return _budget_batches(ordered, [len(row.tokens) for row in ordered], budget)


def _passes_cost(batches) -> int:
    from ec2er_utils.cpu_speedups import FORWARD_OVERHEAD

    return sum(max(len(row.tokens) for row in batch) * len(batch) + FORWARD_OVERHEAD for batch in batches)


@pytest.mark.parametrize("cut", [_budget_batches, _least_cost_batches], ids=["stock", "cpu_speedups"])
def test_choice_batches_hold_every_row_once_within_the_token_budget(cut):
    from ec2er_utils.evaluation.choice import _Row

    rng = random.Random(0)
    rows = [_Row([0] * rng.randint(20, 400), question=i) for i in range(300)]
    ordered = sorted(rows, key=lambda row: len(row.tokens))
    batches = cut(ordered, budget=4000)
    assert [row.question for batch in batches for row in batch] == [row.question for row in ordered]
    for batch in batches:
        assert max(len(row.tokens) for row in batch) * len(batch) <= 4000
    padded = sum(max(len(row.tokens) for row in batch) * len(batch) for batch in batches)
    real = sum(len(row.tokens) for row in rows)
    # Little padding, and far fewer passes than rows.
    assert padded < 1.1 * real and len(batches) < len(rows) / 4
    longer_than_the_budget = _Row([0] * 500, question=0)
    assert cut([longer_than_the_budget], budget=100) == [[longer_than_the_budget]]


def test_least_cost_batches_cost_least():
    """The CPU batching's cuts cost no more (tokens + per-pass overhead) than filling each batch, on any rows."""
    from ec2er_utils.evaluation.choice import _Row

    rng = random.Random(1)
    for _ in range(50):
        ordered = sorted((_Row([0] * rng.randint(1, 300)) for _ in range(rng.randint(1, 40))),
                         key=lambda row: len(row.tokens))
        budget = rng.randint(200, 3000)
        assert _passes_cost(_least_cost_batches(ordered, budget)) <= _passes_cost(_budget_batches(ordered, budget))
    with pytest.raises(ValueError, match="sorted"):
        _least_cost_batches([_Row([0, 0]), _Row([0])], 100)


@pytest.mark.slow
@needs_emobench
def test_choice_with_shared_prefixes_equals_a_plain_forward_pass_per_prompt(monkeypatch):
    """The shared-prefix scorer gives each prompt's own next-token log-probabilities while computing fewer tokens."""
    import torch

    scorer = ChoiceScorer("smollm2", batch_size=3, dtype=torch.float32)
    assert scorer.share_prefixes
    folder = SHARED / "emobench"
    items = load_emobench("EU", data_dir=folder, limit=3) + load_emobench("EA", data_dir=folder, limit=2)
    questions = [q for item in items for q in paper_questions(item).values()]
    questions += [questions[-1]]  # a prompt twice: its group shares all but the last token
    prompt_ids = [scorer.tokenizer(scorer.prompt(q), add_special_tokens=False)["input_ids"] for q in questions]
    references = []
    for ids in prompt_ids:
        with torch.inference_mode():  # the plain method: the whole prompt, alone, default positions and mask
            logits = scorer.hf_model(input_ids=torch.tensor([ids])).logits[0, -1]
        references.append(torch.log_softmax(logits.float(), dim=-1))

    def assert_same(all_scores: list[dict[str, float]]) -> None:
        for scores, reference in zip(all_scores, references, strict=True):
            expected = {letter: float(reference[scorer.letter_id(letter)]) for letter in scores}
            assert max(abs(scores[letter] - expected[letter]) for letter in scores) < 1e-3
            assert max(scores, key=scores.get) == max(expected, key=expected.get)

    computed = []  # tokens through the model, each pass
    forward = scorer._forward

    def counting_forward(rows):
        computed.append(sum(len(row.tokens) for row in rows))
        return forward(rows)

    monkeypatch.setattr(scorer, "_forward", counting_forward)
    assert_same(scorer.option_logprobs(questions))
    assert sum(computed) < 0.85 * sum(len(ids) for ids in prompt_ids)
    # The scorer's plain path, every prompt whole, agrees too.
    computed.clear()
    scorer.share_prefixes = False
    assert_same(scorer.option_logprobs(questions))
    assert sum(computed) == sum(len(ids) for ids in prompt_ids)


@pytest.mark.slow
@needs_emobench
def test_choice_without_cpu_speed_ups_is_stock_and_scores_the_same(monkeypatch):
    """EC2ER_CPU_SPEEDUPS=0: SDPA attention and batches filled to the token budget, never the CPU batching; the
    log-probabilities equal those with the speed-ups up to float rounding."""
    import torch

    from ec2er_utils import cpu_speedups

    folder = SHARED / "emobench"
    items = load_emobench("EU", data_dir=folder, limit=3) + load_emobench("EA", data_dir=folder, limit=3)
    questions = [q for item in items for q in paper_questions(item).values()]
    monkeypatch.setenv(cpu_speedups.SWITCH, "1")
    fast = ChoiceScorer("smollm2", batch_size=3, dtype=torch.float32)
    with_speed_ups = fast.option_logprobs(questions)
    monkeypatch.setenv(cpu_speedups.SWITCH, "0")
    stock = ChoiceScorer("smollm2", batch_size=3, dtype=torch.float32)
    assert fast.hf_model.config._attn_implementation == cpu_speedups.CPU_ATTENTION
    assert stock.hf_model.config._attn_implementation == "sdpa"
    monkeypatch.setattr(cpu_speedups, "least_cost_batches", lambda *a: pytest.fail("the CPU batching was used"))
    without = stock.option_logprobs(questions)
    for a, b in zip(with_speed_ups, without, strict=True):
        assert a.keys() == b.keys()
        assert max(abs(a[letter] - b[letter]) for letter in a) < 1e-3
        assert max(a, key=a.get) == max(b, key=b.get)


@pytest.mark.slow
@needs_emobench
def test_official_and_paper_protocols_with_the_local_backend(tmp_path):
    from ec2er_utils.llm import make_client

    client = make_client("local", temperature=0, max_reasks=0, batch_size=4, progress=False)
    common = dict(adapter=None, tasks=("EU", "EA"), limit=2, emobench_dir=SHARED / "emobench", n_resamples=200,
                  orders="original")
    official = evaluate(EvalConfig(protocol="official", out_dir=tmp_path / "official", **common), client=client,
                        progress=False)
    paper = evaluate(EvalConfig(protocol="paper", out_dir=tmp_path / "paper", max_tokens=48, **common), client=client,
                     progress=False)
    for run in (official, paper):
        for task in ("EU", "EA"):
            records = run.predictions[task]
            assert len(records) == 2 and all(r.status in STATUSES for r in records)
            assert all(r.raw for r in records)  # the model's reply is kept whatever its status
            summary = run.leaderboards[task]["languages"]["en"]
            assert summary["parse_failures"] == sum(r.status != "ok" for r in records)
    for record in paper.predictions["EA"]:
        if record.status == "ok":
            assert record.predicted["answer"] in "ABCD"
    assert compare_runs(official, paper, allow_partial=False, n_resamples=200)["n"].iloc[0] == 2


@pytest.mark.slow
@needs_emobench
def test_openai_backend_against_a_real_server(openai_server, tmp_path):
    config = EvalConfig(model=openai_server.model, backend="openai", base_url=openai_server.base_url,
                        protocol="official", tasks=("EA",), limit=2, emobench_dir=SHARED / "emobench",
                        out_dir=tmp_path, attempts=2, max_tokens=32, n_resamples=200, orders="original",
                        client_options={"max_retries": 1, "timeout": 120})
    run = evaluate(config, progress=False)
    records = run.predictions["EA"]
    assert len(records) == 2
    assert {r.status for r in records} <= set(STATUSES) - {"request_failed"}, [r.detail for r in records]
    assert all(r.raw is not None for r in records)
    assert all(1 <= r.attempts <= 2 for r in records)
    assert all(r.attempts == 2 for r in records if r.status != "ok")
    assert json.loads((tmp_path / "run.json").read_text())["backend"] == "openai"
