"""Tests for ec2er_utils.taxonomy: the lists match the paper and the EmoBench files."""

from __future__ import annotations

import json
import re

import pytest

from ec2er_utils import taxonomy as tx
from ec2er_utils.paths import REPO_ROOT, shared_dir

SHARED = shared_dir() or REPO_ROOT.parent / "shared"  # EC2ER_SHARED_DIR, as the package reads it
PAPER = SHARED / "paper" / "ec2er_paper.txt"
EMOBENCH = SHARED / "emobench"

# Lists the paper gives verbatim in §3.2 (snake_case there, so they must be snake_case here too).
PAPER_ATTRIBUTE_LISTS = (
    "EU_AREAS",
    "EA_AREAS",
    "RELATIONSHIP_TYPES",
    "PROBLEM_FOCUS_TYPES",
    "CONFLICT_DOMAINS",
    "STAKES_LEVELS",
    "EMOTION_MIX_PROFILES",
    "INSIGHT_LEVELS",
    "COPING_STYLES",
    "COMMUNICATION_STYLES",
    "VIEWPOINT_TYPES",
)
SNAKE = re.compile(r"^[a-z]+(?:_[a-z]+)*$")


def _emobench_records(task: str) -> list[dict]:
    path = EMOBENCH / f"{task}.jsonl"
    if not path.is_file():
        pytest.skip(f"EmoBench data not available at {path} (needs the shared/ folder beside the checkout)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def eu_items() -> list[dict]:
    return _emobench_records("EU")


@pytest.fixture(scope="module")
def ea_items() -> list[dict]:
    return _emobench_records("EA")


# --- Paper lists ---


@pytest.mark.parametrize(
    ("name", "length", "spot"),
    [
        ("EU_AREAS", 5, "mixed_ambivalent_emotions"),
        ("EA_AREAS", 5, "conflict_deescalation"),
        ("RELATIONSHIP_TYPES", 5, "romantic"),
        ("PROBLEM_FOCUS_TYPES", 2, "others"),
        ("CONFLICT_DOMAINS", 8, "inlaw_family_tension"),
        ("STAKES_LEVELS", 3, "medium"),
        ("EMOTION_MIX_PROFILES", 6, "shame_plus_defiance"),
        ("INSIGHT_LEVELS", 3, "high"),
        ("COPING_STYLES", 6, "overfixing_problem_solving"),
        ("COMMUNICATION_STYLES", 5, "sarcastic_deflecting"),
        ("VIEWPOINT_TYPES", 3, "other_person_perspective"),
    ],
)
def test_paper_lists_length_and_spot_value(name: str, length: int, spot: str) -> None:
    values = getattr(tx, name)
    assert len(values) == length
    assert spot in values


def test_paper_lists_match_paper_text() -> None:
    if not PAPER.is_file():
        pytest.skip(f"paper text not available at {PAPER}")
    text = PAPER.read_text(encoding="utf-8")
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)  # undo PDF hyphenation ("sar-\ncastic_deflecting")
    found = {
        m.group(1).strip().replace(" ", "_"): tuple(v.strip() for v in m.group(2).split(","))
        for m in re.finditer(r"^- \*\*([A-Z_ ]+):\*\*\s*(.+)$", text, re.MULTILINE)
    }
    assert set(found) == set(PAPER_ATTRIBUTE_LISTS)
    for name in PAPER_ATTRIBUTE_LISTS:
        assert getattr(tx, name) == found[name], name


@pytest.mark.parametrize("name", PAPER_ATTRIBUTE_LISTS)
def test_paper_lists_are_snake_case(name: str) -> None:
    assert all(SNAKE.match(v) for v in getattr(tx, name)), name


def test_persona_grid() -> None:
    assert tx.AGE_RANGE == (18, 75)
    assert tx.OCCUPATIONS[:6] == tx.OCCUPATIONS_FROM_PAPER
    assert set(tx.OCCUPATIONS_FROM_PAPER) == {
        "student", "healthcare worker", "teacher", "engineer", "artist", "retiree"
    }  # fmt: skip
    assert not set(tx.OCCUPATIONS_FROM_PAPER) & set(tx.OCCUPATIONS_ADDED)
    assert tx.RELATIONSHIP_STATUSES == ("single", "partnered", "married", "divorced")
    assert tx.BASELINE_DISPOSITIONS == ("anxious", "optimistic", "skeptical", "empathetic", "guarded", "expressive")
    assert 6 <= len(tx.CULTURAL_REGIONS) <= 10
    assert tx.SPEAKER_TAGS == ("CLIENT", "THERAPIST", "SUPERVISOR")


def test_all_lists_are_tuples_of_unique_strings() -> None:
    for name, values in tx.TAXONOMY.items():
        assert isinstance(values, tuple), name
        assert values and all(isinstance(v, str) and v == v.strip() for v in values), name
        assert len(set(values)) == len(values), f"duplicates in {name}"
        assert getattr(tx, name) is values


# --- EmoBench categories and paper counts ---


def test_eu_categories_match_emobench(eu_items: list[dict]) -> None:
    assert set(tx.EU_CATEGORIES) == {d["coarse_category"] for d in eu_items}


