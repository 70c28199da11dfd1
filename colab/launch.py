"""The paper's set-up in one command, on one GPU (a Colab Pro+ A100 or a workstation):

    python -m colab.launch --models mistral qwen --storage /content/drive/MyDrive/ec2er

1. Check the GPU (:func:`colab.runtime.require_gpu`); keep ``data/``, ``runs/``, ``results/`` and ``figures/``
   under ``--storage`` (on Colab a Google Drive folder).
2. Chapters 00-03 with the paper's recipes (``recipes/paper/``). Before the first chapter that uses the server
   (the recipes with ``backend: openai``, 01 and 02, which generate, and ``judge_backend: openai``, 03, whose LLM
   judge is the same model), build vLLM's own virtual environment once (``requirements/colab-vllm.txt``), start
   ``vllm serve`` from it and wait until ``/v1/models`` answers (a timeout, and the server's log tail when it
   fails). After the last of them, stop vLLM and its child processes and wait until the GPU memory it held is free
   again, then go on.
3. For each model: 04 (LoRA fine-tuning), 05 (EmoBench, base model and the adapter 04 just trained); then 06.

Every step is recorded in ``<runs>/launch/<name>/state.json`` when it starts and when it ends. Running the command
again skips the steps that ended with the same parameters and continues with the first one that did not, and with
every step after it (their inputs may have changed): a generation chapter that was cut off resumes from its
checkpoints (``resume=True``); a training run that was cut off resumes from its last checkpoint in the same run
folder; EmoBench resumes by itself; vLLM starts again only when a step that uses it is left. A server that a crashed
earlier launch left running is stopped first. Executed notebooks and ``vllm.log`` go to the same folder.
``--set 01.num_dialogues=20`` changes one parameter of one chapter (a name the notebook does not declare is an
error).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ec2er_utils.jsonl import read_json, write_json_atomic
from ec2er_utils.models import ADAPTER_DIR
from ec2er_utils.notebooks import NOTEBOOKS_DIR, numbered_notebooks
from ec2er_utils.taxonomy import PAPER_MODELS

from . import runtime

STATE_FILE = "state.json"
# Parameters that differ between attempts of one step without changing what it computes.
VOLATILE = ("run_id", "adapter", "resume")
SERVER_LOG = "vllm.log"


class LaunchError(RuntimeError):
    """The launch cannot go on; the message says why and what to do."""


@dataclass
class Launch:
    """Everything one launch is asked to do; :func:`main` builds it from the command line."""

    models: Sequence[str] = ("mistral",)
    name: str = "paper"  # names the state folder: the same name continues the same launch
    storage: str | None = None  # data/, runs/, results/, figures/ go here (Colab: a Drive folder)
    generator: str | None = None  # None: the paper's (recipes/paper/01_mads.yaml)
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # {"01": {"num_dialogues": 20}}
    chapters: str | None = None  # only these chapters, e.g. "04 05 06"; None: all
    port: int = 8000
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = 16384
    vllm_args: Sequence[str] = ()
    server_timeout_s: float = 1800.0  # the first start downloads gpt-oss-20b (about 13 GB)
    release_timeout_s: float = 180.0
    min_gpu_memory_gb: float = 30.0
    vllm_venv: str | None = None  # None: <cache>/vllm-venv
    vllm_executable: str | None = None  # a vllm command to use instead of building the venv
    fresh: bool = False  # forget what earlier runs of this launch did
    notebooks_dir: Path = NOTEBOOKS_DIR
    kernel_name: str = "python3"
    echo: bool = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Step:
    """One notebook run: a chapter, for one model where it trains or evaluates one."""

    id: str  # "00" ... "03", "04-mistral", "05-mistral", "06"
    notebook: Path
    parameters: dict[str, Any]

    @property
    def chapter(self) -> str:
        return self.id[:2]

    @property
    def model(self) -> str | None:
        return self.id[3:] or None

    @property
    def served_model(self) -> str | None:
        """The model this step asks the launch's vLLM server for: the generator (01, 02: ``backend: openai``) or
        the LLM judge (03: ``judge_backend: openai``); None when it does not use the server."""
        if self.parameters.get("backend") == "openai":
            return self.parameters.get("generator_model")
        if self.parameters.get("judge_backend") == "openai":
            return self.parameters.get("judge_model")
        return None

    @property
    def needs_server(self) -> bool:
        return self.parameters.get("backend") == "openai" or self.parameters.get("judge_backend") == "openai"

    @property
    def key(self) -> dict[str, Any]:
        """What decides whether an earlier run of this step still holds: its parameters less :data:`VOLATILE`."""
        return json.loads(json.dumps({k: v for k, v in self.parameters.items() if k not in VOLATILE}, default=str))


def launch_dir(name: str) -> Path:
    from ec2er_utils.paths import runs_dir

    return runs_dir() / "launch" / name


def plan(launch: Launch) -> list[Step]:
    """The steps, in order, with each one's parameters: the paper's recipes, this launch's server and models,
    ``launch.extra`` on top. An ``extra`` name that the chapter's notebook does not declare is an error."""
    if not launch.models:
        raise LaunchError("no model to fine-tune: give at least one (--models mistral)")
    notebooks = {path.name[:2]: path for path in numbered_notebooks(Path(launch.notebooks_dir))}
    extra = {str(chapter).zfill(2): dict(values) for chapter, values in launch.extra.items()}
    for chapter, values in extra.items():
        if chapter not in notebooks:
            raise LaunchError(f"extra parameters for chapter {chapter}, which has no notebook in "
                              f"{launch.notebooks_dir} (chapters: {', '.join(sorted(notebooks))})")
        declared = sorted(runtime.declared_parameters(notebooks[chapter]))
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise LaunchError(f"{notebooks[chapter].name} has no parameter {', '.join(unknown)}; its parameters: "
                              f"{', '.join(declared)}")
    figures_dir = str(Path(launch.storage) / "figures") if launch.storage else None
    per_model = {model: runtime.paper_parameters(model, base_url=launch.base_url, run_id="(set when 04 starts)",
                                                 figures_dir=figures_dir, extra=extra)
                 for model in launch.models}
    first = per_model[launch.models[0]]
    generator = launch.generator
    for values in first.values():  # the server serves one model: the generator, which is also 03's judge
        if values.get("backend") == "openai" and generator:
            values["generator_model"] = generator
        if values.get("judge_backend") == "openai" and generator:
            values["judge_model"] = generator
    steps = [Step(chapter, notebooks[chapter], first[chapter]) for chapter in ("00", "01", "02", "03")]
    for model in launch.models:
        steps += [Step(f"{chapter}-{model}", notebooks[chapter], per_model[model][chapter]) for chapter in ("04", "05")]
    steps.append(Step("06", notebooks["06"], first["06"]))
    if launch.chapters:
        wanted = {c.zfill(2) for c in launch.chapters.replace(",", " ").split()}
        unknown = sorted(wanted - set(notebooks))
        if unknown:
            raise LaunchError(f"no chapter {', '.join(unknown)} (chapters: {', '.join(sorted(notebooks))})")
        steps = [step for step in steps if step.chapter in wanted]
    return steps


