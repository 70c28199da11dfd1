"""Controls of the train -> evaluate machinery (issue 15): scenario-disjoint folds, EmoBench items as control
training questions, the adapter-is-applied check, and a small overfit check that really trains."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ec2er_utils.emobench import load_tasks, task_of
from ec2er_utils.evaluation import EvalConfig, evaluate, paper_questions
from ec2er_utils.evaluation.controls import (
    AdapterNotApplied,
    control_questions,
    overfit_check,
    overfit_diagnostics,
    scenario_folds,
    scenario_key,
    write_item_subset,
)
from ec2er_utils.paths import shared_dir
from ec2er_utils.training import training_records

SHARED = shared_dir()
needs_emobench = pytest.mark.skipif(SHARED is None or not (SHARED / "emobench").is_dir(),
                                    reason="needs the shared/ folder beside the checkout")


@pytest.fixture(scope="module")
def every_item():
    """Both tasks, both languages: 800 items on 400 scenarios."""
    items = load_tasks(("EU", "EA"), "all", SHARED / "emobench")
    return [item for task_items in items.values() for item in task_items]


@needs_emobench
def test_folds_are_scenario_disjoint_and_cover_every_item(every_item):
    folds = scenario_folds(every_item, k=5, seed=7)
    assert sorted(id(item) for fold in folds for item in fold) == sorted(id(item) for item in every_item)
    fold_of_scenario = {}
    for number, fold in enumerate(folds):
        for item in fold:
            assert fold_of_scenario.setdefault(scenario_key(item), number) == number, scenario_key(item)
    # an item's Chinese twin (same task and qid) is in its fold, and each fold holds both languages of each task
    assert len(fold_of_scenario) == 400
    for fold in folds:
        per_task_language = Counter((task_of(item), item.language) for item in fold)
        assert per_task_language == {("EU", "en"): 40, ("EU", "zh"): 40, ("EA", "en"): 40, ("EA", "zh"): 40}


@needs_emobench
def test_folds_are_seeded(every_item):
    def scenarios(seed):
        return [[scenario_key(item) for item in fold] for fold in scenario_folds(every_item, k=3, seed=seed)]

    assert scenarios(1) == scenarios(1)
    assert scenarios(1) != scenarios(2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        scenario_folds(every_item, k=1)
    with pytest.raises(ValueError, match="cannot fill"):
        scenario_folds(every_item[:3], k=5)


@needs_emobench
def test_control_questions_are_the_evaluated_questions_with_shuffled_options_and_label_explanations(every_item):
    english = [item for item in every_item if item.language == "en"]
    questions = control_questions(english, shuffle_seed=3)
    asked = [q for item in english for q in paper_questions(item).values()]
    assert len(questions) == len(asked) == 600  # EU: emotion + cause, EA: one question
    moved = 0
    for control, original in zip(questions, asked, strict=True):
        assert control.kind == f"control/{original.kind}"
        assert (control.scenario, control.question) == (original.scenario, original.question)
        assert sorted(control.options) == sorted(original.options)
        gold = original.options[original.answer_index]
        assert control.options[control.answer_index] == gold
        assert gold in control.explanation  # the reasoning names the right option's text
        moved += control.options != original.options
    assert moved > 500  # shuffled (a few keep their order by chance)
    assert control_questions(english[:5], shuffle_seed=3) == questions[:len(control_questions(english[:5]))]
    kept = control_questions(english, shuffle_seed=None)
    assert [q.options for q in kept] == [q.options for q in asked]
    # the package's training records: the completion's answer letter is the shuffled gold letter
    for record, question in zip(training_records(questions[:20]), questions[:20], strict=True):
        answer = json.loads(record["completion"][0]["content"])
        assert answer == {"reasoning": question.explanation, "answer": question.answer_letter}


@needs_emobench
def test_an_item_subset_folder_holds_exactly_those_items(every_item, tmp_path):
    chosen = [item for item in every_item if item.qid in ("3", "17")]
    folder = write_item_subset(chosen, tmp_path / "subset", SHARED / "emobench")
    reread = load_tasks(("EU", "EA"), "all", folder)
    assert sorted((task_of(i), i.language, i.qid) for items in reread.values() for i in items) == sorted(
        (task_of(i), i.language, i.qid) for i in chosen)
    assert reread["EU"][0] == next(i for i in chosen if task_of(i) == "EU")


# --------------------------------------------------------------------------------------------------------------
# With the embedded model (slow)


def _lora_adapter(folder, *, identity: bool):
    """A LoRA adapter on the embedded model's attention: PEFT's default initialisation (B = 0, an identity adapter:
    what an adapter that was never trained is) or random B (an adapter that changes the model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ec2er_utils.models import checkpoint_path

    base = AutoModelForCausalLM.from_pretrained(checkpoint_path("smollm2"))
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=True if identity else False)
    get_peft_model(base, config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {"identity": _lora_adapter(folder / "identity", identity=True),
            "random": _lora_adapter(folder / "random", identity=False)}


@pytest.mark.slow
@needs_emobench
@pytest.mark.parametrize("protocol", ["choice", "paper"])  # the scorer's model; the generating client's model
def test_evaluate_refuses_an_adapter_that_changes_nothing_and_accepts_one_that_does(protocol, adapters, tmp_path):
    def run(adapter):
        return evaluate(EvalConfig(model="smollm2", adapter=adapter, protocol=protocol, tasks=("EA",), limit=1,
                                   orders="original", emobench_dir=SHARED / "emobench", out_dir=tmp_path / adapter.name,
                                   max_tokens=8), progress=False)

    with pytest.raises(AdapterNotApplied, match="does not change the model's log-probabilities"):
        run(adapters["identity"])
    assert not (tmp_path / "identity" / "EA-en.predictions.jsonl").exists()  # nothing scored with it
    assert len(run(adapters["random"]).records("EA")) == 1


@pytest.mark.slow
@needs_emobench
def test_the_diagnostics_name_an_unapplied_adapter_and_a_loss_that_did_not_fall(adapters):
    questions = control_questions(load_tasks(("EA",), "en", SHARED / "emobench", limit=3)["EA"], shuffle_seed=None)
    lines = overfit_diagnostics(adapters["identity"], questions, {"first_loss": 1.3, "last_loss": 1.2, "steps": 4},
                                model="smollm2")
    assert any(line.startswith("loss not near zero: 1.300 -> 1.200") for line in lines), lines
    assert any(line.startswith("adapter not applied") for line in lines), lines
    assert not any(line.startswith("format mismatch") for line in lines), lines  # the prompts are the trained ones
    assert any(line.startswith("letter after the trained reasoning (teacher-forced): ") for line in lines), lines


@pytest.mark.slow
@needs_emobench
def test_a_small_overfit_check_really_trains_and_reaches_the_threshold(tmp_path):
    """Trains the embedded model on 4 EA items (8 epochs, 16 steps) until it has memorised them and evaluates them
    with the protocol that matches training (5 epochs were too few: 3/4, and the diagnostics said the letter of one
    item was not learnt). It fails when the train -> evaluate loop is broken (the result then lists why)."""
    result = overfit_check(4, task="EA", with_base=False, out_root=tmp_path, num_train_epochs=8)
    assert result.training["last_loss"] < result.training["first_loss"]
    assert result.passed, result.summary()
    assert result.accuracy["tuned reason-score"]["accuracy"] >= 0.9
    assert "tuned choice" in result.accuracy
