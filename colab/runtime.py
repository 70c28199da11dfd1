"""Colab Pro+ (A100) and any GPU machine: the parts the paper's set-up is made of (the order and the resuming are
:mod:`colab.launch`'s, the one command the launcher notebook ``colab/ec2er_colab.ipynb`` runs).

1. :func:`require_gpu` stops early, with what to do, when the runtime has no (or too small a) GPU.
2. :func:`mount_drive` + :func:`use_storage` keep ``data/``, ``runs/`` and ``results/`` on Google Drive (through
   ``EC2ER_DATA_DIR`` / ``EC2ER_RUNS_DIR`` / ``EC2ER_RESULTS_DIR``, read by :mod:`ec2er_utils.paths`), so a
   disconnected runtime loses nothing that was written; :func:`hf_token_from_colab_secrets` exports ``HF_TOKEN``.
3. :func:`ensure_vllm_venv` builds vLLM's own virtual environment from ``requirements/colab-vllm.txt`` (vLLM pins
   its own torch; the torch Unsloth trains with is Colab's), :func:`start_vllm_server` starts ``vllm serve`` from it
   in the background, logging to a file, and :func:`wait_for_server` polls ``/v1/models`` until it answers.
4. :func:`stop_server` ends the server's whole process group and :func:`wait_for_gpu_release` waits until the GPU
   memory it held is free again, so that training does not start beside a dying server.
5. :func:`run_notebook` runs a numbered notebook with papermill. It gets only the parameters its ``parameters``
   cell declares (:func:`chapter_parameters`, via ``papermill.inspect_notebook``): papermill would otherwise
   inject an unknown name silently and the notebook would run with its default instead.

The notebooks' first code cell (clone, then :mod:`colab.install`) and the README's "Open in Colab"
badges are written by the developer tooling, ``python -m tools.colab_cells`` (not part of this package).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ec2er_utils.notebooks import NOTEBOOKS_DIR, numbered_notebooks
from ec2er_utils.paths import cache_dir

from .install import VLLM_LOCK

VLLM_VENV_MARKER = ".ec2er-vllm-lock"  # in vLLM's venv: the sha256 of the lock it was built from
VLLM_VENV_OWNER = ".ec2er-vllm-venv"  # written when the venv is created: a folder this module may rebuild
_NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_CONSTRAINT", "PIP_BUILD_CONSTRAINT",
                  "UV_CONSTRAINT", "UV_BUILD_CONSTRAINT", "UV_OVERRIDE", "UV_SYSTEM_PYTHON", "UV_PYTHON")


class GPUUnavailableError(RuntimeError):
    """No NVIDIA GPU, or one with too little memory, for the paper's set-up."""


class ServerStartError(RuntimeError):
    """A server (vLLM here, ``transformers serve`` in the tests) exited or did not answer in time; the message
    carries its log tail."""


class ServerTimeoutError(ServerStartError, TimeoutError):
    """The server did not answer within the timeout."""


class GPUMemoryNotReleasedError(RuntimeError):
    """After the server stopped, the GPU still holds memory that training would need."""


# --------------------------------------------------------------------------------------------------------------
# Colab, GPU, Drive, secrets


def in_colab() -> bool:
    """True inside a Google Colab runtime (its kernel imports ``google.colab`` at start)."""
    return "google.colab" in sys.modules


