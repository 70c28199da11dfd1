"""Recipes (papermill -f): the CPU demo's equal the notebooks' parameters cells, the paper's name only parameters the
notebooks have and pass every stage's validation, and each stage config's defaults are its notebook's."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

from ec2er_utils import taxonomy
from ec2er_utils.evaluation import EvalConfig
from ec2er_utils.figures import FiguresConfig
from ec2er_utils.generation.concise import ConciseConfig
from ec2er_utils.generation.mads import MADSConfig
from ec2er_utils.parameters import ParameterError
from ec2er_utils.paths import REPO_ROOT
from ec2er_utils.personas import PersonasConfig
from ec2er_utils.preprocess import PreprocessConfig
from ec2er_utils.training import TrainConfig

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RECIPES = REPO_ROOT / "recipes"
STAGE_CONFIGS = {"00_personas": PersonasConfig, "01_mads": MADSConfig, "02_concise": ConciseConfig,
                 "03_preprocess": PreprocessConfig, "04_train": TrainConfig, "05_evaluate": EvalConfig,
                 "06_figures": FiguresConfig}


def notebook_parameters(path: Path) -> dict[str, object]:
    """The values of a notebook's parameters cell, as papermill would see them."""
    (cell,) = [c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    values = {}
    for node in ast.parse(cell.source).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def recipe(kind: str, notebook: Path) -> dict[str, object]:
    path = RECIPES / kind / f"{notebook.stem}.yaml"
    assert path.is_file(), f"{path} is missing: every numbered notebook has a {kind} recipe"
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _same(a, b) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


def _comments(text: str, separator: str) -> dict[str, str]:
    """Each parameter's trailing comment: ``name = value  # comment`` (notebook) or ``name: value  # comment``."""
    return {line.partition(separator)[0].strip(): line.partition("  # ")[2]
            for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_cpu_demo_recipe_is_the_parameters_cell(notebook):
    assert recipe("cpu-demo", notebook) == notebook_parameters(notebook)
    (cell,) = [c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    text = (RECIPES / "cpu-demo" / f"{notebook.stem}.yaml").read_text(encoding="utf-8")
    assert _comments(text, ":") == _comments(cell.source, "=")  # the same explanation beside each value


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_paper_recipe_names_only_parameters_of_its_notebook_and_says_where_each_value_comes_from(notebook):
    values = recipe("paper", notebook)
    assert set(values) <= set(notebook_parameters(notebook)), set(values) - set(notebook_parameters(notebook))
    text = (RECIPES / "paper" / f"{notebook.stem}.yaml").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            comment = line.partition("  # ")[2]
            assert any(source in comment for source in ("§", "Algorithm", "not in the paper")), line


@pytest.mark.parametrize("stem", sorted(STAGE_CONFIGS))
def test_paper_recipes_pass_the_stage_configs(stem):
    STAGE_CONFIGS[stem].from_parameters(recipe("paper", REPO_ROOT / "notebooks" / f"{stem}.ipynb"))


@pytest.mark.parametrize("stem", sorted(STAGE_CONFIGS))
def test_stage_config_defaults_are_the_notebook_defaults(stem):
    parameters = notebook_parameters(REPO_ROOT / "notebooks" / f"{stem}.ipynb")
    for name, field in STAGE_CONFIGS[stem].model_fields.items():
        if name in parameters:
            assert _same(field.get_default(call_default_factory=True), parameters[name]), name


@pytest.mark.parametrize("stem", sorted(STAGE_CONFIGS))
def test_every_parameter_of_the_chapter_is_validated_by_its_one_config(stem):
    parameters = notebook_parameters(REPO_ROOT / "notebooks" / f"{stem}.ipynb")
    assert set(parameters) - set(STAGE_CONFIGS[stem].model_fields) == set()


@pytest.mark.parametrize("stem", sorted(STAGE_CONFIGS))
def test_the_notebook_builds_its_one_config_from_the_parameters(stem):
    notebook = nbformat.read(REPO_ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert code.count(".from_parameters(globals())") == 1
    assert f"{STAGE_CONFIGS[stem].__name__}.from_parameters(globals())" in code


def test_a_wrong_recipe_value_is_named():
    with pytest.raises(ParameterError, match="'max_turns'"):
        MADSConfig.from_parameters({**yaml.safe_load((RECIPES / "paper" / "01_mads.yaml").read_text()),
                                    "max_turns": "fourteen"})


def test_paper_recipes_agree_with_the_paper_facts_the_code_checks_against():
    """The code keeps a few of the paper's numbers (taxonomy.py) to warn on departures and to compare with; where a
    paper recipe sets the same value, the two must agree."""
    paper = {stem: recipe("paper", REPO_ROOT / "notebooks" / f"{stem}.ipynb") for stem in STAGE_CONFIGS}
    assert (paper["01_mads"]["min_turns"], paper["01_mads"]["max_turns"]) == taxonomy.MADS_TURNS
    assert paper["02_concise"]["rounds"] == taxonomy.CONCISE_ROUNDS
    assert paper["03_preprocess"]["balance_ratio"] == taxonomy.CATEGORY_CAP_RATIO
    assert paper["03_preprocess"]["review_sample_size"] == taxonomy.PAPER_REVIEW_SIZE
