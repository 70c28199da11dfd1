"""The recipes in ``recipes/``: each chapter's parameters as YAML, for papermill's ``-f`` (see recipes/README.md).

``cpu-demo`` holds what the notebooks' parameters cells hold; ``paper`` the paper's set-up, each value with the
section of the paper it comes from. The Colab launcher reads the paper's recipes, so their values live only there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ec2er_utils.paths import REPO_ROOT

RECIPES_DIR = REPO_ROOT / "recipes"
KINDS = ("cpu-demo", "paper")


def recipe_path(kind: str, chapter: str) -> Path:
    """The recipe file of ``kind`` for a chapter number like ``"01"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown recipe kind {kind!r}; use one of {', '.join(KINDS)}")
    matches = sorted((RECIPES_DIR / kind).glob(f"{str(chapter).zfill(2)}_*.yaml"))
    if len(matches) != 1:
        available = ", ".join(p.name for p in sorted((RECIPES_DIR / kind).glob("*.yaml"))) or "none"
        raise FileNotFoundError(f"no single {kind} recipe for chapter {chapter} in {RECIPES_DIR / kind} "
                                f"(available: {available})")
    return matches[0]


def load_recipe(kind: str, chapter: str) -> dict[str, Any]:
    """A chapter's parameters from its recipe (an empty recipe gives ``{}``)."""
    path = recipe_path(kind, chapter)
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe is a mapping of parameter names to values, got {type(values).__name__}")
    return values
