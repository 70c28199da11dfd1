"""Where the repository keeps generated data, runs, results and caches.

Everything generated lives in git-ignored folders so that a clone stays clean and notebooks can be re-run.
Each location can be moved with an environment variable (e.g. onto Google Drive in Colab).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dir_from_env(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Generated datasets (personas, dialogues, items). Override with ``EC2ER_DATA_DIR``."""
    return _dir_from_env("EC2ER_DATA_DIR", REPO_ROOT / "data")


def runs_dir() -> Path:
    """Executed notebooks and training runs. Override with ``EC2ER_RUNS_DIR``."""
    return _dir_from_env("EC2ER_RUNS_DIR", REPO_ROOT / "runs")


def results_dir() -> Path:
    """Evaluation results. Override with ``EC2ER_RESULTS_DIR``."""
    return _dir_from_env("EC2ER_RESULTS_DIR", REPO_ROOT / "results")


def cache_dir() -> Path:
    """Materialised model checkpoints and other re-creatable files. Override with ``EC2ER_CACHE_DIR``.

    Defaults to ``~/.cache/ec2er`` (or ``$XDG_CACHE_HOME/ec2er``) so that every clone on a machine shares one
    materialised embedded model instead of converting it again.
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    default = (Path(xdg) if xdg else Path.home() / ".cache") / "ec2er"
    return _dir_from_env("EC2ER_CACHE_DIR", default)


def shared_dir() -> Path | None:
    """The read-only ``shared/`` folder beside the checkout (paper, EmoBench, PersonaHub sample), if present."""
    candidate = _dir_from_env("EC2ER_SHARED_DIR", REPO_ROOT.parent / "shared")
    return candidate if candidate.is_dir() else None
