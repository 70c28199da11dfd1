"""The §3.4 manual review: a seeded stratified sample, annotation sheets that survive a spreadsheet round trip,
Cohen's kappa with its interval on made-up annotations whose kappa is known, and the verdicts carried into the
processed set (confidence, ambiguous, rejected items dropped)."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from ec2er_utils import preprocess as pp
from ec2er_utils.figures import plot_review
from ec2er_utils.preprocess import review
from ec2er_utils.preprocess.review import Annotation, ReviewSheetError
from ec2er_utils.taxonomy import PAPER_REVIEW_SIZE
from tests.test_preprocess import ea_item, eu_item, generator_outputs, mcq_item

EU_CATEGORIES = ["complex_emotions", "emotional_cues", "perspective_taking", "personal_beliefs_and_experiences"]


def items_per_category(counts: dict[str, int]) -> list:
    return [mcq_item(item_id=f"{c[:4]}{n}", category=c) for c, k in counts.items() for n in range(k)]


def annotations(pairs: list[tuple[bool, bool]], **fields) -> tuple[list[Annotation], list[Annotation]]:
    """Two annotators' judgements of items i0, i1, ...: (first says appropriate, second says appropriate)."""
    def one(index, ok):
        return Annotation(item_id=f"i{index}", label_correct=ok, explanation_valid=True, ambiguous=False,
                          confidence=4, **fields)
    return [one(i, a) for i, (a, _) in enumerate(pairs)], [one(i, b) for i, (_, b) in enumerate(pairs)]


# --- the sample ---------------------------------------------------------------------------------------------------

def test_the_sample_is_stratified_seeded_and_in_item_order():
    items = items_per_category({"complex_emotions": 40, "emotional_cues": 30, "perspective_taking": 20,
                                "personal_beliefs_and_experiences": 10})
    sample = review.sample_for_review(items, 10, seed=1)
    assert Counter(i.category for i in sample) == {"complex_emotions": 4, "emotional_cues": 3,
                                                   "perspective_taking": 2, "personal_beliefs_and_experiences": 1}
    positions = [items.index(i) for i in sample]
    assert positions == sorted(positions)
    assert review.sample_for_review(items, 10, seed=1) == sample
    assert review.sample_for_review(items, 10, seed=2) != sample
    uneven = review.sample_for_review(items, 7, seed=0)  # 2.8, 2.1, 1.4, 0.7: largest remainders get the rest
    assert Counter(i.category for i in uneven) == {"complex_emotions": 3, "emotional_cues": 2,
                                                   "perspective_taking": 1, "personal_beliefs_and_experiences": 1}
    assert review.sample_for_review(items[:5], 50) == items[:5] and PAPER_REVIEW_SIZE == 50


# --- Cohen's kappa ---------------------------------------------------------------------------------------------------

def test_kappa_of_made_up_annotations_is_the_known_value():
    # 50 items: both yes 20, both no 15, first yes/second no 10, first no/second yes 5.
    # observed agreement 35/50 = 0.7; chance 0.6 * 0.5 + 0.4 * 0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    pairs = [(True, True)] * 20 + [(False, False)] * 15 + [(True, False)] * 10 + [(False, True)] * 5
    first, second = annotations(pairs)
    found = review.agreement(first, second)
    assert found["kappa"] == pytest.approx(0.4) and found["n"] == 50
    assert (found["observed"], found["expected"]) == (pytest.approx(0.7), pytest.approx(0.5))
    assert found["table"] == [[15, 5], [10, 20]]
    assert found["ci_low"] < 0.4 < found["ci_high"] and found["paper_kappa"] == 0.78
    assert len(found["disagreements"]) == 15 and found["only_first"] == found["only_second"] == []
    # four times the items, the same proportions: the same kappa, an interval half as wide
    wide = review.cohen_kappa(*zip(*pairs, strict=True))
    narrow = review.cohen_kappa(*zip(*(pairs * 4), strict=True))
    assert narrow["kappa"] == pytest.approx(0.4)
    assert narrow["ci_high"] - narrow["ci_low"] == pytest.approx((wide["ci_high"] - wide["ci_low"]) / 2, rel=1e-6)


def test_kappa_at_its_extremes_and_when_undefined():
    perfect = review.cohen_kappa([True, False] * 10, [True, False] * 10)
    assert perfect["kappa"] == pytest.approx(1.0) and perfect["ci_high"] <= 1.0
    chance = review.cohen_kappa([True, True, False, False] * 5, [True, False, True, False] * 5)
    assert chance["kappa"] == pytest.approx(0.0)
    same = review.cohen_kappa([True] * 8, [True] * 8)
    assert same["kappa"] is None and "chance agreement is 1" in same["undefined"]
    one_sided = review.cohen_kappa([True] * 8, [True] * 6 + [False] * 2)
    assert one_sided["kappa"] == pytest.approx(0.0) and one_sided["ci_low"] is None and one_sided["undefined"]
    with pytest.raises(ValueError, match="same items"):
        review.cohen_kappa([True], [True, False])


