"""Test helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ec2er_utils.llm import Completion, LLMClient, LLMError
from ec2er_utils.llm.base import JSONSchema, Message
from ec2er_utils.paths import shared_dir
from tools.local_server import free_loopback_port  # noqa: F401 - re-exported for the tests

Reply = str | Completion | LLMError

SHARED = shared_dir()  # the shared/ folder beside the checkout (EmoBench, paper, personas), or None
needs_emobench = pytest.mark.skipif(SHARED is None or not (SHARED / "emobench").is_dir(),
                                    reason="needs the offline EmoBench copy in shared/emobench")


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    """A two-cell notebook as the chapters are built: a tagged ``parameters`` cell, then one code cell."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("Parameters."), cell, nbformat.v4.new_markdown_cell("Body."),
                nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


class ScriptedClient(LLMClient):
    """An :class:`LLMClient` whose backend answers from a script, for unit tests of the shared logic only.

    ``script`` is either a list with one entry per ``_complete_batch`` call, each entry a list of replies (one per
    conversation in that batch, in order), or a callable ``(call_index, conversation_index, conversation) ->
    reply``. A reply is a ``str`` (turned into a :class:`Completion` with ``prompt_tokens``/``completion_tokens``
    tokens), a ready :class:`Completion`, or an :class:`LLMError` returned in place.

    Every call is recorded in ``calls``: a dict with ``conversations`` (deep copies of what the backend
    received), ``schemas`` (one per conversation), ``schema`` (the one all conversations share, else None),
    ``temperature``, ``max_tokens`` and ``seed``.
    """

    backend = "scripted"

    def __init__(self, script: Sequence[Sequence[Reply]] | Callable[[int, int, list[Message]], Reply], *,
                 model: str = "scripted-model", prompt_tokens: int = 10, completion_tokens: int = 5,
                 **kwargs: Any):
        kwargs.setdefault("progress", False)
        super().__init__(model, **kwargs)
        self.script = script
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.calls: list[dict[str, Any]] = []

    @property
    def conversations(self) -> list[list[list[Message]]]:
        """The conversations of each call, in call order."""
        return [call["conversations"] for call in self.calls]

    async def _complete_batch(self, conversations: list[list[Message]], *, schemas: list[JSONSchema | None],
                              temperature: float, max_tokens: int, seed: int | None,
                              ) -> list[Completion | LLMError]:
        call_index = len(self.calls)
        common = schemas[0] if schemas and all(s is schemas[0] for s in schemas) else None
        self.calls.append(dict(conversations=copy.deepcopy(conversations), schema=common, schemas=list(schemas),
                               temperature=temperature, max_tokens=max_tokens, seed=seed))
        if callable(self.script):
            replies = [self.script(call_index, i, c) for i, c in enumerate(conversations)]
        else:
            if call_index >= len(self.script):
                raise AssertionError(f"ScriptedClient: unscripted call {call_index} "
                                     f"(only {len(self.script)} scripted)")
            replies = list(self.script[call_index])
            if len(replies) != len(conversations):
                raise AssertionError(f"ScriptedClient: call {call_index} got {len(conversations)} conversation(s) "
                                     f"but {len(replies)} replies are scripted")
        return [self._as_completion(r) for r in replies]

    def _as_completion(self, reply: Reply) -> Completion | LLMError:
        if isinstance(reply, (Completion, LLMError)):
            return reply
        if isinstance(reply, str):
            return Completion(text=reply, prompt_tokens=self.prompt_tokens,
                              completion_tokens=self.completion_tokens, finish_reason="stop")
        raise TypeError(f"ScriptedClient: a reply must be str, Completion or LLMError, not {type(reply)!r}")


class LoopbackHTTPServer:
    """An HTTP server on a free loopback port (``base_url`` ends in ``/v1``), served from a thread for the length
    of a ``with`` block; subclasses pass their request handler."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class StatusServer(LoopbackHTTPServer):
    """An OpenAI-compatible endpoint that answers every request with one HTTP error ``status`` (401: a key it
    rejects, 404: a model it does not know, 500: a broken server) and ``detail`` as the error message; ``requests``
    counts what it received."""

    def __init__(self, status: int, detail: str = "refused"):
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.requests += 1
                data = json.dumps({"error": {"message": detail, "type": "invalid_request_error"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
