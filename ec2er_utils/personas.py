"""Personas (paper §3.2, "Persona and attribute diversity") from PersonaHub, any JSONL with a ``persona`` field per
line, or the paper's grid; the personas file of notebook 00; and whether a theme fits a persona (Algorithm 1,
line 2). The per-conversation attributes are :mod:`ec2er_utils.attributes`. Departures: README, chapter 00.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .jsonl import JSONLError, iter_jsonl, write_jsonl_atomic
from .parameters import StageConfig
from .taxonomy import (
    AGE_BANDS,
    AGE_RANGE,
    BASELINE_DISPOSITIONS,
    CULTURAL_REGIONS,
    OCCUPATIONS,
    RELATIONSHIP_STATUSES,
    validate_choice,
)
from .themes import Theme

if TYPE_CHECKING:
    import pandas as pd

# PersonaHub (Ge et al.) pinned: its public home's commit, and git's object id of data/persona.jsonl at that commit
# (checked after the download, so a changed or damaged file is refused, not used).
PERSONAHUB_COMMIT = "72bf19b886312041b32f7cae12c02dab8653c6fa"
PERSONAHUB_URL = "https://raw.githubusercontent.com/tencent-ailab/persona-hub/{commit}/data/persona.jsonl"
PERSONAHUB_BLOB = "43ec406a7df5c881bfc1723334cf566a4ded2aaa"
SHARED_SAMPLE = ("personahub", "persona_sample.jsonl")  # under ec2er_utils.paths.shared_dir()

AgeBand = Literal["young_adult", "adult", "older_adult"]


def persona_id_for(text: str) -> str:
    """``p-`` + the first 12 hex digits of the SHA-256 of the whitespace-normalised, case-folded text."""
    normalised = " ".join(text.split()).casefold()
    return "p-" + hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:12]


class Persona(BaseModel):
    """Who the client is. Grid personas have every field; PersonaHub personas only what their text says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    persona_id: str = Field(pattern=r"^p-[0-9a-f]{12}$")
    text: str = Field(min_length=1)
    source: str = Field(min_length=1)  # "grid", "personahub" or the file it was read from
    age: int | None = Field(default=None, ge=AGE_RANGE[0], le=AGE_RANGE[1])
    age_band: AgeBand | None = None
    occupation: str | None = None
    relationship_status: str | None = None
    cultural_region: str | None = None
    baseline_disposition: str | None = None

    @field_validator("occupation", "relationship_status", "cultural_region", "baseline_disposition")
    @classmethod
    def _in_taxonomy(cls, value: str | None, info) -> str | None:
        kind = {"occupation": "OCCUPATIONS", "relationship_status": "RELATIONSHIP_STATUSES",
                "cultural_region": "CULTURAL_REGIONS", "baseline_disposition": "BASELINE_DISPOSITIONS"}[info.field_name]
        return None if value is None else validate_choice(kind, value)

    def describe(self) -> str:
        """The persona as prompt text: its own words plus the known grid fields not already in them."""
        facts = []
        if self.source != "grid":
            if self.age is not None:
                facts.append(f"age {self.age}")
            elif self.age_band is not None:
                facts.append(self.age_band.replace("_", " "))
            facts += [v for v in (self.relationship_status, self.cultural_region) if v]
            if self.baseline_disposition:
                facts.append(f"{self.baseline_disposition} by disposition")
        return self.text if not facts else f"{self.text} ({'; '.join(facts)})"


