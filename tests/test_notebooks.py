"""Notebook conventions (checked on every committed notebook) and the papermill runner behind `make demo`."""

import json
from pathlib import Path

import nbformat
import pytest

from ec2er_utils.notebooks import NOTEBOOKS_DIR, numbered_notebooks
from ec2er_utils.paths import REPO_ROOT
from tools.notebook_conventions import convention_problems, main, strip_outputs
from tools.notebook_runner import run_all

COMMITTED = sorted([*NOTEBOOKS_DIR.glob("*.ipynb"), *(REPO_ROOT / "colab").glob("*.ipynb")])


def _notebook(path: Path, cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    nbformat.write(nb, path)
    return path


def _parameters_cell(source: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_notebook_follows_conventions(path):
    assert convention_problems(path) == []


def test_convention_check_catches_outputs_and_parameters(tmp_path):
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    path = _notebook(tmp_path / "00_bad.ipynb", [nbformat.v4.new_markdown_cell("Print."), code])
    problems = convention_problems(path)
    assert any("outputs or an execution count" in p for p in problems)
    assert any("0 cells tagged 'parameters'" in p for p in problems)

    orphan = _notebook(tmp_path / "01_orphan.ipynb", [_parameters_cell("x = 1  # one"), nbformat.v4.new_code_cell("x")])
    assert any("without a markdown cell" in p for p in convention_problems(orphan))


def test_parameters_cell_holds_only_commented_plain_values_papermill_can_read(tmp_path):
    source = ('ok = [1, 2]  # fine\nbare = 3\nderived = len("ab")  # computed\nhidden = ""  # "" = a default\n'
              'import os\n')
    path = _notebook(tmp_path / "00_params.ipynb", [nbformat.v4.new_markdown_cell("Parameters."),
                                                   _parameters_cell(source)])
    problems = convention_problems(path)
    assert len(problems) == 4, problems
    assert "line 2: bare has no comment" in problems[0]
    assert "line 3: derived is not a plain value" in problems[1]
    assert "line 4: papermill cannot parse" in problems[2] and "keep '=' out of the comment" in problems[2]
    assert "line 5: only `name = value  # comment` assignments" in problems[3]


def test_strip_outputs_makes_a_notebook_clean(tmp_path):
    code = nbformat.v4.new_code_cell("x", execution_count=1, outputs=[nbformat.v4.new_output("stream", text="1")])
    path = _notebook(tmp_path / "00_x.ipynb", [nbformat.v4.new_markdown_cell("Set x."),
                                               _parameters_cell("x = 1  # a value"),
                                                nbformat.v4.new_markdown_cell("Show x."), code])
    assert strip_outputs(path) is True
    assert convention_problems(path) == []
    assert strip_outputs(path) is False  # idempotent


def test_numbered_notebooks_are_ordered_and_skip_others(tmp_path):
    for name in ["10_late.ipynb", "02_b.ipynb", "00_a.ipynb", "scratch.ipynb", "1_bad.ipynb"]:
        _notebook(tmp_path / name, [])
    assert [p.name for p in numbered_notebooks(tmp_path)] == ["00_a.ipynb", "02_b.ipynb", "10_late.ipynb"]


def test_run_all_executes_with_papermill_and_overrides_parameters(tmp_path):
    source = tmp_path / "00_echo.ipynb"
    _notebook(source, [nbformat.v4.new_markdown_cell("Parameters."),
                       _parameters_cell("greeting = 'hello'  # what to write"),
                       nbformat.v4.new_markdown_cell("Write the greeting."),
                       nbformat.v4.new_code_cell("open('greeting.txt', 'w').write(greeting)")])
    out = tmp_path / "runs"
    (executed,) = run_all([source], out, {"greeting": "bonjour"})
    assert (tmp_path / "greeting.txt").read_text() == "bonjour"  # runs with the notebook's folder as cwd
    cells = json.loads(executed.read_text())["cells"]
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in cells)
    assert convention_problems(source) == []  # the committed source is untouched


def test_run_all_stops_at_a_failing_notebook(tmp_path):
    import papermill

    bad = _notebook(tmp_path / "00_fail.ipynb", [nbformat.v4.new_markdown_cell("Fail."),
                                                 _parameters_cell("x = 1  # a value"),
                                                 nbformat.v4.new_markdown_cell("Boom."),
                                                 nbformat.v4.new_code_cell("raise ValueError('boom')")])
    never = _notebook(tmp_path / "01_never.ipynb", [_parameters_cell("x = 1  # a value")])
    with pytest.raises(papermill.PapermillExecutionError, match="boom"):
        run_all([bad, never], tmp_path / "runs")
    assert not (tmp_path / "runs" / never.name).exists()


def test_check_command_reports_repository_state(capsys):
    assert main(["--check"]) == 0
    assert "follow the conventions" in capsys.readouterr().out
