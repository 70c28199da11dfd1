"""The notebooks' Colab bootstrap cell and the README's "Open in Colab" badges, both generated from the one setting of
where the repository lives: ``Repository = "https://github.com/OWNER/NAME"`` under ``[project.urls]`` in
``pyproject.toml``. The notebooks carry the value as text (their first code cell clones it in Colab).

    python -m tools.colab_cells badges                        # print the README's badge block
    python -m tools.colab_cells badges --write README.md      # rewrite it and every notebook's bootstrap cell
    python -m tools.colab_cells badges --repo OWNER/NAME --write README.md
                                                              # a fork: the same, after setting pyproject's URL
    python -m tools.colab_cells bootstrap                     # print the bootstrap cell
    python -m tools.colab_cells bootstrap --add notebooks/07_new.ipynb   # insert it into a new notebook

``--write`` updates every notebook's bootstrap cell and Colab GPU runtime metadata (``notebooks/*.ipynb``,
``colab/*.ipynb``), the README's block between its markers, and every other mention of the previous repository URL
in those files (e.g. notebook 04's ``git clone`` line).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path

from ec2er_utils.paths import REPO_ROOT

PYPROJECT = "pyproject.toml"  # relative to the repository root, like README.md and the notebook folders
NOTEBOOK_FOLDERS = ("notebooks", "colab")
BRANCH = "main"
COLAB_REPO_DIR = "/content/ec2er"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGES_START, BADGES_END = "<!-- colab-badges:start -->", "<!-- colab-badges:end -->"
BOOTSTRAP_FIRST_LINE = ("# Colab only (nothing happens elsewhere): clone the repository and install it, "
                        "once per runtime.")
BOOTSTRAP_NOTE_START = "**Colab only.**"
# Notebook metadata with which Colab opens a notebook on a GPU runtime (A100, as Unsloth's A100 notebooks say it);
# without it Colab opens every notebook on a CPU runtime.
COLAB_GPU_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "A100", "provenance": []}}
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_GITHUB_URL = re.compile(r"^https://github\.com/([^/\s]+/[^/\s]+?)(?:\.git)?/?$")
_CELL_REPOSITORY = re.compile(r'^REPOSITORY = "([^"]*)"', re.MULTILINE)

BOOTSTRAP_MARKDOWN = (
    f"{BOOTSTRAP_NOTE_START} The next cell does nothing outside Colab. In Colab it clones the repository and installs "
    "it once per runtime (a few minutes; pip's output shows below the cell): the pinned set "
    "`requirements/colab-gpu.txt` on top of Colab's own packages, which stay as they are (Colab's torch, ipykernel "
    "and ipython included). If the cell then says a restart is needed, choose Runtime > Restart session and run the "
    "notebook again from the top: the install is not repeated. If the clone fails (a fork, a private copy, no GitHub "
    "access), the cell stops and says what to set, or how to install from a Google Drive folder or an uploaded archive "
    "instead."
)

# @NAME@ marks what bootstrap_source fills in; everything else is the cell verbatim.
_BOOTSTRAP_TEMPLATE = BOOTSTRAP_FIRST_LINE + '''
import os, subprocess, sys
REPOSITORY = "@URL@"  # where to clone from; a fork puts its own URL here
if "google.colab" in sys.modules:
    REPO_DIR = "@REPO_DIR@"
    if not os.path.isdir(REPO_DIR):
        clone = subprocess.run(["git", "clone", "--depth", "1", "--branch", "@BRANCH@", REPOSITORY, REPO_DIR],
                               capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if clone.returncode != 0:
            raise RuntimeError(
                f"Cannot clone {REPOSITORY} (branch @BRANCH@): {clone.stderr.strip()[-500:]}\\n"
                "- A fork or another GitHub home: set REPOSITORY at the top of this cell to its URL and run the "
                "cell again (a fork sets it for good with: python -m tools.colab_cells badges --repo OWNER/NAME "
                "--write README.md).\\n"
                f"- Without cloning: put a copy of the repository at {REPO_DIR} and run this cell again; it is "
                "installed from there. From Google Drive: from google.colab import drive; "
                f"drive.mount('/content/drive'), then !ln -s /content/drive/MyDrive/ec2er {REPO_DIR} . From an "
                f"uploaded zip (Files pane): !unzip -q ec2er.zip -d /content (it must unpack to {REPO_DIR}).")
    if sys.path[:1] != [REPO_DIR]:  # first, so that `colab` below is the clone's folder
        sys.path[:] = [REPO_DIR] + [path for path in sys.path if path != REPO_DIR]
    from colab import install  # standard library only: it runs before anything is installed
    install.install_once(REPO_DIR)  # pinned, Colab's own packages kept; says when a restart is needed
    os.chdir(REPO_DIR + "/notebooks")'''


# --------------------------------------------------------------------------------------------------------------
# The setting: pyproject's [project.urls] Repository


def github_repo(value: str) -> str:
    """``OWNER/NAME`` from ``OWNER/NAME`` or ``https://github.com/OWNER/NAME[.git]``; anything else is an error
    (Colab opens notebooks from GitHub only)."""
    value = value.strip()
    match = _GITHUB_URL.match(value)
    repo = match.group(1) if match else value
    if not _OWNER_NAME.match(repo):
        raise ValueError(f"not a GitHub repository: {value!r}; give OWNER/NAME or https://github.com/OWNER/NAME")
    return repo


def repository_url(repo: str) -> str:
    return f"https://github.com/{github_repo(repo)}"


def configured_repo(root: str | os.PathLike = REPO_ROOT) -> str:
    """``OWNER/NAME`` from ``Repository`` under ``[project.urls]`` in ``root/pyproject.toml``."""
    path = Path(root) / PYPROJECT
    return _repo_from_pyproject(path.read_text(encoding="utf-8"), path)


def _repo_from_pyproject(text: str, path: Path) -> str:
    url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    if not url:
        raise ValueError(f'{path}: [project.urls] has no Repository; add Repository = "https://github.com/OWNER/NAME"'
                         " (where this repository lives on GitHub)")
    try:
        return github_repo(url)
    except ValueError as err:
        raise ValueError(f"{path}: [project.urls] Repository: {err}") from None


def set_configured_repo(repo: str, root: str | os.PathLike = REPO_ROOT) -> bool:
    """Write ``Repository = "https://github.com/OWNER/NAME"`` into ``[project.urls]`` of ``root/pyproject.toml``
    (replacing the line, or adding it first in the table); returns whether the file changed."""
    path = Path(root) / PYPROJECT
    text = path.read_text(encoding="utf-8")
    table = re.search(r"(?ms)^\[project\.urls\][ \t]*\n(.*?)(?=^\[|\Z)", text)
    if table is None:
        raise ValueError(f"{path} has no [project.urls] table; add one with Repository = "
                         '"https://github.com/OWNER/NAME"')
    line = f'Repository = "{repository_url(repo)}"'
    body, replaced = re.subn(r"(?m)^Repository[ \t]*=.*$", line, table.group(1), count=1)
    new = text[:table.start(1)] + (body if replaced else f"{line}\n{body}") + text[table.end(1):]
    if _repo_from_pyproject(new, path) != github_repo(repo):
        raise ValueError(f"{path}: could not set [project.urls] Repository (more than one table?); edit it by hand")
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


# --------------------------------------------------------------------------------------------------------------
# The bootstrap cell


def bootstrap_source(url: str | None = None, branch: str = BRANCH, repo_dir: str = COLAB_REPO_DIR) -> str:
    """The first code cell of every notebook: plain Python (no package needed yet), a no-op outside Colab.

    In Colab: clone ``url`` (default: the configured repository) at ``branch`` into ``repo_dir`` unless that folder
    exists, stopping with what to do when the clone fails; put the folder first on ``sys.path`` (an editable install
    is only picked up by interpreters started after it, and the repository's ``colab`` package must win over any
    other ``colab``) and install with :func:`colab.install.install_once` (the pinned Colab set, once per runtime and
    lock).
    """
    url = url if url is not None else repository_url(configured_repo())
    values = {"@URL@": url, "@BRANCH@": branch, "@REPO_DIR@": repo_dir}
    return re.sub("|".join(values), lambda match: values[match.group(0)], _BOOTSTRAP_TEMPLATE)


def is_bootstrap_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.source.startswith(BOOTSTRAP_FIRST_LINE)


def add_bootstrap_cells(notebook: str | os.PathLike, source: str | None = None) -> bool:
    """Insert the bootstrap cell ``source`` (default :func:`bootstrap_source`), with :data:`BOOTSTRAP_MARKDOWN`
    before it, right after the notebook's first markdown cell (its introduction), or update the cell and its note
    where they are already; returns whether the file changed."""
    import nbformat

    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    source = source if source is not None else bootstrap_source()
    existing = [i for i, cell in enumerate(nb.cells) if is_bootstrap_cell(cell)]
    if existing:
        at = existing[0]
        changed = nb.cells[at].source != source
        nb.cells[at].source = source
        note = nb.cells[at - 1] if at > 0 else None
        if note is not None and note.cell_type == "markdown" and note.source.startswith(BOOTSTRAP_NOTE_START):
            changed |= note.source != BOOTSTRAP_MARKDOWN
            note.source = BOOTSTRAP_MARKDOWN
        if not changed:
            return False
    else:
        cells = [nbformat.v4.new_markdown_cell(BOOTSTRAP_MARKDOWN), nbformat.v4.new_code_cell(source)]
        with_ids = (nb.nbformat, nb.nbformat_minor) >= (4, 5)
        for cell, cell_id in zip(cells, ("colab-bootstrap-note", "colab-bootstrap"), strict=True):
            if with_ids:
                cell["id"] = cell_id
            else:
                cell.pop("id", None)
        at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells[at:at] = cells
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return True


def add_gpu_metadata(notebook: str | os.PathLike) -> bool:
    """Give the notebook :data:`COLAB_GPU_METADATA` (other metadata, and other keys under ``colab``, are kept);
    returns whether the file changed."""
    import nbformat

    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    before = repr(nb.metadata)
    nb.metadata["accelerator"] = COLAB_GPU_METADATA["accelerator"]
    colab = nb.metadata.setdefault("colab", {})
    for key, value in COLAB_GPU_METADATA["colab"].items():
        colab[key] = colab.get(key, value) if key == "provenance" else value
    if repr(nb.metadata) == before:
        return False
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return True


def notebook_repository_urls(notebook: str | os.PathLike) -> set[str]:
    """The ``REPOSITORY`` values the notebook's bootstrap cells carry."""
    import nbformat

    cells = nbformat.read(Path(notebook), as_version=4).cells
    return {url for cell in cells if is_bootstrap_cell(cell) for url in _CELL_REPOSITORY.findall(cell.source)}


