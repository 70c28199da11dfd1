"""The one command for the paper's set-up (colab/launch.py): its plan (chapter order, the parameters each
notebook gets, all declared by the real notebooks), and its start / wait / stop / resume logic run for real against a
stand-in ``vllm`` and ``nvidia-smi`` (tests/fake_vllm.py) with papermill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from colab import launch, runtime
from colab.launch import Launch, LaunchError
from colab.recipes import load_recipe
from ec2er_utils.notebooks import numbered_notebooks
from ec2er_utils.taxonomy import PAPER_MODELS
from tests.fake_vllm import IDLE_MIB, TINY, install_fake_gpu, server_pids
from tests.helpers import write_notebook
from tools.local_server import free_loopback_port

PAPER_GENERATOR = load_recipe("paper", "01")["generator_model"]


@pytest.fixture
def storage(tmp_path, monkeypatch):
    """data/, runs/, results/ in a temporary folder (as --storage would set them)."""
    for variable, folder in (("EC2ER_DATA_DIR", "data"), ("EC2ER_RUNS_DIR", "runs"), ("EC2ER_RESULTS_DIR", "results")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    return tmp_path


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    """A stand-in A100 and vllm command first on PATH; returns the vllm command and the state folder."""
    for name, value in install_fake_gpu(tmp_path / "bin", tmp_path / "gpu").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield tmp_path / "bin" / "vllm", tmp_path / "gpu"
    for pid in server_pids(tmp_path / "gpu"):  # never leave a server behind, whatever the test did
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------------------
# The plan


def test_plan_runs_the_chapters_in_order_with_the_papers_recipes_and_one_training_per_model():
    steps = launch.plan(Launch(models=["mistral", "qwen"], port=8123))
    assert [s.id for s in steps] == ["00", "01", "02", "03", "04-mistral", "05-mistral", "04-qwen", "05-qwen", "06"]
    by_id = {s.id: s for s in steps}
    # the recipes with backend: openai (01, 02 generate) and judge_backend: openai (03 judges with the generator)
    assert [s.id for s in steps if s.needs_server] == ["01", "02", "03"]
    for chapter, address in (("01", "base_url"), ("02", "base_url"), ("03", "judge_base_url")):
        expected = dict(load_recipe("paper", chapter), **{address: "http://127.0.0.1:8123/v1"})
        assert by_id[chapter].parameters == expected, "the paper's recipe, only the server's address is ours"
    assert {by_id[c].served_model for c in ("01", "02", "03")} == {PAPER_GENERATOR}
    assert by_id["03"].parameters["judge_model"] == PAPER_GENERATOR, "03's judge is the generator the server serves"
    assert by_id["04-qwen"].parameters["model"] == "qwen" and by_id["05-mistral"].parameters["model"] == "mistral"
    assert launch.generator_of(steps) == PAPER_GENERATOR == "openai/gpt-oss-20b"
    assert [s.id for s in launch.plan(Launch(models=["qwen"], chapters="4,5 6"))] == ["04-qwen", "05-qwen", "06"]


@pytest.mark.parametrize("model", [*PAPER_MODELS, "smollm2"])
def test_every_parameter_the_launcher_passes_is_declared_by_the_notebook(model, storage):
    """Nothing the launcher asks for may be dropped by a notebook: the recipes, the server, the models, and what it
    adds when a step runs (resume, run_id, adapter)."""
    for step in launch.plan(Launch(models=[model], generator="some/model", extra=TINY, storage=str(storage))):
        passed = dict(step.parameters, **{name: None for name in ("resume", "run_id", "adapter")
                                          if step.chapter in {"resume": ("01", "02"), "run_id": ("04",),
                                                              "adapter": ("05",)}[name]})
        declared = runtime.declared_parameters(step.notebook)
        assert set(passed) <= declared, (step.id, sorted(set(passed) - declared))
    steps = launch.plan(Launch(models=[model], generator="some/model"))
    assert {s.id: s.served_model for s in steps if s.needs_server} == dict.fromkeys(("01", "02", "03"), "some/model")
    assert launch.generator_of(steps) == "some/model"


def test_the_server_serves_one_model_so_03s_judge_must_be_the_generator():
    steps = launch.plan(Launch(extra={"03": {"judge_model": "another/judge"}}))
    with pytest.raises(LaunchError, match=r"ask for different models \(01: openai/gpt-oss-20b, 02: openai/gpt-oss-20b, "
                                          r"03: another/judge\).*--generator"):
        launch.generator_of(steps)
    assert launch.generator_of(launch.plan(Launch(extra={"03": {"judge_backend": None}}))) == PAPER_GENERATOR
    assert not launch.plan(Launch(extra={"03": {"judge_backend": "local"}}))[3].needs_server


def test_a_parameter_the_notebook_does_not_have_is_an_error_naming_the_valid_ones():
    with pytest.raises(LaunchError, match=r"01_mads.ipynb has no parameter num_dialogs; its parameters: .*"
                                          r"num_dialogues"):
        launch.plan(Launch(extra={"01": {"num_dialogs": 3}}))
    with pytest.raises(LaunchError, match="chapter 09, which has no notebook"):
        launch.plan(Launch(extra={"9": {"x": 1}}))
    with pytest.raises(LaunchError, match="no chapter 07"):
        launch.plan(Launch(chapters="06 07"))


def test_set_reads_chapter_name_and_a_yaml_value():
    assert launch.parse_set(["01.num_dialogues=20", "1.eu_items=[3, 4]", "04.load_in_4bit=null", "05.language=zh"]) \
        == {"01": {"num_dialogues": 20, "eu_items": [3, 4]}, "04": {"load_in_4bit": None}, "05": {"language": "zh"}}
    with pytest.raises(SystemExit):
        launch.launch_from_args(["--set", "num_dialogues=20"])


def test_pending_is_the_first_step_not_done_with_its_parameters_and_everything_after(storage):
    steps = launch.plan(Launch(models=["smollm2"], extra=TINY))
    state = {"steps": {s.id: {"status": "done", "key": s.key} for s in steps}}
    assert launch.pending(steps, state) == []
    state["steps"]["03"]["status"] = "started"
    assert [s.id for s in launch.pending(steps, state)] == ["03", "04-smollm2", "05-smollm2", "06"]
    state["steps"]["03"]["status"] = "done"
    changed = launch.plan(Launch(models=["smollm2"], extra=dict(TINY, **{"01": dict(TINY["01"], num_dialogues=4)})))
    assert [s.id for s in launch.pending(changed, state)][:2] == ["01", "02"]
    more_models = launch.plan(Launch(models=["smollm2", "qwen"], extra=TINY))
    assert [s.id for s in launch.pending(more_models, state)] == ["04-qwen", "05-qwen", "06"]


# --------------------------------------------------------------------------------------------------------------
# Start, wait, stop, resume: tiny notebooks, real papermill, the stand-in vllm and nvidia-smi


TINY_NOTEBOOKS = {
    "00_personas": ("seed = 0  # seed", "print('personas', seed)"),
    "01_mads": ('backend = "local"  # backend\ngenerator_model = None  # served model\nbase_url = None  # server\n'
                "resume = False  # resume\nnum_dialogues = 2  # how many",
                "import json, os, urllib.request\n"
                "assert backend == 'openai' and os.environ['OPENAI_BASE_URL'] == base_url\n"
                "served = json.load(urllib.request.urlopen(base_url + '/models'))['data'][0]['id']\n"
                "assert served == generator_model, served\n"
                "os.makedirs(os.environ['EC2ER_DATA_DIR'], exist_ok=True)\n"
                "flag = os.path.join(os.environ['EC2ER_DATA_DIR'], 'crash-01')\n"
                "open(os.path.join(os.environ['EC2ER_DATA_DIR'], f'01-resume-{resume}'), 'w').close()\n"
                "if os.path.exists(flag):\n    os.remove(flag)\n    raise RuntimeError('killed mid-run')"),
    "02_concise": ('backend = "local"  # backend\ngenerator_model = None  # served model\nbase_url = None  # server\n'
                   "resume = False  # resume", "import urllib.request; urllib.request.urlopen(base_url + '/models')"),
    "03_preprocess": ('judge_backend = "local"  # judge\njudge_model = None  # judge model\n'
                      "judge_base_url = None  # judge server",
                      "import json, os, urllib.request\n"
                      "try:\n"
                      "    served = json.load(urllib.request.urlopen(judge_base_url + '/models', timeout=5))\n"
                      "    served = served['data'][0]['id']\n"
                      "except OSError:\n"
                      "    served = None\n"
                      "assert served == (judge_model if judge_backend == 'openai' else None), (judge_backend, served)\n"
                      "os.makedirs(os.environ['EC2ER_DATA_DIR'], exist_ok=True)\n"
                      "open(os.path.join(os.environ['EC2ER_DATA_DIR'], f'03-judge-served-{served}'.replace('/', '_')),"
                      " 'w').close()"),
    "04_train": ('model = "smollm2"  # model\nrun_id = None  # run id',
                 "import os, pathlib\n"
                 "pathlib.Path(os.environ['EC2ER_RUNS_DIR'], model, run_id, 'adapter').mkdir(parents=True)"),
    "05_evaluate": ('model = "smollm2"  # model\nadapter = "latest"  # adapter',
                    "import os; assert os.path.isdir(adapter), adapter"),
    "06_figures": ("figures_dir = None  # where", "print('figures')"),
}


def tiny_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (parameters, body) in TINY_NOTEBOOKS.items():
        write_notebook(folder / f"{name}.ipynb", parameters, body)
    return folder


def tiny_launch(tmp_path: Path, vllm: Path, **options) -> Launch:
    return Launch(**dict(dict(models=["smollm2"], name="t", notebooks_dir=tiny_notebooks(tmp_path / "nbs"),
                              port=free_loopback_port(), vllm_executable=str(vllm), server_timeout_s=60,
                              release_timeout_s=30, echo=False), **options))


def server_starts(folder: Path) -> int:
    log = folder / launch.SERVER_LOG
    return log.read_text().count("serve ") if log.is_file() else 0


def test_launch_starts_vllm_for_01_to_03_stops_it_frees_the_gpu_and_resumes_where_it_stopped(tmp_path, storage,
                                                                                              fake_gpu, capsys):
    vllm, gpu_dir = fake_gpu
    settings = tiny_launch(tmp_path, vllm, generator="tiny/generator")
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "crash-01").touch()  # the first run of 01 dies mid-way
    with pytest.raises(Exception, match="killed mid-run"):
        launch.run(settings)
    folder = launch.launch_dir("t")
    state = json.loads((folder / launch.STATE_FILE).read_text())
    assert state["steps"]["00"]["status"] == "done" and state["steps"]["01"]["status"] == "started"
    assert "server" not in state and server_pids(gpu_dir) == []  # the failure stopped the server and its engine
    assert server_starts(folder) == 1 and (tmp_path / "data" / "01-resume-False").exists()
    capsys.readouterr()

    state = launch.run(settings)  # again: 00 is skipped, 01 resumes, the server runs for 01-03 only
    printed = capsys.readouterr().out
    assert "00             done earlier, skipped" in printed
    assert (tmp_path / "data" / "01-resume-True").exists()
    assert all(record["status"] == "done" for record in state["steps"].values())
    assert list(state["steps"]) == ["00", "01", "02", "03", "04-smollm2", "05-smollm2", "06"]
    assert server_starts(folder) == 2 and server_pids(gpu_dir) == []
    assert "its process group is gone" in printed
    assert f"GPU memory released: [{IDLE_MIB}] MiB in use (before vLLM: [{IDLE_MIB}] MiB)" in printed
    assert (tmp_path / "data" / "03-judge-served-tiny_generator").exists(), "03's judge asked the server"
    assert printed.index("03_preprocess.ipynb done") < printed.index("vLLM stopped")  # up through 03's judge
    assert printed.index("GPU memory released") < printed.index("04_train.ipynb: parameters")  # before training
    adapter = Path(state["steps"]["04-smollm2"]["adapter"])
    assert adapter.is_dir() and state["steps"]["05-smollm2"]["parameters"]["adapter"] == str(adapter)
    assert sorted(p.name for p in (folder / "notebooks").iterdir()) == [
        "00_personas.ipynb", "01_mads.ipynb", "02_concise.ipynb", "03_preprocess.ipynb", "04_train-smollm2.ipynb",
        "05_evaluate-smollm2.ipynb", "06_figures.ipynb"]

    launch.run(settings)  # everything done: nothing runs, no server starts
    assert "every step is done" in capsys.readouterr().out and server_starts(folder) == 2

    state = launch.run(tiny_launch(tmp_path, vllm, generator="tiny/generator", models=["smollm2", "qwen"],
                                   port=settings.port))
    assert server_starts(folder) == 2, "a second model needs no generation, so no server"
    assert state["steps"]["04-smollm2"] == json.loads((folder / launch.STATE_FILE).read_text())["steps"]["04-smollm2"]
    assert state["steps"]["05-qwen"]["status"] == "done"
    assert state["steps"]["05-qwen"]["parameters"]["adapter"] == state["steps"]["04-qwen"]["adapter"]
    assert "/qwen/t-" in state["steps"]["04-qwen"]["adapter"]


def test_when_03s_judge_does_not_use_the_server_vllm_is_stopped_after_02(tmp_path, storage, fake_gpu, capsys):
    vllm, gpu_dir = fake_gpu
    state = launch.run(tiny_launch(tmp_path, vllm, generator="tiny/generator", chapters="01 02 03",
                                   extra={"03": {"judge_backend": None}}))
    printed = capsys.readouterr().out
    assert [record["status"] for record in state["steps"].values()] == ["done", "done", "done"]
    assert (tmp_path / "data" / "03-judge-served-None").exists(), "the server was gone when 03 ran"
    assert printed.index("GPU memory released") < printed.index("03_preprocess.ipynb: parameters")
    assert server_starts(launch.launch_dir("t")) == 1 and server_pids(gpu_dir) == []


def test_a_server_that_does_not_answer_is_stopped_and_its_log_tail_shown(tmp_path, storage, fake_gpu, monkeypatch):
    vllm, gpu_dir = fake_gpu
    monkeypatch.setenv("EC2ER_FAKE_VLLM_STARTUP_S", "30")  # loading takes longer than the timeout
    settings = tiny_launch(tmp_path, vllm, generator="tiny/generator", server_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(runtime.ServerTimeoutError, match=r"(?s)did not answer within 2s.*log tail:.*fake vllm serving "
                                                       r"tiny/generator"):
        launch.run(settings)
    assert time.monotonic() - started < 30 and server_pids(gpu_dir) == []
    state = json.loads((launch.launch_dir("t") / launch.STATE_FILE).read_text())
    assert "server" not in state and state["steps"]["00"]["status"] == "done" and "01" not in state["steps"]


def test_a_server_left_running_by_a_crashed_launch_is_stopped_first(tmp_path, storage, fake_gpu):
    vllm, gpu_dir = fake_gpu
    port = free_loopback_port()
    stale = subprocess.Popen([str(vllm), "serve", "tiny/generator", "--host", "127.0.0.1", "--port", str(port)],
                             start_new_session=True, stdout=subprocess.DEVNULL)
    runtime.wait_for_server(f"http://127.0.0.1:{port}/v1", 30, process=stale, interval=0.2)
    folder = launch.launch_dir("t")
    launch.save_state(folder, {"steps": {}, "server": {"pid": stale.pid, "executable": str(vllm),
                                                       "baseline_mib": [IDLE_MIB]}})
    settings = tiny_launch(tmp_path, vllm, generator="tiny/generator", port=port, chapters="00 01")
    state = launch.run(settings)
    assert stale.wait(timeout=10) is not None and server_pids(gpu_dir) == []
    assert state["steps"]["01"]["status"] == "done" and "server" not in state


def test_another_server_on_the_port_is_an_error_not_a_generator(tmp_path, storage, fake_gpu):
    vllm, _ = fake_gpu
    port = free_loopback_port()
    other = subprocess.Popen([str(vllm), "serve", "someone/else", "--host", "127.0.0.1", "--port", str(port)],
                             start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        runtime.wait_for_server(f"http://127.0.0.1:{port}/v1", 30, process=other, interval=0.2)
        with pytest.raises(LaunchError, match=r"already answers .* \(serving \['someone/else'\]\).*--port"):
            launch.run(tiny_launch(tmp_path, vllm, generator="tiny/generator", port=port, chapters="01"))
    finally:
        runtime.stop_server(other, grace_s=5)


def test_the_launch_stops_without_a_gpu(tmp_path, storage, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert launch.main(["--models", "mistral"]) == 1


# --------------------------------------------------------------------------------------------------------------
# vLLM's own virtual environment, built for real (offline, from a local wheel)


def fake_vllm_wheel(folder: Path) -> Path:
    """A wheel named vllm whose ``vllm`` console script prints where it runs from."""
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    dist = "vllm-0.0.1.dist-info"
    files = {"fake_vllm_cli.py": "import sys\ndef main():\n    print('vllm from', sys.prefix)\n",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: vllm\nVersion: 0.0.1\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/entry_points.txt": "[console_scripts]\nvllm = fake_vllm_cli:main\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    path = folder / "vllm-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def test_ensure_vllm_venv_builds_an_isolated_venv_once_per_lock(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    fake_vllm_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "missing-constraints.txt"))  # as Colab's uv settings: dropped
    lock = tmp_path / "colab-vllm.txt"
    lock.write_text("vllm==0.0.1\n")
    venv_dir = tmp_path / "vllm-venv"
    commands = []

    def runner(command, env):
        commands.append(command)
        return run_streaming(command, env=env)

    from colab.install import run_streaming

    vllm = runtime.ensure_vllm_venv(venv_dir, lock=lock, installer="pip", runner=runner)
    assert vllm == venv_dir / "bin" / "vllm" and len(commands) == 2
    assert commands[0] == [sys.executable, "-m", "venv", "--without-pip", str(venv_dir)]
    ran = subprocess.run([str(vllm)], capture_output=True, text=True, env=runtime.isolated_environment())
    assert ran.stdout.strip() == f"vllm from {venv_dir}"
    for module in ("ec2er_utils", "pydantic"):  # on this interpreter's PYTHONPATH, in its site-packages
        isolated = subprocess.run([str(venv_dir / "bin" / "python"), "-c", f"import {module}"], cwd=tmp_path,
                                  env=runtime.isolated_environment(), capture_output=True, text=True)
        assert isolated.returncode != 0, f"the venv must not see this interpreter's {module}"
    assert runtime.ensure_vllm_venv(venv_dir, lock=lock, installer="pip", runner=runner) == vllm
    assert len(commands) == 2  # built once for this lock
    lock.write_text("vllm==0.0.1\n# a new lock\n")
    runtime.ensure_vllm_venv(venv_dir, lock=lock, installer="pip", runner=runner)
    assert len(commands) == 4  # rebuilt for a changed lock
    foreign = tmp_path / "someone-elses"
    (foreign / "bin").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="was not made by ec2er"):
        runtime.ensure_vllm_venv(foreign, lock=lock, installer="pip", runner=runner)


def test_vllm_venv_commands_with_uv_or_pip():
    uv = runtime.vllm_venv_commands("/v", "/r/colab-vllm.txt", python="/py", installer="uv")
    assert uv[0][1:] == ["venv", "--python", "/py", "/v"]
    assert uv[1][1:] == ["pip", "install", "--python", "/v/bin/python", "--only-binary", ":all:", "-r",
                         "/r/colab-vllm.txt"]
    pip = runtime.vllm_venv_commands("/v", "/r/colab-vllm.txt", python="/py", installer="pip")
    assert pip[1] == ["/py", "-m", "pip", "--python", "/v/bin/python", "install", "--only-binary=:all:", "-r",
                      "/r/colab-vllm.txt"]
    with pytest.raises(ValueError, match="installer must be 'uv' or 'pip'"):
        runtime.vllm_venv_commands("/v", installer="conda")


def test_isolated_environment_drops_what_would_leak_into_the_venv(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/env/python")  # Colab sets one
    monkeypatch.setenv("UV_CONSTRAINT", "/backend-container/containers/requirements.constraints")
    monkeypatch.setenv("HF_TOKEN", "kept")
    env = runtime.isolated_environment({"PYTHONUNBUFFERED": "1"})
    assert "PYTHONPATH" not in env and "UV_CONSTRAINT" not in env
    assert env["HF_TOKEN"] == "kept" and env["PYTHONUNBUFFERED"] == "1"


# --------------------------------------------------------------------------------------------------------------
# The real chapters, the paper's recipes at a tiny size, against the stand-in vllm


@pytest.mark.slow
def test_the_paper_set_up_runs_end_to_end_on_the_real_chapters_and_resumes_after_a_failure(tmp_path, storage,
                                                                                          fake_gpu, capsys):
    """00-06 with the paper's recipes (TINY sizes) through papermill: 01 and 02 generate with the stand-in vLLM,
    03 runs the paper's quality gate with its LLM judge on the same server, 04 trains the embedded model for 2 steps,
    05 evaluates its adapter. The first run fails in 03 (a bad parameter): the failure stops the server and frees
    the GPU; the second run starts the server for 03 alone, stops it before 04 and goes on from 03."""
    vllm, gpu_dir = fake_gpu
    extra = dict(TINY, **{"03": {"validation_fraction": 1.5}, "06": {"figures_dir": str(tmp_path / "figures")}})
    settings = Launch(models=["smollm2"], name="e2e", generator="tiny/generator", extra=extra,
                      port=free_loopback_port(), vllm_executable=str(vllm), server_timeout_s=120,
                      release_timeout_s=30)
    with pytest.raises(Exception, match="validation_fraction"):
        launch.run(settings)
    folder = launch.launch_dir("e2e")
    state = json.loads((folder / launch.STATE_FILE).read_text())
    assert [state["steps"][s]["status"] for s in ("00", "01", "02", "03")] == ["done", "done", "done", "started"]
    assert server_starts(folder) == 1 and server_pids(gpu_dir) == [] and "server" not in state
    assert (tmp_path / "data" / "mads" / "eu_items.jsonl").stat().st_size > 0
    capsys.readouterr()

    del extra["03"]
    state = launch.run(Launch(**dict(settings.__dict__, extra=extra)))
    printed = capsys.readouterr().out
    assert all(record["status"] == "done" for record in state["steps"].values())
    assert server_starts(folder) == 2, "00-02 were done: the server starts again for 03's judge only"
    assert server_pids(gpu_dir) == [] and "server" not in state
    assert "01             done earlier, skipped" in printed and "01_mads.ipynb: parameters" not in printed
    assert printed.index("03_preprocess.ipynb done") < printed.index("GPU memory released") < \
        printed.index("04_train.ipynb: parameters")
    report = json.loads((tmp_path / "data" / "processed" / "preprocess_report.json").read_text())
    judge = next(step for step in report["steps"] if step["step"] == "quality judge")
    assert judge["notes"]["model"] == "tiny/generator" and judge["n_out"] == judge["n_in"] > 0, judge["dropped"]
    assert (Path(state["steps"]["04-smollm2"]["adapter"]) / "adapter_config.json").is_file()
    assert list((tmp_path / "results").rglob("*.leaderboard.json"))
    assert (tmp_path / "figures" / "pipeline_overview.png").is_file()
    executed = nbformat.read(folder / "notebooks" / "01_mads.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'base_url = "http://127.0.0.1:' in injected.source
    assert 'generator_model = "tiny/generator"' in injected.source
    assert all(path.name[:2] in {p.name[:2] for p in numbered_notebooks()} for path in (folder / "notebooks").iterdir())


# --------------------------------------------------------------------------------------------------------------
# The GPU smoke test (colab/smoke.py): what can be checked without a GPU


def load_smoke():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ec2er_smoke", Path(runtime.__file__).parent / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_smoke_launch_is_the_papers_command_at_a_tiny_size_with_declared_parameters(tmp_path):
    smoke = load_smoke()
    settings = smoke.smoke_launch(tmp_path, "some/small-model", 8011)
    steps = launch.plan(settings)  # every SMOKE name is a parameter of its notebook, or this raises
    assert [s.id for s in steps] == ["00", "01", "02", "03", "04-smollm2", "05-smollm2", "06"]
    by_id = {s.id: s.parameters for s in steps}
    assert by_id["01"]["num_dialogues"] == 2 and by_id["01"]["generator_model"] == "some/small-model"
    assert by_id["04-smollm2"]["max_steps"] == 5 and by_id["04-smollm2"]["load_in_4bit"] is True
    assert by_id["05-smollm2"]["limit"] == 10 and by_id["05-smollm2"]["language"] == "en"  # 10 EU + 10 EA items
    assert by_id["03"] == dict(load_recipe("paper", "03"), judge_model="some/small-model", judge_min_keep=2,
                               judge_base_url="http://127.0.0.1:8011/v1")  # what is not made tiny is the paper's


def test_the_smoke_test_fails_with_a_table_on_a_machine_without_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert load_smoke().main(["--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL NVIDIA GPU" in out and "No NVIDIA GPU in this runtime" in out
    assert "1 passed, 1 failed" in out  # the GPU row failed; only the time row passed


@pytest.mark.slow
def test_a_stand_in_gpu_does_not_fool_the_smoke_test(tmp_path, fake_gpu, capsys):
    """nvidia-smi says A100, but torch sees no CUDA device: the smoke test fails at that row, before any launch."""
    assert load_smoke().main(["--storage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "PASS NVIDIA GPU" in out and "FAIL CUDA in torch" in out and "no CUDA device" in out
    assert "vLLM's own venv" not in out
