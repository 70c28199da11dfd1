"""Personas (PersonaHub files and the Hub loader, the paper's grid), attribute sampling and the theme catalogue."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from ec2er_utils import attributes as A
from ec2er_utils import personas as P
from ec2er_utils.seeds import rng_for
from ec2er_utils import themes as T
from ec2er_utils.jsonl import JSONLError
from ec2er_utils.generation.mads import plan_dialogues
from ec2er_utils.taxonomy import (
    BASELINE_DISPOSITIONS,
    COMMUNICATION_STYLES,
    CULTURAL_REGIONS,
    OCCUPATIONS,
    RELATIONSHIP_STATUSES,
    TAXONOMY,
)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# Reading personas


@pytest.fixture(scope="module")
def shared_sample():
    path = P.shared_sample_path()
    if path is None:
        pytest.skip("shared/personahub/persona_sample.jsonl is not beside the checkout")
    return path


def test_shared_personahub_sample_loads_with_stable_ids(shared_sample):
    personas = P.read_persona_jsonl(shared_sample)
    raw = [json.loads(line)["persona"] for line in shared_sample.read_text(encoding="utf-8").splitlines()]
    assert len(personas) == len({" ".join(t.split()).casefold() for t in raw})
    assert len({p.persona_id for p in personas}) == len(personas)
    assert all(p.source == "personahub" for p in personas)
    assert personas[0].persona_id == P.persona_id_for(raw[0])
    # Cues are read where the text has them, nothing is invented where it has none.
    assert sum(p.occupation is not None for p in personas) > 100
    assert all(p.cultural_region is None and p.baseline_disposition is None for p in personas)


def test_persona_id_ignores_case_and_spacing():
    assert P.persona_id_for("A  retired\tteacher ") == P.persona_id_for("a retired teacher")
    assert P.persona_id_for("a retired teacher") != P.persona_id_for("a retired nurse")


def test_bad_json_line_names_the_file_and_line(tmp_path):
    path = write_lines(tmp_path / "personas.jsonl", ['{"persona": "A nurse."}', '{"persona": "A cook."',
                                                     '{"persona": "A pilot."}'])
    with pytest.raises(JSONLError, match=r"personas\.jsonl, line 2: not valid JSON"):
        P.read_persona_jsonl(path)


@pytest.mark.parametrize("line", ['{"persona": ""}', '{"persona": "   "}', '{"name": "A nurse."}',
                                  '{"persona": 42}'])
def test_persona_without_text_is_an_error_naming_the_line(tmp_path, line):
    path = write_lines(tmp_path / "p.jsonl", ['{"persona": "A nurse."}', line])
    with pytest.raises(JSONLError, match=r"p\.jsonl, line 2: persona.*non-empty \"persona\" text"):
        P.read_persona_jsonl(path)


def test_empty_persona_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(JSONLError, match="empty"):
        P.read_persona_jsonl(path)
    with pytest.raises(JSONLError, match="no such file"):
        P.read_persona_jsonl(tmp_path / "missing.jsonl")


def test_duplicate_texts_are_kept_once_with_a_warning(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"persona": "A nurse."}', '{"persona": "a  nurse."}',
                                              '{"persona": "A pilot."}'])
    with pytest.warns(UserWarning, match="1 duplicate"):
        personas = P.read_persona_jsonl(path)
    assert [p.text for p in personas] == ["A nurse.", "A pilot."]


@pytest.mark.parametrize(("text", "expected"), [
    ("a retired teacher who loves gardening", {"occupation": "retiree", "age_band": "older_adult"}),
    ("A nursing student in her first clinical rotation", {"occupation": "student", "age_band": "young_adult"}),
    ("a software engineer with expertise in DLL handling.", {"occupation": "engineer"}),
    ("A divorced father of two who runs a bakery", {"relationship_status": "divorced"}),
    ("A WWII veteran who didn't finish high school.", {"age_band": "older_adult"}),
    ("A die-hard fan of a TV show", {}),
])
def test_cues_in_personahub_text(text, expected):
    assert P.infer_from_text(text) == expected


def test_personahub_is_downloaded_pinned_checked_and_then_read_offline(tmp_path, monkeypatch):
    import functools
    from http.server import SimpleHTTPRequestHandler

    from tests.helpers import LoopbackHTTPServer

    served = tmp_path / "served" / "data"
    served.mkdir(parents=True)
    rows = [{"persona": f"Persona number {i}, a teacher."} for i in range(30)]
    (served / "persona.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setattr(P, "PERSONAHUB_BLOB", P.git_blob_id(served / "persona.jsonl"))
    monkeypatch.setenv("EC2ER_CACHE_DIR", str(tmp_path / "cache"))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    with LoopbackHTTPServer(functools.partial(Quiet, directory=str(tmp_path / "served"))) as server:
        monkeypatch.setattr(P, "PERSONAHUB_URL", server.base_url.removesuffix("/v1") + "/data/persona.jsonl")
        personas = P.load_personahub(limit=5)
        assert [p.text for p in personas] == [r["persona"] for r in rows[:5]]
        assert all(p.occupation == "teacher" and p.source == "personahub" for p in personas)
        assert len(P.load_personas("personahub", n=30, seed=3)) == 30
    assert len(P.load_personahub(limit=7, seed=1)) == 7  # the server is gone: read from the cache
    monkeypatch.setattr(P, "PERSONAHUB_BLOB", "0" * 40)  # the file the commit names is not this one
    with pytest.raises(RuntimeError, match="git object id differs"):
        P.load_personahub(limit=5)


def test_personahub_loader_offline_says_what_to_do(tmp_path, monkeypatch):
    from tools.local_server import free_loopback_port

    monkeypatch.setenv("EC2ER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "PERSONAHUB_URL", f"http://127.0.0.1:{free_loopback_port()}/data/persona.jsonl")
    with pytest.raises(RuntimeError, match="local JSONL file with a 'persona' field"):
        P.load_personahub(limit=5)


def test_load_personas_sources(tmp_path, shared_sample):
    grid = P.load_personas(None, n=20, seed=4)
    assert len(grid) == 20 and all(p.source == "grid" for p in grid)
    assert P.load_personas("grid", n=20, seed=4) == grid
    with pytest.raises(ValueError, match="needs n"):
        P.load_personas("grid")
    sample = P.load_personas("shared-sample", n=50, seed=1)
    assert len(sample) == 50 and sample == P.load_personas(str(shared_sample), n=50, seed=1)
    assert sample != P.load_personas(str(shared_sample), n=50, seed=2)
    written = P.write_personas(tmp_path / "personas.jsonl", sample + grid)
    assert P.load_personas(written) == sample + grid
    assert P.read_personas(written) == sample + grid
    with pytest.raises(FileNotFoundError, match="00_personas"):
        P.read_personas(tmp_path / "nothing.jsonl")


def test_sample_personas_is_min_of_n_and_population():
    population = P.grid_personas(7, seed=0)
    assert len(P.sample_personas(population, 100, seed=1)) == 7
    assert P.sample_personas(population, 3, seed=1) == P.sample_personas(population, 3, seed=1)
    with pytest.raises(ValueError, match="no personas"):
        P.sample_personas([], 3)


# --------------------------------------------------------------------------------------------------------------
# The paper's grid


def test_grid_is_reproducible_and_covers_the_papers_lists():
    first, again, other = P.grid_personas(2000, seed=7), P.grid_personas(2000, seed=7), P.grid_personas(50, seed=8)
    assert first == again and first[:50] != other
    assert len({p.persona_id for p in first}) == 2000
    for field, values in (("occupation", OCCUPATIONS), ("relationship_status", RELATIONSHIP_STATUSES),
                          ("cultural_region", CULTURAL_REGIONS), ("baseline_disposition", BASELINE_DISPOSITIONS)):
        assert {getattr(p, field) for p in first} == set(values), field
    ages = [p.age for p in first]
    assert min(ages) == 18 and max(ages) == 75
    assert all(p.age >= 55 for p in first if p.occupation == "retiree")
    young = [p for p in first if p.age <= 24]
    older = [p for p in first if p.age >= 55]
    assert sum(p.relationship_status == "married" for p in young) / len(young) < \
        sum(p.relationship_status == "married" for p in older) / len(older)
    coverage = P.coverage(first)
    assert set(coverage["field"]) == set(P.PERSONA_FIELDS)
    assert (coverage[coverage["field"] == "occupation"]["count"] > 0).all()


def test_coverage_shows_values_never_seen_and_unknowns():
    personas = [P.persona_from_text("A retired pilot.", "personahub"), P.persona_from_text("A cook.", "personahub")]
    table = P.coverage(personas)
    occupations = dict(zip(*(table[table["field"] == "occupation"][c] for c in ("value", "count")), strict=True))
    assert occupations["retiree"] == 1 and occupations["teacher"] == 0 and occupations["(unknown)"] == 1


# --------------------------------------------------------------------------------------------------------------
# Attributes


def test_attributes_are_reproducible_and_cover_every_list():
    draws = [A.sample_attributes(rng_for(5, "attributes", i)) for i in range(3000)]
    assert draws[:20] == [A.sample_attributes(rng_for(5, "attributes", i)) for i in range(20)]
    for field, (kind, values) in A.ATTRIBUTE_LISTS.items():
        assert TAXONOMY[kind] == values
        assert {getattr(a, field) for a in draws} == set(values), field


def test_low_insight_avoidance_is_withdrawn_and_high_insight_problem_solving_is_direct():
    rng = random.Random(11)
    draws = [A.sample_attributes(rng) for _ in range(30000)]
    deflecting = {"withdrawn_indirect", "sarcastic_deflecting"}

    def shares(insight, coping):
        group = [a.communication_style for a in draws if a.insight == insight and a.coping_style == coping]
        assert len(group) > 500
        return sum(s in deflecting for s in group) / len(group), group.count("blunt_critical") / len(group)

    low_deflect, low_blunt = shares("low", "avoidance")
    high_deflect, high_blunt = shares("high", "overfixing_problem_solving")
    assert low_deflect > 0.5 > 0.2 > high_deflect
    assert high_blunt > 0.5 > 0.1 > low_blunt
    overall = Counter(a.communication_style for a in draws)
    assert set(overall) == set(COMMUNICATION_STYLES)


def test_disposition_and_theme_shift_the_attributes():
    expressive = grid_persona(baseline_disposition="expressive")
    rng = random.Random(2)
    venting = Counter(A.sample_attributes(rng, expressive).coping_style for _ in range(6000))["venting"] / 6000
    assert venting > 1.5 / 6  # uniform would be 1/6
    caregiving = T.theme_by_name("caregiving")
    domains = Counter(A.sample_attributes(rng, None, caregiving).conflict_domain for _ in range(6000))
    assert domains.most_common(1)[0][0] == "caregiving_burden"


# --------------------------------------------------------------------------------------------------------------
# Themes and compatibility


def grid_persona(**fields):
    """A persona with exactly these fields (validated) and an id of its own."""
    text = "Test persona " + repr(sorted(fields.items()))
    return P.Persona(persona_id=P.persona_id_for(text), text=text, source="grid", **fields)


def test_catalogue_has_the_papers_themes_with_keywords_category_and_ages():
    names = {t.name for t in T.THEMES}
    assert {"grief", "workplace_stress", "family_conflict", "identity_exploration", "caregiving"} <= names
    assert all(t.keywords and t.category in T.THEME_CATEGORIES for t in T.THEMES)
    assert len({t.category for t in T.THEMES}) >= 6


def test_compatibility_rules():
    retirement, romance, work = (T.theme_by_name(n) for n in ("retirement_transition", "romantic_trust",
                                                              "workplace_stress"))
    young = grid_persona(age=25, age_band="young_adult", occupation="teacher", relationship_status="single")
    check = P.compatibility(young, retirement)
    assert not check and "age 25 outside 55-75" in check.reasons[0]
    assert not P.compatibility(young, romance)
    assert P.compatibility(grid_persona(age=25, age_band="young_adult", relationship_status="married"), romance)
    retiree = grid_persona(age=70, age_band="older_adult", occupation="retiree", relationship_status="married")
    assert not P.compatibility(retiree, work) and P.compatibility(retiree, retirement)
    unknown = P.persona_from_text("A die-hard fan of a TV show.", "personahub")
    assert all(P.compatibility(unknown, t) for t in T.THEMES)  # nothing known rules nothing out
    veteran = P.persona_from_text("A WWII veteran who misses his wife.", "personahub")
    assert not P.compatibility(veteran, T.theme_by_name("academic_pressure"))
    assert P.compatibility(veteran, T.theme_by_name("grief")).ok
    assert P.compatibility(P.persona_from_text("A nurse caring for her elderly father.", "personahub"),
                           T.theme_by_name("caregiving")).keyword_hits >= 2


def test_themes_file_round_trip_and_errors(tmp_path):
    path = T.save_themes(tmp_path / "themes.json")
    assert T.load_themes(path) == T.THEMES and T.load_themes(None) == T.THEMES
    raw = json.loads(path.read_text())
    raw[2]["conflict_domains"] = ["space_travel"]
    path.write_text(json.dumps(raw))
    with pytest.raises(JSONLError, match=r"theme 2: .*space_travel"):
        T.load_themes(path)
    raw[2] = raw[0]
    path.write_text(json.dumps(raw))
    with pytest.raises(JSONLError, match="duplicate theme name"):
        T.load_themes(path)
    with pytest.raises(JSONLError, match="00_personas"):
        T.load_themes(tmp_path / "missing.json")


def test_dialogue_plans_pair_only_compatible_themes_and_spread_categories():
    personas = P.grid_personas(60, seed=3)
    plans, report = plan_dialogues(personas, T.THEMES, 40, seed=9)
    assert [p.index for p in plans] == list(range(40))
    assert all(P.compatibility(p.persona, p.theme) for p in plans)
    assert len({p.persona.persona_id for p in plans}) == 40  # without replacement while personas last
    categories = Counter(p.theme.category for p in plans)
    assert max(categories.values()) - min(categories.values()) <= 2
    again, _ = plan_dialogues(personas, T.THEMES, 40, seed=9)
    assert [(p.dialogue_id, p.persona, p.theme, p.attributes) for p in again] == \
        [(p.dialogue_id, p.persona, p.theme, p.attributes) for p in plans]
    more, _ = plan_dialogues(personas[:5], T.THEMES, 12, seed=9)  # more dialogues than personas: reuse
    assert len(more) == 12
    assert report["personas_skipped_incompatible"] == 0


def test_personas_without_any_compatible_theme_are_reported_or_refused():
    only_romance = (T.theme_by_name("romantic_trust"),)
    single = grid_persona(relationship_status="single")
    married = grid_persona(relationship_status="married", age=40, age_band="adult")
    plans, report = plan_dialogues([single, married], only_romance, 3, seed=0)
    assert {p.persona.persona_id for p in plans} == {married.persona_id}
    assert report["personas_skipped_incompatible"] == 1
    with pytest.raises(ValueError, match="none of the 1 personas is compatible"):
        plan_dialogues([single], only_romance, 2, seed=0)
