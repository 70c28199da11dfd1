"""The GPU install sets resolve, with pip's own dry run against PyPI (``pip install --dry-run --report``):

- the Colab lock on Colab's Python 3.13 with Colab's installed packages (its published ``pip freeze``) held, and
  what it resolves to is exactly the lock: nothing of Colab's moves but the listed upgrades;
- vLLM's venv lock on Colab's Python 3.13: a complete closure, torch as vLLM pins it, built for Colab's CUDA;
- both on a workstation's Python (this interpreter, its own platform): the package with its GPU extra held to the
  Colab lock and Colab's torch, and vLLM's lock;
- in every resolution, xformers is the build Unsloth pairs with the resolved torch (Unsloth's own table, from its
  metadata), vLLM got the torch it pins, and the versions of torch / transformers / unsloth / vllm / bitsandbytes /
  xformers are printed.

Slow: the four resolutions run side by side, about one to two minutes, most of it waiting for PyPI (pip's cache
makes later runs faster). Skipped, saying why, without PyPI, without ``../shared/colab`` or without a Python 3.13.
Regenerate the locks after a deliberate change with ``python -m tools.colab_lock --write``.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from packaging.version import Version

from colab import install
from colab.install import COLAB_LOCK, VLLM_LOCK
from tools import colab_lock

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
KEY_PACKAGES = ("torch", "transformers", "unsloth", "vllm", "bitsandbytes", "xformers")
STALE = "the lock no longer matches its resolution: regenerate it with python -m tools.colab_lock --write"


def pypi_problem() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=20).close()
    except OSError as err:
        return str(getattr(err, "reason", err))
    return None


@pytest.fixture(scope="module")
def resolved():
    problem = pypi_problem()
    if problem:
        pytest.skip(f"PyPI is unreachable ({problem}): the GPU install sets cannot be resolved here")
    if colab_lock.colab_runtime_dir() is None:
        pytest.skip("../shared/colab/pip-freeze.gpu.txt (Colab's published runtime) is not there")
    python313 = colab_lock.python313()
    if python313 is None:
        pytest.skip("no Python 3.13 (python3.13 on PATH, a pyenv install or $EC2ER_PYTHON313): pip evaluates markers "
                    "for the interpreter it runs in, so Colab's Python 3.13 needs a real one")
    runtime = colab_lock.load_colab_runtime()
    colab_pins, vllm_pins = install.read_lock(COLAB_LOCK), install.read_lock(VLLM_LOCK)

    jobs = {"colab": lambda: colab_lock.resolve_colab(runtime, python313, colab_pins),
            "vllm": lambda: colab_lock.resolve_vllm(python313, vllm_pins),
            "workstation": lambda: colab_lock.resolve_workstation(sys.executable, runtime, colab_pins),
            "workstation-vllm": lambda: colab_lock.resolve_vllm(sys.executable, vllm_pins, platforms=(),
                                                                label="workstation-vllm")}
    started = time.monotonic()
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    print(f"\nresolved in {time.monotonic() - started:.0f}s: " + ", ".join(
        f"{name} {r.seconds:.0f}s (Python {r.python}, {len(r.packages)} packages)" for name, r in results.items()))
    for name, resolution in results.items():
        versions = [f"{k} {resolution.version(k)}" for k in KEY_PACKAGES if resolution.version(k)]
        print(f"{name:>16}: " + ", ".join(versions))
    return runtime, results


def test_the_colab_lock_resolves_on_colabs_python_with_colabs_packages_held_and_is_complete(resolved):
    runtime, results = resolved
    colab = results["colab"]
    assert colab.python.startswith(colab_lock.COLAB_PYTHON + ".")
    assert colab_lock.compatibility_problems(colab, runtime=runtime) == []
    assert colab_lock.lock_entries(colab, runtime) == install.read_lock(COLAB_LOCK), STALE
    for kept in ("torch", "transformers", "ipykernel", "ipython", "ipywidgets", "numpy"):
        assert colab.version(kept) in (None, runtime.version(kept)), f"{kept} must stay Colab's"
    assert colab.version("torch") == runtime.version("torch") == "2.11.0+cu128"
    assert install.lock_runtime(COLAB_LOCK) == dict(part.split("=") for part in
                                                    runtime.runtime_line().split(":", 1)[1].split())


def test_the_vllm_lock_is_a_complete_closure_with_the_torch_vllm_pins_built_for_colabs_cuda(resolved):
    runtime, results = resolved
    vllm = results["vllm"]
    assert colab_lock.lock_entries(vllm) == install.read_lock(VLLM_LOCK), STALE
    assert colab_lock.compatibility_problems(vllm) == [] and colab_lock.vllm_cuda_problems(vllm, runtime) == []
    assert vllm.version("vllm") == colab_lock.VLLM_REQUIREMENT.split("==")[1] and vllm.version("torch") == "2.10.0"


def test_a_workstation_resolves_the_gpu_extra_with_the_same_pins(resolved):
    runtime, results = resolved
    workstation = results["workstation"]
    assert colab_lock.compatibility_problems(workstation) == []
    assert Version(workstation.version("torch")).base_version == Version(runtime.version("torch")).base_version
    lock = install.read_lock(COLAB_LOCK)
    for name in ("unsloth", "xformers", "bitsandbytes", "trl", "datasets"):
        assert workstation.version(name) == lock[name], name
    assert workstation.version("ipykernel") is not None  # a workstation installs ec2er's own Jupyter kernel


def test_a_workstation_resolves_the_vllm_lock(resolved):
    _, results = resolved
    vllm = results["workstation-vllm"]
    assert colab_lock.compatibility_problems(vllm) == []
    lock = install.read_lock(VLLM_LOCK)
    assert all(vllm.version(name) == version for name, version in lock.items() if vllm.version(name) is not None)
    assert vllm.version("vllm") == lock["vllm"] and vllm.version("torch") == lock["torch"]
