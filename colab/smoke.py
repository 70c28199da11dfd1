"""GPU smoke test: the whole chain of the paper's set-up at a tiny size, on any CUDA GPU, in about ten minutes.

    python colab/smoke.py                      # from the repository root, after the Colab install (or .[gpu])
    python colab/smoke.py --generator Qwen/Qwen2.5-0.5B-Instruct   # a Hub model behind vLLM instead

It runs the very command of the paper's set-up (``colab.launch``) with tiny sizes: the embedded
SmolLM2-135M behind vLLM (its own venv, built from ``requirements/colab-vllm.txt``; no download) for 2 MADS
dialogues and 2 concise conversations and as chapter 03's LLM judge, vLLM stopped and the GPU memory checked,
5 training steps of the embedded model in 4-bit with Unsloth, 20 EmoBench items (10 EU + 10 EA) with the adapter,
the figures. Then it prints a pass/fail table, one row per check, and exits 0 only when every row passed. Files go
to a fresh folder under ``--storage`` (default: a temporary folder), never into an earlier launch's.

What each row proves is in ``colab/README.md`` ("What only a GPU can verify").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `python colab/smoke.py` from a checkout: the repository root goes first on sys.path, so that `colab` is this
# package, and this folder (Python puts a script's folder there) leaves it (its modules are not top-level names).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from colab import launch, runtime  # noqa: E402
from ec2er_utils.models import DEFAULT_MODEL, embedded_checkpoint  # noqa: E402

# Over the paper's recipes: what makes the chain tiny. The generator budgets are for a 135M model, not gpt-oss.
SMOKE = {
    "00": {"persona_source": "grid", "num_personas": 8},
    "01": {"num_dialogues": 2, "quotas": None, "concurrency": 2, "max_turns": 4, "eu_items": [1, 1],
           "ea_items": [1, 1], "background_max_tokens": 200, "turn_max_tokens": 60, "supervisor_max_tokens": 100,
           "item_max_tokens": 500, "top_p": 0.9, "checkpoint_every": 1},
    "02": {"num_samples": 2, "quotas": None, "concurrency": 2, "background_max_tokens": 200, "turn_max_tokens": 60,
           "item_max_tokens": 500, "top_p": 0.9},
    "03": {"judge_min_keep": 2},  # the 135M judge (the generator, on vLLM) rejects almost everything: keep 2
    "04": {"max_steps": 5, "max_eval_questions": 2, "load_in_4bit": True},
    "05": {"limit": 10},
}
STACK_CHECK = r"""
import json, torch
report = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
if report["cuda"]:
    report["device"] = torch.cuda.get_device_name(0)
import unsloth, transformers, bitsandbytes, xformers, trl, peft
report.update({m.__name__: m.__version__ for m in (unsloth, transformers, bitsandbytes, xformers, trl, peft)})
print(json.dumps(report))
"""


class Table:
    """The pass/fail rows, printed as they come and once more at the end."""

    def __init__(self):
        self.rows: list[tuple[str, bool, float, str]] = []

    def add(self, check: str, ok: bool, seconds: float, detail: str) -> bool:
        self.rows.append((check, ok, seconds, detail))
        print(f"[smoke] {'PASS' if ok else 'FAIL'} {check} ({seconds:.0f}s): {detail}", flush=True)
        return ok

    def render(self) -> str:
        width = max(len(row[0]) for row in self.rows)
        lines = [f"{'check':<{width}}  result  seconds  detail", "-" * (width + 40)]
        lines += [f"{check:<{width}}  {'PASS' if ok else 'FAIL':<6}  {seconds:>7.0f}  {detail}"
                  for check, ok, seconds, detail in self.rows]
        passed = sum(ok for _, ok, _, _ in self.rows)
        return "\n".join(lines + [f"{passed} passed, {len(self.rows) - passed} failed"])


def timed(function):
    started = time.monotonic()
    try:
        return function(), None, time.monotonic() - started
    except Exception as err:  # noqa: BLE001 - every failure becomes a FAIL row with its message
        return None, f"{type(err).__name__}: {str(err)[-600:]}", time.monotonic() - started


def check_stack(table: Table) -> bool:
    """torch sees CUDA, and Unsloth, transformers, bitsandbytes, xformers, TRL and PEFT import (a fresh process, so
    this one holds no GPU memory)."""
    result, error, seconds = timed(lambda: subprocess.run([sys.executable, "-c", STACK_CHECK], capture_output=True,
                                                          text=True, timeout=600))
    if error or result.returncode != 0:
        detail = error or (result.stderr.strip().splitlines() or ["no output"])[-1]
        table.add("CUDA in torch", False, seconds, detail)
        return False
    report = json.loads(result.stdout.strip().splitlines()[-1])
    table.add("CUDA in torch", report["cuda"], 0, f"torch {report['torch']}, {report.get('device', 'no CUDA device')}")
    versions = ", ".join(f"{k} {report[k]}" for k in ("unsloth", "transformers", "bitsandbytes", "xformers", "trl",
                                                       "peft"))
    return table.add("training stack imports", report["cuda"], seconds, versions)


def smoke_launch(storage: Path, generator: str | None, port: int) -> launch.Launch:
    """The launch the smoke test runs: the paper's recipes with :data:`SMOKE` on top, one model (the embedded one)."""
    if generator is None:
        generator = str(embedded_checkpoint())  # served under its path: no download
    extra = dict(SMOKE, **{"06": {"figures_dir": str(storage / "figures")}})
    return launch.Launch(models=[DEFAULT_MODEL], name="smoke", storage=str(storage), generator=generator, extra=extra,
                         port=port, gpu_memory_utilization=0.5, max_model_len=4096, vllm_args=["--enforce-eager"],
                         server_timeout_s=900, min_gpu_memory_gb=4)


