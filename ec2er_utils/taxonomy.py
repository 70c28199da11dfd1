"""Every category list and constant of the EC2ER paper, kept in one place as tuples (nobody can mutate them).

Comments cite each list's paper section; where the paper is vague ("etc.") our additions are marked. EmoBench's
categories and emotion words are literals read once from its ``EU.jsonl`` / ``EA.jsonl`` (tests compare them).
"""

from __future__ import annotations

import difflib
import re

# --- Attribute space sampled per persona (paper §3.2, "Persona and attribute diversity" + attribute lists) ---

EU_AREAS: tuple[str, ...] = (  # §3.2 "EU AREAS"
    "emotion_identification",
    "cause_reasoning",
    "perspective_taking",
    "mixed_ambivalent_emotions",
    "anticipated_emotional_consequences",
)
EA_AREAS: tuple[str, ...] = (  # §3.2 "EA AREAS"
    "supportive_response",
    "action_selection",
    "emotion_regulation_strategy",
    "conflict_deescalation",
    "boundary_setting",
)
RELATIONSHIP_TYPES: tuple[str, ...] = ("romantic", "family", "friend", "work", "social")  # §3.2
PROBLEM_FOCUS_TYPES: tuple[str, ...] = ("self", "others")  # §3.2 "PROBLEM_FOCUS_TYPES"
CONFLICT_DOMAINS: tuple[str, ...] = (  # §3.2 "CONFLICT DOMAINS"
    "career_performance",
    "money_finances",
    "caregiving_burden",
    "friendship_drift",
    "romantic_trust_jealousy",
    "inlaw_family_tension",
    "online_miscommunication",
    "cross_cultural_misunderstanding",
)
STAKES_LEVELS: tuple[str, ...] = ("low", "medium", "high")  # §3.2 "STAKES_LEVELS"
EMOTION_MIX_PROFILES: tuple[str, ...] = (  # §3.2 "EMOTION MIX PROFILES"; each is "<emotion>_plus_<emotion>"
    "anger_plus_hurt",
    "relief_plus_guilt",
    "envy_plus_admiration",
    "love_plus_resentment",
    "shame_plus_defiance",
    "worry_plus_excitement",
)
INSIGHT_LEVELS: tuple[str, ...] = ("low", "medium", "high")  # §3.2 "INSIGHT LEVELS"
COPING_STYLES: tuple[str, ...] = (  # §3.2 "COPING_STYLES"
    "avoidance",
    "overfixing_problem_solving",
    "venting",
    "people_pleasing",
    "intellectualizing",
    "self_blame",
)
COMMUNICATION_STYLES: tuple[str, ...] = (  # §3.2; the PDF text hyphenates "sar-/castic_deflecting" across a line
    "withdrawn_indirect",
    "apologetic_soft",
    "sarcastic_deflecting",
    "blunt_critical",
    "conflict_avoidant_compliant",
)
VIEWPOINT_TYPES: tuple[str, ...] = (  # §3.2 "VIEWPOINT_TYPES"
    "self_perspective",
    "other_person_perspective",
    "neutral_third_party",
)

# --- Persona grid (§3.2 "Persona and attribute diversity") ---

AGE_RANGE: tuple[int, int] = (18, 75)  # inclusive bounds, §3.2 "age ranges (18-75)"
# Age bands used when a persona's exact age is unknown (PersonaHub texts); bounds are inclusive.
AGE_BANDS: dict[str, tuple[int, int]] = {"young_adult": (18, 29), "adult": (30, 59), "older_adult": (60, 75)}
# The paper lists these six and then says "etc.".
OCCUPATIONS_FROM_PAPER: tuple[str, ...] = (
    "student",
    "healthcare worker",
    "teacher",
    "engineer",
    "artist",
    "retiree",
)
# Our additions to fill the "etc.": a spread of income levels, work settings and life stages.
OCCUPATIONS_ADDED: tuple[str, ...] = (
    "small business owner",
    "retail worker",
    "office administrator",
    "skilled tradesperson",
    "social worker",
    "stay-at-home parent",
    "unemployed job seeker",
)
OCCUPATIONS: tuple[str, ...] = OCCUPATIONS_FROM_PAPER + OCCUPATIONS_ADDED
RELATIONSHIP_STATUSES: tuple[str, ...] = ("single", "partnered", "married", "divorced")  # §3.2
# The paper only says "representing major world regions"; these eight are our choice.
CULTURAL_REGIONS: tuple[str, ...] = (
    "North America",
    "Latin America and the Caribbean",
    "Europe",
    "Middle East and North Africa",
    "Sub-Saharan Africa",
    "South Asia",
    "East Asia",
    "Southeast Asia and Oceania",
)
BASELINE_DISPOSITIONS: tuple[str, ...] = (  # §3.2 "baseline emotional dispositions"
    "anxious",
    "optimistic",
    "skeptical",
    "empathetic",
    "guarded",
    "expressive",
)

