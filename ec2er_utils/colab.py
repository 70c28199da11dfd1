"""Colab Pro+ (A100): what the launcher notebook ``colab/ec2er_colab.ipynb`` calls while it runs.

1. :func:`require_gpu` stops early, with what to do, when the runtime has no (or too small a) GPU.
2. :func:`mount_drive` + :func:`use_storage` keep ``data/``, ``runs/`` and ``results/`` on Google Drive (through
   ``EC2ER_DATA_DIR`` / ``EC2ER_RUNS_DIR`` / ``EC2ER_RESULTS_DIR``, read by :mod:`ec2er_utils.paths`), so a
   disconnected runtime loses nothing that was written; :func:`hf_token_from_colab_secrets` exports ``HF_TOKEN``.
3. :func:`start_vllm_server` starts vLLM's OpenAI-compatible server for the generator (``openai/gpt-oss-20b``) in
   the background, logging to a file; :func:`wait_for_server` polls ``/v1/models`` until it answers.
4. :func:`run_chapters` runs the numbered notebooks with papermill. Each notebook gets only the parameters its
   ``parameters`` cell declares (:func:`chapter_parameters`, via ``papermill.inspect_notebook``): papermill would
   otherwise inject an unknown name silently and the notebook would run with its default instead.

The generator and the fine-tuning share one GPU, so the launcher stops vLLM (:func:`stop_server`) after the
generation chapters (00-02) and before training (04).

The notebooks' first code cell (clone and install in Colab) and the README's "Open in Colab" badges are written by
the developer tooling, ``python -m tools.colab_cells`` (not part of this package).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .notebooks import NOTEBOOKS_DIR, numbered_notebooks

# vLLM runs while these run: 01 and 02 call the generator; 00 (personas, no LLM) comes before them.
GENERATION_CHAPTERS = ("00", "01", "02")


class GPUUnavailableError(RuntimeError):
    """No NVIDIA GPU, or one with too little memory, for the paper's set-up."""


class ServerStartError(RuntimeError):
    """A server (vLLM here, ``transformers serve`` in the tests) exited or did not answer in time; the message
    carries its log tail."""


class ServerTimeoutError(ServerStartError, TimeoutError):
    """The server did not answer within the timeout."""


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
# vLLM


def vllm_command(model: str | None = None, *, port: int = 8000, host: str = "127.0.0.1",
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 16384,
                 extra_args: Sequence[str] = (), executable: str | os.PathLike | None = None) -> list[str]:
    """``vllm serve MODEL ...`` (default: the paper's generator, from ``recipes/paper/01_mads.yaml``): loopback only;
    ``max_model_len`` caps the context (our prompts are short) so the KV cache leaves room for many dialogues at
    once. vLLM picks the A100 kernels for gpt-oss by itself."""
    if model is None:
        from .recipes import load_recipe

        model = load_recipe("paper", "01")["generator_model"]
    if executable is None:
        beside = Path(sys.executable).parent / "vllm"
        executable = str(beside) if beside.exists() else shutil.which("vllm")
    if executable is None:
        raise FileNotFoundError("the vllm command was not found: install the GPU extra (pip install -e '.[gpu]')")
    command = [str(executable), "serve", model, "--host", host, "--port", str(port),
               "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command + list(extra_args)


def start_vllm_server(model: str | None = None, *, port: int = 8000, log_path: str | os.PathLike = "vllm.log",
                      gpu_memory_utilization: float = 0.85, max_model_len: int | None = 16384,
                      extra_args: Sequence[str] = (), executable: str | os.PathLike | None = None
                      ) -> subprocess.Popen:
    """Start vLLM in the background (its own process group), output appended to ``log_path``; returns at once.
    Follow with :func:`wait_for_server`; end with :func:`stop_server`."""
    command = vllm_command(model, port=port, gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len, extra_args=extra_args, executable=executable)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # a file, not a pipe: a full pipe would stall the server
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _log_tail(log_path: str | os.PathLike | None, chars: int = 3000) -> str:
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
                                   f"{url}{_log_tail(log_path)}")
        if time.monotonic() >= deadline:
            raise ServerTimeoutError(f"{url} did not answer within {timeout:.0f}s (last: {last_problem})"
                                     f"{_log_tail(log_path)}")
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