def test_ea_categories_match_emobench(ea_items: list[dict]) -> None:
    assert set(tx.EA_CATEGORIES) == {d["category"] for d in ea_items}
    assert set(tx.EA_QUESTION_TYPES) == {d["question type"] for d in ea_items}


def test_paper_counts() -> None:
    assert sum(tx.PAPER_EU_COUNTS.values()) == 1527
    assert sum(tx.PAPER_EA_COUNTS.values()) == 1486
    assert set(tx.PAPER_EU_COUNTS) == set(tx.EU_CATEGORIES)
    assert set(tx.PAPER_EA_COUNTS) == set(tx.EA_CATEGORIES)
    assert tx.PAPER_EU_COUNTS["emotional_cues"] == 385
    assert tx.PAPER_EA_COUNTS["Personal-Self"] == 372
    assert tx.PAPER_COUNTS == {"EU": tx.PAPER_EU_COUNTS, "EA": tx.PAPER_EA_COUNTS}
    assert {task: set(counts) for task, counts in tx.PAPER_COUNTS.items()} == {
        task: set(categories) for task, categories in tx.TASK_CATEGORIES.items()}


def test_overall_is_the_table_column_beside_the_categories_never_a_category() -> None:
    from ec2er_utils.evaluation.paper_table import paper_table1

    table = paper_table1()
    for task, categories in tx.TASK_CATEGORIES.items():
        assert set(table.loc[table["task"] == task, "category"]) == {tx.OVERALL, *categories}


def test_paper_models_are_registry_aliases_in_table1_order() -> None:
    from ec2er_utils.evaluation.paper_table import paper_table1
    from ec2er_utils.models import MODEL_REGISTRY

    assert set(tx.PAPER_MODELS) <= set(MODEL_REGISTRY)
    assert tuple(dict.fromkeys(paper_table1()["alias"])) == tx.PAPER_MODELS


# --- Emotion vocabulary ---


def test_emotion_labels_literal_is_sorted_union() -> None:
    mix = {e for profile in tx.EMOTION_MIX_PROFILES for e in profile.split("_plus_")}
    expected = {e.lower() for e in tx.EMOBENCH_EU_EMOTIONS} | mix
    assert tx.EMOTION_LABELS == tuple(sorted(expected))
    assert len(tx.EMOTION_LABELS) == 44


def test_emobench_emotions_literal_matches_data(eu_items: list[dict]) -> None:
    english = [d for d in eu_items if d["language"] == "en"]
    atoms = {
        part.strip()
        for d in english
        for label in [*d["emotion_choices"], d["emotion_label"]]
        for part in label.split("&")
    }
    assert set(tx.EMOBENCH_EU_EMOTIONS) == atoms


def test_every_emobench_english_emotion_is_known(eu_items: list[dict]) -> None:
    english = [d for d in eu_items if d["language"] == "en"]
    assert len(english) == 200
    labels = {label for d in english for label in [*d["emotion_choices"], d["emotion_label"]]}
    unknown = sorted(label for label in labels if not tx.is_known_emotion(label))
    assert not unknown


def test_split_and_known_emotion() -> None:
    assert tx.split_emotion_label("Disappointment & Anger") == ("disappointment", "anger")
    assert tx.split_emotion_label("  Guilt   &Relief & JOY ") == ("guilt", "relief", "joy")
    assert tx.split_emotion_label("") == ()
    assert tx.is_known_emotion("anger")
    assert tx.is_known_emotion("  ANGER ")
    assert tx.is_known_emotion("Anger & Hurt")
    assert tx.is_known_emotion("envy + admiration")
    assert tx.is_known_emotion("relief and guilt")
    assert not tx.is_known_emotion("flibbertigibbet")
    assert not tx.is_known_emotion("Anger & flibbertigibbet")
    assert not tx.is_known_emotion("Anger &")
    assert not tx.is_known_emotion("")
    assert not tx.is_known_emotion("   ")


# --- validate_choice ---


def test_validate_choice_accepts_valid_values() -> None:
    assert tx.validate_choice("COPING_STYLES", "venting") == "venting"
    assert tx.validate_choice("coping_styles", "self_blame") == "self_blame"
    assert tx.validate_choice("EMOTION_LABELS", "Sadness & Love") == "Sadness & Love"


def test_validate_choice_error_names_kind_value_and_options() -> None:
    with pytest.raises(ValueError) as err:
        tx.validate_choice("STAKES_LEVELS", "extreme")
    message = str(err.value)
    assert "STAKES_LEVELS" in message
    assert "'extreme'" in message
    assert "low, medium, high" in message


def test_validate_choice_suggests_close_match() -> None:
    with pytest.raises(ValueError, match="did you mean 'sarcastic_deflecting'"):
        tx.validate_choice("COMMUNICATION_STYLES", "sarcastic_deflectng")


def test_validate_choice_rejects_unknown_kind_and_non_strings() -> None:
    with pytest.raises(ValueError, match="Unknown taxonomy kind 'MOODS'.*COPING_STYLES"):
        tx.validate_choice("MOODS", "happy")
    with pytest.raises(ValueError, match="EMOTION_LABELS"):
        tx.validate_choice("EMOTION_LABELS", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="EMOTION_LABELS"):
        tx.validate_choice("EMOTION_LABELS", "flibbertigibbet")
