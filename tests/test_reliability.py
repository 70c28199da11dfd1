"""Reliability (issue 8): generation survives faults and bad input, loses nothing and leaks no API key.

What each fault does, and where it is tried (the README's "Reliability" table says the same):

- server killed (SIGKILL) mid-run, restarted, resumed: ``test_server_killed_mid_run_then_restarted_and_resumed``
  (a real ``transformers serve`` with the embedded model);
- generating process killed (SIGKILL) mid-run, resumed: ``test_process_killed_mid_run_then_resumed`` (real server)
  and ``test_repeated_sigkills_lose_and_duplicate_nothing`` (scripted backend, many kills, MADS and concise);
- HTTP 500/429 and timeouts: ``test_transient_errors_*`` over a fault-injecting loopback server;
- broken model output: ``test_broken_model_output_*``;
- bad input: ``test_corrupted_checkpoint_*`` and ``test_contradictory_or_negative_counts`` here; the others are
  tried where their code lives (see ``BAD_INPUT_TESTS``);
- secrets: ``test_api_key_*``;
- configuration errors (HTTP 401/403, 404 for an unknown model, no server at all) stop a run at once, and a run
  in which every unit failed is an error: ``test_fatal_*``, ``test_no_server_*``, ``test_a_run_in_which_*``,
  ``test_evaluation_stops_*``, and through notebook 01 ``test_notebook_01_stops_*``.

The fault-injecting server answers with the scripted generation backend (tests/generation_backend.py); what it
tests is real: the openai SDK's retries and backoff, HTTP, the client's JSON validation and the pipelines' files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from ec2er_utils.evaluation.runner import EvalConfig, NoAnswers, evaluate
from ec2er_utils.evaluation.scoring import Prediction
from ec2er_utils.generation.concise import ConciseConfig, run_concise
from ec2er_utils.generation import make_generator_client
from ec2er_utils.generation.run_files import RunFailed
from ec2er_utils.jsonl import JSONLError, read_jsonl
from ec2er_utils.llm import LLMFatalError, LLMRequestError, make_client
from ec2er_utils.llm.base import JSONSchema
from ec2er_utils.generation.mads import MADSConfig, plan_dialogues, run_mads
from ec2er_utils.paths import REPO_ROOT, shared_dir
from ec2er_utils.personas import grid_personas, sample_personas, write_personas
from ec2er_utils.schemas import DatasetItem
from ec2er_utils.themes import THEMES, save_themes
from tests.generation_backend import ScriptedGenerationClient, agent_of
from tests.helpers import LoopbackHTTPServer, ScriptedClient, StatusServer, free_loopback_port, needs_emobench

PERSONAS = grid_personas(40, seed=1)
FAKE_KEY = "sk-ec2er-FAKE-RELIABILITY-KEY-5d1c0ffee"

# Bad input tried elsewhere (reused, not repeated here): what -> test.
BAD_INPUT_TESTS = {
    "malformed persona JSONL line": "tests/test_personas.py::test_bad_json_line_names_the_file_and_line",
    "persona without text": "tests/test_personas.py::test_persona_without_text_is_an_error_naming_the_line",
    "empty persona file": "tests/test_personas.py::test_empty_persona_file_is_an_error",
    "unknown model alias": "tests/test_models.py::test_unknown_alias_lists_the_valid_ones",
    "unknown EmoBench task or language": "tests/test_emobench.py::test_unknown_task_or_language",
    "missing EmoBench files, no network":
        "tests/test_emobench.py::test_download_is_pinned_checked_cached_and_then_read_offline",
    "min_turns > max_turns": "tests/test_mads.py::test_min_turns_above_max_turns_is_a_clear_error",
}


# --------------------------------------------------------------------------------------------------------------
# Comparing runs and checking files


def mads_outputs(folder: Path) -> dict[str, list]:
    """Everything a MADS run wrote, by id (a resumed run appends what it generates again, so line order may
    differ), without wall-clock timings."""
    def by_id(name: str, key: Callable[[dict], str]) -> list:
        path = folder / name
        return sorted(read_jsonl(path), key=key) if path.exists() else []

    metadata = [{k: v for k, v in r.items() if k != "timings"} for r in by_id("metadata.jsonl", lambda r: r["index"])]
    return {"metadata": metadata, "dialogues": by_id("dialogues.jsonl", lambda r: r["dialogue_id"]),
            "eu": by_id("eu_items.jsonl", lambda r: r["item_id"]),
            "ea": by_id("ea_items.jsonl", lambda r: r["item_id"])}


def concise_outputs(folder: Path) -> dict[str, Any]:
    personas = json.loads((folder / "personas_final.json").read_text(encoding="utf-8"))
    return {"personas": [{k: v for k, v in r.items() if k != "timings"} for r in personas],
            "items": (folder / "items_final.jsonl").read_text(encoding="utf-8")}


def damaged_lines(folder: Path, *, killed: bool = False) -> list[str]:
    """Lines of the run's files that do not parse, JSON files that do not parse, left-over temporary files.

    Right after a kill (``killed``) two traces are expected, and the next resume removes them: a partial last line
    of a JSONL file (the process died mid-append) and the temporary file of an atomic write it died in.
    """
    problems = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.name.endswith(".tmp"):
            if not killed:
                problems.append(f"{path.name}: temporary file of an interrupted atomic write")
        elif path.suffix == ".jsonl":
            text = path.read_text(encoding="utf-8")
            lines = text.split("\n")
            whole, tail = lines[:-1], lines[-1]
            if tail and not killed:
                problems.append(f"{path.name}: partial last line {tail[:40]!r}")
            for number, line in enumerate(whole, start=1):
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    problems.append(f"{path.name}, line {number}: not JSON {line[:40]!r}")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                problems.append(f"{path.name}: not JSON")
    return problems


def files_holding(secret: str, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if secret.encode() in path.read_bytes():
                found.append(str(path))
    return found


def quiet_config(cls, **settings):
    """A config with turn limits below the paper's (tiny CPU runs), without the warning that says so."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(**settings)


# --------------------------------------------------------------------------------------------------------------
# A fault-injecting OpenAI-compatible server on loopback


