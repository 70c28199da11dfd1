"""Permutation-robust EmoBench scoring: cyclic option orders, the robust metrics, letter-prior baselines, and
paired comparisons on them (scripted backends: the bookkeeping; real EmoBench items)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ec2er_utils.emobench import load_tasks
from ec2er_utils.evaluation import (
    EvalConfig,
    Prediction,
    compare_predictions,
    compare_runs,
    evaluate,
    gold_letters,
    item_shifts,
    letter_table,
    robust_table,
    rotated,
    summarize,
)
from ec2er_utils.formatting import LETTERS
from ec2er_utils.parameters import ParameterError
from tests.helpers import SHARED, ScriptedClient, needs_emobench



@pytest.fixture(scope="module")
def items():
    return load_tasks(("EU", "EA"), "en", SHARED / "emobench", limit=6)


def _always_a(call, index, conversation):
    user = conversation[-1]["content"]
    return json.dumps({"answer_q1": "A", "answer_q2": "A"} if "Question 1" in user else {"answer": "A"})


def _reader(items):
    """A script that answers every official prompt correctly by finding the gold option's text among the choices."""
    labels = {item.scenario: ((item.emotion_label, item.cause_label) if hasattr(item, "emotion_label")
                              else (item.label,)) for task_items in items.values() for item in task_items}

    def script(call, index, conversation):
        user = conversation[-1]["content"]
        gold = next(golds for scenario, golds in labels.items() if scenario in user)
        blocks = re.split(r"## Choices[^\n]*\n", user)[1:]
        letters = []
        for block, label in zip(blocks, gold, strict=True):
            lines = [line for line in block.split("\n") if re.match(r"^[A-Z]\) ", line)]
            letters.append(next(line[0] for line in lines if line[3:] == label))
        if len(letters) == 2:
            return json.dumps({"answer_q1": letters[0], "answer_q2": letters[1]})
        return json.dumps({"answer": letters[0]})

    return script


@needs_emobench
def test_rotation_moves_the_gold_letter_and_turns_both_eu_questions_together(items):
    eu, ea = items["EU"][0], items["EA"][0]
    assert rotated(eu, 0) is eu and item_shifts(eu, "original") == [0]
    assert item_shifts(ea, "cyclic") == [0, 1, 2, 3]
    assert item_shifts(eu, "cyclic") == list(range(max(6, len(eu.cause_choices))))
    emotion, cause = (LETTERS.index(x) for x in gold_letters(eu).values())
    for shift in item_shifts(eu, "cyclic"):
        moved = rotated(eu, shift)
        assert sorted(moved.emotion_choices) == sorted(eu.emotion_choices)
        assert gold_letters(moved) == {"emotion": LETTERS[(emotion - shift) % 6],
                                       "cause": LETTERS[(cause - shift) % len(eu.cause_choices)]}
    letters = [gold_letters(rotated(ea, s))["answer"] for s in item_shifts(ea, "cyclic")]
    assert sorted(letters) == ["A", "B", "C", "D"]  # over the shifts the answer sits once under every letter
    assert gold_letters(ea) == gold_letters(rotated(ea, 4))  # shifts count modulo the options


def _expected_always_a(item, metric: str) -> float:
    """What always answering "A" scores on one item, from index arithmetic alone."""
    gold = [LETTERS.index(x) for x in gold_letters(item).values()]
    sizes = [6, len(item.cause_choices)] if len(gold) == 2 else [4]
    shifts = range(max(sizes))
    right = [all((g - s) % n == 0 for g, n in zip(gold, sizes, strict=True)) for s in shifts]
    return {"accuracy": float(right[0]), "order_mean": float(np.mean(right)), "strict": float(all(right))}[metric]


@needs_emobench
def test_a_letter_habit_scores_its_prior_in_the_official_order_and_chance_over_orders(items, tmp_path):
    client = ScriptedClient(_always_a)
    config = EvalConfig(adapter=None, protocol="official", orders="cyclic", emobench_dir=SHARED / "emobench",
                        out_dir=tmp_path, n_resamples=200, limit=6)
    run = evaluate(config, client=client, progress=False)
    assert len(run.records("EA", "en", all_orders=True)) == 6 * 4
    assert len(run.records("EA", "en")) == 6  # EmoBench's order only: the official records
    frame = run.frame()
    for task in ("EU", "EA"):
        summary = run.leaderboards[task]["languages"]["en"]
        overall = summary["overall"]
        for metric in ("accuracy", "order_mean", "strict"):
            expected = np.mean([_expected_always_a(item, metric) for item in items[task]])
            row = frame[(frame.task == task) & (frame.metric == metric) & (frame.category == "Overall")].iloc[0]
            assert row["accuracy"] == pytest.approx(expected)
            assert row["always_A"] == pytest.approx(expected)  # this model IS the always-A baseline
            assert row["own_letters"] == pytest.approx(expected)  # its letter shares: A every time
        assert overall["baselines"]["majority_gold"] >= overall["baselines"]["always_A"]
        assert summary["orders"]["letters"][next(iter(summary["letters"]))]["predicted"] == {
            "A": len(run.records(task, "en", all_orders=True))}
    ea_mean = run.leaderboards["EA"]["languages"]["en"]["orders"]["order_mean"]["Overall"]
    assert ea_mean["accuracy"] == 0.25 == ea_mean["chance"]  # over all orders a letter habit is chance, exactly
    table = robust_table(frame)
    assert list(table.loc[("smollm2", "EA")].index) == ["accuracy", "order_mean", "strict"]
    letters = letter_table(run)
    assert letters.loc[("smollm2", "EA", "answer", "A"), "answered, all orders"] == 1.0
    assert letters.loc[("smollm2", "EA", "answer", "B"), "answered, all orders"] == 0.0
    assert np.allclose(letters["gold"].groupby(level=["task", "question"]).sum(), 1.0)