# --- Dialogue speaker tags (§3.3: generation writes every turn under one of these) ---

SPEAKER_TAGS: tuple[str, ...] = ("CLIENT", "THERAPIST", "SUPERVISOR")

# --- EmoBench categories (spellings exactly as in EU.jsonl "coarse_category" / EA.jsonl "category") ---

EU_CATEGORIES: tuple[str, ...] = (
    "complex_emotions",
    "emotional_cues",
    "personal_beliefs_and_experiences",
    "perspective_taking",
)
EA_CATEGORIES: tuple[str, ...] = ("Personal-Others", "Personal-Self", "Social-Others", "Social-Self")
EA_QUESTION_TYPES: tuple[str, ...] = ("Action", "Response")  # EA.jsonl key "question type" (with a space)
TASK_CATEGORIES: dict[str, tuple[str, ...]] = {"EU": EU_CATEGORIES, "EA": EA_CATEGORIES}
# EmoBench's name for a task's accuracy over all its items (its harness and the paper's Table 1 report it beside
# the categories); never a category of an item.
OVERALL = "Overall"

# Final synthetic dataset sizes reported in §3.3, keyed by EmoBench spelling (sums: 1,527 EU and 1,486 EA).
PAPER_EU_COUNTS: dict[str, int] = {
    "complex_emotions": 382,
    "emotional_cues": 385,
    "personal_beliefs_and_experiences": 378,
    "perspective_taking": 382,
}
PAPER_EA_COUNTS: dict[str, int] = {
    "Personal-Others": 371,
    "Personal-Self": 372,
    "Social-Others": 372,
    "Social-Self": 371,
}
PAPER_COUNTS: dict[str, dict[str, int]] = {"EU": PAPER_EU_COUNTS, "EA": PAPER_EA_COUNTS}

# The fine-tuned models of §5 and Table 1, as ec2er_utils.models aliases, in Table 1's column order.
PAPER_MODELS: tuple[str, ...] = ("mistral", "qwen", "gemma", "llama")

# --- Emotion vocabulary (§3.3: items with out-of-vocabulary emotion labels are filtered out) ---

# The 38 single emotions that occur in EmoBench English EU items (emotion_choices and emotion_label). EmoBench
# also uses compound labels such as "Disappointment & Pride & Hopeless" (up to three parts joined by " & ");
# every part of those is one of these words.
EMOBENCH_EU_EMOTIONS: tuple[str, ...] = (
    'Acceptance', 'Admiration', 'Amusement', 'Anger', 'Annoyance', 'Anticipation', 'Boredom', 'Caring',
    'Curiosity', 'Delight', 'Disappointment', 'Disapproval', 'Disgust', 'Embarrassment', 'Excitement', 'Fear',
    'Gratitude', 'Grief', 'Guilt', 'Hopeful', 'Hopeless', 'Horror', 'Indifferent', 'Jealousy', 'Joy', 'Loathe',
    'Love', 'Nervousness', 'Oblivious', 'Pessimism', 'Pride', 'Relief', 'Remorse', 'Sadness', 'Sentimental',
    'Surprise', 'Trust', 'Unbothered',
)  # fmt: skip

# The validation vocabulary (44 words): the EmoBench emotions above plus those named in EMOTION_MIX_PROFILES
# (defiance, envy, hurt, resentment, shame, worry), lower-cased and sorted.
EMOTION_LABELS: tuple[str, ...] = tuple(sorted({e.lower() for e in EMOBENCH_EU_EMOTIONS}
                                               | {e for mix in EMOTION_MIX_PROFILES for e in mix.split("_plus_")}))
_EMOTION_SET = frozenset(EMOTION_LABELS)

