"""The eleven attributes sampled for each conversation (§3.2) and their correlations: "sampled probabilistically to
ensure diverse coverage while maintaining realistic combinations" (§3.2). The correlation tables are our reading of
that sentence (README, chapter 00).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, field_validator

from .personas import Persona
from .taxonomy import (
    COMMUNICATION_STYLES,
    CONFLICT_DOMAINS,
    COPING_STYLES,
    EA_AREAS,
    EMOTION_MIX_PROFILES,
    EU_AREAS,
    INSIGHT_LEVELS,
    PROBLEM_FOCUS_TYPES,
    RELATIONSHIP_TYPES,
    STAKES_LEVELS,
    VIEWPOINT_TYPES,
    validate_choice,
)
from .themes import Theme


class AttributeSet(BaseModel):
    """The eleven attributes of §3.2 sampled for one conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eu_area: str
    ea_area: str
    relationship_type: str
    problem_focus: str
    conflict_domain: str
    stakes: str
    emotion_mix: str
    insight: str
    coping_style: str
    communication_style: str
    viewpoint: str

    @field_validator("*")
    @classmethod
    def _in_taxonomy(cls, value: str, info) -> str:
        return validate_choice(ATTRIBUTE_LISTS[info.field_name][0], value)

    def describe(self) -> str:
        """The attributes as prompt lines, with underscores turned into words."""
        return "\n".join(f"- {name.replace('_', ' ')}: {getattr(self, name).replace('_', ' ')}"
                         for name in ATTRIBUTE_LISTS)


# field -> (taxonomy kind, values)
ATTRIBUTE_LISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "eu_area": ("EU_AREAS", EU_AREAS),
    "ea_area": ("EA_AREAS", EA_AREAS),
    "relationship_type": ("RELATIONSHIP_TYPES", RELATIONSHIP_TYPES),
    "problem_focus": ("PROBLEM_FOCUS_TYPES", PROBLEM_FOCUS_TYPES),
    "conflict_domain": ("CONFLICT_DOMAINS", CONFLICT_DOMAINS),
    "stakes": ("STAKES_LEVELS", STAKES_LEVELS),
    "emotion_mix": ("EMOTION_MIX_PROFILES", EMOTION_MIX_PROFILES),
    "insight": ("INSIGHT_LEVELS", INSIGHT_LEVELS),
    "coping_style": ("COPING_STYLES", COPING_STYLES),
    "communication_style": ("COMMUNICATION_STYLES", COMMUNICATION_STYLES),
    "viewpoint": ("VIEWPOINT_TYPES", VIEWPOINT_TYPES),
}