@dataclass
class Call:
    """One HTTP request as the fault server saw it."""

    persona: str | None  # persona_id of the dialogue (or concise sample) the request belongs to
    agent: str  # background, client, therapist, supervisor, extractor
    title: str | None  # the JSON schema's name (EUItemDraft, EAItemDraft, EUMCQDraft, ...), None for plain text
    text: str  # every message, joined
    reask: bool  # the client re-asks for valid JSON (the conversation goes on after the first request)
    attempt: int  # 1 for the first time this exact request arrives, 2 for the openai SDK's first retry, ...
    at: float  # time.monotonic() on arrival
    authorization: str
    outcome: Any = None


Fault = Callable[[Call], "int | str | None"]  # HTTP status, "hang" (past the client's timeout) or None (answer)
Rewrite = Callable[[Call, str], str]  # changes a reply's text (broken JSON)


class FaultyOpenAIServer(LoopbackHTTPServer):
    """``/v1/chat/completions`` answered by the scripted generation backend, with faults injected per request.

    The dialogue a request belongs to is found from the persona text in it (background and client prompts) or from
    the marker ``«persona_id»`` that every background and turn reply starts with (all later prompts quote one).
    """

    def __init__(self, personas=PERSONAS, fault: Fault | None = None, rewrite: Rewrite | None = None, *,
                 hang_s: float = 2.5, echo_key: bool = False):
        self.persona_texts = {p.text: p.persona_id for p in personas}
        self.fault, self.rewrite, self.hang_s, self.echo_key = fault, rewrite, hang_s, echo_key
        self.scripted = ScriptedGenerationClient()
        self.calls: list[Call] = []
        self.seen: Counter = Counter()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                digest = hashlib.sha256(body).hexdigest()  # an SDK retry sends the same bytes again
                with lock:
                    outer.seen[digest] += 1
                    attempt = outer.seen[digest]
                status, payload = outer.answer(json.loads(body), attempt, self.headers.get("Authorization", ""),
                                               lock)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout) and closed the connection
                    pass

            def log_message(self, *args):
                pass

        super().__init__(Handler)

    def persona_of(self, text: str) -> str | None:
        marker = re.search(r"«([^»]+)»", text)
        if marker:
            return marker.group(1)
        return next((pid for persona_text, pid in self.persona_texts.items() if persona_text in text), None)

    def answer(self, request: dict, attempt: int, authorization: str, lock) -> tuple[int, dict]:
        messages = request["messages"]
        agent = agent_of(messages)
        fmt = (request.get("response_format") or {}).get("json_schema")
        schema = JSONSchema(fmt["schema"], fmt["name"]) if fmt else None
        text = "\n".join(m["content"] for m in messages)
        call = Call(self.persona_of(text), agent, schema.name if schema else None, text,
                    reask=agent == "extractor" and len(messages) > 2, attempt=attempt, at=time.monotonic(),
                    authorization=authorization)
        call.outcome = self.fault(call) if self.fault else None
        with lock:
            self.calls.append(call)
        if call.outcome == "hang":
            time.sleep(self.hang_s)
        elif isinstance(call.outcome, int):
            detail = f"injected HTTP {call.outcome}"
            if self.echo_key:  # as a careless proxy might
                detail += f" for {authorization}"
            return call.outcome, {"error": {"message": detail, "type": "server_error"}}
        reply = self.scripted._reply(agent, messages, schema)
        if agent in ("background", "client", "therapist"):
            reply = f"«{call.persona}» {reply}"
        if self.rewrite:
            reply = self.rewrite(call, reply)
        return 200, {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": "scripted-model",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": reply}}],
                     "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(reply) // 4,
                               "total_tokens": (len(text) + len(reply)) // 4}}

    def of(self, persona: str, agent: str | None = None, title: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.persona == persona and agent in (None, c.agent)
                and title in (None, c.title)]


def http_client(server: FaultyOpenAIServer, **options):
    settings = dict(concurrency=1, temperature=0, seed=0, max_retries=2, timeout=1.0, api_key=FAKE_KEY)
    settings.update(options)
    return make_generator_client("openai", "scripted-model", base_url=server.base_url, **settings)


def mads_config(**changes) -> MADSConfig:
    settings = dict(num_dialogues=4, concurrency=1, checkpoint_every=1, eu_items=(2, 2), ea_items=(2, 2),
                    min_turns=2, max_turns=2, temperature=0, item_max_tokens=700)
    settings.update(changes)
    return quiet_config(MADSConfig, **settings)


def dialogue_personas(n: int) -> list[str]:
    plans, _ = plan_dialogues(PERSONAS, THEMES, n, seed=0)
    ids = [p.persona.persona_id for p in plans]
    assert len(set(ids)) == n  # each dialogue has its own persona, so faults can target one dialogue
    return ids


# --------------------------------------------------------------------------------------------------------------
# 3. Transient errors: HTTP 500/429 and timeouts


