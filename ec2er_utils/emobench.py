"""EmoBench (Sabour et al., ACL 2024), the paper's held-out benchmark (§4, §6, Table 1): :func:`load_emobench`
reads ``EU.jsonl`` / ``EA.jsonl`` into :class:`~ec2er_utils.schemas.EUItem` / ``EAItem`` from a local folder
(:func:`local_emobench_dir`) or else EmoBench's repository at :data:`EMOBENCH_COMMIT`, downloaded once and checked
against the files' SHA-256. The tasks and where the data comes from: README, chapter 05.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .jsonl import JSONLError, read_jsonl
from .paths import cache_dir, shared_dir
from .schemas import EAItem, EUItem

TASKS: tuple[str, ...] = ("EU", "EA")
LANGUAGES: tuple[str, ...] = ("en", "zh")
LANGUAGE_CHOICES: tuple[str, ...] = (*LANGUAGES, "all")
# The commit of github.com/Sahandfer/EmoBench whose data/ this repository is tested against (byte-identical to the
# offline copy in shared/emobench), and its files' SHA-256.
EMOBENCH_COMMIT = "3b4f84312541f8469e909965e1fff3691ef85c62"
EMOBENCH_URL = "https://raw.githubusercontent.com/Sahandfer/EmoBench/{commit}/data/{task}.jsonl"
EMOBENCH_SHA256 = {"EU": "60140a7617779bdb496cd50dcebaf33037c39c65821ae300a6a24a72fd7c7037",
                   "EA": "344c84913ed4adc9f26261a03cc4ddbecceeef4fcb8f77ab0405f8a63e8a4628"}
ENV_VAR = "EMOBENCH_DIR"
_ITEM_MODELS = {"EU": EUItem, "EA": EAItem}

EmoBenchItem = EUItem | EAItem


class EmoBenchDataError(ValueError):
    """EmoBench files that cannot be found or read; the message names the file (and line) and the fix."""


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"Unknown EmoBench task {task!r}; use one of {', '.join(TASKS)}")
    return task


def check_language(language: str) -> tuple[str, ...]:
    """The languages a ``language`` parameter stands for: ``"en"``, ``"zh"`` or ``"all"`` (both)."""
    if language not in LANGUAGE_CHOICES:
        raise ValueError(f"Unknown EmoBench language {language!r}; use one of {', '.join(LANGUAGE_CHOICES)}")
    return LANGUAGES if language == "all" else (language,)


def local_emobench_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The local folder to read, by precedence: ``data_dir``, ``$EMOBENCH_DIR``, ``shared/emobench``; else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    shared = shared_dir()
    if shared is not None and (shared / "emobench").is_dir():
        return shared / "emobench"
    return None


def download_emobench_file(task: str) -> Path:
    """``<task>.jsonl`` of the pinned EmoBench commit, downloaded once and checked against its SHA-256; later calls
    read the cached copy without the network."""
    import pooch

    folder = cache_dir() / "emobench" / EMOBENCH_COMMIT[:12]
    url = EMOBENCH_URL.format(commit=EMOBENCH_COMMIT, task=task)
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{EMOBENCH_SHA256[task]}", fname=f"{task}.jsonl",
                                   path=folder, progressbar=False))
    except Exception as err:  # noqa: BLE001 - offline, HTTP errors, a changed file: all get the same advice
        raise EmoBenchDataError(
            f"Could not download {task}.jsonl of EmoBench commit {EMOBENCH_COMMIT[:12]} from {url}: "
            f"{type(err).__name__}: {str(err)[:300]}. Without network access, set {ENV_VAR} (or pass data_dir=) to a "
            "folder holding EU.jsonl and EA.jsonl, e.g. the data/ folder of a clone of github.com/Sahandfer/EmoBench."
        ) from None


def emobench_file(task: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``<task>.jsonl`` is read from: the folder of :func:`local_emobench_dir`, else the pinned download."""
    check_task(task)
    folder = local_emobench_dir(data_dir)
    if folder is None:
        return download_emobench_file(task)
    path = folder / f"{task}.jsonl"
    if not path.is_file():
        origin = "data_dir" if data_dir is not None else (ENV_VAR if os.environ.get(ENV_VAR) else "shared/")
        raise EmoBenchDataError(
            f"{path}: no such file (folder taken from {origin}). EmoBench needs EU.jsonl and EA.jsonl there: "
            f"point {ENV_VAR} or data_dir= at a folder that holds them, or unset {ENV_VAR} to download them from "
            f"github.com/Sahandfer/EmoBench (commit {EMOBENCH_COMMIT[:12]}).")
    return path


def load_emobench(task: str, language: str = "en", data_dir: str | os.PathLike | None = None, *,
                  limit: int | None = None) -> list[EmoBenchItem]:
    """EmoBench items of one task, validated, in file order.

    ``language`` is ``"en"`` (default), ``"zh"`` or ``"all"``; ``limit`` keeps the first ``limit`` items of each
    language (for quick runs). Raises :class:`EmoBenchDataError` naming the file and line of anything malformed.
    """
    check_task(task)
    languages = check_language(language)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of items per language (or None for all), got {limit}")
    path = emobench_file(task, data_dir)
    try:
        items = read_jsonl(path, _ITEM_MODELS[task])
    except JSONLError as err:
        raise EmoBenchDataError(f"{err}. This is not a valid EmoBench {task} file: restore the original from "
                                f"github.com/Sahandfer/EmoBench (data/{task}.jsonl, commit {EMOBENCH_COMMIT[:12]}), "
                                f"or point {ENV_VAR} elsewhere.") from None
    selected: list[EmoBenchItem] = []
    for lang in languages:
        in_language = [item for item in items if item.language == lang]
        _check_unique_qids(in_language, path, lang)
        selected.extend(in_language[:limit] if limit else in_language)
    if not selected:
        raise EmoBenchDataError(f"{path}: no {task} items in language(s) {', '.join(languages)}")
    return selected


def load_tasks(tasks: Sequence[str] = TASKS, language: str = "en", data_dir: str | os.PathLike | None = None, *,
               limit: int | None = None) -> dict[str, list[EmoBenchItem]]:
    """``{task: items}`` for several tasks at once."""
    return {task: load_emobench(task, language, data_dir, limit=limit) for task in tasks}


def _check_unique_qids(items: list[EmoBenchItem], path: Path, language: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.qid in seen:
            raise EmoBenchDataError(f"{path}: qid {item.qid!r} occurs twice in language {language!r}; qids must be "
                                    "unique per language (results are keyed by language and qid)")
        seen.add(item.qid)


def category_of(item: EmoBenchItem) -> str:
    """The category EmoBench reports accuracy by: ``coarse_category`` (EU) or ``category`` (EA)."""
    return item.coarse_category if isinstance(item, EUItem) else item.category


def task_of(item: EmoBenchItem) -> str:
    return "EU" if isinstance(item, EUItem) else "EA"


def chance_accuracy(item: EmoBenchItem) -> float:
    """Accuracy of uniform guessing: 1/(emotion choices x cause choices) for EU (both must be right), 1/4 for EA."""
    if isinstance(item, EUItem):
        return 1.0 / (len(item.emotion_choices) * len(item.cause_choices))
    return 1.0 / len(item.choices)