def generator_of(steps: Sequence[Step]) -> str | None:
    """The model the server must serve: the one the steps that use it ask for (:attr:`Step.served_model`: 01-02's
    ``generator_model``, 03's ``judge_model``); one server serves one model."""
    asked = {step.id: step.served_model for step in steps if step.needs_server}
    if len(set(asked.values())) > 1:
        raise LaunchError(f"the chapters that use the server ask for different models ("
                          f"{', '.join(f'{step}: {model}' for step, model in asked.items())}); one server serves "
                          "one: set generator_model and 03's judge_model alike (or use --generator, which sets both)")
    return next(iter(asked.values()), None)


# --------------------------------------------------------------------------------------------------------------
# State


def load_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.is_file():
        return {"steps": {}}
    try:
        state = read_json(path)
    except ValueError as err:
        raise LaunchError(f"{path} is damaged ({err}); move it away (or pass --fresh) to start this launch over") \
            from None
    state.setdefault("steps", {})
    return state


def save_state(folder: Path, state: Mapping[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / STATE_FILE, state)


def pending(steps: Sequence[Step], state: Mapping[str, Any]) -> list[Step]:
    """The first step that did not end with its current parameters, and every step after it."""
    for index, step in enumerate(steps):
        record = state["steps"].get(step.id, {})
        if record.get("status") != "done" or record.get("key") != step.key:
            return list(steps[index:])
    return []


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------------------
# Server


class Server:
    """vLLM for the chapters that use it (01-02 generate, 03 judges): started once, stopped after the last of
    them, the GPU memory checked."""

    def __init__(self, launch: Launch, folder: Path, state: dict[str, Any], save):
        self.launch, self.folder, self.state, self.save = launch, folder, state, save
        self.process = None
        self.baseline_mib = None

    def stop_stale(self) -> None:
        """Stop the server a crashed earlier run of this launch left running (its process group, if it is still
        the vllm command it recorded), and wait for its GPU memory."""
        stale = self.state.get("server")
        if not stale:
            return
        pid = int(stale["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        if runtime.process_group_members(pid) and stale["executable"] in cmdline:
            print(f"[launch] stopping the server an earlier run left running (pid {pid})", flush=True)
            runtime.stop_process_group(pid, grace_s=60)
            runtime.wait_for_gpu_release(stale.get("baseline_mib"), timeout=self.launch.release_timeout_s)
        self.state.pop("server", None)
        self.save()

    def start(self, model: str) -> None:
        launch = self.launch
        try:
            answering = runtime.wait_for_server(launch.base_url, timeout=0, interval=0)
        except runtime.ServerStartError:
            answering = None
        if answering is not None:
            raise LaunchError(f"something already answers {launch.base_url} (serving {answering}): another server "
                              "holds the port; stop it or choose another port (--port)")
        executable = launch.vllm_executable or runtime.ensure_vllm_venv(launch.vllm_venv)
        self.baseline_mib = runtime.gpu_memory_used_mib()
        log_path = self.folder / SERVER_LOG
        self.process = runtime.start_vllm_server(model, port=launch.port, log_path=log_path,
                                                 gpu_memory_utilization=launch.gpu_memory_utilization,
                                                 max_model_len=launch.max_model_len, extra_args=launch.vllm_args,
                                                 executable=executable)
        self.state["server"] = {"pid": self.process.pid, "executable": str(executable), "model": model,
                                "baseline_mib": self.baseline_mib, "started": _now()}
        self.save()
        print(f"[launch] vLLM starting (pid {self.process.pid}, log {log_path}); waiting up to "
              f"{launch.server_timeout_s:.0f}s for {launch.base_url}/models", flush=True)
        started = time.monotonic()
        try:
            served = runtime.wait_for_server(launch.base_url, launch.server_timeout_s, process=self.process,
                                             log_path=log_path, interval=2.0)
            if model not in served:
                raise LaunchError(f"the server answers with {served}, not {model}: the generation chapters would "
                                  "ask for a model it does not serve")
        except BaseException:
            self.stop(check_memory=False)
            raise
        runtime.use_openai_endpoint(launch.base_url)
        answered = round(time.monotonic() - started, 1)
        self.state.setdefault("server_runs", []).append({"model": model, "answered_after_s": answered,
                                                         "baseline_mib": self.baseline_mib})
        self.save()
        print(f"[launch] vLLM serves {served} after {answered:.0f}s", flush=True)

    def stop(self, check_memory: bool = True) -> None:
        if self.process is None:
            return
        code = runtime.stop_server(self.process)
        self.process = None
        print(f"[launch] vLLM stopped (exit code {code}), its process group is gone", flush=True)
        if check_memory:
            used = runtime.wait_for_gpu_release(self.baseline_mib, timeout=self.launch.release_timeout_s)
            if used is not None:
                print(f"[launch] GPU memory released: {used} MiB in use (before vLLM: {self.baseline_mib} MiB)",
                      flush=True)
            if self.state.get("server_runs"):
                self.state["server_runs"][-1].update(stopped=_now(), released_mib=used)
        self.state.pop("server", None)
        self.save()


# --------------------------------------------------------------------------------------------------------------
# Running


def run(launch: Launch) -> dict[str, Any]:
    """Do the launch (see the module docstring); returns its state. Raises what the failing step raised after
    recording it, with the server stopped."""
    gpu = runtime.require_gpu(launch.min_gpu_memory_gb)
    print(f"[launch] GPU: {gpu['detail']}", flush=True)
    if launch.storage:
        for variable, folder in runtime.use_storage(launch.storage).items():
            print(f"[launch] {variable} = {folder}", flush=True)
    folder = launch_dir(launch.name)
    state = {"steps": {}} if launch.fresh else load_state(folder)
    state.update(name=launch.name, models=list(launch.models))

    def save() -> None:
        save_state(folder, state)

    steps = plan(launch)
    todo = pending(steps, state)
    for step in steps:
        print(f"[launch] {step.id:<14} {'to run' if step in todo else 'done earlier, skipped'}", flush=True)
    server = Server(launch, folder, state, save)
    server.stop_stale()
    if not todo:
        print(f"[launch] every step is done ({folder / STATE_FILE}); --fresh starts over", flush=True)
        return state
    last_server_step = max((i for i, s in enumerate(todo) if s.needs_server), default=None)
    generator = generator_of(todo)
    try:
        for index, step in enumerate(todo):
            if step.needs_server and server.process is None:
                server.start(generator)
            run_step(step, launch, folder, state, save)
            if index == last_server_step:
                server.stop()
    finally:
        if server.process is not None:  # a step failed while the server ran: free the GPU, keep the error
            server.stop(check_memory=False)
    return state


def run_step(step: Step, launch: Launch, folder: Path, state: dict[str, Any], save) -> None:
    """Run one step's notebook, recording its start and its end in the state."""
    from ec2er_utils.paths import runs_dir

    earlier = state["steps"].get(step.id, {})
    parameters = dict(step.parameters)
    if "resume" in parameters or step.chapter in ("01", "02"):
        parameters["resume"] = earlier.get("status") == "started" and earlier.get("key") == step.key
    if step.chapter == "04":  # a training run cut off goes on from its last checkpoint, in the same run folder
        interrupted = earlier.get("status") == "started" and earlier.get("key") == step.key
        parameters["run_id"] = earlier["parameters"]["run_id"] if interrupted else \
            f"{launch.name}-{runtime.run_stamp()}"
        parameters["resume"] = interrupted
    if step.chapter == "05":
        trained = state["steps"].get(f"04-{step.model}", {})
        if trained.get("status") != "done":
            raise LaunchError(f"{step.id}: chapter 04 has not trained {step.model} in this launch yet; run the "
                              "launch with chapter 04 too")
        parameters["adapter"] = trained["adapter"]
    record = {"status": "started", "key": step.key, "parameters": parameters, "started": _now()}
    state["steps"][step.id] = record
    save()
    started = time.monotonic()
    target = folder / "notebooks" / f"{step.notebook.stem}{step.id[2:]}.ipynb"
    runtime.run_notebook(step.notebook, parameters, target, kernel_name=launch.kernel_name, echo=launch.echo)
    if step.chapter == "04":
        adapter = runs_dir() / step.model / parameters["run_id"] / ADAPTER_DIR
        if not adapter.is_dir():
            raise LaunchError(f"{target.name} finished but wrote no adapter at {adapter}")
        record["adapter"] = str(adapter)
    record.update(status="done", executed=str(target), seconds=round(time.monotonic() - started, 1), ended=_now())
    save()


# --------------------------------------------------------------------------------------------------------------
# Command line


def parse_set(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``CHAPTER.NAME=VALUE`` (the value read as YAML: 20, true, "text", [3, 4]) -> ``{"CHAPTER": {NAME: VALUE}}``."""
    import yaml

    extra: dict[str, dict[str, Any]] = {}
    for item in values:
        target, sep, value = item.partition("=")
        chapter, dot, name = target.partition(".")
        if not (sep and dot and chapter.isdigit() and name):
            raise argparse.ArgumentTypeError(f"--set {item!r}: write CHAPTER.NAME=VALUE, e.g. 01.num_dialogues=20")
        extra.setdefault(chapter.zfill(2), {})[name] = yaml.safe_load(value)
    return extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m colab.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Launch()
    parser.add_argument("--models", nargs="+", default=list(defaults.models), metavar="MODEL",
                        help=f"models to fine-tune and evaluate (the paper's: {', '.join(PAPER_MODELS)})")
    parser.add_argument("--storage", help="folder for data/, runs/, results/, figures/ (Colab: on Google Drive)")
    parser.add_argument("--name", default=defaults.name, help="the launch's name; the same name continues it")
    parser.add_argument("--generator",
                        help="model vLLM serves to chapters 01-02 and as 03's judge (default: the paper's)")
    parser.add_argument("--set", action="append", default=[], metavar="CHAPTER.NAME=VALUE",
                        help="change one parameter of one chapter (repeatable)")
    parser.add_argument("--chapters", help='only these chapters, e.g. "04 05 06"')
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--gpu-memory-utilization", type=float, default=defaults.gpu_memory_utilization)
    parser.add_argument("--max-model-len", type=int, default=defaults.max_model_len)
    parser.add_argument("--server-timeout", type=float, default=defaults.server_timeout_s, metavar="SECONDS")
    parser.add_argument("--min-gpu-memory-gb", type=float, default=defaults.min_gpu_memory_gb)
    parser.add_argument("--vllm-venv", help="vLLM's virtual environment (default: <cache>/vllm-venv)")
    parser.add_argument("--vllm", dest="vllm_executable", help="use this vllm command instead of the venv")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs of this launch")
    return parser


def launch_from_args(argv: Sequence[str] | None = None) -> Launch:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        extra = parse_set(args.set)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    return Launch(models=args.models, name=args.name, storage=args.storage, generator=args.generator, extra=extra,
                  chapters=args.chapters, port=args.port, gpu_memory_utilization=args.gpu_memory_utilization,
                  max_model_len=args.max_model_len, server_timeout_s=args.server_timeout,
                  min_gpu_memory_gb=args.min_gpu_memory_gb, vllm_venv=args.vllm_venv,
                  vllm_executable=args.vllm_executable, fresh=args.fresh)


def main(argv: Sequence[str] | None = None) -> int:
    launch = launch_from_args(argv)
    try:
        run(launch)
    except (LaunchError, runtime.GPUUnavailableError, runtime.ServerStartError,
            runtime.GPUMemoryNotReleasedError) as err:
        print(f"[launch] stopped: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
