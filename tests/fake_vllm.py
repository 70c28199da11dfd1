"""Stand-ins for a GPU machine's ``vllm`` and ``nvidia-smi`` commands, so the launcher's start / wait / stop / resume
logic runs for real on a CPU: :func:`install_fake_gpu` writes both into a folder to put first on ``PATH``.

``vllm serve MODEL --host H --port P ...`` serves an OpenAI-compatible API: ``/v1/models`` lists MODEL and
``/v1/chat/completions`` answers with the scripted generation backend's deterministic replies
(``tests/generation_backend.py``, which honours each request's JSON schema), so chapters 01 and 02 run against it in
seconds. Its items read like a model's (:func:`item_draft`: varied scenarios, full-sentence explanations), so
they pass chapter 03's quality rules and de-duplication at the paper's thresholds, and it answers chapter 03's LLM
judge with a verdict (:func:`judge_verdict`). Like vLLM it runs a child process (its "engine") in its process group,
and it records both processes in ``$EC2ER_FAKE_GPU_DIR``; ``nvidia-smi`` reports an A100 whose memory is in use
while either of them lives (as a real GPU's is until vLLM's engine has exited), so waiting for the memory to be
released waits for real.
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


# Item text the stand-in generator draws from, per dialogue: distinct scenarios (chapter 03 de-duplicates near
# copies) of plain English with full-sentence explanations and multi-word options (its quality rules).
SCENARIO_SENTENCES = (
    "{name} found out at dinner that the shop where {name} worked for ten years will close next month.",
    "A neighbour asked {name} to look after her dog while she visits her mother in hospital.",
    "The letter from the bank arrived on the same morning as the invitation to the wedding.",
    "After the match the coach told {name} in front of the whole team that the place was lost.",
    "Her brother has not called since the argument about selling the old family house.",
    "On the train home {name} read the message twice before putting the phone away.",
    "The new manager praised the report that {name} had written together with a colleague.",
    "Rain had flooded the basement, and the boxes of old photographs were soaked through.",
    "{name} promised a friend to keep a secret that now affects the people they both work with.",
    "The doctor said the results were fine, but asked {name} to come back in three months.",
    "At the school play the daughter of {name} forgot her lines and ran off the stage.",
    "A stranger returned the wallet that {name} had lost, with every card and note still inside.",
)
NAMES = ("Maya", "Daniel", "Priya", "Tom", "Lena", "Omar", "Grace", "Ivan")


def stand_in_client():
    """The scripted backend (imported when the first request comes, not by ``nvidia-smi``), with item drafts that
    read like a model's (:func:`item_draft`)."""
    from tests.generation_backend import ScriptedGenerationClient

    class StandInClient(ScriptedGenerationClient):
        def _reply(self, agent, conversation, schema):
            if agent != "extractor":
                return super()._reply(agent, conversation, schema)
            return json.dumps(item_draft(schema.name, schema.json_schema, conversation))

    return StandInClient()