def replace_repository_url(text: str, old_urls: set[str], new_url: str) -> str:
    """``text`` with every mention of an old repository URL (not of a longer name that starts like it) made
    ``new_url``."""
    for old in sorted(old_urls - {new_url}, key=len, reverse=True):
        text = re.sub(re.escape(old) + r"(?![\w-])", lambda _: new_url, text)
    return text


# --------------------------------------------------------------------------------------------------------------
# README badges


def badge_notebooks(root: str | os.PathLike = REPO_ROOT) -> list[Path]:
    """Every notebook a reader can open: ``notebooks/*.ipynb`` then ``colab/*.ipynb``, relative to ``root``."""
    root = Path(root)
    found = [path for folder in NOTEBOOK_FOLDERS for path in sorted((root / folder).glob("*.ipynb"))]
    return [path.relative_to(root) for path in found]


def colab_url(path: str | os.PathLike, repo: str, branch: str = BRANCH) -> str:
    return f"https://colab.research.google.com/github/{github_repo(repo)}/blob/{branch}/{Path(path).as_posix()}"


def badge_table(repo: str | None = None, branch: str = BRANCH, root: str | os.PathLike = REPO_ROOT) -> str:
    """A Markdown table with an "Open in Colab" badge for every notebook (see :func:`badge_notebooks`) of
    ``repo`` (default: the one ``root/pyproject.toml`` names)."""
    repo = repo or configured_repo(root)
    lines = ["| notebook | open in Colab |", "|---|---|"]
    for path in badge_notebooks(root):
        lines.append(f"| [`{path.as_posix()}`]({path.as_posix()}) | "
                     f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path, repo, branch)}) |")
    return "\n".join(lines)