def stop_server(process: subprocess.Popen, grace_s: float = 60.0) -> int | None:
    """SIGTERM the server's process group (vLLM runs its engine in child processes), SIGKILL after ``grace_s``;
    returns the exit code. The group is the one :func:`start_vllm_server` created, nothing else."""
    if process.poll() is not None:
        return process.returncode
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    return process.wait(timeout=30)


def use_openai_endpoint(base_url: str) -> None:
    """Point the ``openai`` backend of every notebook started from here at ``base_url`` (vLLM needs no key; the
    client wants one, so a placeholder ``EMPTY`` is set unless a key is already there)."""
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ.setdefault("OPENAI_API_KEY", "EMPTY")


# --------------------------------------------------------------------------------------------------------------
# Chapters with papermill


def chapter_parameters(notebook: str | os.PathLike, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``wanted`` that ``notebook``'s ``parameters`` cell declares (``papermill.inspect_notebook``);
    the rest are left out, since papermill would inject them silently as unused variables.

    papermill's inspector skips a line it cannot parse (an ``=`` inside the comment does it, with a log message)
    although injecting that parameter works, so the names assigned in the cell (read with ``ast``) count too.
    """
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook))) | set(_assigned_parameters(Path(notebook)))
    return {name: value for name, value in wanted.items() if name in declared}


def _assigned_parameters(notebook: Path) -> dict[str, str]:
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
    the paper's recipes (``recipes/paper/``), plus what only this launch knows: the vLLM server's ``base_url``,
    the ``model`` to fine-tune and evaluate, the ``run_id`` of its training run (so chapter 05 evaluates exactly
    that adapter) and where figures go. ``extra`` overrides or adds per chapter, e.g. ``{"01": {"max_turns": 10}}``.
    Names a notebook does not declare are dropped by :func:`chapter_parameters` (and reported by
    :func:`run_chapters`).
    """
    from .models import ADAPTER_DIR, MODEL_REGISTRY
    from .taxonomy import PAPER_MODELS
    from .paths import runs_dir
    from .recipes import load_recipe

    if model not in MODEL_REGISTRY:
        raise ValueError(f"model must be one of {', '.join(MODEL_REGISTRY)} (the paper's: {', '.join(PAPER_MODELS)})"
                         f", got {model!r}")
    adapter = Path(runs_root) if runs_root is not None else runs_dir()
    parameters = {chapter: load_recipe("paper", chapter) for chapter in ("00", "01", "02", "03", "04", "05", "06")}
    for chapter in GENERATION_CHAPTERS:
        if "base_url" in parameters[chapter]:
            parameters[chapter]["base_url"] = base_url
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


def run_chapters(chapters: str | Iterable[str], parameters: Mapping[str, Mapping[str, Any]],
                 out_dir: str | os.PathLike, *, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
                 kernel_name: str = "python3", echo: bool = False) -> list[Path]:
    """Execute the chapters in order with papermill, each with its declared share of ``parameters[chapter]``;
    executed copies go to ``out_dir`` (saved after every cell). Stops at the first failing notebook.

    ``echo`` streams the notebooks' output here as they run (useful for hour-long chapters).
    """
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for notebook in select_chapters(chapters, notebooks_dir):
        wanted = dict(parameters.get(notebook.name[:2], {}))
        passed = chapter_parameters(notebook, wanted)
        dropped = sorted(set(wanted) - set(passed))
        print(f"[colab] {notebook.name}: parameters {passed}" +
              (f"; not parameters of this notebook, not passed: {', '.join(dropped)}" if dropped else ""), flush=True)
        target = out_dir / notebook.name
        started = time.perf_counter()
        options = {"log_output": True, "stdout_file": sys.stdout, "stderr_file": sys.stderr} if echo else {}
        papermill.execute_notebook(str(notebook), str(target), parameters=passed, kernel_name=kernel_name,
                                   cwd=str(notebook.parent), progress_bar=False, **options)
        print(f"[colab] {notebook.name} done in {time.perf_counter() - started:.0f}s -> {target}", flush=True)
        executed.append(target)
    return executed


def run_stamp() -> str:
    """A UTC timestamp for run ids and output folders."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
