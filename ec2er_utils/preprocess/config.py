"""Every chapter-03 setting in one validated config (notebook 03: ``PreprocessConfig.from_parameters(globals())``).

The scenario length limits are not a setting: they are the paper's, ``taxonomy.SCENARIO_WORDS``, shared with
generation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..parameters import StageConfig
from .dedup import DEFAULT_THRESHOLD

OnError = Literal["raise", "skip"]


class PreprocessConfig(StageConfig):
    """Chapter 03's settings; the defaults are the notebook's (CPU demo = paper, except ``balance_min_cap``)."""

    inputs: list[str] | None = Field(None, min_length=1)  # None: load.DEFAULT_INPUTS; paths/globs under data_dir()
    on_error: OnError = "skip"  # a line that is not JSON: "skip" drops it (file:line reported), "raise" stops
    contamination_threshold: float = Field(0.8, gt=0, le=1)  # similarity to an EmoBench scenario = contamination
    containment: float | None = Field(0.9, gt=0, le=1)  # EmoBench scenario copied inside a longer one; None: off
    emobench_dir: str | None = None  # None: $EMOBENCH_DIR, else shared/emobench, else Hugging Face
    dedup_threshold: float = Field(DEFAULT_THRESHOLD, gt=0, le=1)  # Levenshtein similarity of near-duplicates
    balance_ratio: float | None = Field(1.5, ge=1)  # cap per sub-category, x its expected share; None: off
    balance_min_cap: int = Field(5, ge=0)  # never cap a sub-category below this many items (tiny demo runs)
    validation_fraction: float = Field(0.1, ge=0, lt=1)  # share of items held out for validation
    seed: int = 0  # answer-position shuffling and the train/validation split
    output_dir: str | None = None  # None: data/processed
    workers: int = -1  # processes for similarity search (rapidfuzz); -1: all cores