def badge_block(repo: str | None = None, branch: str = BRANCH, root: str | os.PathLike = REPO_ROOT) -> str:
    """The table between its README markers."""
    return f"{BADGES_START}\n{badge_table(repo, branch, root)}\n{BADGES_END}"


def readme_badge_table(readme: str | os.PathLike) -> str | None:
    """The text between the badge markers of ``readme`` (stripped), or None when the markers are not there."""
    text = Path(readme).read_text(encoding="utf-8")
    if BADGES_START not in text or BADGES_END not in text:
        return None
    return text.split(BADGES_START, 1)[1].split(BADGES_END, 1)[0].strip()


def update_readme_badges(readme: str | os.PathLike, repo: str | None = None, branch: str = BRANCH) -> bool:
    """Replace the block between the markers with the current table (notebooks and ``pyproject.toml`` found beside
    ``readme``); returns whether the file changed."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if readme_badge_table(path) is None:
        raise ValueError(f"{path} has no {BADGES_START} ... {BADGES_END} block; paste `python -m tools.colab_cells "
                         "badges` output where the table belongs first")
    before, rest = text.split(BADGES_START, 1)
    after = rest.split(BADGES_END, 1)[1]
    new = before + badge_block(repo, branch, path.parent) + after
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


# --------------------------------------------------------------------------------------------------------------
# Everything at once


def write_repository(readme: str | os.PathLike, repo: str | None = None) -> list[Path]:
    """Make the repository's home agree everywhere, in the repository that holds ``readme``: with ``repo``, first
    set pyproject's ``Repository`` to it; then rewrite every notebook's bootstrap cell (inserting it where missing)
    and its Colab GPU metadata,
    every other mention of a previous repository URL (pyproject's before, or one a bootstrap cell still carries) in
    the notebooks and the README, and the README's badge block. Returns the files that changed."""
    readme = Path(readme)
    root = readme.parent
    notebooks = [root / relative for relative in badge_notebooks(root)]
    previous = {repository_url(configured_repo(root))}.union(*map(notebook_repository_urls, notebooks))
    changed = []
    if repo is not None and set_configured_repo(repo, root):
        changed.append(root / PYPROJECT)
    url = repository_url(configured_repo(root))
    source = bootstrap_source(url)
    for path in notebooks:
        changed_cell = add_bootstrap_cells(path, source)
        changed_metadata = add_gpu_metadata(path)
        if _replace_in_notebook(path, previous, url) or changed_cell or changed_metadata:
            changed.append(path)
    text = readme.read_text(encoding="utf-8")
    retargeted = replace_repository_url(text, previous, url)
    if retargeted != text:
        readme.write_text(retargeted, encoding="utf-8")
    if update_readme_badges(readme) or retargeted != text:
        changed.append(readme)
    return changed


def _replace_in_notebook(path: Path, old_urls: set[str], new_url: str) -> bool:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        new = replace_repository_url(cell.source, old_urls, new_url)
        changed |= new != cell.source
        cell.source = new
    if changed:
        nbformat.write(nb, path)
    return changed


def _repo_argument(value: str) -> str:
    try:
        return github_repo(value)
    except ValueError as err:  # argparse shows an ArgumentTypeError's message, a ValueError's only as "invalid"
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    badges = sub.add_parser("badges", help="print the README's Colab badge block (with its markers)")
    badges.add_argument("--write", type=Path, metavar="README",
                        help="rewrite this README's block and every notebook's bootstrap cell instead")
    badges.add_argument("--repo", metavar="OWNER/NAME", type=_repo_argument,
                        help="where the repository lives on GitHub; with --write also set in pyproject.toml "
                             "(default: pyproject's [project.urls] Repository)")
    bootstrap = sub.add_parser("bootstrap", help="print the Colab bootstrap cell (first code cell of every notebook)")
    bootstrap.add_argument("--add", nargs="+", type=Path, metavar="NOTEBOOK",
                           help="insert it (after the first markdown cell) into these notebooks instead")
    args = parser.parse_args(argv)
    if args.command == "bootstrap" and args.add:
        for path in args.add:
            print(f"{path}: {'bootstrap cell added or updated' if add_bootstrap_cells(path) else 'already current'}")
    elif args.command == "bootstrap":
        print(bootstrap_source())
    elif args.write:
        readme = args.write.resolve()
        changed = write_repository(readme, args.repo)
        print(f"repository: {repository_url(configured_repo(readme.parent))}")
        print("\n".join(f"updated {path}" for path in changed) or "everything already current")
    else:
        print(badge_block(args.repo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
