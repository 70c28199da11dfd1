"""The numbered chapter notebooks: where they are and in which order they run.

The GPU launcher (``colab/launch.py``, and :func:`colab.runtime.run_chapters`) and the developer tooling
(``tools/notebook_runner.py``, behind ``make demo``) both run them in this order.
"""

from __future__ import annotations

import re
from pathlib import Path

from .paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
_NUMBERED = re.compile(r"^\d{2}_[\w-]+\.ipynb$")


def numbered_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The chapter notebooks (``00_personas.ipynb``, ``01_mads.ipynb``, ...) sorted by number."""
    return sorted(p for p in folder.glob("*.ipynb") if _NUMBERED.match(p.name))  # two digits: name order