# Reading a PersonaHub text. First match wins, so "a retired teacher" is a retiree and "a nursing student" a student.
OCCUPATION_CUES: tuple[tuple[str, str], ...] = (
    ("retiree", r"\b(retired|retiree)\b"),
    ("student", r"\b(student|undergraduate|phd candidate|doctoral candidate|freshman|sophomore)\b"),
    ("unemployed job seeker", r"\b(unemployed|job[- ]seeker|looking for (a )?(job|work))\b"),
    ("stay-at-home parent", r"\b(stay[- ]at[- ]home (mom|mother|dad|father|parent)|homemaker)\b"),
    ("social worker", r"\b(social worker|case worker|caseworker)\b"),
    ("healthcare worker", r"\b(nurse|doctor|physician|surgeon|paramedic|pharmacist|dentist|midwife|"
                          r"healthcare (worker|professional)|medical (professional|resident))\b"),
    ("teacher", r"\b(teacher|professor|lecturer|educator|tutor|instructor)\b"),
    ("engineer", r"\b(engineer|software developer|programmer|web developer)\b"),
    ("small business owner", r"\b(business owner|shop owner|store owner|restaurant owner|entrepreneur)\b"),
    ("skilled tradesperson", r"\b(electrician|plumber|carpenter|mechanic|welder|bricklayer|construction worker)\b"),
    ("retail worker", r"\b(cashier|retail (worker|employee|associate)|sales associate|shop assistant)\b"),
    ("office administrator", r"\b(administrator|secretary|receptionist|office manager|administrative assistant)\b"),
    ("artist", r"\b(artist|painter|musician|sculptor|novelist|poet|illustrator|photographer|filmmaker|composer|"
               r"singer|dancer|actor|actress)\b"),
)
AGE_BAND_CUES: tuple[tuple[AgeBand, str], ...] = (
    ("older_adult", r"\b(retired|retiree|elderly|senior citizen|grandmother|grandfather|grandparent|"
                    r"(wwii|world war ii|korean war) veteran|in (his|her|their) (60s|70s|sixties|seventies))\b"),
    ("young_adult", r"\b(teen(ager)?|undergraduate|college student|freshman|sophomore|high school senior|"
                    r"young (man|woman|adult|professional)|in (his|her|their) (20s|twenties))\b"),
    ("adult", r"\b(middle[- ]aged|mid[- ]career|in (his|her|their) (30s|40s|50s|thirties|forties|fifties))\b"),
)
RELATIONSHIP_CUES: tuple[tuple[str, str], ...] = (
    ("divorced", r"\b(divorced|divorcee)\b"),
    ("single", r"\bsingle (mother|father|parent|mom|dad)\b"),
    ("married", r"\b(married|husband|wife|spouse)\b"),
)


def _first_cue(text: str, cues: Iterable[tuple[str, str]]) -> str | None:
    lowered = text.lower()
    return next((value for value, pattern in cues if re.search(pattern, lowered)), None)


def infer_from_text(text: str) -> dict[str, str]:
    """Grid fields stated by clear cues in a free-form persona text (occupation, age band, relationship status)."""
    occupation = _first_cue(text, OCCUPATION_CUES)
    found = {"occupation": occupation,
             "age_band": _first_cue(text, AGE_BAND_CUES) or ("young_adult" if occupation == "student" else None),
             "relationship_status": _first_cue(text, RELATIONSHIP_CUES)}
    return {field: value for field, value in found.items() if value}


def persona_from_text(text: str, source: str) -> Persona:
    text = " ".join(text.split())
    return Persona(persona_id=persona_id_for(text), text=text, source=source, **infer_from_text(text))


def dedupe_personas(personas: Iterable[Persona], where: str = "personas") -> list[Persona]:
    """Keep the first of personas with the same id (same text); warns with the count, never drops silently."""
    personas = list(personas)
    seen: dict[str, Persona] = {}
    for persona in personas:
        seen.setdefault(persona.persona_id, persona)
    if len(seen) < len(personas):
        warnings.warn(f"{where}: {len(personas) - len(seen)} duplicate persona text(s) kept once ({len(seen)} "
                      "distinct)", stacklevel=2)
    return list(seen.values())


class _PersonaHubLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    persona: str = Field(min_length=1, pattern=r"\S")