def gpu_report() -> dict[str, Any]:
    """The NVIDIA GPUs ``nvidia-smi`` sees: ``{"available", "gpus": [{"name", "memory_gb", "driver"}], "detail"}``."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return {"available": False, "gpus": [], "detail": "nvidia-smi not found: no NVIDIA driver in this runtime"}
    try:
        result = subprocess.run([executable, "--query-gpu=name,memory.total,driver_version",
                                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"available": False, "gpus": [], "detail": f"nvidia-smi failed: {err}"}
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[:500]
        return {"available": False, "gpus": [], "detail": f"nvidia-smi exited with {result.returncode}: {detail}"}
    gpus = []
    for line in result.stdout.strip().splitlines():
        name, memory_mib, driver = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "memory_gb": round(float(memory_mib) / 1024, 1), "driver": driver})
    return {"available": bool(gpus), "gpus": gpus,
            "detail": "; ".join(f"{g['name']} ({g['memory_gb']} GB, driver {g['driver']})" for g in gpus)
            or "nvidia-smi lists no GPU"}


def require_gpu(min_memory_gb: float = 30.0) -> dict[str, Any]:
    """:func:`gpu_report`, or :class:`GPUUnavailableError` saying what to change when there is no GPU with at
    least ``min_memory_gb`` (gpt-oss-20b needs ~16 GB; QLoRA on a 7-8B model ~10-20 GB; an A100 has 40 or 80)."""
    report = gpu_report()
    how = ("In Colab: Runtime > Change runtime type > Hardware accelerator: A100 GPU (Colab Pro+), then run the "
           "notebook again from the top.")
    if not report["available"]:
        raise GPUUnavailableError(f"No NVIDIA GPU in this runtime ({report['detail']}). This launcher runs the "
                                  f"paper's set-up (vLLM + 7B fine-tuning) and needs one. {how} For a CPU run, "
                                  "use `make demo` instead.")
    best = max(report["gpus"], key=lambda g: g["memory_gb"])
    if best["memory_gb"] < min_memory_gb:
        raise GPUUnavailableError(f"The GPU has {best['memory_gb']} GB ({best['name']}); this launcher needs "
                                  f">= {min_memory_gb} GB (parameter min_gpu_memory_gb). {how}")
    return report


def mount_drive(mount_point: str = "/content/drive") -> Path:
    """Mount Google Drive (Colab asks for permission once); outside Colab a clear error."""
    if not in_colab():
        raise RuntimeError("mount_drive works in Colab only; elsewhere pass a local folder to use_storage() "
                           "or leave drive_folder empty")
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(mount_point)
    return Path(mount_point)


def use_storage(root: str | os.PathLike) -> dict[str, Path]:
    """Keep generated files under ``root`` (e.g. a Drive folder): sets ``EC2ER_DATA_DIR``, ``EC2ER_RUNS_DIR`` and
    ``EC2ER_RESULTS_DIR`` for this process and the notebooks it starts; returns the folders (created)."""
    root = Path(root).expanduser()
    folders = {"EC2ER_DATA_DIR": root / "data", "EC2ER_RUNS_DIR": root / "runs",
               "EC2ER_RESULTS_DIR": root / "results"}
    for variable, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(folder)
    return folders


def hf_token_from_colab_secrets(name: str = "HF_TOKEN") -> bool:
    """Export the Colab secret ``name`` as ``HF_TOKEN`` (gemma and llama are gated on the Hub). Returns whether a
    token is set; the token itself is never printed or returned."""
    if os.environ.get("HF_TOKEN"):
        return True
    if not in_colab():
        return False
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        token = userdata.get(name)
    except Exception:  # noqa: BLE001 - secret missing or notebook access not granted: no token
        return False
    if token:
        os.environ["HF_TOKEN"] = token
    return bool(token)


# --------------------------------------------------------------------------------------------------------------
# GPU memory


def _nvidia_smi(*query: str) -> list[str] | None:
    """The lines ``nvidia-smi`` prints for ``query``, or None without a working ``nvidia-smi``."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run([executable, *query, "--format=csv,noheader,nounits"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else None


def gpu_memory_used_mib() -> list[int] | None:
    """Memory in use on each GPU, in MiB (None without ``nvidia-smi``)."""
    lines = _nvidia_smi("--query-gpu=memory.used")
    return [int(float(line)) for line in lines] if lines is not None else None


def gpu_processes() -> list[str]:
    """``pid, process name, MiB`` of every process holding GPU memory."""
    return _nvidia_smi("--query-compute-apps=pid,process_name,used_memory") or []


