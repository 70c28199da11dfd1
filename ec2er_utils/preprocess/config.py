"""Every chapter-03 setting in one validated config (notebook 03: ``PreprocessConfig.from_parameters(globals())``).

The scenario length limits are not a setting: they are the paper's, ``taxonomy.SCENARIO_WORDS``, shared with
generation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..parameters import StageConfig
from ..taxonomy import CATEGORY_CAP_RATIO, PAPER_REVIEW_SIZE
from .dedup import DEFAULT_THRESHOLD
from .quality import QualityRules

OnError = Literal["raise", "skip"]
_RULES = QualityRules()


class PreprocessConfig(StageConfig):
    """Chapter 03's settings; the defaults are the notebook's CPU demo. The paper's set-up,
    ``recipes/paper/03_preprocess.yaml``, changes only the judge (the served generator, no ``judge_min_keep`` floor)."""

    inputs: list[str] | None = Field(None, min_length=1)  # None: load.DEFAULT_INPUTS; paths/globs under data_dir()
    on_error: OnError = "skip"  # a line that is not JSON: "skip" drops it (file:line reported), "raise" stops
    # the quality gate's cheap rules (quality.QualityRules)
    min_explanation_words: int = Field(_RULES.min_explanation_words, ge=0)
    min_option_words: int = Field(_RULES.min_option_words, ge=0)  # free-text options (causes, actions)
    max_word_repeats: int = Field(_RULES.max_word_repeats, ge=1)  # the same word more times in a row: degenerate
    max_nonword_share: float = Field(_RULES.max_nonword_share, ge=0, le=1)  # of a text's words not in English
    contamination_threshold: float = Field(0.8, gt=0, le=1)  # similarity to an EmoBench scenario = contamination
    containment: float | None = Field(0.9, gt=0, le=1)  # EmoBench scenario copied inside a longer one; None: off
    emobench_dir: Path | None = None  # None: $EMOBENCH_DIR, else shared/emobench, else Hugging Face
    dedup_threshold: float = Field(DEFAULT_THRESHOLD, gt=0, le=1)  # Levenshtein similarity of near-duplicates
    # the quality gate's LLM judge (judge.py); None: off
    judge_backend: Literal["local", "openai"] | None = "local"  # the CPU demo judges with the embedded model
    judge_model: str | None = None  # local: None = the embedded model; openai: the served model's name
    judge_base_url: str | None = None  # openai: None = $OPENAI_BASE_URL
    judge_threshold: float = Field(0.75, ge=0, le=1)  # items whose weakest question scores lower are dropped
    judge_min_keep: int = Field(2, ge=0)  # but keep at least this many best-scored items (tiny demo runs)
    balance_ratio: float | None = Field(CATEGORY_CAP_RATIO, ge=1)  # cap per sub-category, x expected share; None: off
    balance_min_cap: int = Field(5, ge=0)  # never cap a sub-category below this many items (tiny demo runs)
    # the §3.4 manual review (preprocess/review.py)
    review_sample_size: int = Field(PAPER_REVIEW_SIZE, ge=0)  # items sampled for the two annotators' sheets
    review_sheets: list[str] | None = Field(None, min_length=2, max_length=2)  # two filled-in sheets; None: none yet
    validation_fraction: float = Field(0.1, ge=0, lt=1)  # share of items held out for validation
    seed: int = 0  # answer-position shuffling, the review sample and the train/validation split
    output_dir: Path | None = None  # None: data/processed
    push_to_hub: bool = False  # publish the processed set (train, validation, card) as a Hugging Face dataset
    hub_dataset_id: str | None = None  # e.g. "your-name/ec2er-items" when push_to_hub is True
    workers: int = -1  # processes for similarity search (rapidfuzz); -1: all cores

    @property
    def quality_rules(self) -> QualityRules:
        return QualityRules(**{name: getattr(self, name) for name in QualityRules.model_fields})

    @model_validator(mode="after")
    def _hub_target(self):
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("push_to_hub is True but hub_dataset_id is None: set it to e.g. 'your-name/ec2er-items'")
        return self
