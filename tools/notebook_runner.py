"""Run the numbered notebooks in order with papermill (``make demo``).

``python -m tools.notebook_runner`` executes ``notebooks/NN_*.ipynb`` in numeric order with their default
parameters and writes the executed copies to ``runs/<timestamp>/``; the committed notebooks stay output-free.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ec2er_utils.notebooks import NOTEBOOKS_DIR, numbered_notebooks
from ec2er_utils.paths import runs_dir


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
    args = parser.parse_args(argv)
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