def wait_for_gpu_release(baseline_mib: Sequence[int] | None, *, tolerance_mib: int = 1024, timeout: float = 180.0,
                         interval: float = 2.0) -> list[int] | None:
    """Wait until every GPU uses no more than it did before the server started (``baseline_mib``) plus
    ``tolerance_mib``; returns the memory in use then. Raises :class:`GPUMemoryNotReleasedError`, naming the processes
    that hold memory, after ``timeout`` seconds. Without ``nvidia-smi`` (or a baseline) there is nothing to check."""
    if baseline_mib is None:
        return None
    deadline = time.monotonic() + timeout
    while True:
        used = gpu_memory_used_mib()
        if used is None or all(u <= b + tolerance_mib for u, b in zip(used, baseline_mib, strict=False)):
            return used
        if time.monotonic() >= deadline:
            holders = "; ".join(gpu_processes()) or "none listed"
            raise GPUMemoryNotReleasedError(
                f"GPU memory still in use {timeout:.0f}s after the server stopped: {used} MiB (before it started: "
                f"{list(baseline_mib)} MiB). Processes holding GPU memory: {holders}. Training would run out of "
                "memory: end those processes (or restart the runtime) and run the launcher again; it continues "
                "where it stopped.")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------------------
# vLLM: its own virtual environment, started as a server subprocess


def default_vllm_venv() -> Path:
    """Where vLLM's virtual environment goes: ``<cache>/vllm-venv`` (Colab: the VM's disk, not Drive)."""
    return cache_dir() / "vllm-venv"


def venv_executable(venv_dir: str | os.PathLike, name: str) -> Path:
    return Path(venv_dir) / "bin" / name


