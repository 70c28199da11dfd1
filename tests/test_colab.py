"""The Colab Pro+ path (issue 7): launcher notebook structure, bootstrap cell, GPU check, vLLM start/wait/stop against
a stand-in server, papermill parameter filtering, and the README's "Open in Colab" badge table."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nbformat
import pytest

from colab import runtime
from colab.runtime import ServerStartError
from ec2er_utils.notebooks import NOTEBOOKS_DIR, numbered_notebooks
from ec2er_utils.paths import REPO_ROOT
from tests.helpers import write_notebook
from tools import colab_cells
from tools.local_server import free_loopback_port
from tools.notebook_conventions import convention_problems

LAUNCHER = REPO_ROOT / "colab" / "ec2er_colab.ipynb"


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


# --------------------------------------------------------------------------------------------------------------
# The launcher and the bootstrap cell


def test_launcher_is_a_valid_notebook_with_one_parameters_cell_and_no_outputs():
    notebook = nbformat.read(LAUNCHER, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    cells = notebook.cells
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c.cell_type == "code")
    assert convention_problems(LAUNCHER) == []  # also: every code cell introduced by markdown
    assert code_cells(LAUNCHER)[0].source == colab_cells.bootstrap_source()  # the first cell installs the package
    assert "parameters" in code_cells(LAUNCHER)[1].metadata.get("tags", [])


@pytest.mark.parametrize("path", [LAUNCHER, NOTEBOOKS_DIR / "06_figures.ipynb"], ids=lambda p: p.name)
def test_papermill_reads_every_parameter_of_the_notebooks_of_this_issue(path):
    import papermill

    assert set(papermill.inspect_notebook(str(path))) == set(runtime.assigned_parameters(path))


@pytest.mark.parametrize("path", numbered_notebooks(), ids=lambda p: p.name)
def test_every_numbered_notebook_opens_in_colab_with_the_bootstrap_cell(path):
    first = code_cells(path)[0]
    assert first.source == colab_cells.bootstrap_source(), (
        f"{path.name}: the first code cell must be the Colab bootstrap cell (python -m tools.colab_cells bootstrap), "
        "introduced by a markdown cell")


def test_launcher_stops_at_the_gpu_check_on_a_machine_without_gpu(tmp_path):
    import papermill

    if runtime.gpu_report()["available"]:
        pytest.skip("this machine has a GPU")
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(LAUNCHER), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   cwd=str(LAUNCHER.parent), progress_bar=False)
    assert "GPUUnavailableError" in str(failure.value) and "A100" in str(failure.value)
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    assert not any("drive" in "".join(c.get("source", "")) and c.get("outputs") for c in executed["cells"]
                   if c["cell_type"] == "code")  # stopped before mounting Drive


def test_bootstrap_does_nothing_outside_colab(tmp_path):
    result = subprocess.run([sys.executable, "-c", colab_cells.bootstrap_source() + "\nprint(os.getcwd())"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path)


def run_bootstrap_in_fake_colab(monkeypatch, source: str, calls: list, *, real_git: bool = False,
                                clone_makes: Path | None = None) -> None:
    """Execute the bootstrap cell as Colab would (``google.colab`` imported), recording every command and the
    install; nothing is installed. git runs for real with ``real_git``, else a successful clone creates
    ``clone_makes/notebooks``."""
    from colab import install

    real_run = subprocess.run

    def recording_run(command, **options):
        calls.append(command)
        if command[0] == "git" and real_git:
            return real_run(command, **options)
        (clone_makes / "notebooks").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0, "", "")

    def recording_install_once(repo_dir, **options):
        marker = install.marker_path(repo_dir)
        if marker.exists():
            return False
        calls.append(["install_once", str(repo_dir)])
        marker.write_text("installed\n")
        return True

    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setattr(subprocess, "run", recording_run)
    monkeypatch.setattr(install, "install_once", recording_install_once)
    exec(compile(source, "bootstrap", "exec"), {})


def test_bootstrap_in_colab_clones_and_installs_once_then_only_imports(tmp_path, monkeypatch):
    repo_dir = tmp_path / "ec2er"
    calls = []
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    source = colab_cells.bootstrap_source("https://github.com/someone/fork", branch="dev", repo_dir=str(repo_dir))
    run_bootstrap_in_fake_colab(monkeypatch, source, calls, clone_makes=repo_dir)
    assert calls == [
        ["git", "clone", "--depth", "1", "--branch", "dev", "https://github.com/someone/fork", str(repo_dir)],
        ["install_once", str(repo_dir)]]
    assert sys.path[0] == str(repo_dir) and Path.cwd() == repo_dir / "notebooks"
    run_bootstrap_in_fake_colab(monkeypatch, source, calls)  # a second run in the same runtime installs nothing
    assert len(calls) == 2 and sys.path.count(str(repo_dir)) == 1


def test_bootstrap_stops_with_what_to_do_when_the_clone_fails_then_installs_from_a_copy(tmp_path, monkeypatch):
    """A real ``git clone`` of a repository that does not exist: the cell stops before installing anything and says
    what to set and how to install from Google Drive or an uploaded zip; with a copy in place it installs that."""
    repo_dir = tmp_path / "ec2er"
    missing = (tmp_path / "no-such-repository").as_uri()
    calls = []
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    source = colab_cells.bootstrap_source(missing, repo_dir=str(repo_dir))
    with pytest.raises(RuntimeError) as failure:
        run_bootstrap_in_fake_colab(monkeypatch, source, calls, real_git=True)
    message = str(failure.value)
    assert f"Cannot clone {missing} (branch main): " in message and "does not appear to be a git repository" in message
    assert "set REPOSITORY at the top of this cell" in message
    assert "python -m tools.colab_cells badges --repo OWNER/NAME --write README.md" in message
    assert f"put a copy of the repository at {repo_dir}" in message and "installed from there" in message
    assert f"drive.mount('/content/drive'), then !ln -s /content/drive/MyDrive/ec2er {repo_dir}" in message
    assert "!unzip -q ec2er.zip -d /content" in message
    assert [command[0] for command in calls] == ["git"] and not repo_dir.exists()
    assert not Path(f"{repo_dir}.installed").exists()

    (repo_dir / "notebooks").mkdir(parents=True)  # the copy from Drive or the zip
    run_bootstrap_in_fake_colab(monkeypatch, source, calls)
    assert calls[1:] == [["install_once", str(repo_dir)]]
    assert Path.cwd() == repo_dir / "notebooks"


def test_the_bootstrap_cell_puts_the_clone_first_and_installs_with_its_install_module():
    """What the cell calls once the clone is there, first on sys.path: the pinned install that keeps Colab's own
    packages."""
    source = colab_cells.bootstrap_source()
    assert "from colab import install" in source and "install.install_once(REPO_DIR)" in source
    assert source.index("sys.path[:] = [REPO_DIR]") < source.index("from colab import install")
    assert "pip" not in source.replace("pip's", "")  # no unpinned pip install of its own


# --------------------------------------------------------------------------------------------------------------
# GPU, storage, secrets


def fake_nvidia_smi(folder: Path, output: str, code: int = 0) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\nexit {code}\n")
    script.chmod(0o755)


def test_gpu_report_and_require_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(runtime.GPUUnavailableError, match=r"No NVIDIA GPU .*nvidia-smi not found.*A100"):
        runtime.require_gpu()
    fake_nvidia_smi(tmp_path, "NVIDIA A100-SXM4-40GB, 40960, 550.54.15\n")
    report = runtime.require_gpu(30)
    assert report["gpus"] == [{"name": "NVIDIA A100-SXM4-40GB", "memory_gb": 40.0, "driver": "550.54.15"}]
    with pytest.raises(runtime.GPUUnavailableError, match=r"40.0 GB .*needs >= 50"):
        runtime.require_gpu(50)
    fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver", 9)
    assert runtime.gpu_report()["available"] is False
    with pytest.raises(runtime.GPUUnavailableError, match="exited with 9"):
        runtime.require_gpu()


def test_use_storage_moves_data_runs_and_results(tmp_path, monkeypatch):
    from ec2er_utils import paths

    for variable in ("EC2ER_DATA_DIR", "EC2ER_RUNS_DIR", "EC2ER_RESULTS_DIR"):
        monkeypatch.delenv(variable, raising=False)
    folders = runtime.use_storage(tmp_path / "drive")
    assert (paths.data_dir(), paths.runs_dir(), paths.results_dir()) == (
        tmp_path / "drive" / "data", tmp_path / "drive" / "runs", tmp_path / "drive" / "results")
    assert all(folder.is_dir() for folder in folders.values())


def test_hf_token_only_from_the_environment_outside_colab(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert runtime.hf_token_from_colab_secrets() is False
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert runtime.hf_token_from_colab_secrets() is True
    with pytest.raises(RuntimeError, match="Colab only"):
        runtime.mount_drive()


# --------------------------------------------------------------------------------------------------------------
# Servers


class ModelsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": "openai/gpt-oss-20b", "object": "model"}]}).encode()
            self.send_response(200)
        else:
            body, _ = b"{}", self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_wait_for_server_waits_until_the_server_answers():
    port = free_loopback_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), ModelsHandler)
    starter = threading.Timer(1.0, server.serve_forever)  # not listening yet when the wait begins
    starter.start()
    try:
        started = time.monotonic()
        models = runtime.wait_for_server(f"http://127.0.0.1:{port}/v1", timeout=30, interval=0.2)
        assert models == ["openai/gpt-oss-20b"] and time.monotonic() - started >= 0.9
    finally:
        server.shutdown()
        server.server_close()
        starter.join()


def test_wait_for_server_times_out_and_notices_a_dead_process(tmp_path):
    url = f"http://127.0.0.1:{free_loopback_port()}/v1"
    started = time.monotonic()
    with pytest.raises(runtime.ServerTimeoutError, match="did not answer within 1s"):
        runtime.wait_for_server(url, timeout=1, interval=0.2)
    assert time.monotonic() - started < 5
    log = tmp_path / "server.log"
    log.write_text("CUDA out of memory\n")
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(ServerStartError, match=r"exited with code 3(.|\n)*CUDA out of memory"):
        runtime.wait_for_server(url, timeout=30, process=dead, log_path=log, interval=0.2)


FAKE_VLLM = '''#!{python}
"""Stands in for the vllm command: "vllm serve MODEL --host H --port P ..." answers /v1/models with MODEL."""
import http.server, json, sys
args = sys.argv[1:]
model, host, port = args[1], args[args.index("--host") + 1], int(args[args.index("--port") + 1])
print("fake vllm serving", model, flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"data": [{{"id": model}}]}}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer((host, port), Handler).serve_forever()
'''


def test_start_vllm_server_runs_in_the_background_and_stops(tmp_path):
    executable = tmp_path / "vllm"
    executable.write_text(FAKE_VLLM.format(python=sys.executable))
    executable.chmod(0o755)
    port = free_loopback_port()
    log = tmp_path / "logs" / "vllm.log"
    process = runtime.start_vllm_server(port=port, log_path=log, executable=executable)
    try:
        assert runtime.wait_for_server(f"http://127.0.0.1:{port}/v1", timeout=60, process=process, log_path=log,
                                       interval=0.2) == ["openai/gpt-oss-20b"]
    finally:
        code = runtime.stop_server(process, grace_s=10)
    assert process.poll() is not None and code is not None
    text = log.read_text()
    assert f"serve openai/gpt-oss-20b --host 127.0.0.1 --port {port} --gpu-memory-utilization 0.85 " \
           "--max-model-len 16384" in text
    assert "fake vllm serving openai/gpt-oss-20b" in text


def test_vllm_command_needs_vllm_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("EC2ER_CACHE_DIR", str(tmp_path / "cache"))  # no vLLM venv there
    if (Path(sys.executable).parent / "vllm").exists():
        pytest.skip("vllm is installed here")
    with pytest.raises(FileNotFoundError, match=r"ensure_vllm_venv\(\) \(python -m colab.launch does it\)"):
        runtime.vllm_command()
    assert runtime.vllm_command("m", port=9, max_model_len=None, extra_args=["--x"], executable="v") == [
        "v", "serve", "m", "--host", "127.0.0.1", "--port", "9", "--gpu-memory-utilization", "0.85", "--x"]


# --------------------------------------------------------------------------------------------------------------
# Chapters with papermill


def test_chapter_parameters_keeps_only_declared_names(tmp_path):
    notebook = write_notebook(tmp_path / "00_x.ipynb", 'alpha = 1  # a number\nlabel = ""  # "" = none (papermill '
                              "cannot parse this line)\n", "print(alpha, label)")
    wanted = {"alpha": 2, "label": "x", "not_a_parameter": 3}
    assert runtime.chapter_parameters(notebook, wanted) == {"alpha": 2, "label": "x"}


def test_run_chapters_gives_each_notebook_its_own_parameters(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_first.ipynb", "size = 1  # how many",
                   "open('first.txt', 'w').write(str(size))")
    write_notebook(folder / "01_second.ipynb", "name = 'a'  # who",
                   "open('second.txt', 'w').write(name + str('size' in globals()))")
    parameters = {"00": {"size": 7, "name": "ignored"}, "01": {"name": "b", "size": 9}}
    executed = runtime.run_chapters("0 1", parameters, tmp_path / "out", notebooks_dir=folder)
    assert [p.name for p in executed] == ["00_first.ipynb", "01_second.ipynb"]
    assert (folder / "first.txt").read_text() == "7"
    assert (folder / "second.txt").read_text() == "bFalse"  # 'size' was not injected into the second notebook
    printed = capsys.readouterr().out
    assert "00_first.ipynb: parameters {'size': 7}; not parameters of this notebook, not passed: name" in printed
    with pytest.raises(FileNotFoundError, match="chapter.s. 05 .*available: 00, 01"):
        runtime.select_chapters(["05"], folder)


def test_paper_parameters_are_the_recipes_plus_this_launch_and_declared_by_the_real_notebooks(tmp_path):
    from colab.recipes import load_recipe

    parameters = runtime.paper_parameters("qwen", base_url="http://127.0.0.1:8123/v1", run_id="colab-1",
                                          runs_root=tmp_path, figures_dir="/drive/figures",
                                          extra={"1": {"max_turns": 10}})
    assert parameters["05"]["adapter"] == str(tmp_path / "qwen" / "colab-1" / "adapter")
    assert parameters["04"]["run_id"] == "colab-1" and parameters["04"]["model"] == "qwen"
    assert parameters["01"]["max_turns"] == 10 and parameters["01"]["base_url"] == "http://127.0.0.1:8123/v1"
    paper = load_recipe("paper", "01")
    assert parameters["01"]["generator_model"] == paper["generator_model"] == "openai/gpt-oss-20b"
    assert {k: v for k, v in parameters["02"].items() if k != "base_url"} == \
        {k: v for k, v in load_recipe("paper", "02").items() if k != "base_url"}
    assert parameters["03"] == dict(load_recipe("paper", "03"), judge_base_url="http://127.0.0.1:8123/v1")
    assert parameters["03"]["judge_backend"] == "openai", "03's judge asks the same server"
    assert runtime.vllm_command(executable="/bin/vllm")[2] == paper["generator_model"]
    available = {path.name[:2]: path for path in numbered_notebooks()}
    for chapter, wanted in parameters.items():
        if chapter in available:  # nothing the launcher asks for may be dropped by the real notebooks
            assert runtime.chapter_parameters(available[chapter], wanted) == wanted, chapter
    with pytest.raises(ValueError, match="model must be one of"):
        runtime.paper_parameters("gpt2", base_url="u", run_id="r")


# --------------------------------------------------------------------------------------------------------------
# README badges


def test_badge_table_links_every_notebook_to_colab():
    table = colab_cells.badge_table(repo="owner/repo", branch="dev")
    rows = table.splitlines()[2:]
    notebooks = [p.as_posix() for p in colab_cells.badge_notebooks()]
    assert "colab/ec2er_colab.ipynb" in notebooks and "notebooks/06_figures.ipynb" in notebooks
    assert len(rows) == len(notebooks)
    for row, path in zip(rows, notebooks, strict=True):
        assert f"[`{path}`]({path})" in row
        assert f"(https://colab.research.google.com/github/owner/repo/blob/dev/{path})" in row
        assert (REPO_ROOT / path).is_file()


def test_readme_badge_table_is_current_and_its_paths_exist():
    table = colab_cells.readme_badge_table(REPO_ROOT / "README.md")
    assert table is not None, ("README.md has no Colab badge block: paste the output of "
                               "`python -m tools.colab_cells badges` into it")
    assert table == colab_cells.badge_table(), "README's Colab badges are stale: python -m tools.colab_cells badges " \
                                         "--write README.md"
    for path in re.findall(r"\]\(((?:notebooks|colab)/[^)]+\.ipynb)\)", table):
        assert (REPO_ROOT / path).is_file(), path


def test_update_readme_badges_replaces_only_the_block(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project.urls]\nRepository = "https://github.com/owner/repo"\n')
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_a.ipynb").write_text("{}")
    readme = tmp_path / "README.md"
    readme.write_text(textwrap.dedent(f"""\
        # Title
        {colab_cells.BADGES_START}
        | old |
        {colab_cells.BADGES_END}
        after
        """))
    assert colab_cells.update_readme_badges(readme) is True
    text = readme.read_text()
    assert text.startswith("# Title\n") and text.endswith("after\n") and "| old |" not in text
    assert colab_cells.readme_badge_table(readme) == colab_cells.badge_table(root=tmp_path)
    assert "(https://colab.research.google.com/github/owner/repo/blob/main/notebooks/00_a.ipynb)" in text
    assert colab_cells.update_readme_badges(readme) is False
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- colab-badges:start -->"):
        colab_cells.update_readme_badges(readme)


def test_command_line_prints_the_block_and_the_bootstrap_cell(capsys):
    assert colab_cells.main(["badges"]) == 0
    assert capsys.readouterr().out.strip() == colab_cells.badge_block()
    assert colab_cells.main(["bootstrap"]) == 0
    assert capsys.readouterr().out.strip() == colab_cells.bootstrap_source()


def test_add_bootstrap_cells_puts_the_cell_after_the_introduction_once(tmp_path):
    import papermill

    for source in [*numbered_notebooks(), LAUNCHER]:
        copy = tmp_path / source.name
        notebook = nbformat.read(source, as_version=4)
        notebook.cells = [c for c in notebook.cells if not colab_cells.is_bootstrap_cell(c)
                          and not c.source.startswith(colab_cells.BOOTSTRAP_NOTE_START)]  # as before the cell existed
        nbformat.write(notebook, copy)
        parameters_before = papermill.inspect_notebook(str(copy))
        assert colab_cells.add_bootstrap_cells(copy) is True
        cells = nbformat.read(copy, as_version=4).cells
        assert cells[0].source == notebook.cells[0].source  # the introduction stays first
        assert cells[1].source == colab_cells.BOOTSTRAP_MARKDOWN and cells[2].source == colab_cells.bootstrap_source()
        assert convention_problems(copy) == []
        assert papermill.inspect_notebook(str(copy)) == parameters_before
        assert colab_cells.add_bootstrap_cells(copy) is False  # idempotent
        assert nbformat.read(copy, as_version=4).cells == cells


# --------------------------------------------------------------------------------------------------------------
# Where the repository lives: one setting in pyproject.toml


def test_readme_badges_bootstrap_cells_and_pyproject_agree():
    repo = colab_cells.configured_repo()
    url = f"https://github.com/{repo}"
    assert colab_cells.readme_badge_table(REPO_ROOT / "README.md") == colab_cells.badge_table(repo)
    assert f"(https://colab.research.google.com/github/{repo}/blob/main/colab/ec2er_colab.ipynb)" in \
        colab_cells.badge_table()
    for relative in colab_cells.badge_notebooks():
        path = REPO_ROOT / relative
        assert colab_cells.notebook_repository_urls(path) == {url}, relative
        assert code_cells(path)[0].source == colab_cells.bootstrap_source(url), relative
        assert "<this repository>" not in path.read_text(encoding="utf-8"), relative
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m tools.colab_cells badges --repo OWNER/NAME --write README.md" in readme.replace("\n", " ")


def copy_of_the_repository_files(target: Path) -> Path:
    """pyproject.toml, README.md and the notebooks: what the repository setting touches."""
    import shutil

    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, target / name)
    for folder in colab_cells.NOTEBOOK_FOLDERS:
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=shutil.ignore_patterns("*.md"))
    return target


def test_a_fork_sets_its_repository_everywhere_with_one_command(tmp_path, capsys):
    import tomllib

    root = copy_of_the_repository_files(tmp_path / "fork")
    old_url = f"https://github.com/{colab_cells.configured_repo()}"
    assert colab_cells.main(["badges", "--repo", "someone/ec2er-fork", "--write", str(root / "README.md")]) == 0
    printed = capsys.readouterr().out
    assert "repository: https://github.com/someone/ec2er-fork" in printed and "updated" in printed
    urls = tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == "https://github.com/someone/ec2er-fork"
    assert urls["Paper"] == "https://arxiv.org/abs/2601.01407"  # the other URLs are left alone
    table = colab_cells.readme_badge_table(root / "README.md")
    assert table == colab_cells.badge_table("someone/ec2er-fork", root=root) and "/someone/ec2er-fork/blob/" in table
    for relative in colab_cells.badge_notebooks(root):
        path = root / relative
        assert old_url not in path.read_text(encoding="utf-8"), relative  # no mention of the old home is left
        assert colab_cells.notebook_repository_urls(path) == {"https://github.com/someone/ec2er-fork"}
        assert convention_problems(path) == [], relative
    bootstrap = code_cells(root / "notebooks" / "04_train.ipynb")[0].source
    assert 'REPOSITORY = "https://github.com/someone/ec2er-fork"' in bootstrap
    assert colab_cells.main(["badges", "--write", str(root / "README.md")]) == 0  # from pyproject: nothing to do
    assert "everything already current" in capsys.readouterr().out

    # Edited by hand in pyproject: a plain --write carries it to the README and the notebooks.
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("someone/ec2er-fork", "other/place"))
    assert colab_cells.main(["badges", "--write", str(root / "README.md")]) == 0
    assert "someone/ec2er-fork" not in (root / "notebooks" / "04_train.ipynb").read_text()
    assert "/other/place/blob/" in colab_cells.readme_badge_table(root / "README.md")


def test_the_repository_setting_must_name_a_github_repository(tmp_path, capsys):
    assert colab_cells.github_repo("https://github.com/owner/name.git") == "owner/name"
    with pytest.raises(ValueError, match="not a GitHub repository: 'https://gitlab.com/owner/name'; give OWNER/NAME"):
        colab_cells.github_repo("https://gitlab.com/owner/name")
    with pytest.raises(SystemExit):
        colab_cells.main(["badges", "--repo", "owner name"])
    assert "not a GitHub repository" in capsys.readouterr().err
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n\n[project.urls]\nPaper = "https://arxiv.org"\n\n[tool.x]\na = 1\n')
    with pytest.raises(ValueError, match=r"pyproject.toml: \[project.urls\] has no Repository; add Repository = "):
        colab_cells.configured_repo(tmp_path)
    assert colab_cells.set_configured_repo("owner/name", tmp_path) is True
    assert colab_cells.configured_repo(tmp_path) == "owner/name"
    assert "[tool.x]\na = 1\n" in pyproject.read_text()
    assert colab_cells.set_configured_repo("owner/name", tmp_path) is False


def test_tools_stay_outside_the_installed_package_and_the_notebooks():
    """tools/ imports ec2er_utils, never the reverse; notebooks never import tools; pyproject installs only
    ec2er_utils."""
    import tomllib

    from setuptools import find_packages

    importing_tools = re.compile(r"^\s*(from|import)\s+tools\b", re.MULTILINE)
    for module in (REPO_ROOT / "ec2er_utils").rglob("*.py"):
        assert not importing_tools.search(module.read_text(encoding="utf-8")), module
    for relative in colab_cells.badge_notebooks():
        for cell in code_cells(REPO_ROOT / relative):
            assert not importing_tools.search(cell.source), relative
    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"]
    installed = find_packages(where=str(REPO_ROOT), include=include)
    assert "ec2er_utils" in installed and not any(name.split(".")[0] == "tools" for name in installed)


def test_the_run_machinery_stays_outside_the_learners_package():
    """colab/ (launch, runtime, install, recipes) imports ec2er_utils, never the reverse; a chapter imports it only
    in its Colab bootstrap cell; pyproject does not install it."""
    import tomllib

    from setuptools import find_packages

    importing_colab = re.compile(r"^\s*(from|import)\s+colab\b", re.MULTILINE)
    for module in (REPO_ROOT / "ec2er_utils").rglob("*.py"):
        assert not importing_colab.search(module.read_text(encoding="utf-8")), module
    for path in numbered_notebooks():
        for cell in code_cells(path)[1:]:  # the first is the bootstrap cell
            assert not importing_colab.search(cell.source), path.name
    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"]
    assert not any(name.split(".")[0] == "colab" for name in find_packages(where=str(REPO_ROOT), include=include))


@pytest.mark.slow
def test_launcher_runs_end_to_end_with_a_stand_in_gpu_and_vllm(tmp_path, monkeypatch):
    """Everything after the GPU check on this CPU machine, through the notebook: a stand-in nvidia-smi reports an
    A100 and a stand-in vllm serves scripted replies; chapters 00 (grid personas), 01 (3 dialogues against the
    server) and 06 run for real with papermill, and the server is stopped with its GPU memory released."""
    import papermill

    from tests.fake_vllm import TINY, install_fake_gpu, server_pids

    for name, value in install_fake_gpu(tmp_path / "bin", tmp_path / "gpu").items():
        monkeypatch.setenv(name, value)
    for variable, folder in (("EC2ER_DATA_DIR", "data"), ("EC2ER_RUNS_DIR", "runs"), ("EC2ER_RESULTS_DIR", "results")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    port = free_loopback_port()
    extra = {"00": TINY["00"], "01": TINY["01"], "06": {"figures_dir": str(tmp_path / "figures")}}
    executed = tmp_path / "launcher.ipynb"
    papermill.execute_notebook(str(LAUNCHER), str(executed), kernel_name="python3", cwd=str(LAUNCHER.parent),
                               progress_bar=False, parameters={"models": "smollm2", "chapters": "00 01 06",
                                                               "drive_folder": "", "vllm_port": port,
                                                               "extra_parameters": extra,
                                                               "vllm_command": str(tmp_path / "bin" / "vllm")})
    text = executed.read_text()
    assert "vLLM serves ['openai/gpt-oss-20b']" in text and "its process group is gone" in text
    assert "GPU memory released" in text and server_pids(tmp_path / "gpu") == []
    out_dir = tmp_path / "runs" / "launch" / "paper"
    assert sorted(p.name for p in (out_dir / "notebooks").iterdir()) == [
        "00_personas.ipynb", "01_mads.ipynb", "06_figures.ipynb"]
    assert "fake vllm serving openai/gpt-oss-20b" in (out_dir / "vllm.log").read_text()
    assert len((tmp_path / "data" / "personas" / "personas.jsonl").read_text().splitlines()) == 8
    assert (tmp_path / "data" / "mads" / "eu_items.jsonl").stat().st_size > 0
    assert (tmp_path / "figures" / "pipeline_overview.png").is_file()
    with pytest.raises(runtime.ServerTimeoutError):  # the server was stopped
        runtime.wait_for_server(f"http://127.0.0.1:{port}/v1", timeout=0.5, interval=0.1)


@pytest.mark.parametrize("path", [LAUNCHER, *numbered_notebooks()], ids=lambda p: p.name)
def test_every_notebook_opens_on_a_colab_gpu_runtime(path):
    metadata = nbformat.read(path, as_version=4).metadata
    assert metadata["accelerator"] == "GPU" and metadata["colab"]["gpuType"] == "A100", (
        f"{path.name}: no Colab GPU runtime metadata (python -m tools.colab_cells badges --write README.md adds it)")


def test_gpu_memory_release_waits_for_the_server_processes_and_names_them_on_timeout(tmp_path, monkeypatch):
    from tests.fake_vllm import IDLE_MIB, SERVING_MIB, install_fake_gpu

    for name, value in install_fake_gpu(tmp_path / "bin", tmp_path / "gpu").items():
        monkeypatch.setenv(name, value)
    assert runtime.gpu_memory_used_mib() == [IDLE_MIB]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "gpu" / "server.pid").write_text(f"{holder.pid}\n")
        assert runtime.gpu_memory_used_mib() == [SERVING_MIB]
        with pytest.raises(runtime.GPUMemoryNotReleasedError, match=rf"still in use 1s after .*\[{SERVING_MIB}\] MiB "
                                                                  rf".*{holder.pid}, fake-vllm"):
            runtime.wait_for_gpu_release([IDLE_MIB], timeout=1, interval=0.2)
        threading.Timer(1.0, holder.kill).start()
        assert runtime.wait_for_gpu_release([IDLE_MIB], timeout=30, interval=0.2) == [IDLE_MIB]
    finally:
        holder.kill()
        holder.wait()
    assert runtime.wait_for_gpu_release(None) is None  # no nvidia-smi reading before: nothing to compare


def test_stop_server_ends_the_whole_process_group(tmp_path):
    """vLLM runs its engine in a child process: stopping the server must end it too."""
    script = tmp_path / "server.py"
    script.write_text("import subprocess, sys, time\n"
                      "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
                      "print(child.pid, flush=True)\ntime.sleep(600)\n")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    child = int(process.stdout.readline())
    assert runtime.process_group_members(process.pid) == sorted([process.pid, child])
    assert runtime.stop_server(process, grace_s=10) == -15
    assert runtime.process_group_members(process.pid) == []