def test_transient_errors_are_retried_with_backoff_then_recorded_and_resumed(tmp_path):
    """Within the retry budget (max_retries=2: three attempts) a 500 is survived; past it a 429, a timeout or a 503
    fails its dialogue (or item) with the reason, the run goes on and the statistics count them; a resume against a
    healthy server generates exactly those again and ends with what a run without faults writes."""
    p = dialogue_personas(4)

    def fault(call: Call):
        if call.persona == p[0] and call.agent == "background" and call.attempt <= 2:
            return 500  # transient: the third attempt succeeds
        if call.persona == p[1] and call.agent == "client":
            return 429  # every attempt
        if call.persona == p[2] and call.agent == "therapist":
            return "hang"  # every attempt times out
        if call.persona == p[3] and call.title in ("EUItemDraft", "EUMixedItemDraft"):
            return 503  # the EU extraction of an otherwise healthy dialogue
        return None

    with FaultyOpenAIServer() as clean:
        run_mads(http_client(clean), PERSONAS, THEMES, tmp_path / "reference", mads_config(), progress=False)
    with FaultyOpenAIServer(fault=fault) as server:
        stats = run_mads(http_client(server), PERSONAS, THEMES, tmp_path / "faulty", mads_config(), progress=False)

    records = read_jsonl(tmp_path / "faulty" / "metadata.jsonl")
    assert [r["persona_id"] for r in records] == p  # the run went on past every failure
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "ok"]
    assert records[1]["error"]["stage"] == "turn 1 client" and "HTTP 429" in records[1]["error"]["message"]
    assert records[2]["error"]["stage"] == "turn 1 therapist" and "timed out" in records[2]["error"]["message"]
    assert all("max_retries=2" in r["error"]["message"] for r in records[1:3])
    assert [r["reason"] for r in records[3]["rejected_items"]] == ["request_failed"] * 2
    assert records[3]["eu_item_ids"] == [] and len(records[3]["ea_item_ids"]) == 2
    assert stats["status"] == {"failed": 2, "ok": 2}
    assert stats["completed_this_session"] == 2 and stats["failed_this_session"] == 2  # the rate counts 2, not 4
    assert stats["completed_per_hour"] == pytest.approx(2 * 3600 / stats["elapsed_s_this_session"], rel=0.05)
    assert stats["failure_reasons"] == {"turn 1 client: request_failed": 1, "turn 1 therapist: request_failed": 1}
    assert stats["rejection_reasons"] == {"request_failed": 2}

    # The budget: every failing request was sent 1 + max_retries times, no more; the transient one recovered.
    assert [c.outcome for c in server.of(p[0], "background")] == [500, 500, None]
    assert len(server.of(p[1], "client")) == 3 and len(server.of(p[2], "therapist")) == 3
    assert sum(len(server.of(p[3], title=t)) for t in ("EUItemDraft", "EUMixedItemDraft")) == 2 * 3
    # Exponential backoff (the openai SDK's: 0.5 s * 2**retry, less up to 25% jitter): waits of >= 0.375 s, then
    # >= 0.75 s between the attempts.
    first, second, third = (c.at for c in server.of(p[0], "background"))
    assert second - first >= 0.37 and third - second >= 0.74, (second - first, third - second)

    with FaultyOpenAIServer() as healthy:
        resumed = run_mads(http_client(healthy), PERSONAS, THEMES, tmp_path / "faulty", mads_config(), resume=True,
                           progress=False)
    assert resumed["status"] == {"ok": 4} and resumed["failure_reasons"] == {}
    assert resumed["completed_this_session"] == 3 and resumed["failed_this_session"] == 0  # p[1], p[2], p[3]
    assert {c.persona for c in healthy.calls} == set(p[1:])  # the complete dialogue was not generated again
    assert mads_outputs(tmp_path / "faulty") == mads_outputs(tmp_path / "reference")
    assert damaged_lines(tmp_path / "faulty") == []


def test_transient_errors_in_the_concise_pipeline(tmp_path):
    """The last persona's background fails past the budget; a resume generates it again and only it. (A persona
    failing earlier would be generated again just as well, but personas after it keep the item categories they
    were given without its items, so the result would not be byte-identical to a run without faults.)"""
    personas = [p.persona_id for p in sample_personas(PERSONAS, 3, 0)]

    def fault(call: Call):
        return 500 if call.persona == personas[2] and call.agent == "background" else None

    config = ConciseConfig(num_samples=3, concurrency=1, checkpoint_every=1, rounds=2, temperature=0)
    with FaultyOpenAIServer() as clean:
        run_concise(http_client(clean), PERSONAS, tmp_path / "reference", config, progress=False)
    with FaultyOpenAIServer(fault=fault) as server:
        summary = run_concise(http_client(server), PERSONAS, tmp_path / "faulty", config, progress=False)
    assert summary["status"] == {"failed": 1, "ok": 2}
    assert summary["failure_reasons"] == {"background: request_failed": 1}
    assert len(server.of(personas[2], "background")) == 3
    with FaultyOpenAIServer() as healthy:
        resumed = run_concise(http_client(healthy), PERSONAS, tmp_path / "faulty", config, resume=True,
                              progress=False)
    assert resumed["status"] == {"ok": 3}
    assert {c.persona for c in healthy.calls} == {personas[2]}
    assert concise_outputs(tmp_path / "faulty") == concise_outputs(tmp_path / "reference")


# --------------------------------------------------------------------------------------------------------------
# 4. Broken model output


