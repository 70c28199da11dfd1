"""Emotional themes for the MADS pipeline (paper §3.2, Algorithm 1 "themes file"): the four the paper names
("such as" grief, workplace stress, family conflict, identity exploration) and our additions covering its conflict
domains and relationship types. Each carries keywords (matched against a persona's text), a category (to spread
dialogues over kinds of problems), limits on who it fits (:func:`ec2er_utils.personas.compatibility`) and the
relationship types / conflict domains it makes likelier when attributes are sampled.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .jsonl import JSONLError, read_json, write_json_atomic
from .taxonomy import AGE_RANGE, CONFLICT_DOMAINS, OCCUPATIONS, RELATIONSHIP_STATUSES, RELATIONSHIP_TYPES

THEME_CATEGORIES: tuple[str, ...] = (
    "loss", "work", "family", "identity", "relationships", "health", "finances", "life_transition", "social",
)


class Theme(BaseModel):
    """One emotional theme. Values are checked against the taxonomy so a typo in a themes file is caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    category: Literal[THEME_CATEGORIES]  # type: ignore[valid-type]
    keywords: tuple[str, ...] = Field(min_length=1)
    min_age: int = AGE_RANGE[0]
    max_age: int = AGE_RANGE[1]
    relationship_statuses: tuple[str, ...] = ()  # empty: any status fits
    excluded_occupations: tuple[str, ...] = ()
    relationship_types: tuple[str, ...] = ()  # made more likely for this theme when attributes are sampled
    conflict_domains: tuple[str, ...] = ()  # ditto

    @model_validator(mode="after")
    def _known_values(self):
        lo, hi = AGE_RANGE
        if not lo <= self.min_age <= self.max_age <= hi:
            raise ValueError(f"ages must satisfy {lo} <= min_age <= max_age <= {hi}, "
                             f"got {self.min_age}..{self.max_age}")
        for field, allowed in (("relationship_statuses", RELATIONSHIP_STATUSES), ("excluded_occupations", OCCUPATIONS),
                               ("relationship_types", RELATIONSHIP_TYPES), ("conflict_domains", CONFLICT_DOMAINS)):
            bad = [v for v in getattr(self, field) if v not in allowed]
            if bad:
                raise ValueError(f"{field} has unknown value(s) {bad}; valid: {', '.join(allowed)}")
        return self


def _theme(name, title, description, category, keywords, **limits) -> Theme:
    return Theme(name=name, title=title, description=description, category=category, keywords=keywords, **limits)