@needs_emobench
def test_a_reader_is_right_under_every_order_and_beats_the_habit_in_paired_tests(items, tmp_path):
    common = dict(adapter=None, protocol="official", orders="cyclic", emobench_dir=SHARED / "emobench",
                  n_resamples=200, limit=6)
    habit = evaluate(EvalConfig(out_dir=tmp_path / "habit", **common), client=ScriptedClient(_always_a),
                     progress=False)
    reader = evaluate(EvalConfig(out_dir=tmp_path / "reader", **common), client=ScriptedClient(_reader(items)),
                      progress=False)
    for task in ("EU", "EA"):
        orders = reader.leaderboards[task]["languages"]["en"]["orders"]
        assert orders["strict"]["Overall"]["accuracy"] == 1.0 == orders["order_mean"]["Overall"]["accuracy"]
        strict = compare_runs(habit, reader, tasks=[task], metric="strict", n_resamples=500).iloc[0]
        wrong_somewhere = sum(_expected_always_a(item, "strict") == 0 for item in items[task])
        assert (strict["only_a"], strict["only_b"]) == (0, wrong_somewhere)
        assert strict["mcnemar_p"] == pytest.approx(2 * 0.5 ** wrong_somewhere)
        mean = compare_runs(habit, reader, tasks=[task], metric="order_mean", n_resamples=500).iloc[0]
        assert mean["delta"] == pytest.approx(1 - np.mean([_expected_always_a(i, "order_mean")
                                                             for i in items[task]]))
        assert mean["ci_low"] > 0
    original = evaluate(EvalConfig(out_dir=tmp_path / "original", **{**common, "orders": "original"}),
                        client=ScriptedClient(_always_a), progress=False)
    with pytest.raises(ValueError, match="orders='cyclic'"):
        compare_runs(original, original, metric="strict")
    with pytest.raises(ValueError, match="different option orders"):
        compare_runs(original, reader, metric="strict")
    assert compare_runs(original, reader, metric="correct", n_resamples=200).shape[0] > 0  # official: fine


@needs_emobench
def test_cyclic_resumes_an_original_run_asking_only_the_new_orders(tmp_path):
    client = ScriptedClient(_always_a)
    config = EvalConfig(adapter=None, protocol="official", orders="original", tasks=("EA",), out_dir=tmp_path,
                        emobench_dir=SHARED / "emobench", n_resamples=200, limit=3)
    first = evaluate(config, client=client, progress=False)
    assert sum(len(c) for c in client.conversations) == 3
    assert "orders" not in first.leaderboards["EA"]["languages"]["en"]
    cyclic = evaluate(config.model_copy(update={"orders": "cyclic"}), client=client, progress=False)
    assert sum(len(c) for c in client.conversations) == 3 + 3 * 3  # shifts 1-3 of each item, nothing twice
    shifts = sorted((r.qid, r.shift) for r in cyclic.records("EA", "en", all_orders=True))
    assert shifts == [(qid, s) for qid in ("1", "2", "3") for s in range(4)]
    asked = [c[-1]["content"] for call in client.conversations for c in call]
    assert len(set(asked)) == 12  # every order is a different prompt


def _record(qid, shift, gold, predicted):
    return Prediction(qid=qid, language="en", task="EA", category="c", protocol="choice", gold={"answer": gold},
                      predicted={"answer": predicted}, chance=0.25, shift=shift)


def test_robust_metrics_and_baselines_by_hand():
    # Item 1 right in 2 of 4 orders (official right); item 2 right in all 4. Gold letters rotate D, C, B, A.
    records = [_record("1", s, "DCBA"[s], p) for s, p in enumerate("DCAB")]
    records += [_record("2", s, "ABCD"[s], "ABCD"[s]) for s in range(4)]
    summary = summarize(records, n_resamples=200)
    assert summary["overall"]["accuracy"] == 1.0 and summary["n"] == 2
    orders = summary["orders"]
    assert orders["order_mean"]["Overall"]["accuracy"] == 0.75
    assert orders["strict"]["Overall"]["accuracy"] == 0.5
    assert orders["strict"]["Overall"]["chance"] == pytest.approx(0.25 ** 4)
    assert summary["overall"]["baselines"]["always_A"] == 0.5  # official order: gold D and A
    assert summary["overall"]["baselines"]["majority_gold"] == 0.5  # tie between A and D: the first, A
    # own letters in the official order: D once, A once -> each gold letter has share 1/2
    assert summary["overall"]["baselines"]["own_letters"] == 0.5
    # over all orders: answered D,C,A,B,A,B,C,D -> every letter 1/4; strict multiplies over the 4 orders
    assert orders["order_mean"]["Overall"]["baselines"]["own_letters"] == pytest.approx(0.25)
    assert orders["strict"]["Overall"]["baselines"]["own_letters"] == pytest.approx(0.25 ** 4)
    assert orders["strict"]["Overall"]["baselines"]["always_A"] == 0.0
    assert orders["shifts"] == {"4": 2}
    with pytest.raises(ValueError, match="shift 0"):
        summarize(records[1:4], n_resamples=200)
    worse = [_record(r.qid, r.shift, r.gold["answer"], "A") for r in records]
    row = compare_predictions(worse, records, metric="order_mean", n_resamples=200)[0]
    assert (row["accuracy_a"], row["accuracy_b"], row["only_b"]) == (0.25, 0.75, 2)


def test_orders_must_be_known():
    with pytest.raises((ValueError, ParameterError), match="orders"):
        EvalConfig(orders="random")
