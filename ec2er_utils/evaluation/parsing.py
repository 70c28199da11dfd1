"""Reading answer letters out of replies to the ``official`` prompt, recording why a reply could not be read.

By default this parses like the official harness (``parse_json_response`` in EmoBench's ``src/utils.py``): the JSON
is the whole reply or the inside of a ```` ```json ```` fence; ``lenient=True`` also accepts a bare fence or one JSON
object amid other text (a departure, off by default). Answers are kept as written and compared exactly, as the
harness does (``"a"`` or ``"A) Joy"`` count as wrong); an unreadable reply gets a status saying what went wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..llm import extract_json_text
from .prompts import OFFICIAL_ANSWER_KEYS

OK = "ok"
TRUNCATED = "truncated"  # the reply hit the token limit before the JSON was complete
NO_JSON = "no_json"  # nothing that parses as JSON
NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object
MISSING_KEYS = "missing_keys"  # a JSON object without the answer key(s)
INVALID_JSON = "invalid_json"  # ``paper`` protocol: no schema-valid JSON after the client's re-asks
REQUEST_FAILED = "request_failed"  # the backend could not answer at all
STATUSES = (OK, TRUNCATED, NO_JSON, NOT_AN_OBJECT, MISSING_KEYS, INVALID_JSON, REQUEST_FAILED)

_OFFICIAL_FENCE = re.compile(r"```json\s*([\s\S]*?)```", re.DOTALL)


@dataclass
class ParsedReply:
    """The answers read from one reply (``""`` where none could be read) and the parse status."""

    answers: dict[str, str]
    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def _official_json(text: str) -> Any:
    """What the official parser would load, or raise ValueError."""
    if "```json" in text:
        fenced = _OFFICIAL_FENCE.search(text)
        if fenced is None:  # an opened but unclosed fence
            raise ValueError("unclosed ```json fence")
        text = fenced.group(1)
    return json.loads(text)


def _as_answer(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_official_reply(text: str | None, task: str, *, finish_reason: str | None = None,
                         lenient: bool = False) -> ParsedReply:
    """Parse a reply to the official prompt of ``task`` into ``{"emotion", "cause"}`` (EU) or ``{"answer"}`` (EA)."""
    keys = OFFICIAL_ANSWER_KEYS[task]
    empty = dict.fromkeys(keys, "")
    text = text or ""
    try:
        data = _official_json(text)
    except ValueError as official_error:
        data = None
        if lenient:
            try:
                data = json.loads(extract_json_text(text))
            except ValueError:
                data = None
        if data is None:
            looks_cut = finish_reason == "length" or (text.count("{") > text.count("}"))
            status = TRUNCATED if looks_cut else NO_JSON
            return ParsedReply(empty, status, f"{official_error}")
    if not isinstance(data, dict):
        return ParsedReply(empty, NOT_AN_OBJECT, f"JSON {type(data).__name__}, not an object")
    missing = [official for official in keys.values() if official not in data]
    answers = {ours: _as_answer(data[official]) if official in data else "" for ours, official in keys.items()}
    if missing:
        return ParsedReply(answers, MISSING_KEYS, f"missing {', '.join(missing)}")
    return ParsedReply(answers, OK)
