"""Check the committed notebooks' conventions and strip their outputs (``make strip-notebooks``).

``python -m tools.notebook_conventions --strip --check`` removes outputs and execution counts from
``notebooks/*.ipynb`` and ``colab/*.ipynb``, then reports every convention problem (exit code 1 if any).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ec2er_utils.notebooks import NOTEBOOKS_DIR
from ec2er_utils.paths import REPO_ROOT


def committed_notebooks() -> list[Path]:
    """``notebooks/*.ipynb`` and ``colab/*.ipynb``: every notebook the repository ships."""
    return sorted([*NOTEBOOKS_DIR.glob("*.ipynb"), *(REPO_ROOT / "colab").glob("*.ipynb")])


def convention_problems(path: Path) -> list[str]:
    """What a committed notebook does wrong: outputs, execution counts, not exactly one ``parameters`` cell,
    or a code cell that is not introduced by a markdown cell."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError) as err:
        return [f"{path}: not a readable notebook ({err})"]
    problems = []
    previous = None
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                problems.append(f"{path.name} cell {index}: has outputs or an execution count; "
                                "strip them before committing (make strip-notebooks)")
            tags = cell.get("metadata", {}).get("tags", [])
            if previous != "markdown" and "parameters" not in tags:
                problems.append(f"{path.name} cell {index}: code cell without a markdown cell before it "
                                "saying what it does and why")
        previous = cell.get("cell_type")
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{path.name}: {len(tagged)} cells tagged 'parameters'; papermill needs exactly one")
    for cell in tagged:
        problems += parameter_problems(path.name, "".join(cell.get("source", "")))
    return problems


def parameter_problems(name: str, source: str) -> list[str]:
    """A parameters cell holds only ``name = literal  # comment`` lines that papermill can read: ``papermill
    --help-notebook`` and the Colab launcher's parameter filter see only what papermill parses."""
    import ast
    import logging

    from papermill.translators import PythonTranslator

    logging.getLogger("papermill.translators").setLevel(logging.ERROR)  # we report unparsed lines ourselves
    problems = []
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [f"{name} parameters cell: not valid Python ({err})"]
    parsed = {p.name for p in PythonTranslator.inspect(_FakeCell(source))}
    lines = source.splitlines()
    for node in tree.body:
        line = lines[node.lineno - 1]
        where = f"{name} parameters cell, line {node.lineno}"
        if not isinstance(node, ast.Assign) or len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            problems.append(f"{where}: only `name = value  # comment` assignments belong here; move {line!r} to "
                            "the next cell (derived values)")
            continue
        try:
            ast.literal_eval(node.value)
        except ValueError:
            problems.append(f"{where}: {node.targets[0].id} is not a plain value (a literal); compute it in the "
                            "next cell")
        if "#" not in line:
            problems.append(f"{where}: {node.targets[0].id} has no comment saying what it is")
        elif node.targets[0].id not in parsed:
            problems.append(f"{where}: papermill cannot parse {line!r}; keep '=' out of the comment")
    return problems


class _FakeCell(dict):
    """What papermill's translator reads from a cell: its ``source``."""

    def __init__(self, source: str):
        super().__init__(source=source)
        self.source = source


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts in place; returns whether the file changed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    notebook.get("metadata", {}).pop("papermill", None)
    new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strip", action="store_true", help="strip outputs from notebooks/ and colab/ first")
    parser.add_argument("--check", action="store_true", help="report convention problems in notebooks/ and colab/")
    args = parser.parse_args(argv)
    if not (args.strip or args.check):
        parser.error("say what to do: --strip, --check, or both")
    committed = committed_notebooks()
    if args.strip:
        for path in committed:
            if strip_outputs(path):
                print(f"stripped {path.relative_to(REPO_ROOT)}")
    problems = [p for path in committed for p in convention_problems(path)] if args.check else []
    print("\n".join(problems) or f"{len(committed)} notebook(s) follow the conventions")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