def _lock_digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def isolated_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without what would make another interpreter see this one's packages or
    constraints: ``PYTHONPATH`` (Colab sets one), ``VIRTUAL_ENV``, and pip's and uv's constraint settings (Colab sets
    uv's to its own runtime's pins, which contradict vLLM's)."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    return dict(env, **(extra or {}))


def vllm_venv_commands(venv_dir: str | os.PathLike, lock: str | os.PathLike = VLLM_LOCK, *,
                       python: str = sys.executable, installer: str = "pip") -> list[list[str]]:
    """Create the venv and install the lock into it, binary wheels only: with ``uv`` (what vLLM's docs recommend;
    Colab has it) or with this interpreter's ``venv`` and ``pip --python`` (the venv gets no pip of its own, so
    ``ensurepip``, which Colab's Python lacks, is not needed)."""
    venv_dir, venv_python = str(venv_dir), str(venv_executable(venv_dir, "python"))
    if installer == "uv":
        uv = shutil.which("uv") or "uv"
        return [[uv, "venv", "--python", python, venv_dir],
                [uv, "pip", "install", "--python", venv_python, "--only-binary", ":all:", "-r", str(lock)]]
    if installer == "pip":
        return [[python, "-m", "venv", "--without-pip", venv_dir],
                [python, "-m", "pip", "--python", venv_python, "install", "--only-binary=:all:", "-r", str(lock)]]
    raise ValueError(f"installer must be 'uv' or 'pip', got {installer!r}")


def ensure_vllm_venv(venv_dir: str | os.PathLike | None = None, *, lock: str | os.PathLike = VLLM_LOCK,
                     python: str = sys.executable, installer: str | None = None,
                     runner: Callable[..., tuple[int, list[str]]] | None = None) -> Path:
    """vLLM's virtual environment, built from ``requirements/colab-vllm.txt`` unless it is there already with that
    very lock; returns its ``vllm`` executable. pip's (or uv's) output is shown as it comes. A folder this function
    did not create is never touched."""
    from .install import run_streaming

    venv_dir = Path(venv_dir) if venv_dir is not None else default_vllm_venv()
    lock = Path(lock)
    vllm = venv_executable(venv_dir, "vllm")
    digest = _lock_digest(lock)
    marker, owner = venv_dir / VLLM_VENV_MARKER, venv_dir / VLLM_VENV_OWNER
    if vllm.exists() and marker.is_file() and marker.read_text().strip() == digest:
        return vllm
    if venv_dir.exists() and any(venv_dir.iterdir()):
        if not owner.is_file():
            raise FileExistsError(f"{venv_dir} exists and was not made by ec2er; give another folder (vllm_venv) or "
                                  "remove it")
        print(f"[vllm] rebuilding {venv_dir}: " + ("the lock changed" if marker.is_file() else
                                                    "an earlier build did not finish"), flush=True)
        shutil.rmtree(venv_dir)
    installer = installer or ("uv" if shutil.which("uv") else "pip")
    runner = runner or run_streaming
    env = isolated_environment()
    create, install = vllm_venv_commands(venv_dir, lock, python=python, installer=installer)
    started = time.monotonic()
    for step, command in (("create", create), ("install", install)):
        code, tail = runner(command, env=env)
        if code != 0:
            raise RuntimeError(f"building vLLM's environment failed at {step} (exit {code}): {' '.join(command)}\n"
                               + "\n".join(tail[-15:]))
        if step == "create":
            owner.write_text("made by colab.runtime.ensure_vllm_venv\n")
    if not vllm.exists():
        raise FileNotFoundError(f"{lock} installed into {venv_dir} but {vllm} is not there")
    marker.write_text(digest + "\n")
    print(f"[vllm] environment ready in {time.monotonic() - started:.0f}s: {venv_dir}", flush=True)
    return vllm


def find_vllm(venv_dir: str | os.PathLike | None = None) -> Path | None:
    """The ``vllm`` command: in vLLM's venv (:func:`ensure_vllm_venv`), beside this interpreter, or on ``PATH``."""
    for candidate in (venv_executable(venv_dir or default_vllm_venv(), "vllm"),
                      Path(sys.executable).parent / "vllm"):
        if candidate.exists():
            return candidate
    found = shutil.which("vllm")
    return Path(found) if found else None


def vllm_command(model: str | None = None, *, port: int = 8000, host: str = "127.0.0.1",
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 16384,
                 extra_args: Sequence[str] = (), executable: str | os.PathLike | None = None) -> list[str]:
    """``vllm serve MODEL ...`` (default: the paper's generator, from ``recipes/paper/01_mads.yaml``): loopback only;
    ``max_model_len`` caps the context (our prompts are short) so the KV cache leaves room for many dialogues at
    once. On an A100 vLLM picks the kernels for gpt-oss by itself (Triton attention, Marlin MXFP4 MoE: vLLM's
    gpt-oss recipe)."""
    if model is None:
        from .recipes import load_recipe

        model = load_recipe("paper", "01")["generator_model"]
    executable = executable if executable is not None else find_vllm()
    if executable is None:
        raise FileNotFoundError("the vllm command was not found: build vLLM's environment first with "
                                "colab.runtime.ensure_vllm_venv() (python -m colab.launch does it)")
    command = [str(executable), "serve", model, "--host", host, "--port", str(port),
               "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command + list(extra_args)


def start_vllm_server(model: str | None = None, *, port: int = 8000, log_path: str | os.PathLike = "vllm.log",
                      gpu_memory_utilization: float = 0.85, max_model_len: int | None = 16384,
                      extra_args: Sequence[str] = (), executable: str | os.PathLike | None = None
                      ) -> subprocess.Popen:
    """Start vLLM in the background (its own process group, an environment without this interpreter's
    ``PYTHONPATH``), output appended to ``log_path``; returns at once. Follow with :func:`wait_for_server`; end with
    :func:`stop_server`."""
    command = vllm_command(model, port=port, gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len, extra_args=extra_args, executable=executable)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # a file, not a pipe: a full pipe would stall the server
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=isolated_environment({"PYTHONUNBUFFERED": "1"}))


def log_tail(log_path: str | os.PathLike | None, chars: int = 3000) -> str:
    if log_path is None:
        return ""
    try:
        return "; log tail:\n" + Path(log_path).read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"; (cannot read {log_path}: {err})"


def wait_for_server(base_url: str, timeout: float = 1800.0, *, process: subprocess.Popen | None = None,
                    log_path: str | os.PathLike | None = None, interval: float = 5.0,
                    api_key: str | None = None) -> list[str]:
    """Poll ``GET {base_url}/models`` until the server answers with its model list; returns the model ids.

    Raises :class:`ServerStartError` when ``process`` exits first and
    :class:`ServerTimeoutError` after ``timeout`` seconds, both with the tail of ``log_path``.
    """
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
                models = json.loads(response.read().decode())["data"]
                return [m["id"] for m in models]
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as err:
            last_problem = str(getattr(err, "reason", err))
        if process is not None and process.poll() is not None:
            raise ServerStartError(f"the server process exited with code {process.returncode} before answering "
                                   f"{url}{log_tail(log_path)}")
        if time.monotonic() >= deadline:
            raise ServerTimeoutError(f"{url} did not answer within {timeout:.0f}s (last: {last_problem})"
                                     f"{log_tail(log_path)}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def process_group_members(pgid: int) -> list[int]:
    """Live processes (zombies left out) of process group ``pgid``, read from ``/proc``; where there is no
    ``/proc``, ``[pgid]`` while the group exists."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return sorted(members)


def stop_process_group(pgid: int, grace_s: float = 60.0) -> None:
    """SIGTERM every process of group ``pgid``, SIGKILL what is left after ``grace_s``, and wait until none is left
    (vLLM runs its engine in child processes, which may outlive the server process)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while process_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not process_group_members(pgid):
            return
    raise RuntimeError(f"processes {process_group_members(pgid)} of the server's group {pgid} survived SIGKILL")


def stop_server(process: subprocess.Popen, grace_s: float = 60.0) -> int | None:
    """Stop the group :func:`start_vllm_server` created (nothing else) and every process in it; returns the server
    process's exit code."""
    if process.poll() is None or process_group_members(process.pid):
        stop_process_group(process.pid, grace_s)
    return process.wait(timeout=30)


def use_openai_endpoint(base_url: str) -> None:
    """Point the ``openai`` backend of every notebook started from here at ``base_url`` (vLLM needs no key; the
    client wants one, so a placeholder ``EMPTY`` is set unless a key is already there)."""
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")


# --------------------------------------------------------------------------------------------------------------
# Chapters with papermill


def declared_parameters(notebook: str | os.PathLike) -> set[str]:
    """The names ``notebook``'s ``parameters`` cell declares: what ``papermill.inspect_notebook`` finds, and the
    names assigned in the cell (read with ``ast``), since papermill's inspector skips a line it cannot parse (an
    ``=`` inside the comment does it, with a log message) although injecting that parameter works."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook))) | set(assigned_parameters(Path(notebook)))


def chapter_parameters(notebook: str | os.PathLike, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``wanted`` that ``notebook``'s ``parameters`` cell declares (:func:`declared_parameters`);
    the rest are left out, since papermill would inject them silently as unused variables."""
    declared = declared_parameters(notebook)
    return {name: value for name, value in wanted.items() if name in declared}


def assigned_parameters(notebook: Path) -> dict[str, str]:
    """Names assigned at the top level of the ``parameters`` cell, with their source line."""
    import ast

    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = next(("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
                   if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = lines[node.lineno - 1].strip()
    return found


def paper_parameters(model: str, *, base_url: str, run_id: str, runs_root: str | os.PathLike | None = None,
                     figures_dir: str | None = None, extra: Mapping[str, Mapping[str, Any]] | None = None,
                     ) -> dict[str, dict[str, Any]]:
    """What each chapter is asked to use for the paper's set-up, keyed by chapter number (``"00"``..``"06"``):
    the paper's recipes (``recipes/paper/``), plus what only this launch knows: the vLLM server's address
    (``base_url``, 03's ``judge_base_url``), the ``model`` to fine-tune and evaluate, the ``run_id`` of its training
    run (so chapter 05 evaluates exactly that adapter) and where figures go. ``extra`` overrides or adds per
    chapter, e.g. ``{"01": {"max_turns": 10}}``.
    Names a notebook does not declare are dropped by :func:`chapter_parameters` (and reported by
    :func:`run_chapters`).
    """
    from ec2er_utils.models import ADAPTER_DIR, MODEL_REGISTRY
    from ec2er_utils.paths import runs_dir
    from ec2er_utils.taxonomy import PAPER_MODELS

    from .recipes import load_recipe

    if model not in MODEL_REGISTRY:
        raise ValueError(f"model must be one of {', '.join(MODEL_REGISTRY)} (the paper's: {', '.join(PAPER_MODELS)})"
                         f", got {model!r}")
    adapter = Path(runs_root) if runs_root is not None else runs_dir()
    parameters = {chapter: load_recipe("paper", chapter) for chapter in ("00", "01", "02", "03", "04", "05", "06")}
    for values in parameters.values():
        for key in ("base_url", "judge_base_url"):  # the chapters that call the generator, 03's judge
            if key in values:
                values[key] = base_url
    parameters["04"].update(model=model, run_id=run_id)
    parameters["05"].update(model=model, adapter=str(adapter / model / run_id / ADAPTER_DIR))
    if figures_dir:
        parameters["06"]["figures_dir"] = figures_dir
    for chapter, values in (extra or {}).items():
        parameters.setdefault(str(chapter).zfill(2), {}).update(values)
    return parameters


def select_chapters(chapters: str | Iterable[str], notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks for chapter numbers like ``"00 01 05"`` (or a list), in numeric order; an unknown
    number is an error listing the ones that exist."""
    wanted = [c.zfill(2) for c in (chapters.replace(",", " ").split() if isinstance(chapters, str) else chapters)]
    available = {path.name[:2]: path for path in numbered_notebooks(Path(notebooks_dir))}
    missing = [c for c in wanted if c not in available]
    if missing:
        raise FileNotFoundError(f"no notebook for chapter(s) {', '.join(missing)} in {notebooks_dir}; available: "
                                f"{', '.join(sorted(available)) or 'none'}")
    return [available[c] for c in sorted(set(wanted))]


def run_notebook(notebook: str | os.PathLike, wanted: Mapping[str, Any], target: str | os.PathLike, *,
                 kernel_name: str = "python3", echo: bool = False) -> Path:
    """Execute one notebook with papermill, with the entries of ``wanted`` its ``parameters`` cell declares (the
    rest are printed as not passed); the executed copy goes to ``target``, saved after every cell.

    ``echo`` streams the notebook's output here as it runs (useful for hour-long chapters).
    """
    import papermill

    notebook, target = Path(notebook), Path(target)
    passed = chapter_parameters(notebook, wanted)
    dropped = sorted(set(wanted) - set(passed))
    print(f"[colab] {notebook.name}: parameters {passed}" +
          (f"; not parameters of this notebook, not passed: {', '.join(dropped)}" if dropped else ""), flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    options = {"log_output": True, "stdout_file": sys.stdout, "stderr_file": sys.stderr} if echo else {}
    papermill.execute_notebook(str(notebook), str(target), parameters=passed, kernel_name=kernel_name,
                               cwd=str(notebook.parent), progress_bar=False, **options)
    print(f"[colab] {notebook.name} done in {time.perf_counter() - started:.0f}s -> {target}", flush=True)
    return target


def run_chapters(chapters: str | Iterable[str], parameters: Mapping[str, Mapping[str, Any]],
                 out_dir: str | os.PathLike, *, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                 kernel_name: str = "python3", echo: bool = False) -> list[Path]:
    """Execute the chapters in order (:func:`run_notebook`), each with its declared share of
    ``parameters[chapter]``; executed copies go to ``out_dir``. Stops at the first failing notebook."""
    return [run_notebook(notebook, dict(parameters.get(notebook.name[:2], {})), Path(out_dir) / notebook.name,
                         kernel_name=kernel_name, echo=echo)
            for notebook in select_chapters(chapters, notebooks_dir)]


def run_stamp() -> str:
    """A UTC timestamp for run ids and output folders."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
