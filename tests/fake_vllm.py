"""Stand-ins for a GPU machine's ``vllm`` and ``nvidia-smi`` commands, so the launcher's start / wait / stop / resume
logic runs for real on a CPU: :func:`install_fake_gpu` writes both into a folder to put first on ``PATH``.

``vllm serve MODEL --host H --port P ...`` serves an OpenAI-compatible API: ``/v1/models`` lists MODEL and
``/v1/chat/completions`` answers with the scripted generation backend's deterministic replies
(``tests/generation_backend.py``, which honours each request's JSON schema), so chapters 01 and 02 run against it in
seconds. Like vLLM it runs a child process (its "engine") in its process group, and it records both processes in
``$EC2ER_FAKE_GPU_DIR``; ``nvidia-smi`` reports an A100 whose memory is in use while either of them lives (as a
real GPU's is until vLLM's engine has exited), so waiting for the memory to be released waits for real.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GPU_NAME, GPU_MEMORY_MIB, DRIVER = "NVIDIA A100-SXM4-40GB", 40960, "550.54.15"
IDLE_MIB, SERVING_MIB = 400, 31000

VLLM_SCRIPT = f'''#!{sys.executable}
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})  # the launcher starts vllm without this interpreter's PYTHONPATH
from tests.fake_vllm import main
sys.exit(main(sys.argv[1:]))
'''

NVIDIA_SMI_SCRIPT = f'''#!{sys.executable}
import sys
sys.path.insert(0, {str(REPO_ROOT)!r})
from tests.fake_vllm import nvidia_smi
sys.exit(nvidia_smi(sys.argv[1:]))
'''


def install_fake_gpu(bin_dir: Path, state_dir: Path) -> dict[str, str]:
    """Write ``vllm`` and ``nvidia-smi`` into ``bin_dir``; returns the environment variables to set (``PATH`` with
    ``bin_dir`` first, ``EC2ER_FAKE_GPU_DIR``)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("vllm", VLLM_SCRIPT), ("nvidia-smi", NVIDIA_SMI_SCRIPT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "EC2ER_FAKE_GPU_DIR": str(state_dir)}


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def server_pids(state_dir: Path) -> list[int]:
    """The fake server's and its engine's process ids that are still alive."""
    pids = []
    for name in ("server.pid", "engine.pid"):
        path = state_dir / name
        if path.is_file():
            pids += [int(line) for line in path.read_text().split() if _alive(int(line))]
    return pids


def nvidia_smi(argv: list[str]) -> int:
    state_dir = Path(os.environ.get("EC2ER_FAKE_GPU_DIR", "/nonexistent"))
    alive = server_pids(state_dir)
    used = SERVING_MIB if alive else IDLE_MIB
    query = next((a for a in argv if a.startswith("--query-")), "")
    if query.startswith("--query-gpu=name"):
        print(f"{GPU_NAME}, {GPU_MEMORY_MIB}, {DRIVER}")
    elif query == "--query-gpu=memory.used":
        print(used)
    elif query.startswith("--query-compute-apps"):
        for pid in alive:
            print(f"{pid}, fake-vllm, {SERVING_MIB // max(1, len(alive))}")
    else:
        print(f"fake nvidia-smi: {GPU_NAME}")
    return 0


class _Handler(http.server.BaseHTTPRequestHandler):
    model = "unset"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):  # noqa: N802
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request.get("model") != self.model:
            self._send(404, {"error": {"message": f"The model `{request.get('model')}` does not exist."}})
            return
        self._send(200, completion(request, self.model))

    def log_message(self, *args):
        pass


_CLIENT = None


def completion(request: dict, model: str) -> dict:
    """An OpenAI chat completion from the scripted generation backend."""
    global _CLIENT
    from ec2er_utils.llm.base import JSONSchema
    from tests.generation_backend import ScriptedGenerationClient

    if _CLIENT is None:
        _CLIENT = ScriptedGenerationClient()
    response_format = request.get("response_format") or {}
    spec = response_format.get("json_schema")
    schema = JSONSchema(spec["schema"], name=spec.get("name")) if spec else None
    reply = asyncio.run(_CLIENT._complete_batch([request["messages"]], schemas=[schema],
                                                temperature=request.get("temperature", 1.0),
                                                max_tokens=request.get("max_tokens") or 256,
                                                seed=request.get("seed")))[0]
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                      "total_tokens": reply.prompt_tokens + reply.completion_tokens}}


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "serve":
        print("fake vllm: only `vllm serve MODEL ...` is known", file=sys.stderr)
        return 2
    model, host, port = argv[1], argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])
    state_dir = Path(os.environ["EC2ER_FAKE_GPU_DIR"])
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])  # same process group
    (state_dir / "server.pid").write_text(f"{os.getpid()}\n")
    (state_dir / "engine.pid").write_text(f"{engine.pid}\n")
    print(f"fake vllm serving {model} on {host}:{port} ({' '.join(argv[3:])})", flush=True)
    time.sleep(float(os.environ.get("EC2ER_FAKE_VLLM_STARTUP_S", "0.5")))  # loading the model
    _Handler.model = model
    http.server.ThreadingHTTPServer((host, port), _Handler).serve_forever()
    return 0


# The paper's set-up at a size a 2-core CPU runs in minutes, over the paper's recipes (--set / extra_parameters):
# grid personas (no download), a few scripted dialogues, the embedded model trained 2 steps on the CPU and
# evaluated on 2 EmoBench items per task.
TINY = {
    "00": {"persona_source": "grid", "num_personas": 8},
    "01": {"num_dialogues": 3, "quotas": None, "concurrency": 3, "max_turns": 4, "eu_items": [1, 1],
           "ea_items": [1, 1], "checkpoint_every": 1},
    "02": {"num_samples": 2, "quotas": None, "concurrency": 2},
    "03": {"judge_backend": None, "min_explanation_words": 0, "min_option_words": 0, "max_nonword_share": 1.0,
           "dedup_threshold": 1.0},  # the scripted items are short and alike: let them through
    "04": {"load_in_4bit": None, "max_steps": 2, "max_eval_questions": 2},
    "05": {"protocol": "choice", "limit": 2},
}
