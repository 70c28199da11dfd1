"""Run the numbered notebooks in order with papermill (``make demo``) and check notebook conventions.

``python -m ec2er_utils.notebooks`` executes ``notebooks/NN_*.ipynb`` in numeric order with their default
parameters and writes the executed copies to ``runs/<timestamp>/``; the committed notebooks stay output-free.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .paths import REPO_ROOT, runs_dir

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
_NUMBERED = re.compile(r"^(\d{2})_[\w-]+\.ipynb$")


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The chapter notebooks (``00_personas.ipynb``, ``01_mads.ipynb``, ...) sorted by number."""
    found = [p for p in folder.glob("*.ipynb") if _NUMBERED.match(p.name)]
    return sorted(found, key=lambda p: (int(_NUMBERED.match(p.name).group(1)), p.name))


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


def run_all(notebooks: list[Path], out_dir: Path, parameters: dict | None = None,
            kernel_name: str = "python3") -> list[Path]:
    """Execute notebooks one after another with papermill; stops at the first failure (its copy is kept)."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for notebook in notebooks:
        target = out_dir / notebook.name
        started = time.perf_counter()
        print(f"[demo] running {notebook} -> {target}", flush=True)
        papermill.execute_notebook(str(notebook), str(target), parameters=parameters or {},
                                   kernel_name=kernel_name, cwd=str(notebook.parent), progress_bar=False)
        print(f"[demo] {notebook.name} done in {time.perf_counter() - started:.0f}s", flush=True)
        executed.append(target)
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", metavar="NN", help="run only these chapter numbers, e.g. --only 00 01")
    parser.add_argument("--out", type=Path, help="output folder (default runs/<UTC timestamp>)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="papermill parameter for every notebook (value parsed as JSON when it can be)")
    parser.add_argument("--strip", action="store_true", help="strip outputs from notebooks/ and colab/, run nothing")
    parser.add_argument("--check", action="store_true", help="report convention problems in notebooks/ and colab/")
    args = parser.parse_args(argv)
    if args.strip or args.check:
        committed = sorted([*NOTEBOOKS_DIR.glob("*.ipynb"), *(REPO_ROOT / "colab").glob("*.ipynb")])
        if args.strip:
            for path in committed:
                if strip_outputs(path):
                    print(f"stripped {path.relative_to(REPO_ROOT)}")
        problems = [p for path in committed for p in convention_problems(path)] if args.check else []
        print("\n".join(problems) or f"{len(committed)} notebook(s) follow the conventions")
        return 1 if problems else 0
    notebooks = numbered_notebooks()
    if args.only:
        wanted = {n.zfill(2) for n in args.only}
        notebooks = [n for n in notebooks if n.name[:2] in wanted]
    if not notebooks:
        print(f"[demo] no numbered notebooks to run in {NOTEBOOKS_DIR}")
        return 0
    parameters = {}
    for name, value in args.parameter:
        try:
            parameters[name] = json.loads(value)
        except ValueError:
            parameters[name] = value
    out = args.out or runs_dir() / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    executed = run_all(notebooks, out, parameters)
    print(f"[demo] {len(executed)} notebook(s) executed; copies in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
