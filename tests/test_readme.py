"""The README works as written: its Python snippets use only names that exist, its shell commands name real
notebooks, parameters, recipes, make targets and files, and the paths it mentions are there."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ec2er_utils.paths import REPO_ROOT
from tests.test_recipes import notebook_parameters

DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "ARCHITECTURE.md", REPO_ROOT / "recipes" / "README.md",
        REPO_ROOT / "benchmarks" / "README.md", REPO_ROOT / "colab" / "README.md"]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
REPO_PATH = re.compile(r"`((?:ec2er_utils|notebooks|recipes|tools|benchmarks|colab|tests|requirements)/[\w./*-]*)`")


def blocks(kind: str) -> list[tuple[Path, str]]:
    return [(doc, body) for doc in DOCS if doc.is_file()
            for lang, body in FENCE.findall(doc.read_text(encoding="utf-8")) if lang == kind]


def undefined_names(source: str) -> list[str]:
    """Names a snippet reads before anything in it defines or imports them (a NameError when run), and imported
    names that do not exist."""
    tree = ast.parse(source)
    defined = set(dir(builtins))
    problems = []
    for node in tree.body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom):
                module = importlib.import_module(sub.module)
                for alias in sub.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{sub.module}.{alias.name}")
                        except ImportError:
                            problems.append(f"{sub.module}.{alias.name} does not exist")
                    defined.add(alias.asname or alias.name)
            elif isinstance(sub, ast.Import):
                for alias in sub.names:
                    importlib.import_module(alias.name)
                    defined.add((alias.asname or alias.name).split(".")[0])
        targets = [t for t in ast.walk(node) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)]
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            defined.add(node.name)
        reads = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        problems += [f"{name} is used before it is defined" for name in reads if name not in defined
                     and name not in {t.id for t in targets}]
        defined |= {t.id for t in targets}
    return problems


@pytest.mark.parametrize("doc, source", blocks("python"), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_python_snippets_use_only_names_that_exist(doc, source):
    assert undefined_names(source) == [], doc.name


def test_the_checker_catches_what_the_old_readme_had():
    old = "from ec2er_utils.llm import make_client\nllm = make_client('local')\nllm.chat_many(conversations)\n" \
          "from ec2er_utils.generation.items import EUDraft\n"
    problems = undefined_names(old)
    assert "conversations is used before it is defined" in problems
    assert "ec2er_utils.generation.items.EUDraft does not exist" in problems


def make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w-]+):", text, re.MULTILINE))


def command_problems(line: str, own_environment: bool = False) -> list[str]:
    """What is wrong with one shell command of the README (empty when nothing is). ``own_environment``: the block
    installs into an environment of its own (a GPU machine), so bare ``python`` is that environment's."""
    words = shlex.split(line.split("  #")[0], comments=True)
    if not words:
        return []
    program = Path(words[0]).name
    problems = []
    if program in ("papermill", "python") and not words[0].startswith(".venv/bin/") and not own_environment:
        problems.append(f"{words[0]!r} needs the environment: write .venv/bin/{program}")
    if program == "make":
        problems += [f"make {t} is not a Makefile target" for t in words[1:] if not t.startswith("-")
                     and "=" not in t and t not in make_targets()]
    if program == "papermill":
        notebook = REPO_ROOT / words[1]
        if not notebook.is_file():
            return [f"{words[1]} does not exist"]
        parameters = notebook_parameters(notebook)
        for flag, value in zip(words, words[1:], strict=False):
            if flag == "-p" and value not in parameters:
                problems.append(f"-p {value} is not a parameter of {notebook.name}")
            if flag == "-f" and not (REPO_ROOT / value).is_file():
                problems.append(f"-f {value} does not exist")
    if program == "python":
        if len(words) > 2 and words[1] == "-m":
            module = words[2]
            if not ((REPO_ROOT / module.replace(".", "/")).with_suffix(".py").is_file()
                    or (REPO_ROOT / module.replace(".", "/") / "__main__.py").is_file()):
                problems.append(f"python -m {module}: no such module in the repository")
        elif len(words) > 1 and words[1].endswith(".py") and not (REPO_ROOT / words[1]).is_file():
            problems.append(f"{words[1]} does not exist")
    return problems


@pytest.mark.parametrize("doc, source", blocks("bash"), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_shell_commands_name_real_notebooks_parameters_recipes_targets_and_files(doc, source):
    own = doc.parent.name == "colab" or any(line.strip().startswith("pip install") for line in source.splitlines())
    problems = [p for line in source.splitlines() for p in command_problems(line, own)]
    assert problems == [], doc.name


def test_the_command_checker_catches_what_the_old_readme_had():
    assert command_problems("papermill notebooks/05_evaluate.ipynb out.ipynb -p data_dir x") != []
    assert any("needs the environment" in p for p in command_problems("python benchmarks/dedup.py"))
    assert command_problems("make nothing-like-this") == ["make nothing-like-this is not a Makefile target"]
    assert command_problems(".venv/bin/papermill notebooks/01_mads.ipynb out.ipynb -f recipes/paper/01_mads.yaml") == []


@pytest.mark.parametrize("doc", [d for d in DOCS if d.is_file()], ids=lambda d: d.name)
def test_paths_the_docs_mention_exist(doc):
    mentioned = REPO_PATH.findall(doc.read_text(encoding="utf-8"))  # "NN" stands for a chapter number
    missing = [p for p in mentioned if not any(REPO_ROOT.glob(p.rstrip("/").replace("NN", "[0-9][0-9]")))]
    assert missing == [], doc.name


@pytest.mark.slow
@pytest.mark.parametrize("doc, source", blocks("python"), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_python_snippets_run(doc, source, tmp_path):
    """Each Python snippet of the docs, run as a reader would paste it (the embedded model, in a fresh process)."""
    script = tmp_path / "snippet.py"
    script.write_text(source, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{doc.name}: {done.stderr[-2000:]}"


def environment_variables() -> dict[str, list[str]]:
    """The environment variables the code reads (string constants named like one), with the files that name them."""
    found: dict[str, list[str]] = {}
    for root in ("ec2er_utils", "colab", "tools"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        re.fullmatch(r"(EC2ER|EMOBENCH|OPENAI|HF|XDG)_[A-Z0-9_]+", node.value):
                    found.setdefault(node.value, []).append(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = environment_variables()
    assert {"EC2ER_DATA_DIR", "HF_TOKEN", "OPENAI_API_KEY"} <= set(variables)  # the scan sees them
    assert {name: files for name, files in variables.items() if not re.search(rf"\b{name}\b", table)} == {}


def test_every_module_of_the_package_is_named_in_the_layout_or_the_architecture():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    named = readme.split("## Layout", 1)[1].split("\n## ", 1)[0] + (REPO_ROOT / "ARCHITECTURE.md").read_text()
    modules = [p for p in sorted((REPO_ROOT / "ec2er_utils").rglob("*.py")) if p.stem != "__init__"]
    assert len(modules) > 50
    assert [str(p.relative_to(REPO_ROOT)) for p in modules if not re.search(rf"\b{p.stem}\b", named)] == []
