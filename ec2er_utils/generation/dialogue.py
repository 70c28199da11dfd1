"""One therapy conversation (MADS or concise): what its speakers said, how each speaker sees it, and what happened
to it. Messages get the paper's speaker tags CLIENT / THERAPIST (§3.3) when they are recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..llm import ChatResult, LLMError, Usage
from . import prompts
from .items import ItemRejected
from .transcript import remove_redundant_turns

CLIENT, THERAPIST = "CLIENT", "THERAPIST"

_SPEAKER_PREFIX = re.compile(r"^\s*\**\s*(client|patient|therapist|counsel+or|supervisor|me|you)\s*\**\s*:\s*",
                             re.IGNORECASE)
_OTHER_SPEAKER_LINE = re.compile(r"\n\s*\**\s*(client|patient|therapist|counsel+or)\s*\**\s*:", re.IGNORECASE)


class UnitFailed(Exception):
    """A conversation cannot go on (its background or a turn failed); recorded, and the run goes on."""

    def __init__(self, stage: str, error: LLMError | str):
        super().__init__(f"{stage}: {error}")
        self.stage, self.error = stage, error


def clean_turn(text: str, finish_reason: str | None = None) -> str:
    """One spoken message: drop a leading speaker tag, cut where the model starts writing the other side, and
    when the reply ran out of tokens mid-sentence, end it at the last full sentence (if there is one)."""
    text = _SPEAKER_PREFIX.sub("", text.strip())
    cut = _OTHER_SPEAKER_LINE.search(text)
    if cut:
        text = text[:cut.start()]
    text = text.strip().strip('"').strip()
    if finish_reason == "length":
        end = max(text.rfind(p) for p in ".!?")
        if end >= len(text) // 3:
            text = text[:end + 1]
    return text


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """``SPEAKER: text`` lines (CLIENT / THERAPIST)."""
    return "\n".join(f"{m['speaker']}: {m['text']}" for m in messages)


def speaker_view(system: str, messages: Sequence[Mapping[str, str]], me: str) -> list[dict[str, str]]:
    """The conversation as one speaker sees it: its own messages as ``assistant``, the other side's as ``user``; the
    client's first message answers the therapist's welcome (``prompts.CLIENT_OPENING``)."""
    conversation = [{"role": "system", "content": system}]
    if me == CLIENT:
        conversation.append({"role": "user", "content": prompts.CLIENT_OPENING})
    for message in messages:
        role = "assistant" if message["speaker"] == me else "user"
        conversation.append({"role": role, "content": message["text"]})
    return conversation


def _topics(criteria: Sequence[str]) -> str:
    return "; ".join(prompts.STEERING_TOPICS[c] for c in criteria)


@dataclass
class Conversation:
    """A conversation in progress and everything recorded about it: ``items`` are the written
    :class:`~ec2er_utils.schemas.DatasetItem` s, ``rejected`` / ``repaired`` the items not written or mended."""

    unit_id: str
    index: int
    persona: Any
    attributes: Any
    background: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    repaired: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)

    def set_background(self, reply: ChatResult) -> None:
        self.background = reply.text.strip()
        if not self.background:
            raise UnitFailed("background", "empty_reply")

    def say(self, speaker: str, reply: ChatResult, stage: str) -> None:
        """Record one spoken message (cleaned); an empty one ends the conversation."""
        text = clean_turn(reply.text, reply.finish_reason)
        if not text:
            raise UnitFailed(f"{stage} {speaker.lower()}", "empty_reply")
        self.messages.append({"speaker": speaker, "text": text})

    def fail(self, stage: str, error: LLMError | str) -> None:
        if isinstance(error, LLMError):
            self.error = {"stage": stage, "reason": error.reason, "message": str(error)[:500]}
        else:
            self.error = {"stage": stage, "reason": error, "message": error}

    def record_item(self, reply: ChatResult | LLMError, build: Callable[[dict[str, Any]], Any], *, task: str,
                    target: str, item_id: str) -> bool:
        """Add the item ``build`` makes from an item writer's reply, or record why there is none (a failed request,
        or :class:`~.items.ItemRejected`); returns whether an item was added."""
        try:
            if isinstance(reply, LLMError):
                raise reply
            self.items.append(build(reply.data))
            return True
        except (LLMError, ItemRejected) as problem:
            detail = problem.detail if isinstance(problem, ItemRejected) else str(problem)
            self.rejected.append({"item_id": item_id, "task": task, "target": target, "reason": problem.reason,
                                  "detail": detail[:300]})
            return False

    def items_transcript(self) -> str:
        """The transcript the item writers read: without the turns in which a speaker repeats themselves (§3.3)."""
        return transcript(remove_redundant_turns(self.messages)[0])

    def redundant_turns(self) -> list[dict[str, Any]]:
        """The turns :meth:`items_transcript` leaves out: index, reason and detail (recorded, never silent)."""
        return [turn._asdict() for turn in remove_redundant_turns(self.messages)[1]]

    def client_prompt(self, max_words: int, steer: Sequence[str] = ()) -> list[dict[str, str]]:
        """The ClientAgent's next request: its persona, background and therapy attributes, and the dialogue;
        ``steer``: criteria the supervisor found unmet, for the client to open up about."""
        a = self.attributes
        system = prompts.CLIENT_SYSTEM.format(
            persona=self.persona.describe(), background=self.background, insight=a.insight,
            coping_style=a.coping_style.replace("_", " "),
            communication_style=a.communication_style.replace("_", " "), max_words=max_words)
        if steer:
            system += prompts.CLIENT_STEERING.format(topics=_topics(steer))
        return speaker_view(system, self.messages, CLIENT)

    def therapist_prompt(self, max_words: int, steer: Sequence[str] = ()) -> list[dict[str, str]]:
        """The TherapistAgent's next request: the client's background and the dialogue; ``steer``: criteria the
        supervisor found unmet, for the therapist to explore."""
        system = prompts.THERAPIST_SYSTEM.format(background=self.background, max_words=max_words)
        if steer:
            system += prompts.THERAPIST_STEERING.format(topics=_topics(steer))
        return speaker_view(system, self.messages, THERAPIST)