def read_persona_jsonl(path: str | os.PathLike) -> list[Persona]:
    """Personas from a JSONL file with a ``persona`` text per line (PersonaHub's ``persona.jsonl`` format).

    A line that is not JSON, or lacks a non-empty ``persona`` string, raises :class:`JSONLError` naming the file
    and line; an empty file raises too. Duplicate texts are kept once (with a warning).
    """
    path = Path(path)
    try:
        personas = [persona_from_text(record.persona, "personahub") for record in iter_jsonl(path, _PersonaHubLine)]
    except JSONLError as err:
        raise JSONLError(f"{err}. Each line must be a JSON object with a non-empty \"persona\" text, like "
                         "{\"persona\": \"A retired teacher who loves gardening.\"}") from None
    if not personas:
        raise JSONLError(f"{path}: no personas in the file (it is empty); give a JSONL file with one "
                         "{\"persona\": \"...\"} object per line")
    return dedupe_personas(personas, str(path))


def git_blob_id(path: str | os.PathLike) -> str:
    """The object id git gives a file's content (SHA-1 of ``blob <size>\\0`` + the bytes)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's id, not security


def download_personahub() -> Path:
    """PersonaHub's ``data/persona.jsonl`` at :data:`PERSONAHUB_COMMIT`, downloaded once and checked against git's
    object id of that file; later calls read the cached copy without the network."""
    import pooch

    from .paths import cache_dir

    folder = cache_dir() / "personahub" / PERSONAHUB_COMMIT[:12]
    url = PERSONAHUB_URL.format(commit=PERSONAHUB_COMMIT)
    try:
        path = Path(pooch.retrieve(url, known_hash=None, fname="persona.jsonl", path=folder, progressbar=False))
    except Exception as err:  # noqa: BLE001 - offline, HTTP errors: say what to do instead
        raise RuntimeError(f"could not download PersonaHub (commit {PERSONAHUB_COMMIT[:12]}) from {url}: "
                           f"{type(err).__name__}: {str(err)[:300]}. Offline, pass a local JSONL file with a 'persona' "
                           "field per line instead (e.g. shared/personahub/persona_sample.jsonl).") from None
    if git_blob_id(path) != PERSONAHUB_BLOB:
        path.unlink()
        raise RuntimeError(f"{url} is not PersonaHub's data/persona.jsonl of commit {PERSONAHUB_COMMIT[:12]} (its git "
                           "object id differs); it was removed. Retry later, or pass a local persona JSONL file.")
    return path


def load_personahub(limit: int = 1000, seed: int | None = None) -> list[Persona]:
    """``limit`` personas of PersonaHub (Ge et al., the paper's source) from its pinned public file
    (:func:`download_personahub`), in file order or, with ``seed``, a seeded sample. Offline, use
    :func:`read_persona_jsonl` on a local copy instead."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    personas = read_persona_jsonl(download_personahub())
    return sample_personas(personas, limit, seed) if seed is not None else personas[:limit]


def shared_sample_path() -> Path | None:
    """The shared 5,000-persona PersonaHub sample, when the ``shared/`` folder is beside the checkout."""
    from .paths import shared_dir

    folder = shared_dir()
    path = folder.joinpath(*SHARED_SAMPLE) if folder else None
    return path if path is not None and path.is_file() else None


def _occupation_weight(occupation: str, age: int) -> float:
    """How plausible an occupation is at an age (our choice; the paper lists occupations only)."""
    if occupation == "student":
        return 3.0 if age <= 25 else 1.0 if age <= 35 else 0.15
    if occupation == "retiree":
        return 0.0 if age < 55 else 1.0 if age < 65 else 6.0
    if occupation == "stay-at-home parent":
        return 1.0 if 22 <= age <= 55 else 0.0
    if age >= 67:
        return 0.2  # still working past typical retirement age: possible, less common
    return 1.0


RELATIONSHIP_STATUS_WEIGHTS: tuple[tuple[int, dict[str, float]], ...] = (  # (max age, weights), our choice
    (24, {"single": 0.6, "partnered": 0.3, "married": 0.08, "divorced": 0.02}),
    (34, {"single": 0.35, "partnered": 0.3, "married": 0.3, "divorced": 0.05}),
    (54, {"single": 0.2, "partnered": 0.2, "married": 0.45, "divorced": 0.15}),
    (AGE_RANGE[1], {"single": 0.15, "partnered": 0.15, "married": 0.5, "divorced": 0.2}),
)


def grid_persona(rng: random.Random) -> Persona:
    """One persona drawn from the paper's grid."""
    age = rng.randint(*AGE_RANGE)
    occupation = rng.choices(OCCUPATIONS, weights=[_occupation_weight(o, age) for o in OCCUPATIONS])[0]
    status_weights = next(w for max_age, w in RELATIONSHIP_STATUS_WEIGHTS if age <= max_age)
    status = rng.choices(RELATIONSHIP_STATUSES, weights=[status_weights[s] for s in RELATIONSHIP_STATUSES])[0]
    region = rng.choice(CULTURAL_REGIONS)
    disposition = rng.choice(BASELINE_DISPOSITIONS)
    text = f"A {age}-year-old {status} {occupation} from {region} with a generally {disposition} disposition."
    age_band = next(band for band, (lo, hi) in AGE_BANDS.items() if lo <= age <= hi)
    return Persona(persona_id=persona_id_for(text), text=text, source="grid", age=age, age_band=age_band,
                   occupation=occupation, relationship_status=status, cultural_region=region,
                   baseline_disposition=disposition)


def grid_personas(n: int, seed: int = 0) -> list[Persona]:
    """``n`` distinct grid personas, reproducible from ``seed``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(seed)
    found: dict[str, Persona] = {}
    for _ in range(n * 50):  # the grid has ~145,000 distinct combinations; collisions are rare
        persona = grid_persona(rng)
        found.setdefault(persona.persona_id, persona)
        if len(found) == n:
            return list(found.values())
    raise ValueError(f"could not draw {n} distinct grid personas; ask for fewer")


class PersonasConfig(StageConfig):
    """Chapter 00's settings: where personas come from, how many, and where they are written."""

    persona_source: str = "auto"  # "auto", "grid", "shared-sample", "personahub" or a JSONL path (load_personas)
    num_personas: int = Field(300, ge=1)
    seed: int = 0
    output_dir: Path | None = None  # None: data/personas/

    def resolved_source(self) -> str:
        """``"auto"`` as the shared PersonaHub sample where it is present, else the paper's grid."""
        if self.persona_source != "auto":
            return self.persona_source
        return "shared-sample" if shared_sample_path() else "grid"


def load_personas(source: str | os.PathLike | None = None, *, n: int | None = None, seed: int = 0,
                  ) -> list[Persona]:
    """Personas from ``source``; ``n`` of them (all of a file when ``n`` is None), reproducible from ``seed``.

    ``source``: ``None`` or ``"grid"`` builds ``n`` personas from the paper's grid; ``"personahub"`` downloads the
    pinned PersonaHub file (:func:`load_personahub`); ``"shared-sample"`` is the shared 5,000-persona PersonaHub
    sample; any other value is a JSONL path, either PersonaHub format (``persona`` field) or a personas file written
    by :func:`write_personas`. From a file, ``n`` personas are sampled without replacement (all when ``n`` exceeds
    the file).
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    key = None if source is None else str(source).strip()
    if key in (None, "", "grid"):
        if n is None:
            raise ValueError("building personas from the grid needs n (how many)")
        return grid_personas(n, seed)
    if key == "personahub":
        return load_personahub(limit=n or 1000, seed=seed)
    if key == "shared-sample":
        path = shared_sample_path()
        if path is None:
            raise FileNotFoundError("the shared PersonaHub sample (shared/personahub/persona_sample.jsonl beside the "
                                    "checkout) is not here; use source='personahub' (Hub) or 'grid'")
    else:
        path = Path(key).expanduser()
    first = next(iter_jsonl(path), None) if Path(path).is_file() else None
    personas = read_personas(path) if isinstance(first, dict) and "persona_id" in first else read_persona_jsonl(path)
    return sample_personas(personas, n, seed) if n is not None else personas


def sample_personas(personas: Sequence[Persona], n: int, seed: int = 0) -> list[Persona]:
    """``min(n, len(personas))`` personas without replacement, reproducible from ``seed`` (Algorithm 2, line 2)."""
    if not personas:
        raise ValueError("no personas to sample from")
    return random.Random(seed).sample(list(personas), min(n, len(personas)))


def write_personas(path: str | os.PathLike, personas: Sequence[Persona]) -> Path:
    write_jsonl_atomic(path, personas)
    return Path(path)


def read_personas(path: str | os.PathLike) -> list[Persona]:
    """A personas file written by :func:`write_personas`; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no personas file; run notebooks/00_personas.ipynb first (it writes "
                                "data/personas/personas.jsonl)")
    personas = list(iter_jsonl(path, Persona))
    if not personas:
        raise JSONLError(f"{path}: the personas file is empty; re-run notebooks/00_personas.ipynb")
    return dedupe_personas(personas, str(path))


PERSONA_FIELDS: dict[str, tuple[str, ...]] = {
    "age_band": tuple(AGE_BANDS),
    "occupation": OCCUPATIONS,
    "relationship_status": RELATIONSHIP_STATUSES,
    "cultural_region": CULTURAL_REGIONS,
    "baseline_disposition": BASELINE_DISPOSITIONS,
}


def coverage(records: Sequence[BaseModel | Mapping[str, Any]], fields: Mapping[str, Sequence[str]] | None = None,
             ) -> pd.DataFrame:
    """Counts of every value of every field, values never seen included (count 0) and unknowns as ``(unknown)``.

    ``fields`` maps a field to its possible values; default: the persona grid fields, for attribute sets
    :func:`ec2er_utils.attributes.attribute_fields`.
    """
    import pandas as pd

    fields = fields or PERSONA_FIELDS
    rows = []
    dicts = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in records]
    for field, values in fields.items():
        counts = Counter(d.get(field) for d in dicts)
        rows += [{"field": field, "value": value, "count": counts.pop(value, 0)} for value in values]
        rows += [{"field": field, "value": "(unknown)" if value is None else str(value), "count": count}
                 for value, count in counts.items()]
    frame = pd.DataFrame(rows, columns=["field", "value", "count"])
    frame["share"] = frame["count"] / max(len(dicts), 1)
    return frame


