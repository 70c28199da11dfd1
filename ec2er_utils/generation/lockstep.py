"""Run the paper's algorithms for many conversations at once, written as if for one. Algorithms 1 and 2 are
generator functions over one conversation: each ``yield`` hands out one agent's :class:`Request` (or a list) and gets
its reply back; :func:`run_lockstep` sends each step's pending requests of a batch as ONE ``chat_many`` call.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from ..llm import ChatResult, LLMClient, LLMError, Usage
from ..seeds import sampling_seed
from .dialogue import Conversation, UnitFailed

Reply = ChatResult | LLMError


@dataclass
class Request:
    """One agent's request. Requests of the same ``step`` from different conversations share one batched call,
    so they must share ``temperature`` and ``max_tokens``; each may have its own ``schema``."""

    step: str  # e.g. "background", "turn 3 client", "supervisor", "items": also what the sampling seed depends on
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int
    schema: dict[str, Any] | None = None
    required: bool = False  # a failure ends the conversation
    timing: str = "dialogue_s"  # which timing the wall time is charged to
    last: bool = False  # served only when no other step is pending (extraction waits for the batch's dialogues)


Algorithm = Generator["Request | list[Request]", "Reply | list[Reply]", None]


def _advance(conversation: Conversation, algorithm: Algorithm, reply: Any, pending: Request | list | None):
    """Send ``reply`` to the algorithm; returns its next request(s), or None once the conversation is over."""
    try:
        required = [r for r in (pending if isinstance(pending, list) else [pending]) if r is not None and r.required]
        if required and isinstance(reply, LLMError):
            raise UnitFailed(required[0].step, reply)
        following = algorithm.send(reply)
        while following == []:  # nothing to ask (e.g. every category's quota is full): answer at once
            following = algorithm.send([])
        return following
    except UnitFailed as failure:
        conversation.fail(failure.stage, failure.error)
        algorithm.close()
    except StopIteration:
        pass
    return None


def run_lockstep(client: LLMClient, runs: Sequence[tuple[Conversation, Algorithm]], *, seed: int = 0,
                 on_step: Any = None) -> list[Conversation]:
    """Advance every ``(conversation, algorithm)`` pair to its end, one batched call per step; returns the
    conversations (their ``usage`` and ``timings`` filled in). ``seed`` and the step name give each call its
    sampling seed; ``on_step(step)`` is called before each call (a progress bar's label)."""
    pending: dict[int, Request | list[Request]] = {}
    for n, (conversation, algorithm) in enumerate(runs):
        request = _advance(conversation, algorithm, None, None)
        if request is not None:
            pending[n] = request
    while pending:
        flat = [(n, k, r) for n, req in pending.items() for k, r in enumerate(req if isinstance(req, list) else [req])]
        if any(not r.last for _, _, r in flat):
            flat = [entry for entry in flat if not entry[2].last]
        step = flat[0][2].step
        batch = [entry for entry in flat if entry[2].step == step]
        if on_step is not None:
            on_step(step)
        started = time.perf_counter()
        replies = client.chat_many([r.messages for _, _, r in batch], schemas=[r.schema for _, _, r in batch],
                                   temperature=batch[0][2].temperature, max_tokens=batch[0][2].max_tokens,
                                   seed=sampling_seed(seed, step))
        elapsed = time.perf_counter() - started
        answered: dict[int, dict[int, Reply]] = {}
        for (n, k, _request), reply in zip(batch, replies, strict=True):
            used = getattr(reply, "usage", None) or Usage()
            runs[n][0].usage.add(used.prompt_tokens, used.completion_tokens, used.calls or 1)
            answered.setdefault(n, {})[k] = reply
        for n, replies_of_n in answered.items():
            conversation, algorithm = runs[n]
            timing = batch[0][2].timing
            conversation.timings[timing] = round(conversation.timings.get(timing, 0.0) + elapsed, 3)
            request = pending[n]  # a list is answered in one step (its requests share the step name)
            reply = [replies_of_n[k] for k in range(len(request))] if isinstance(request, list) else replies_of_n[0]
            following = _advance(conversation, algorithm, reply, request)
            if following is None:
                del pending[n]
            else:
                pending[n] = following
    return [conversation for conversation, _ in runs]


def run_one(client: LLMClient, conversation: Conversation, algorithm: Algorithm, *, seed: int = 0) -> Conversation:
    """One conversation through its algorithm, request by request."""
    return run_lockstep(client, [(conversation, algorithm)], seed=seed)[0]