def broken_drafts(call: Call, reply: str) -> str:
    """Per requested category: output a model could give, repairable or not."""
    if call.agent == "supervisor" and call.persona == SUPERVISOR_BROKEN:
        return '{"reason": "the dialogue covers'  # cut off: never valid JSON
    if call.agent != "extractor":
        return reply
    category = re.search(r"Category: (\S+)", call.text).group(1)
    draft = json.loads(reply)
    if category == "complex_emotions":
        return f"```json\n{reply}\n```"  # fenced: repaired (the JSON is taken out of the fence)
    if category == "emotional_cues":
        return reply[: len(reply) // 2]  # truncated, every attempt: rejected
    if category == "personal_beliefs_and_experiences":
        return json.dumps({**draft, "emotion_label": "Happyish"})  # not in the vocabulary (schema enum): rejected
    if category == "perspective_taking":
        return reply if call.reask else "I would say he feels guilty."  # prose, then valid when re-asked
    if category == "Personal-Self":
        return f"Sure! Here is the item: {reply} Hope this helps."  # chatter around the JSON: repaired
    if category == "Personal-Others":
        return json.dumps({**draft, "other_choices": [draft["best_choice"], *draft["other_choices"][1:]]})
    if category == "Social-Self":
        return json.dumps({k: v for k, v in draft.items() if k != "explanation"})  # a required field missing
    return reply


SUPERVISOR_BROKEN = dialogue_personas(2)[1]


def test_broken_model_output_is_repaired_or_rejected_counted_and_never_written(tmp_path):
    config = mads_config(num_dialogues=2, eu_items=(4, 4), ea_items=(4, 4), min_turns=4, max_turns=6)
    with FaultyOpenAIServer(rewrite=broken_drafts) as server:
        stats = run_mads(http_client(server), PERSONAS, THEMES, tmp_path / "run", config, progress=False)
    eu = read_jsonl(tmp_path / "run" / "eu_items.jsonl", DatasetItem)  # every line a valid item
    ea = read_jsonl(tmp_path / "run" / "ea_items.jsonl", DatasetItem)
    assert sorted({i.category for i in eu}) == ["complex_emotions", "perspective_taking"]
    assert sorted({i.category for i in ea}) == ["Personal-Self", "Social-Others"]
    assert len(eu) == len(ea) == 4
    assert stats["rejection_reasons"] == {"duplicate_options": 2, "invalid_json": 6} and stats["items_rejected"] == 8
    records = read_jsonl(tmp_path / "run" / "metadata.jsonl")
    rejected = {r["item_id"] for m in records for r in m["rejected_items"]}
    assert rejected.isdisjoint({i.item_id for i in eu} | {i.item_id for i in ea})
    assert len(rejected) == 8
    reasked = [c for c in server.calls if c.reask and "Category: perspective_taking" in c.text]
    assert len(reasked) == 2  # one re-ask per dialogue made the prose reply valid
    # A broken supervisor verdict is recorded and counted as "not yet": the dialogue runs to max_turns.
    broken = next(m for m in records if m["persona_id"] == SUPERVISOR_BROKEN)
    assert [v.get("error") for v in broken["supervisor_verdicts"]] == ["invalid_json"] * 3
    assert broken["stop_reason"] == "max_turns" and broken["turns"] == 6 and broken["status"] == "ok"


def test_broken_model_output_in_the_concise_pipeline(tmp_path):
    def rewrite(call: Call, reply: str) -> str:
        if call.title == "EUMCQDraft":
            return f"```json\n{reply}\n```"
        if call.title == "EAMCQDraft":
            return reply[:-5]  # truncated
        return reply

    config = ConciseConfig(num_samples=2, concurrency=2, rounds=1, temperature=0, eu_items=1, ea_items=1)
    with FaultyOpenAIServer(rewrite=rewrite) as server:
        summary = run_concise(http_client(server), PERSONAS, tmp_path / "run", config, progress=False)
    items = read_jsonl(tmp_path / "run" / "items_final.jsonl", DatasetItem)
    assert [i.task for i in items] == ["EU", "EU"]
    assert summary["items"] == 2 and summary["rejection_reasons"] == {"invalid_json": 2}


# --------------------------------------------------------------------------------------------------------------
# 5. Bad input: corrupted checkpoints, contradictory counts


def scripted_mads(folder: Path, *, resume: bool = False, **changes):
    config = mads_config(**{"eu_items": (1, 1), "ea_items": (1, 1), **changes})
    return run_mads(ScriptedGenerationClient(), PERSONAS, THEMES, folder, config, resume=resume, progress=False)


def damage_line(path: Path, number: int) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = lines[number - 1][:25] + "\n"
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("name, ledger_fix", [
    ("metadata.jsonl", "deleting a dialogue's line in metadata.jsonl makes that dialogue run again"),
    ("eu_items.jsonl", "resume=False starts the run over"),
])
def test_corrupted_checkpoint_line_names_file_line_and_fix(tmp_path, name, ledger_fix):
    folder = tmp_path / "run"
    scripted_mads(folder, num_dialogues=3)
    damage_line(folder / name, 2)
    with pytest.raises(JSONLError) as raised:
        scripted_mads(folder, num_dialogues=3, resume=True)
    message = str(raised.value)
    assert f"{folder / name}, line 2: not valid JSON" in message
    assert "partial last line" in message and ledger_fix in message


def test_corrupted_checkpoint_files_name_the_file_and_fix(tmp_path):
    folder = tmp_path / "mads"
    scripted_mads(folder, num_dialogues=2)
    (folder / "run_config.json").write_text('{"num_dialogues": 2,', encoding="utf-8")
    with pytest.raises(JSONLError, match=r"run_config\.json: not valid JSON .*corrupted.*resume=False"):
        scripted_mads(folder, num_dialogues=2, resume=True)

    folder = tmp_path / "concise"
    config = ConciseConfig(num_samples=3, concurrency=1, checkpoint_every=1, eu_items=1, ea_items=1)
    run_concise(ScriptedGenerationClient(), PERSONAS, folder, config, progress=False)
    checkpoint = folder / "personas_checkpoint.json"
    checkpoint.write_text(checkpoint.read_text(encoding="utf-8")[:-40], encoding="utf-8")
    with pytest.raises(JSONLError) as raised:
        run_concise(ScriptedGenerationClient(), PERSONAS, folder, config, resume=True, progress=False)
    assert str(checkpoint) in str(raised.value)
    assert "deleting personas_checkpoint.json makes every persona run again" in str(raised.value)
    checkpoint.unlink()  # the fix the message names: every persona runs again, nothing is duplicated
    summary = run_concise(ScriptedGenerationClient(), PERSONAS, folder, config, resume=True, progress=False)
    assert summary["personas_written"] == 3 and summary["items"] == 6


@pytest.mark.parametrize("make, message", [
    (lambda: ConciseConfig.from_parameters({"num_samples": -1}), "parameter 'num_samples': Input should be greater "
                                                                 "than or equal to 1, got -1"),
    (lambda: ConciseConfig.from_parameters({"num_samples": 0}), "parameter 'num_samples': Input should be greater "
                                                                "than or equal to 1, got 0"),
    (lambda: MADSConfig.from_parameters({"num_dialogues": -5}), "parameter 'num_dialogues': Input should be "
                                                                "greater than or equal to 1, got -5"),
    (lambda: MADSConfig.from_parameters({"checkpoint_every": -1}), "parameter 'checkpoint_every': Input should be "
                                                                   "greater than or equal to 1, got -1"),
    (lambda: ConciseConfig.from_parameters({"concurrency": 0}), "parameter 'concurrency': Input should be greater "
                                                                "than or equal to 1, got 0"),
    (lambda: MADSConfig.from_parameters({"num_dialogues": "abc"}), "parameter 'num_dialogues': Input should be a "
                                                                   "valid integer"),
])
def test_contradictory_or_negative_counts(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_bad_input_elsewhere_is_listed_with_a_real_test():
    """The bad-input cases this file does not repeat must point at tests that exist."""
    for what, where in BAD_INPUT_TESTS.items():
        path, name = where.split("::")
        assert f"def {name}(" in (REPO_ROOT / path).read_text(encoding="utf-8"), (what, where)


# --------------------------------------------------------------------------------------------------------------
# 2. Process death (SIGKILL), many times, with the scripted backend: every file stays whole


KILLABLE_SCRIPT = """
import asyncio, json, sys, warnings
from ec2er_utils.generation.concise import ConciseConfig, run_concise
from ec2er_utils.generation.mads import MADSConfig, run_mads
from ec2er_utils.personas import grid_personas
from ec2er_utils.themes import THEMES
from tests.generation_backend import ScriptedGenerationClient


class Slow(ScriptedGenerationClient):  # slow enough for a kill to land anywhere in a run
    async def _complete_batch(self, *args, **kwargs):
        await asyncio.sleep(0.01)
        return await super()._complete_batch(*args, **kwargs)


pipeline, out_dir, resume, settings = sys.argv[1], sys.argv[2], sys.argv[3] == "1", json.loads(sys.argv[4])
personas = grid_personas(40, seed=1)
if pipeline == "mads":
    run_mads(Slow(), personas, THEMES, out_dir, MADSConfig(**settings), resume=resume, progress=False)
else:
    run_concise(Slow(), personas, out_dir, ConciseConfig(**settings), resume=resume, progress=False)
"""

SCRIPTED_SETTINGS = {
    "mads": dict(num_dialogues=6, concurrency=1, checkpoint_every=1, eu_items=[1, 2], ea_items=[1, 2]),
    "concise": dict(num_samples=6, concurrency=1, checkpoint_every=1, rounds=3),
}


def progress_of(pipeline: str, folder: Path) -> int:
    """Complete units on disk: metadata lines (MADS) or checkpointed personas (concise)."""
    if pipeline == "mads":
        path = folder / "metadata.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0
    path = folder / "personas_checkpoint.json"
    return len(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else 0


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")  # tests.* importable


@pytest.mark.parametrize("pipeline", ["mads", "concise"])
def test_repeated_sigkills_lose_and_duplicate_nothing(tmp_path, pipeline):
    """SIGKILL the generating process at a random moment after each unit it completes, resume, until it finishes:
    between kills only a partial last line may be damaged, and the end result equals an uninterrupted run."""
    script = tmp_path / "generate.py"
    script.write_text(KILLABLE_SCRIPT, encoding="utf-8")
    settings = SCRIPTED_SETTINGS[pipeline]
    reference, folder = tmp_path / "reference", tmp_path / "killed"
    if pipeline == "mads":
        run_mads(ScriptedGenerationClient(), PERSONAS, THEMES, reference, MADSConfig(**settings), progress=False)
    else:
        run_concise(ScriptedGenerationClient(), PERSONAS, reference, ConciseConfig(**settings), progress=False)
    rng = random.Random(8)
    kills, traces, attempt = 0, 0, 0
    while True:
        done_before = progress_of(pipeline, folder)
        process = subprocess.Popen([sys.executable, str(script), pipeline, str(folder), "1" if attempt else "0",
                                    json.dumps(settings)], cwd=REPO_ROOT, env=subprocess_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        attempt += 1
        deadline = time.monotonic() + 120
        while process.poll() is None and progress_of(pipeline, folder) <= done_before:
            assert time.monotonic() < deadline, "the generating process made no progress"
            time.sleep(0.005)
        if process.poll() is None and rng.random() < 0.5:  # else at once: in the writes that follow a unit
            time.sleep(rng.uniform(0, 0.15))  # anywhere in the next unit
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            assert damaged_lines(folder, killed=True) == []
            traces += bool(damaged_lines(folder))  # the kill hit a write: a partial line or a temporary file
            continue
        assert process.returncode == 0, process.stderr.read().decode()[-2000:]
        break
    assert kills >= 2
    print(f"{pipeline}: {kills} SIGKILLs, {traces} of them during a write")
    if pipeline == "mads":
        assert mads_outputs(folder) == mads_outputs(reference)
        assert len({r["dialogue_id"] for r in read_jsonl(folder / "metadata.jsonl")}) == 6
    else:
        assert concise_outputs(folder) == concise_outputs(reference)
    assert damaged_lines(folder) == []


# --------------------------------------------------------------------------------------------------------------
# 6. Secrets (fast part: the openai backend against the fault server)


def test_api_key_never_reaches_files_logs_or_output(tmp_path, monkeypatch, capfd):
    """The key is set in OPENAI_API_KEY and passed as api_key; the server even echoes it in its error bodies.
    The key must be sent (the server saw it), and be in no output, checkpoint, statistics, log or printed line."""
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("", "openai", "httpx", "httpcore")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    p = dialogue_personas(2)
    try:
        def fault(call: Call):  # one refused request (400), its error body echoing the key
            return 400 if call.persona == p[1] and call.agent == "background" else None

        with FaultyOpenAIServer(fault=fault, echo_key=True) as server:
            stats = run_mads(http_client(server), PERSONAS, THEMES, tmp_path / "mads", mads_config(num_dialogues=2),
                             progress=True)
            from_env = make_generator_client("openai", "scripted-model", base_url=server.base_url, concurrency=1,
                                             max_retries=0, timeout=2.0)
            summary = run_concise(from_env, PERSONAS, tmp_path / "concise",
                                  ConciseConfig(num_samples=2, concurrency=2, rounds=1), progress=True)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    captured = capfd.readouterr()
    assert {c.authorization for c in server.calls} == {f"Bearer {FAKE_KEY}"}  # the key was in use
    assert stats["failure_reasons"] == {"background: request_failed": 1} and summary["personas_written"] == 2
    failed = next(r for r in read_jsonl(tmp_path / "mads" / "metadata.jsonl") if r["status"] == "failed")
    assert "HTTP 400" in failed["error"]["message"] and "**********" in failed["error"]["message"]
    assert log_file.stat().st_size > 0
    assert files_holding(FAKE_KEY, tmp_path) == []
    assert FAKE_KEY not in captured.out + captured.err


# --------------------------------------------------------------------------------------------------------------
# 1 and 2 with a real server (transformers serve, embedded model) and greedy decoding
#
# Tiny dialogues (one turn, 6-token replies) keep the CPU cost down. They stop at max_turns without the
# supervisor's verdict, so no items are extracted: through transformers serve (which ignores response_format) the
# embedded 135M model almost never writes a schema-valid item draft, so items would be rejections anyway. Items
# written and kept across kills are compared in test_repeated_sigkills_lose_and_duplicate_nothing and in the
# transient-error test; the dialogue texts compared here are the real model's.

SERVER_SETTINGS = dict(num_dialogues=2, min_turns=1, max_turns=1, supervisor_every=2, concurrency=1,
                       checkpoint_every=1, background_words=[20, 40], background_max_tokens=6, turn_max_tokens=6,
                       temperature=0, judge_temperature=0, extract_incomplete=False)
SERVED_CLIENT = dict(concurrency=1, temperature=0, seed=0, max_reasks=0, max_retries=1, timeout=600)


def served_client(server, **options):
    return make_generator_client("openai", server.model, base_url=server.base_url, **{**SERVED_CLIENT, **options})


def requests_received(log_path: Path) -> int:
    """Requests the server has received so far, from its log."""
    return (log_path.read_text(errors="replace") if log_path.exists() else "").count("[Request received]")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (Linux /proc; all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_until_idle(pid: int, timeout_s: float = 300, quiet_s: float = 1.0) -> None:
    """Until the process has used almost no CPU for ``quiet_s`` (a server that has finished every request)."""
    deadline = time.monotonic() + timeout_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < 0.05 * quiet_s:
            return
        last = now
    raise AssertionError(f"process {pid} still busy after {timeout_s:.0f}s")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.02)


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after_first_dialogue(folder: Path, log_path: Path, kill: Callable[[], None], timeout_s: float = 900):
    """Once the first dialogue is on disk and a request of the second has reached the server, ``kill()``."""
    wait_for(lambda: lines_in(folder / "metadata.jsonl") >= 1, timeout_s, "the first dialogue")
    received = requests_received(log_path)
    wait_for(lambda: requests_received(log_path) > received, timeout_s, "a request of the second dialogue")
    kill()


@pytest.fixture(scope="module")
def server_reference(openai_server, tmp_path_factory) -> Path:
    """An uninterrupted run against the session's server: what every interrupted run must end up with."""
    folder = tmp_path_factory.mktemp("reliability_reference") / "mads"
    run_mads(served_client(openai_server), PERSONAS, THEMES, folder, quiet_config(MADSConfig, **SERVER_SETTINGS),
             progress=False)
    records = read_jsonl(folder / "metadata.jsonl")
    assert [r["status"] for r in records] == ["not_extracted", "not_extracted"], records
    return folder


@pytest.mark.slow
def test_server_killed_mid_run_then_restarted_and_resumed(embedded_model_path, server_reference, tmp_path,
                                                          monkeypatch):
    """kill -9 the server while the second dialogue waits for it: that dialogue is recorded as failed (transport),
    nothing is torn; restart the server, resume: only that dialogue is generated again, and the files hold what the
    uninterrupted run wrote. The run uses a fake API key (environment and parameter) that must appear nowhere."""
    from tools.local_server import LocalOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    server = LocalOpenAIServer(str(embedded_model_path), port=free_loopback_port(),
                               log_path=tmp_path / "serve" / "serve.log")
    folder = tmp_path / "mads"
    config = quiet_config(MADSConfig, **SERVER_SETTINGS)
    try:
        server.start()
        client = served_client(server, api_key=FAKE_KEY)
        killer = threading.Thread(target=kill_after_first_dialogue, args=(folder, server.log_path, server.kill),
                                  daemon=True)
        killer.start()
        stats = run_mads(client, PERSONAS, THEMES, folder, config, progress=False)
        killer.join(timeout=5)
        assert server.process.returncode == -signal.SIGKILL
        first, second = read_jsonl(folder / "metadata.jsonl")
        assert first["status"] == "not_extracted" and second["status"] == "failed"
        assert second["error"]["reason"] == "request_failed" and "cannot reach" in second["error"]["message"]
        assert stats["status"] == {"failed": 1, "not_extracted": 1}
        assert damaged_lines(folder) == []

        server.start()  # the same port: a restarted server
        calls_before = client.usage.calls
        resumed = run_mads(client, PERSONAS, THEMES, folder, config, resume=True, progress=False)
        assert resumed["status"] == {"not_extracted": 2}
        reference = read_jsonl(server_reference / "metadata.jsonl")
        assert client.usage.calls - calls_before == reference[1]["usage"]["calls"]  # only the failed dialogue
    finally:
        server.stop()
    assert mads_outputs(folder) == mads_outputs(server_reference)
    assert damaged_lines(folder) == []
    assert files_holding(FAKE_KEY, tmp_path) == []  # outputs, run_config, statistics, the server's log


SERVED_SCRIPT = """
import json, sys, warnings
from ec2er_utils.generation import make_generator_client
from ec2er_utils.generation.mads import MADSConfig, run_mads
from ec2er_utils.personas import grid_personas
from ec2er_utils.themes import THEMES

base_url, model, out_dir, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
settings, client_options = json.loads(sys.argv[5]), json.loads(sys.argv[6])
warnings.simplefilter("ignore", UserWarning)  # turn limits below the paper's
client = make_generator_client("openai", model, base_url=base_url, **client_options)
run_mads(client, grid_personas(40, seed=1), THEMES, out_dir, MADSConfig(**settings), resume=resume, progress=False)
"""


@pytest.mark.slow
def test_process_killed_mid_run_then_resumed(openai_server, server_reference, tmp_path):
    """SIGKILL the generating process while its second dialogue waits for the server; resume in a new process:
    the files hold what the uninterrupted run wrote, nothing lost, nothing twice."""
    script = tmp_path / "generate.py"
    script.write_text(SERVED_SCRIPT, encoding="utf-8")
    folder = tmp_path / "mads"

    def command(resume: bool) -> list[str]:
        return [sys.executable, str(script), openai_server.base_url, openai_server.model, str(folder),
                "1" if resume else "0", json.dumps(SERVER_SETTINGS), json.dumps(SERVED_CLIENT)]

    env = dict(subprocess_env(), OPENAI_API_KEY=FAKE_KEY)
    process = subprocess.Popen(command(False), cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        kill_after_first_dialogue(folder, openai_server.log_path, lambda: process.send_signal(signal.SIGKILL))
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert [r["dialogue_id"] for r in read_jsonl(folder / "metadata.jsonl")] == ["mads-s0-00000"]
    assert damaged_lines(folder, killed=True) == []
    # The server still generates the orphaned request (its client is gone, so no access-log line marks the end);
    # wait until it is done, so that it does not share a batch with the resumed process's requests.
    wait_until_idle(openai_server.process.pid)

    resumed = subprocess.run(command(True), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 dialogue(s) already complete" in resumed.stdout
    assert mads_outputs(folder) == mads_outputs(server_reference)
    assert damaged_lines(folder) == []
    assert files_holding(FAKE_KEY, tmp_path) == [] and FAKE_KEY not in resumed.stdout + resumed.stderr


# --------------------------------------------------------------------------------------------------------------
# 6. Secrets: an executed notebook


@pytest.mark.slow
def test_api_key_not_in_an_executed_notebook(tmp_path, monkeypatch):
    """notebooks/00_personas.ipynb run by papermill with the key in OPENAI_API_KEY: the executed notebook, its
    outputs and the kernel's captured output hold no trace of it. (The notebooks take the key only from the
    environment: papermill writes every parameter into the executed notebook, so a key must never be one.)"""
    import papermill

    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    executed = tmp_path / "00_personas.ipynb"
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "00_personas.ipynb"), str(executed),
                                   parameters={"output_dir": str(tmp_path / "personas"), "num_personas": 40},
                                   cwd=str(REPO_ROOT / "notebooks"), kernel_name="python3", progress_bar=False,
                                   log_output=True, stdout_file=out, stderr_file=err)
    assert (tmp_path / "personas" / "personas.jsonl").is_file() and executed.stat().st_size > 0
    assert files_holding(FAKE_KEY, tmp_path) == []


# --------------------------------------------------------------------------------------------------------------
# 7. Configuration errors stop a run at once; a run in which every unit failed is an error

FATAL_CAUSES = {401: "rejected the API key", 403: "rejected the API key",
                404: "does not know the model 'scripted-model'"}


def generated_units(pipeline: str, folder: Path) -> list[dict]:
    """The ledger: every unit a run recorded (complete or failed)."""
    if pipeline == "mads":
        path = folder / "metadata.jsonl"
        return read_jsonl(path) if path.exists() else []
    path = folder / "personas_checkpoint.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def run_pipeline(pipeline: str, client, folder: Path, units: int = 2, **changes):
    if pipeline == "mads":
        return run_mads(client, PERSONAS, THEMES, folder, mads_config(num_dialogues=units, **changes),
                        progress=False)
    settings = dict(num_samples=units, concurrency=1, checkpoint_every=1, rounds=1, temperature=0)
    return run_concise(client, PERSONAS, folder, ConciseConfig(**{**settings, **changes}), progress=False)


@pytest.mark.parametrize("pipeline, status", [("mads", 401), ("mads", 403), ("mads", 404), ("concise", 401),
                                              ("concise", 404)])
def test_fatal_answers_stop_a_run_before_anything_is_recorded_failed(tmp_path, pipeline, status):
    """Every request answered 401/403/404 (the body echoing the key): the first step's requests are sent once each,
    with retries left, and the run stops with the cause and the fix; no unit is recorded, failed or otherwise."""
    with FaultyOpenAIServer(fault=lambda call: status, echo_key=True) as server:
        with pytest.raises(LLMFatalError) as info:
            run_pipeline(pipeline, http_client(server), tmp_path / "run", concurrency=2)
    message = str(info.value)
    assert info.value.status_code == status and FATAL_CAUSES[status] in message
    assert "Fix: " in message and "nothing was written" in message
    assert [c.agent for c in server.calls] == ["background", "background"]  # one step of one batch
    assert {c.attempt for c in server.calls} == {1}  # max_retries=2, yet not retried
    assert generated_units(pipeline, tmp_path / "run") == []
    assert FAKE_KEY not in message and files_holding(FAKE_KEY, tmp_path) == []


def test_a_fatal_answer_mid_run_keeps_the_finished_dialogues_and_resume_completes_the_run(tmp_path):
    """The key is revoked after two dialogues that are finished but not yet written (checkpoint_every=10): they
    are saved, the third is not recorded at all, and a resume with a working key writes what an uninterrupted run
    writes."""
    p = dialogue_personas(4)
    with FaultyOpenAIServer() as clean:
        run_mads(http_client(clean), PERSONAS, THEMES, tmp_path / "reference", mads_config(), progress=False)
    with FaultyOpenAIServer(fault=lambda call: 401 if call.persona in p[2:] else None) as server:
        with pytest.raises(LLMFatalError, match=r"the 2 dialogue\(s\) finished before it are saved in .*resume=True"):
            run_mads(http_client(server), PERSONAS, THEMES, tmp_path / "revoked",
                     mads_config(checkpoint_every=10), progress=False)
    assert [(r["persona_id"], r["status"]) for r in read_jsonl(tmp_path / "revoked" / "metadata.jsonl")] == \
        [(p[0], "ok"), (p[1], "ok")]
    with FaultyOpenAIServer() as healthy:
        resumed = run_mads(http_client(healthy), PERSONAS, THEMES, tmp_path / "revoked", mads_config(),
                           resume=True, progress=False)
    assert {c.persona for c in healthy.calls} == set(p[2:]) and resumed["completed_this_session"] == 2
    assert mads_outputs(tmp_path / "revoked") == mads_outputs(tmp_path / "reference")
    assert damaged_lines(tmp_path / "revoked") == []


@pytest.mark.parametrize("pipeline", ["mads", "concise"])
def test_no_server_at_all_stops_at_the_first_request(tmp_path, pipeline):
    """A forgotten `vllm serve`: connection refused at the first request, after the client's retries, stops the
    run; no unit is recorded as failed."""
    base_url = f"http://127.0.0.1:{free_loopback_port()}/v1"
    client = make_generator_client("openai", "scripted-model", base_url=base_url, concurrency=2, max_retries=1,
                                   api_key=FAKE_KEY)
    with pytest.raises(LLMFatalError, match=rf"is the server running at {re.escape(base_url)}\? .*vllm serve"):
        run_pipeline(pipeline, client, tmp_path / "run", concurrency=2)
    assert generated_units(pipeline, tmp_path / "run") == []


def test_a_server_gone_after_answering_is_not_fatal(tmp_path):
    """Once a server has answered, losing it is a transport failure: recorded, and resumed later (not a stop)."""
    with FaultyOpenAIServer() as server:
        client = http_client(server, max_retries=0)
        run_mads(client, PERSONAS, THEMES, tmp_path / "first", mads_config(num_dialogues=1), progress=False)
    [result] = client.chat_many([[{"role": "user", "content": "still there?"}]])
    assert isinstance(result, LLMRequestError) and not isinstance(result, LLMFatalError)


@pytest.mark.parametrize("pipeline", ["mads", "concise"])
def test_a_run_in_which_every_unit_failed_is_an_error(tmp_path, pipeline):
    """Every background refused (HTTP 500 past the retries; too few units to stop the run as unreachable): the
    failures are recorded, and the run ends in an error naming them instead of returning statistics."""
    unit = "dialogue" if pipeline == "mads" else "persona"
    with FaultyOpenAIServer(fault=lambda call: 500 if call.agent == "background" else None) as server:
        with pytest.raises(RunFailed) as info:
            run_pipeline(pipeline, http_client(server, max_retries=0), tmp_path / "run", concurrency=2)
    message = str(info.value)
    assert f"all 2 {unit}s of this run failed" in message and "background: request_failed (2)" in message
    assert "HTTP 500" in message and str(tmp_path / "run") in message
    assert [r["status"] for r in generated_units(pipeline, tmp_path / "run")] == ["failed", "failed"]




@needs_emobench
def test_evaluation_stops_at_a_fatal_answer_and_when_no_item_is_answered(tmp_path):
    """A rejected key stops evaluation before any prediction is written; a chunk in which no item got an answer
    stops it too, keeping the chunks before it, and running again with a working server resumes after them."""
    def config(**changes):
        return EvalConfig(model="served-model", adapter=None, backend="openai", protocol="official", tasks=("EA",),
                          orders="original",
                          emobench_dir=str(shared_dir() / "emobench"), out_dir=str(tmp_path), n_resamples=200,
                          attempts=1, **changes)

    predictions = tmp_path / "EA-en.predictions.jsonl"
    with StatusServer(401, detail=f"bad key {FAKE_KEY}") as server:
        client = make_client("openai", "served-model", base_url=server.base_url, api_key=FAKE_KEY, max_retries=2,
                             progress=False)
        with pytest.raises(LLMFatalError) as info:
            evaluate(config(limit=3), client=client, progress=False)
    assert server.requests == 3 and "rejected the API key" in str(info.value)
    assert "Evaluation stopped: nothing of this chunk was written" in str(info.value)
    assert not predictions.exists() and FAKE_KEY not in str(info.value) and files_holding(FAKE_KEY, tmp_path) == []

    def dies_after_the_first_chunk(call, index, conversation):
        return '{"answer": "A"}' if call == 0 else LLMRequestError("cannot reach http://127.0.0.1:9/v1")

    with pytest.raises(NoAnswers, match=r"none of the 2 items .*127.0.0.1:9.* resumes after them"):
        evaluate(config(limit=4, chunk_size=2), client=ScriptedClient(dies_after_the_first_chunk), progress=False)
    assert [r.status for r in read_jsonl(predictions, Prediction)] == ["ok", "ok"]
    healthy = ScriptedClient(lambda call, index, conversation: '{"answer": "A"}')
    run = evaluate(config(limit=4, chunk_size=2), client=healthy, progress=False)
    assert sum(len(c) for c in healthy.conversations) == 2 and len(run.predictions["EA"]) == 4
    assert {r.status for r in read_jsonl(predictions, Prediction)} == {"ok"}


# Notebook 01 through papermill, against a server that refuses every request, or none at all. Only the parameters
# backend, base_url and generator_model are set; the personas and themes come from EC2ER_DATA_DIR.

NOTEBOOK_STOPS = {"401": "rejected the API key", "404": "does not know the model 'scripted-model'",
                  "no server": "is the server running at"}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(NOTEBOOK_STOPS))
def test_notebook_01_stops_with_the_cause_instead_of_finishing_green(tmp_path, monkeypatch, fault):
    import nbformat
    import papermill

    data = tmp_path / "data"
    write_personas(data / "personas" / "personas.jsonl", PERSONAS)
    save_themes(data / "personas" / "themes.json")
    monkeypatch.setenv("EC2ER_DATA_DIR", str(data))
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    executed = tmp_path / "01_mads.ipynb"

    def execute(base_url: str) -> papermill.PapermillExecutionError:
        with pytest.raises(papermill.PapermillExecutionError) as info:
            papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "01_mads.ipynb"), str(executed),
                                       parameters={"backend": "openai", "base_url": base_url,
                                                   "generator_model": "scripted-model"},
                                       cwd=str(REPO_ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
        return info.value

    if fault == "no server":
        failure = execute(f"http://127.0.0.1:{free_loopback_port()}/v1")
    else:
        with FaultyOpenAIServer(fault=lambda call: int(fault), echo_key=True) as server:
            failure = execute(server.base_url)
        assert server.calls and {c.attempt for c in server.calls} == {1}
    assert failure.ename == "LLMFatalError", (failure.ename, failure.evalue)
    assert NOTEBOOK_STOPS[fault] in failure.evalue and "Fix: " in failure.evalue
    metadata = data / "mads" / "metadata.jsonl"
    assert not metadata.exists() or metadata.read_text(encoding="utf-8") == ""  # no dialogue recorded as failed
    cells = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    stopped = next(n for n, c in enumerate(cells) if any(o.get("ename") == "LLMFatalError" for o in c.outputs))
    assert all(not c.outputs for c in cells[stopped + 1:])  # nothing after it ran: no statistics, no rate
    assert files_holding(FAKE_KEY, tmp_path) == []
