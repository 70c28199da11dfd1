"""A scripted chat backend for unit tests of the generation pipelines' turn logic (MADS, concise).

It is a real :class:`~ec2er_utils.llm.base.LLMClient` (only ``_complete_batch`` is scripted), so the client's
schema validation, re-asks and usage accounting run as they do with a model. Replies depend only on what each
conversation contains, so the backend is deterministic: the same run gives the same files.

Which agent a conversation belongs to is read from its system prompt; the JSON schema (when given) says which item
draft to fill.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from ec2er_utils.generation import prompts
from ec2er_utils.llm import Completion, LLMClient, LLMError, LLMRequestError
from ec2er_utils.llm.base import JSONSchema, Message
from ec2er_utils.taxonomy import EA_CATEGORIES, EU_CATEGORIES


class InjectedCrash(RuntimeError):
    """Stands in for a process killed mid-run (not an LLMError: nothing catches it)."""


def agent_of(conversation: list[Message]) -> str:
    system = conversation[0]["content"] if conversation and conversation[0]["role"] == "system" else ""
    for agent, prefix in (("background", prompts.BACKGROUND_SYSTEM), ("client", prompts.CLIENT_SYSTEM[:40]),
                          ("therapist", prompts.THERAPIST_SYSTEM[:40]), ("supervisor", prompts.SUPERVISOR_SYSTEM),
                          ("extractor", prompts.EXTRACTOR_SYSTEM)):
        if system.startswith(prefix):
            return agent
    raise AssertionError(f"unknown agent for system prompt {system[:80]!r}")


def tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def turns_in(conversation: list[Message]) -> int:
    """Completed turns in a supervisor request: the number of CLIENT lines in its transcript."""
    return len(re.findall(r"^CLIENT: ", conversation[-1]["content"], re.MULTILINE))


class ScriptedGenerationClient(LLMClient):
    """Deterministic replies for every agent.

    - ``criteria_at(conversation) -> int | None``: the turn from which the supervisor says all four criteria hold
      (None: never). Default: always from turn 1.
    - ``fail(agent, conversation) -> LLMError | None``: return an error in place of a reply.
    - ``draft_override(title, draft, conversation) -> dict | str``: change an item draft (return a str to send raw
      text, e.g. invalid JSON).
    - ``crash_at_call``: raise :class:`InjectedCrash` when the backend is called for the n-th time (0-based).
    """

    backend = "scripted"

    def __init__(self, *, criteria_at: Callable[[list[Message]], int | None] | None = None,
                 fail: Callable[[str, list[Message]], LLMError | None] | None = None,
                 draft_override: Callable[[str, dict, list[Message]], dict | str] | None = None,
                 crash_at_call: int | None = None, **kwargs: Any):
        kwargs.setdefault("progress", False)
        kwargs.setdefault("max_reasks", 1)
        super().__init__("scripted-model", **kwargs)
        self.criteria_at = criteria_at or (lambda conversation: 1)
        self.fail = fail or (lambda agent, conversation: None)
        self.draft_override = draft_override
        self.crash_at_call = crash_at_call
        self.calls: list[dict[str, Any]] = []  # per backend call: agents, batch size, schema title
        self.seen: list[list[Message]] = []  # every conversation sent, in order

    def agent_counts(self) -> Counter:
        return Counter(a for call in self.calls for a in call["agents"])

    async def _complete_batch(self, conversations: list[list[Message]], *, schemas: list[JSONSchema | None],
                              temperature: float, max_tokens: int, seed: int | None) -> list[Completion | LLMError]:
        if self.crash_at_call is not None and len(self.calls) >= self.crash_at_call:
            raise InjectedCrash(f"injected crash at backend call {len(self.calls)}")
        agents = [agent_of(c) for c in conversations]
        self.seen += conversations
        names = sorted({s.name for s in schemas if s is not None})
        self.calls.append({"agents": agents, "size": len(conversations), "schema": "+".join(names) or None,
                           "seed": seed})
        replies: list[Completion | LLMError] = []
        for agent, conversation, schema in zip(agents, conversations, schemas, strict=True):
            error = self.fail(agent, conversation)
            if error is not None:
                replies.append(error)
                continue
            text = self._reply(agent, conversation, schema)
            replies.append(Completion(text=text, prompt_tokens=sum(len(m["content"]) for m in conversation) // 4,
                                      completion_tokens=max(1, len(text) // 4), finish_reason="stop"))
        return replies

    def _reply(self, agent: str, conversation: list[Message], schema: JSONSchema | None) -> str:
        key = tag(conversation[0]["content"] + conversation[1]["content"])
        if agent == "background":
            name = "Alex" if "grief" not in conversation[1]["content"] else "Sam"
            return f"{name} ({key}) is struggling: " + "a recent event shook them. " * 8
        if agent in ("client", "therapist"):
            said = sum(m["role"] == "assistant" for m in conversation)
            return f"{agent} message {said + 1} [{key}] about feelings and a hard choice."
        if agent == "supervisor":
            turns = turns_in(conversation)
            start = self.criteria_at(conversation)
            met = start is not None and turns >= start
            return json.dumps({"reason": f"after {turns} turns", "scenario": met, "emotions": met, "causes": True,
                               "dilemma": met})
        assert schema is not None, "extractors always send a schema"
        draft = self._draft(schema.name, schema.json_schema, key)
        floor = schema.json_schema["properties"]["scenario"]["minLength"]
        while len(draft["scenario"]) < floor:  # honour the schema's scenario length, as a grammar would
            draft["scenario"] += " It keeps coming back to him."
        if self.draft_override is not None:
            draft = self.draft_override(schema.name, draft, conversation)
            if isinstance(draft, str):
                return draft
        return json.dumps(draft)

    @staticmethod
    def _draft(title: str, schema: dict, key: str) -> dict:
        if title == "EUItemDraft":
            return {"scenario": f"Alex [{key}] heard the news at dinner and went quiet.", "subject": "Alex",
                    "emotion_label": "Guilt", "emotion_distractors": ["Joy", "Anger", "Pride", "Fear", "Relief"],
                    "emotion_explanation": "He blames himself for the news and cannot say so.",
                    "cause_label": "He missed the call",
                    "cause_distractors": ["He lost a bet", "He was tired", "He disliked dinner"],
                    "cause_explanation": "The missed call is what he keeps returning to."}
        if title == "EUMixedItemDraft":
            return {"scenario": f"Alex [{key}] left the job he hated and went quiet at the farewell.",
                    "subject": "Alex", "emotion_label": ["Relief", "Guilt"],
                    "emotion_distractors": [["Joy", "Anger"], ["Pride", "Fear"], ["Sadness", "Joy"],
                                            ["Anger", "Fear"], ["Pride", "Sadness"]],
                    "emotion_explanation": "He is glad to go and sorry to leave them.",
                    "cause_label": "He left his team behind",
                    "cause_distractors": ["He lost a bet", "He was tired", "He disliked dinner"],
                    "cause_explanation": "Leaving the team is what he keeps returning to."}
        if title == "EAItemDraft":
            return {"scenario": f"Alex [{key}] must decide whether to call his sister.", "subject": "Alex",
                    "best_choice": "Call and apologise",
                    "other_choices": ["Ignore the call", "Send a meme", "Move far away"],
                    "explanation": "Repair matters to him more than being right about the fight."}
        if title in ("EUMCQDraft", "EAMCQDraft"):
            eu = title.startswith("EU")
            return {"scenario": f"Alex [{key}] faces a hard moment with his family.",
                    "question": "What does Alex most likely feel?" if eu else "What should Alex do?",
                    "correct_answer": "Guilt" if eu else "Talk to his sister",
                    "distractors": (["Joy", "Pride", "Boredom"] if eu
                                    else ["Leave the house", "Shout at her", "Ignore her"]),
                    "explanation": "The cues in the scenario point to this answer and not the others."}
        raise AssertionError(f"unexpected schema {title}")


def request_error(message: str = "scripted outage") -> LLMRequestError:
    return LLMRequestError(message)


def assert_stopped_at_quotas(summary: dict[str, Any], quotas: dict[str, int], written: str, asked: int) -> None:
    """A generator's run summary says it filled every category's quota exactly, then stopped before ``asked``."""
    assert summary["eu_categories"] == {c: quotas[c] for c in EU_CATEGORIES}
    assert summary["ea_categories"] == {c: quotas[c] for c in EA_CATEGORIES}
    assert summary["stopped_early"] == "quotas_met" and summary[written] < asked