# EmoBench joins parts with "&"; LLM-generated items also write "+", "/", ",", "and" or the profiles' "_plus_".
_COMPOUND_SEP = re.compile(r"\s*(?:&|\+|/|,|\band\b|_plus_)\s*", re.IGNORECASE)


def split_emotion_label(label: str) -> tuple[str, ...]:
    """``"Disappointment & Anger"`` -> ``("disappointment", "anger")``: lower-cased, whitespace-normalised parts.
    Empty parts are kept (as ``""``) so that a malformed label such as ``"Anger &"`` is not silently accepted."""
    text = " ".join(label.split()).lower()
    if not text:
        return ()
    return tuple(part.strip() for part in _COMPOUND_SEP.split(text))


def is_known_emotion(label: str) -> bool:
    """True when ``label`` is in EMOTION_LABELS, or is a compound whose every part is (case-insensitive)."""
    parts = split_emotion_label(label)
    return bool(parts) and all(part in _EMOTION_SET for part in parts)


# Every list above by name, for iteration, display and validate_choice.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "EU_AREAS": EU_AREAS,
    "EA_AREAS": EA_AREAS,
    "RELATIONSHIP_TYPES": RELATIONSHIP_TYPES,
    "PROBLEM_FOCUS_TYPES": PROBLEM_FOCUS_TYPES,
    "CONFLICT_DOMAINS": CONFLICT_DOMAINS,
    "STAKES_LEVELS": STAKES_LEVELS,
    "EMOTION_MIX_PROFILES": EMOTION_MIX_PROFILES,
    "INSIGHT_LEVELS": INSIGHT_LEVELS,
    "COPING_STYLES": COPING_STYLES,
    "COMMUNICATION_STYLES": COMMUNICATION_STYLES,
    "VIEWPOINT_TYPES": VIEWPOINT_TYPES,
    "OCCUPATIONS": OCCUPATIONS,
    "RELATIONSHIP_STATUSES": RELATIONSHIP_STATUSES,
    "CULTURAL_REGIONS": CULTURAL_REGIONS,
    "BASELINE_DISPOSITIONS": BASELINE_DISPOSITIONS,
    "SPEAKER_TAGS": SPEAKER_TAGS,
    "EU_CATEGORIES": EU_CATEGORIES,
    "EA_CATEGORIES": EA_CATEGORIES,
    "EA_QUESTION_TYPES": EA_QUESTION_TYPES,
    "EMOTION_LABELS": EMOTION_LABELS,
}


def validate_choice(kind: str, value: str) -> str:
    """``value`` if it belongs to the list ``kind`` (a TAXONOMY key, any case; compound and differently-cased
    EMOTION_LABELS pass); else a ValueError naming the bad value, a close match and all valid options."""
    key = kind.upper()
    if key not in TAXONOMY:
        raise ValueError(f"Unknown taxonomy kind {kind!r}; valid kinds: {', '.join(TAXONOMY)}")
    options = TAXONOMY[key]
    if isinstance(value, str) and (is_known_emotion(value) if key == "EMOTION_LABELS" else value in options):
        return value
    close = difflib.get_close_matches(str(value), options, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"Invalid {key} value {value!r}{hint}; valid options: {', '.join(options)}")


# §3.3: "ensuring that scenarios are between 50 and 500 words". Generation asks for at least the floor, chapter 03
# drops items outside the range: one constant, so the two chapters cannot disagree.
SCENARIO_WORDS: tuple[int, int] = (50, 500)
# Chapter 03's quality rules drop an explanation of fewer words (too short to reason) and a free-text option (a
# cause, an action) of fewer words (a fragment); generation asks for at least as many (generation.items).
EXPLANATION_MIN_WORDS = 8
OPTION_MIN_WORDS = 2
# §3.2: "a minimum of 4 turns and a maximum of 14 turns" (a turn: one client and one therapist message).
MADS_TURNS: tuple[int, int] = (4, 14)
# §3.2, Algorithm 2: "5 rounds, max 10 messages".
CONCISE_ROUNDS = 5
# §3.3: a category "exceeding 1.5 times the expected proportion" is over-represented.
CATEGORY_CAP_RATIO = 1.5
# §3.4: "A subset of 50 examples were manually inspected"; "Agreement was substantial (Cohen's kappa = 0.78)".
PAPER_REVIEW_SIZE = 50
PAPER_KAPPA = 0.78