def item_draft(title: str, schema: dict, conversation: list) -> dict:
    """A draft for the extractor's schema ``title`` that honours the scenario's length bounds."""
    import random

    from tests.generation_backend import tag

    key = tag(conversation[0]["content"] + conversation[1]["content"])
    draw = random.Random(key)
    name = draw.choice(NAMES)
    bounds = schema["properties"]["scenario"]
    sentences = [s.format(name=name) for s in draw.sample(SCENARIO_SENTENCES, len(SCENARIO_SENTENCES))]
    scenario = " ".join(sentences[:3])  # a few sentences, as long as the schema asks
    for sentence in sentences[3:]:
        if len(scenario) >= bounds["minLength"] or len(scenario) + len(sentence) >= bounds["maxLength"]:
            break
        scenario += " " + sentence
    if title in ("EUItemDraft", "EUMixedItemDraft"):
        mixed = title == "EUMixedItemDraft"
        return {"scenario": scenario, "subject": name,
                "emotion_label": ["Relief", "Guilt"] if mixed else "Guilt",
                "emotion_distractors": [["Joy", "Anger"], ["Pride", "Fear"], ["Sadness", "Joy"], ["Anger", "Fear"],
                                        ["Pride", "Sadness"]] if mixed else ["Joy", "Anger", "Pride", "Fear", "Relief"],
                "emotion_explanation": f"{name} feels responsible for what happened and keeps going back over it.",
                "cause_label": f"{name} believes the trouble could have been avoided",
                "cause_distractors": ["Someone else took the credit", "The weather spoiled the day",
                                      "A friend forgot a birthday"],
                "cause_explanation": f"{name} keeps returning to the choice that led to this, which shows where "
                                     "the feeling comes from."}
    if title == "EAItemDraft":
        return {"scenario": scenario, "subject": name, "best_choice": "Talk openly with the people involved",
                "other_choices": ["Pretend that nothing has happened", "Leave town for a few weeks",
                                  "Complain about it online"],
                "explanation": f"Talking openly lets {name} repair the relationship without hiding the problem."}
    if title in ("EUMCQDraft", "EAMCQDraft"):
        eu = title.startswith("EU")
        return {"scenario": scenario,
                "question": f"What does {name} most likely feel?" if eu else f"What should {name} do?",
                "correct_answer": "Guilt" if eu else "Ask the others for help",
                "distractors": ["Joy", "Pride", "Boredom"] if eu else ["Ignore the problem", "Shout at someone",
                                                                         "Quit without a word"],
                "explanation": f"The details of the scenario show why {name} would react this way and not "
                               "otherwise."}
    raise AssertionError(f"unexpected schema {title}")


# Like gpt-oss-20b behind vLLM, the stand-in "reasons" before a verdict and counts that against max_tokens: a
# budget below this gets a reply cut off with no content (an assumed size, not a measured one).
JUDGE_REASONING_TOKENS = 300


def judge_verdict(request: dict) -> tuple[str, str] | None:
    """Chapter 03's LLM judge asks with its system prompt: (a verdict that passes the question, "stop"), or ("",
    "length") when its max_tokens leaves no room after the reasoning; None for any other request."""
    from ec2er_utils.preprocess.judge import CRITERIA, JUDGE_SYSTEM_PROMPT

    messages = request["messages"]
    if not (messages and messages[0]["role"] == "system" and messages[0]["content"] == JUDGE_SYSTEM_PROMPT):
        return None
    if (request.get("max_tokens") or 0) < JUDGE_REASONING_TOKENS + 32:
        return "", "length"
    return json.dumps(dict.fromkeys(CRITERIA, 5)), "stop"


_CLIENT = None


def completion(request: dict, model: str) -> dict:
    """An OpenAI chat completion: the judge's verdict, or the stand-in generator's reply."""
    global _CLIENT
    from ec2er_utils.llm.base import JSONSchema

    verdict, prompt_tokens = judge_verdict(request), sum(len(m["content"]) for m in request["messages"]) // 4
    if verdict is not None:
        text, finish = verdict
    else:
        if _CLIENT is None:
            _CLIENT = stand_in_client()
        spec = (request.get("response_format") or {}).get("json_schema")
        schema = JSONSchema(spec["schema"], name=spec.get("name")) if spec else None
        reply = asyncio.run(_CLIENT._complete_batch([request["messages"]], schemas=[schema],
                                                    temperature=request.get("temperature", 1.0),
                                                    max_tokens=request.get("max_tokens") or 256,
                                                    seed=request.get("seed")))[0]
        text, finish, prompt_tokens = reply.text, "stop", reply.prompt_tokens
    completion_tokens = request["max_tokens"] if finish == "length" else max(1, len(text) // 4)
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


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
# grid personas (no download), a few scripted dialogues, chapter 03 as the paper's (its judge is the stand-in
# server), the embedded model trained 2 steps on the CPU and evaluated on 2 EmoBench items per task.
TINY = {
    "00": {"persona_source": "grid", "num_personas": 8},
    "01": {"num_dialogues": 3, "quotas": None, "concurrency": 3, "max_turns": 4, "eu_items": [1, 1],
           "ea_items": [1, 1], "checkpoint_every": 1},
    "02": {"num_samples": 2, "quotas": None, "concurrency": 2},
    "04": {"load_in_4bit": None, "max_steps": 2, "max_eval_questions": 2},
    "05": {"protocol": "choice", "limit": 2},
}