# Which themes fit a persona (Algorithm 1, line 2: "check compatibility")
@dataclass(frozen=True)
class Compatibility:
    """Whether a persona fits a theme, why not, and how strongly its text matches the theme's keywords."""

    ok: bool
    reasons: tuple[str, ...] = ()
    keyword_hits: int = 0

    def __bool__(self) -> bool:
        return self.ok


def keyword_hits(text: str, theme: Theme) -> int:
    """How many of the theme's keywords occur in ``text`` at the start of a word (case-insensitive)."""
    lowered = text.lower()
    return sum(bool(re.search(rf"\b{re.escape(k.lower())}", lowered)) for k in theme.keywords)


def compatibility(persona: Persona, theme: Theme) -> Compatibility:
    """Check the theme's age, relationship-status and occupation limits against what is known about the persona."""
    reasons = []
    bounds = (persona.age, persona.age) if persona.age is not None else AGE_BANDS.get(persona.age_band)
    if bounds is not None:
        lo, hi = bounds
        if hi < theme.min_age or lo > theme.max_age:
            age = persona.age if persona.age is not None else f"{persona.age_band} ({lo}-{hi})"
            reasons.append(f"age {age} outside {theme.min_age}-{theme.max_age}")
    if theme.relationship_statuses and persona.relationship_status is not None \
            and persona.relationship_status not in theme.relationship_statuses:
        reasons.append(f"relationship status {persona.relationship_status!r} not in "
                       f"{list(theme.relationship_statuses)}")
    if persona.occupation is not None and persona.occupation in theme.excluded_occupations:
        reasons.append(f"occupation {persona.occupation!r} excluded")
    return Compatibility(not reasons, tuple(reasons), keyword_hits(persona.text, theme))