# Correlation tables: multipliers on a uniform base weight of 1 (low insight and avoidant coping make withdrawn or
# deflecting communication likelier; high insight and problem solving, direct).
COPING_GIVEN_DISPOSITION: dict[str, dict[str, float]] = {
    "anxious": {"avoidance": 2.0, "self_blame": 1.8, "people_pleasing": 1.5},
    "optimistic": {"overfixing_problem_solving": 2.0, "intellectualizing": 1.2},
    "skeptical": {"intellectualizing": 2.0, "avoidance": 1.3},
    "empathetic": {"people_pleasing": 2.0, "self_blame": 1.3},
    "guarded": {"avoidance": 2.2, "intellectualizing": 1.5},
    "expressive": {"venting": 2.5},
}
INSIGHT_GIVEN_DISPOSITION: dict[str, dict[str, float]] = {
    "guarded": {"low": 1.6}, "skeptical": {"medium": 1.3}, "empathetic": {"high": 1.6}, "anxious": {"low": 1.2},
}
COMMUNICATION_GIVEN_INSIGHT: dict[str, dict[str, float]] = {
    "low": {"withdrawn_indirect": 1.8, "sarcastic_deflecting": 1.6, "conflict_avoidant_compliant": 1.3,
            "blunt_critical": 0.6},
    "medium": {},
    "high": {"blunt_critical": 2.0, "withdrawn_indirect": 0.5, "sarcastic_deflecting": 0.5},
}
COMMUNICATION_GIVEN_COPING: dict[str, dict[str, float]] = {
    "avoidance": {"withdrawn_indirect": 2.0, "sarcastic_deflecting": 1.6, "conflict_avoidant_compliant": 1.8,
                  "blunt_critical": 0.5},
    "overfixing_problem_solving": {"blunt_critical": 2.2, "withdrawn_indirect": 0.5, "apologetic_soft": 0.7},
    "venting": {"blunt_critical": 1.6, "sarcastic_deflecting": 1.5, "withdrawn_indirect": 0.6},
    "people_pleasing": {"apologetic_soft": 2.2, "conflict_avoidant_compliant": 2.0, "blunt_critical": 0.4},
    "intellectualizing": {"blunt_critical": 1.4, "sarcastic_deflecting": 1.3},
    "self_blame": {"apologetic_soft": 2.2, "withdrawn_indirect": 1.4, "blunt_critical": 0.5},
}
CONFLICT_GIVEN_RELATIONSHIP: dict[str, dict[str, float]] = {
    "romantic": {"romantic_trust_jealousy": 3.0, "money_finances": 1.3},
    "family": {"inlaw_family_tension": 2.5, "caregiving_burden": 2.0, "money_finances": 1.3},
    "friend": {"friendship_drift": 3.0, "online_miscommunication": 1.5},
    "work": {"career_performance": 3.0, "online_miscommunication": 1.3},
    "social": {"online_miscommunication": 2.0, "cross_cultural_misunderstanding": 2.0, "friendship_drift": 1.3},
}
THEME_BOOST = 3.0  # multiplier for a theme's own relationship types and conflict domains


def _draw(rng: random.Random, values: Sequence[str], *multipliers: Mapping[str, float]) -> str:
    weights = [math.prod(table.get(value, 1.0) for table in multipliers) for value in values]
    return rng.choices(list(values), weights=weights, k=1)[0]


def sample_attributes(rng: random.Random, persona: Persona | None = None, theme: Theme | None = None,
                      ) -> AttributeSet:
    """Draw one :class:`AttributeSet`; the draw order makes later attributes depend on earlier ones."""
    disposition = persona.baseline_disposition if persona is not None else None
    insight = _draw(rng, INSIGHT_LEVELS, INSIGHT_GIVEN_DISPOSITION.get(disposition or "", {}))
    coping = _draw(rng, COPING_STYLES, COPING_GIVEN_DISPOSITION.get(disposition or "", {}))
    communication = _draw(rng, COMMUNICATION_STYLES, COMMUNICATION_GIVEN_INSIGHT[insight],
                          COMMUNICATION_GIVEN_COPING[coping])
    theme_types = {t: THEME_BOOST for t in theme.relationship_types} if theme else {}
    relationship = _draw(rng, RELATIONSHIP_TYPES, theme_types)
    theme_domains = {d: THEME_BOOST for d in theme.conflict_domains} if theme else {}
    conflict = _draw(rng, CONFLICT_DOMAINS, CONFLICT_GIVEN_RELATIONSHIP[relationship], theme_domains)
    return AttributeSet(
        eu_area=rng.choice(EU_AREAS), ea_area=rng.choice(EA_AREAS), relationship_type=relationship,
        problem_focus=rng.choice(PROBLEM_FOCUS_TYPES), conflict_domain=conflict, stakes=rng.choice(STAKES_LEVELS),
        emotion_mix=rng.choice(EMOTION_MIX_PROFILES), insight=insight, coping_style=coping,
        communication_style=communication, viewpoint=rng.choice(VIEWPOINT_TYPES))


def attribute_fields() -> dict[str, tuple[str, ...]]:
    return {name: values for name, (_, values) in ATTRIBUTE_LISTS.items()}