def step_rows(table: Table, state: dict, storage: Path) -> None:
    """One row per step of the launch, and the rows that read its outputs."""
    for run in state.get("server_runs", []):
        table.add("vLLM started, /v1/models answered", True, run["answered_after_s"], run["model"])
        released = run.get("released_mib")
        table.add("vLLM stopped, GPU memory released", released is not None, 0,
                  f"{released} MiB in use after, {run['baseline_mib']} MiB before vLLM")
    for step, record in state["steps"].items():
        detail = record.get("executed", "") if record["status"] == "done" else "did not finish (see the table's end)"
        table.add(f"chapter {step}", record["status"] == "done", record.get("seconds", 0), detail)
    adapter = Path(state["steps"].get("04-smollm2", {}).get("adapter", storage / "none"))
    table.add("4-bit adapter written", (adapter / "adapter_config.json").is_file(), 0, str(adapter))
    record = adapter.parent / "config.json"  # what chapter 04 wrote about its own run
    trained = json.loads(record.read_text()) if record.is_file() else {}
    path = ", ".join(f"{key} {trained.get(key)}" for key in ("backend", "load_in_4bit", "max_steps"))
    table.add("trained by Unsloth's GPU path in 4-bit", trained.get("backend") == "unsloth-gpu"
              and trained.get("load_in_4bit") is True, 0, path)
    boards = sorted((storage / "results").rglob("*.leaderboard.json"))
    table.add("EmoBench results written", bool(boards), 0, ", ".join(p.name for p in boards) or "none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", help="model vLLM serves (default: the embedded SmolLM2-135M, no download)")
    parser.add_argument("--storage", help="parent folder for this run's files (default: a temporary folder)")
    parser.add_argument("--port", type=int, default=8011)
    args = parser.parse_args(argv)
    parent = Path(args.storage) if args.storage else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    storage = Path(tempfile.mkdtemp(prefix=f"ec2er-smoke-{runtime.run_stamp()}-", dir=parent))
    table = Table()
    started = time.monotonic()
    gpu, error, seconds = timed(lambda: runtime.require_gpu(4))
    if table.add("NVIDIA GPU", gpu is not None, seconds, gpu["detail"] if gpu else error) and check_stack(table):
        _, error, seconds = timed(runtime.ensure_vllm_venv)
        if table.add("vLLM's own venv", error is None, seconds, error or str(runtime.default_vllm_venv())):
            settings = smoke_launch(storage, args.generator, args.port)
            _, error, seconds = timed(lambda: launch.run(settings))
            state = launch.load_state(launch.launch_dir(settings.name))
            step_rows(table, state, storage)
            table.add("launch finished", error is None, seconds, error or f"files in {storage}")
    table.add("under 15 minutes", time.monotonic() - started < 900, time.monotonic() - started, "the whole smoke test")
    print("\n" + table.render(), flush=True)
    return 0 if all(ok for _, ok, _, _ in table.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