THEMES: tuple[Theme, ...] = (
    # The four the paper names (§3.2).
    _theme("grief", "Grief and loss", "mourning the death of someone close and adjusting to life without them",
           "loss", ["death", "loss", "grief", "funeral", "widow", "mourning", "passed away", "bereavement"],
           relationship_types=["family", "romantic", "friend"], conflict_domains=["caregiving_burden",
                                                                                   "inlaw_family_tension"]),
    _theme("workplace_stress", "Workplace stress", "pressure, conflict or unfairness at work that spills into life",
           "work", ["work", "boss", "manager", "deadline", "colleague", "coworker", "office", "shift", "burnout",
                    "promotion", "job"],
           max_age=70, excluded_occupations=["retiree", "unemployed job seeker", "stay-at-home parent"],
           relationship_types=["work"], conflict_domains=["career_performance", "online_miscommunication"]),
    _theme("family_conflict", "Family conflict", "recurring arguments or a rift with parents, siblings or in-laws",
           "family", ["family", "parent", "mother", "father", "sibling", "brother", "sister", "in-law", "son",
                      "daughter"],
           relationship_types=["family"], conflict_domains=["inlaw_family_tension", "money_finances"]),
    _theme("identity_exploration", "Identity exploration",
           "questioning who they are: culture, sexuality, faith, values or belonging", "identity",
           ["identity", "culture", "heritage", "faith", "religion", "belonging", "queer", "gender", "values"],
           max_age=50, relationship_types=["family", "social", "friend"],
           conflict_domains=["cross_cultural_misunderstanding", "friendship_drift"]),
    # Our additions.
    _theme("caregiving", "Caregiving strain", "looking after an ill, disabled or ageing relative while juggling life",
           "family", ["caregiver", "caring for", "elderly", "dementia", "disability", "nurse", "illness", "aging"],
           min_age=22, relationship_types=["family"], conflict_domains=["caregiving_burden", "money_finances"]),
    _theme("romantic_trust", "Trust in a romantic relationship",
           "jealousy, suspicion or a breach of trust with a partner", "relationships",
           ["partner", "boyfriend", "girlfriend", "husband", "wife", "dating", "jealous", "trust", "affair"],
           relationship_statuses=["partnered", "married"], relationship_types=["romantic"],
           conflict_domains=["romantic_trust_jealousy", "online_miscommunication"]),
    _theme("divorce_aftermath", "Life after divorce", "rebuilding after a divorce: co-parenting, money, self-worth",
           "relationships", ["divorce", "ex-wife", "ex-husband", "custody", "separation", "co-parent"],
           min_age=24, relationship_statuses=["divorced"], relationship_types=["romantic", "family"],
           conflict_domains=["money_finances", "inlaw_family_tension"]),
    _theme("friendship_drift", "A fading friendship", "a close friendship cooling, a betrayal or being left out",
           "social", ["friend", "friendship", "group", "left out", "betrayal", "drift", "community"],
           relationship_types=["friend", "social"], conflict_domains=["friendship_drift", "online_miscommunication"]),
    _theme("financial_strain", "Financial strain",
           "debt, sudden costs or money disagreements with people close to them", "finances",
           ["money", "debt", "rent", "loan", "bills", "budget", "finance", "savings", "mortgage"],
           relationship_types=["family", "romantic", "work"], conflict_domains=["money_finances"]),
    _theme("job_loss", "Job loss and career setback", "being laid off, passed over or forced to change career",
           "work", ["layoff", "laid off", "fired", "job search", "career", "unemployed", "resume", "interview"],
           max_age=67, excluded_occupations=["retiree"], relationship_types=["work", "family"],
           conflict_domains=["career_performance", "money_finances"]),
    _theme("academic_pressure", "Academic pressure", "exams, grades, theses or expectations about their studies",
           "work", ["student", "exam", "grade", "thesis", "university", "college", "school", "study", "phd"],
           max_age=35, excluded_occupations=["retiree"], relationship_types=["family", "social", "friend"],
           conflict_domains=["career_performance", "friendship_drift"]),
    _theme("retirement_transition", "Adjusting to retirement", "loss of role, routine and purpose after retiring",
           "life_transition", ["retired", "retirement", "pension", "grandchild", "veteran", "former"],
           min_age=55, relationship_types=["family", "romantic", "social"],
           conflict_domains=["money_finances", "friendship_drift"]),
    _theme("health_diagnosis", "A difficult diagnosis", "living with a new diagnosis or chronic illness",
           "health", ["health", "diagnosis", "illness", "hospital", "chronic", "cancer", "patient", "injury"],
           relationship_types=["family", "romantic", "work"], conflict_domains=["caregiving_burden",
                                                                                 "career_performance"]),
    _theme("loneliness", "Loneliness and isolation", "feeling disconnected after a move, a loss or a life change",
           "social", ["lonely", "alone", "isolated", "moved", "remote", "new city", "introvert"],
           relationship_types=["friend", "social", "family"], conflict_domains=["friendship_drift",
                                                                                "online_miscommunication"]),
    _theme("migration_adjustment", "Adjusting to a new country",
           "settling in a new country: language, customs, and family back home", "identity",
           ["immigrant", "migrant", "expat", "abroad", "refugee", "new country", "language", "visa"],
           relationship_types=["work", "social", "family"],
           conflict_domains=["cross_cultural_misunderstanding", "inlaw_family_tension"]),
    _theme("new_parenthood", "Becoming a parent", "the strain and doubts of raising a baby or young child",
           "family", ["baby", "newborn", "parent", "toddler", "pregnancy", "mother", "father", "childcare"],
           min_age=20, max_age=48, excluded_occupations=["retiree"], relationship_types=["family", "romantic"],
           conflict_domains=["inlaw_family_tension", "money_finances", "caregiving_burden"]),
)


def theme_by_name(name: str, themes: tuple[Theme, ...] | list[Theme] = THEMES) -> Theme:
    for theme in themes:
        if theme.name == name:
            return theme
    raise KeyError(f"unknown theme {name!r}; known: {', '.join(t.name for t in themes)}")


def save_themes(path: str | os.PathLike, themes: tuple[Theme, ...] | list[Theme] = THEMES) -> Path:
    """Write a themes file (JSON list), the "themes file" input of Algorithm 1; edit it to change the catalogue."""
    write_json_atomic(path, [t.model_dump(mode="json") for t in themes])
    return Path(path)


def load_themes(path: str | os.PathLike | None = None) -> tuple[Theme, ...]:
    """The built-in catalogue (``path=None``) or a themes file; errors name the file, entry and field."""
    if path is None:
        return THEMES
    path = Path(path)
    if not path.is_file():
        raise JSONLError(f"{path}: no such themes file; run notebooks/00_personas.ipynb to write it, or pass "
                         "themes_file=None for the built-in catalogue")
    raw = read_json(path)
    if not isinstance(raw, list) or not raw:
        raise JSONLError(f"{path}: expected a non-empty JSON list of themes")
    themes = []
    for number, entry in enumerate(raw):
        try:
            themes.append(Theme.model_validate(entry))
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(theme)'}: {e['msg']}" for e in err.errors())
            raise JSONLError(f"{path}, theme {number}: {problems}") from None
    duplicates = sorted(name for name, count in Counter(t.name for t in themes).items() if count > 1)
    if duplicates:
        raise JSONLError(f"{path}: duplicate theme name(s) {duplicates}")
    return tuple(themes)