# --- the sheet: a spreadsheet round trip -----------------------------------------------------------------------------

def fill(path, judgements: dict[str, dict[str, str]]) -> None:
    """What a person does in a spreadsheet program: type the judgement columns, save as CSV (no byte-order mark)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for column in review.JUDGEMENT_COLUMNS:
        frame[column] = [judgements[i].get(column, "") for i in frame["item_id"]]
    frame.to_csv(path, index=False, encoding="utf-8")


def test_a_sheet_round_trip(tmp_path):
    items = [eu_item(), ea_item(), mcq_item()]
    path = tmp_path / "annotator_1.csv"
    assert review.write_review_sheet(items, path) is True
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(frame.columns) == [*review.ITEM_COLUMNS, *review.JUDGEMENT_COLUMNS]
    eu = frame.iloc[0]
    assert eu["options"].splitlines()[0] == "A) Delight" and eu["answer"] == "A) Delight"
    assert eu["cause_question"] == "Why would Dorea feel this way in this situation?"
    assert frame.iloc[1]["cause_options"] == ""  # an EA item has one question
    assert (frame[list(review.JUDGEMENT_COLUMNS)] == "").all().all()
    fill(path, {"eu1": {"label_correct": "yes", "explanation_valid": "Y", "ambiguous": "no", "confidence": "5"},
                "ea1": {"label_correct": "no", "explanation_valid": "yes", "ambiguous": "TRUE", "confidence": "2",
                        "issue": "ambiguous_label", "notes": "telling the parents is defensible too"},
                "m1": {"label_correct": "1", "explanation_valid": "0", "ambiguous": "false", "confidence": "3.0"}})
    read = review.read_review_sheet(path)
    assert [(a.item_id, a.appropriate, a.ambiguous, a.confidence) for a in read] == [
        ("eu1", True, False, 5), ("ea1", False, True, 2), ("m1", False, False, 3)]
    assert read[1].issue == "ambiguous_label" and read[1].notes.startswith("telling")
    assert review.write_review_sheet(items, path) is False  # a person's work is never overwritten
    assert review.read_review_sheet(path) == read


def test_the_jupyter_form_fills_in_a_sheet(tmp_path):
    path = tmp_path / "annotator_1.csv"
    review.write_review_sheet([eu_item(), ea_item()], path)
    form = review.ReviewForm(path)
    assert "Dorea had spent" in form.item.value and form.position.value.startswith("item 1 of 2")
    answers = [{"label_correct": "yes", "explanation_valid": "yes", "ambiguous": "no", "confidence": "5"},
               {"label_correct": "no", "explanation_valid": "yes", "ambiguous": "yes", "confidence": "2",
                "issue": "ambiguous_label", "notes": "telling the parents is defensible"}]
    for row, values in enumerate(answers):
        for name, value in values.items():
            form.widgets[name].value = value
        form.go(row + 1)  # "Next" saves; past the last row it stays there
    assert form.row == 1 and form.widgets["notes"].value == "telling the parents is defensible"
    form.go(0)
    assert form.widgets["confidence"].value == "5"  # what was typed comes back
    read = review.read_review_sheet(path)
    assert [(a.item_id, a.appropriate, a.confidence, a.issue) for a in read] == [
        ("eu1", True, 5, ""), ("ea1", False, 2, "ambiguous_label")]


@pytest.mark.parametrize(("row", "message"), [
    ({"label_correct": "maybe"}, r"row 2 \(item 'eu1'\), column 'label_correct': 'maybe' is not yes or no"),
    ({"confidence": "7"}, r"column 'confidence': '7' is not a whole number from 1 to 5"),
    ({"confidence": "high"}, r"column 'confidence': 'high'"),
    ({"ambiguous": ""}, r"row 2 \(item 'eu1'\): ambiguous not filled in"),
    ({"issue": "typo"}, r"column 'issue': 'typo' is not one of"),
])
def test_a_bad_sheet_value_names_file_row_and_column(tmp_path, row, message):
    path = tmp_path / "sheet.csv"
    review.write_review_sheet([eu_item()], path)
    fill(path, {"eu1": {"label_correct": "yes", "explanation_valid": "yes", "ambiguous": "no", "confidence": "4"}
                | row})
    with pytest.raises(ReviewSheetError, match=message) as caught:
        review.read_review_sheet(path)
    assert str(path) in str(caught.value)


def test_sheets_that_are_missing_or_incomplete_say_how_to_fix_them(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="review_sheets"):
        review.read_review_sheet("processed/review/annotator_1.csv")  # relative to data_dir()
    path = tmp_path / "twice.csv"
    pd.DataFrame([{"item_id": "a", "label_correct": "yes", "explanation_valid": "yes", "ambiguous": "no",
                   "confidence": "4"}] * 2).to_csv(path, index=False)
    with pytest.raises(ReviewSheetError, match="listed twice"):
        review.read_review_sheet(path)
    pd.DataFrame([{"item_id": "a"}]).to_csv(path, index=False)
    with pytest.raises(ReviewSheetError, match="no column"):
        review.read_review_sheet(path)


# --- the verdicts in the dataset ------------------------------------------------------------------------------------

def test_the_verdicts_set_confidence_keep_ambiguous_items_and_drop_rejected_ones():
    items = [mcq_item(item_id=f"i{n}") for n in range(5)]
    first, second = annotations([(True, True), (True, False), (False, False), (True, True)])
    first[0] = first[0].model_copy(update={"confidence": 5})
    second[3] = second[3].model_copy(update={"ambiguous": True, "confidence": 2})
    first.append(Annotation(item_id="gone", label_correct=True, explanation_valid=True, ambiguous=False,
                            confidence=3))
    second.append(first[-1])
    kept, report = review.apply_review(items, first, second)
    assert [(i.item_id, i.confidence, i.ambiguous) for i in kept] == [
        ("i0", 0.875, False),  # (5 + 4) / 2 = 4.5 on 1-5 -> 0.875
        ("i1", 0.75, True),  # the annotators disagree: ambiguous, kept
        ("i3", 0.5, True),  # one annotator found it ambiguous
        ("i4", None, None)]  # not reviewed
    assert [(d.item_id, d.reason) for d in report.dropped] == [("i2", "review_rejected")]
    assert report.notes == {"reviewed": 4, "ambiguous_kept": 2, "rejected": 1, "not_in_dataset": ["gone"]}


def test_the_figure_shows_the_agreement_and_needs_one(tmp_path):
    first, second = annotations([(True, True)] * 20 + [(False, False)] * 15 + [(True, False)] * 10
                                + [(False, True)] * 5)
    figure = plot_review({"agreement": review.agreement(first, second)})
    table, kappas = figure.axes[:2]
    assert [t.get_text() for t in table.texts] == ["15", "5", "10", "20"]
    assert "0.40" in figure.get_suptitle() and kappas.get_xlabel() == "Cohen's kappa (95% CI)"
    figure.savefig(tmp_path / "review.png")
    with pytest.raises(ValueError, match="not annotated yet"):
        plot_review({"status": "not annotated yet: two people fill in ..."})


def test_the_chapter_writes_blank_sheets_then_reads_them_back(tmp_path, monkeypatch):
    monkeypatch.setenv("EC2ER_DATA_DIR", str(tmp_path))
    generator_outputs(tmp_path)
    config = pp.PreprocessConfig(balance_min_cap=1, validation_fraction=0, workers=1, judge_backend=None,
                                 review_sample_size=6)
    run = pp.run_preprocess(config, references=[])
    notes = run.report("review").notes
    folder = tmp_path / "processed" / "review"
    sheets = [folder / "annotator_1.csv", folder / "annotator_2.csv"]
    assert notes["sample_size"] == 6 and notes["sheets_match_sample"] == {str(p): True for p in sheets}
    assert "not annotated yet" in notes["status"] and all(i.confidence is None for i in run.items)
    # two people fill in their sheets: they agree on all but one item, and both reject another
    ids = notes["sample"]
    yes = {"label_correct": "yes", "explanation_valid": "yes", "ambiguous": "no", "confidence": "4"}
    wrong = yes | {"label_correct": "no"}
    fill(sheets[0], {i: yes for i in ids} | {ids[0]: wrong, ids[1]: wrong})
    fill(sheets[1], {i: yes for i in ids} | {ids[0]: yes | {"explanation_valid": "no"}})
    annotated = config.model_copy(update={"review_sheets": ["processed/review/annotator_1.csv", str(sheets[1])]})
    run = pp.run_preprocess(annotated, references=[])
    step = run.report("review")
    assert step.notes["status"] == "annotated" and step.by_reason == {"review_rejected": 1}
    assert step.notes["agreement"]["table"] == [[1, 1], [0, 4]] and step.notes["agreement"]["n"] == 6
    train = {i.item_id: i for i in pp.load_split("train", tmp_path / "processed")}
    assert ids[0] not in train and train[ids[1]].ambiguous is True and train[ids[2]].confidence == 0.75
    assert sum(i.confidence is not None for i in train.values()) == 5
    card = (tmp_path / "processed" / "README.md").read_text()
    assert "Cohen's kappa on 'label and explanation appropriate', 6 items judged by both" in card
    assert "the paper reports 0.78" in card
    report = json.loads((tmp_path / "processed" / "preprocess_report.json").read_text())
    assert report["steps"][-1]["notes"]["agreement"]["kappa"] == step.notes["agreement"]["kappa"]
    plot_review(report["steps"][-1]["notes"])  # the figure comes from the report file alone
    # both annotators said "not ambiguous" everywhere: that kappa is undefined, and the card and figure say so
    assert step.notes["agreement"]["per_question"]["ambiguous"]["kappa"] is None
    # an annotator who never varied: kappa without an interval, written as such
    fill(sheets[1], {i: yes for i in ids})
    one_sided = pp.run_preprocess(annotated, references=[]).report("review").notes["agreement"]
    assert one_sided["kappa"] == 0.0 and one_sided["ci_low"] is None
    assert "0.00 (no confidence interval" in (tmp_path / "processed" / "README.md").read_text()
