"""The LLM client every notebook uses (README, "One LLM client for every notebook"). A backend implements one
method, :meth:`LLMClient._complete_batch`; schema validation, re-asks, token accounting, typed errors and the
synchronous wrappers (which also work inside Jupyter's running event loop) are shared here.
"""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

Message = dict[str, str]
Conversation = Sequence[Message]
SchemaLike = type[BaseModel] | dict[str, Any]

_ROLES = {"system", "user", "assistant"}


@dataclass
class Usage:
    """Token counts: per call on a result, cumulative on a client (``client.usage``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, calls: int = 1) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += calls

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "calls": self.calls}


@dataclass
class Completion:
    """One raw answer from a backend, before any JSON handling."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    reasoning: str | None = None  # gpt-oss and other reasoning models: kept apart from the answer


@dataclass
class ChatResult:
    """The answer to one conversation."""

    text: str
    data: Any = None  # the validated JSON (a dict, or a pydantic model instance) when a schema was given
    reasoning: str | None = None
    finish_reason: str | None = None
    attempts: int = 1  # 1 + the number of re-asks it took
    usage: Usage = field(default_factory=Usage)


class LLMError(Exception):
    """Base of the typed errors a caller counts; ``reason`` is a short machine-readable tag, ``status_code`` the
    HTTP status behind the error, if any."""

    reason = "llm_error"

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class LLMRequestError(LLMError):
    """The backend could not answer (connection refused, HTTP error, timeout) after its retries."""

    reason = "request_failed"


class LLMFatalError(LLMError):
    """A configuration error no retry or resume mends (API key rejected, unknown model or path, no server).
    ``achat_many`` raises it rather than returning it in place, so a run stops at the first one; the message names
    the cause and the fix (``fix`` holds the fix alone)."""

    reason = "fatal_configuration"

    def __init__(self, message: str, *, status_code: int | None = None, fix: str = ""):
        super().__init__(message, status_code=status_code)
        self.fix = fix


class LLMInvalidJSONError(LLMError):
    """Every attempt, the first answer and each re-ask, gave text that is not valid JSON for the schema."""

    reason = "invalid_json"

    def __init__(self, message: str, *, raw_text: str, attempts: int, usage: Usage):
        super().__init__(message)
        self.raw_text = raw_text
        self.attempts = attempts
        self.usage = usage


class SchemaViolation(ValueError):
    """A reply that is not JSON, or JSON that does not match the schema."""


class JSONSchema:
    """A schema given as a pydantic model class or a JSON-schema dict, with one ``validate(text)`` for both."""

    def __init__(self, schema: SchemaLike, name: str | None = None):
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            self.model: type[BaseModel] | None = schema
            self.json_schema = schema.model_json_schema()
            self.name = name or schema.__name__
        elif isinstance(schema, dict):
            jsonschema.Draft202012Validator.check_schema(schema)
            self.model = None
            self.json_schema = schema
            self.name = name or str(schema.get("title", "response"))
        else:
            raise TypeError(f"schema must be a pydantic model class or a JSON-schema dict, not {type(schema)!r}")
        self.name = re.sub(r"[^A-Za-z0-9_-]", "_", self.name)[:64] or "response"
        self._validator = None if self.model else jsonschema.Draft202012Validator(self.json_schema)

    def validate(self, text: str) -> Any:
        """Parse ``text`` (tolerating a Markdown code fence or chatter around one JSON object) and validate it."""
        candidate = extract_json_text(text)
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate)  # tolerates chatter after the object
        except json.JSONDecodeError as err:
            raise SchemaViolation(f"not valid JSON ({err.msg} at character {err.pos})") from None
        if self.model is not None:
            try:
                return self.model.model_validate(value)
            except ValidationError as err:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in err.errors())
                raise SchemaViolation(f"does not match the schema ({problems})") from None
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            problems = "; ".join(f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5])
            raise SchemaViolation(f"does not match the schema ({problems})")
        return value

    def response_format(self) -> dict[str, Any]:
        """OpenAI ``response_format`` for servers that enforce JSON schemas (vLLM, OpenAI)."""
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.json_schema}}

    def reask_message(self, problem: str) -> Message:
        return {"role": "user", "content": (
            f"Your previous reply {problem}. Reply again with only one JSON object, no other text, "
            f"that matches this JSON schema:\n{json.dumps(self.json_schema)}")}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json_text(text: str) -> str:
    """The JSON part of a reply: the inside of a code fence, else the span from the first ``{`` to the last ``}``."""
    text = text.strip()
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    if text.startswith(("{", "[")):
        return text
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


def validate_conversation(messages: Conversation, index: int) -> list[Message]:
    """Check the shape of conversation ``index`` and return it as a list of plain dicts."""
    where = f"conversation {index}"
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"{where}: expected a non-empty list of {{'role': ..., 'content': ...}} messages")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"{where}, message {i}: expected {{'role': one of {sorted(_ROLES)}, 'content': str}}, "
                             f"got {message!r:.200}")
        checked.append({"role": message["role"], "content": message["content"]})
    return checked


class LLMClient(ABC):
    """Shared behaviour of every backend. Create one with :func:`ec2er_utils.llm.make_client`."""

    backend: str = "abstract"

    def __init__(self, model: str, *, temperature: float = 0.7, max_tokens: int = 512, seed: int | None = None,
                 max_reasks: int = 2, progress: bool = True, top_p: float = 1.0):
        if max_reasks < 0:
            raise ValueError(f"max_reasks must be >= 0, got {max_reasks}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 samples from the whole distribution), got {top_p}")
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.max_reasks = max_reasks
        self.progress = progress
        self.top_p = top_p  # nucleus sampling when temperature > 0; a client-wide setting, like the model
        self.usage = Usage()

    def __repr__(self) -> str:  # never includes credentials
        return f"{type(self).__name__}(model={self.model!r})"

    @abstractmethod
    async def _complete_batch(self, conversations: list[list[Message]], *, schemas: list[JSONSchema | None],
                              temperature: float, max_tokens: int, seed: int | None,
                              ) -> list[Completion | LLMError]:
        """Answer each conversation once, ``schemas[i]`` (or None: free text) constraining conversation ``i``.
        Failures are returned in place, as :class:`LLMError`, not raised (:meth:`achat_many` raises the first
        :class:`LLMFatalError` among them)."""

    async def achat_many(self, conversations: Sequence[Conversation], *, schema: SchemaLike | None = None,
                         schemas: Sequence[SchemaLike | None] | None = None,
                         temperature: float | None = None, max_tokens: int | None = None,
                         seed: int | None = None, desc: str | None = None) -> list[ChatResult | LLMError]:
        """Answer many conversations; each entry is a :class:`ChatResult` or the :class:`LLMError` it ended in.

        ``schema`` constrains every reply; ``schemas`` instead gives one schema (or None) per conversation, so
        requests of different shapes (e.g. EU and EA items) still share one batch of a batching backend. Replies
        that fail validation are re-asked (all together, so batching backends stay batched) up to ``max_reasks``
        times; a conversation still invalid after that yields :class:`LLMInvalidJSONError`. A configuration error
        (:class:`LLMFatalError`: key rejected, unknown model, no server) is raised instead: no conversation can be
        answered until it is fixed.
        """
        checked = [validate_conversation(c, i) for i, c in enumerate(conversations)]
        specs = _per_conversation_specs(schema, schemas, len(checked))
        options = dict(temperature=self.temperature if temperature is None else temperature,
                       max_tokens=max_tokens or self.max_tokens, seed=self.seed if seed is None else seed)
        results: list[ChatResult | LLMError | None] = [None] * len(checked)
        usages = [Usage() for _ in checked]
        pending = list(range(len(checked)))
        history = {i: list(c) for i, c in enumerate(checked)}
        for attempt in range(1, self.max_reasks + 2):
            answers = await self._complete_batch([history[i] for i in pending], schemas=[specs[i] for i in pending],
                                                 **options)
            fatal = next((a for a in answers if isinstance(a, LLMFatalError)), None)
            if fatal is not None:
                raise fatal
            still_invalid = []
            for i, answer in zip(pending, answers, strict=True):
                if isinstance(answer, LLMError):
                    results[i] = answer
                    continue
                usages[i].add(answer.prompt_tokens, answer.completion_tokens)
                self.usage.add(answer.prompt_tokens, answer.completion_tokens)
                spec = specs[i]
                try:
                    data = None if spec is None else spec.validate(answer.text)
                except SchemaViolation as problem:
                    if attempt > self.max_reasks:
                        results[i] = LLMInvalidJSONError(
                            f"no schema-valid JSON after {attempt} attempt(s); last reply {problem}",
                            raw_text=answer.text, attempts=attempt, usage=usages[i])
                    else:
                        history[i] += [{"role": "assistant", "content": answer.text}, spec.reask_message(str(problem))]
                        still_invalid.append(i)
                    continue
                results[i] = ChatResult(answer.text, data, answer.reasoning, answer.finish_reason, attempt, usages[i])
            pending = still_invalid
            if not pending:
                break
            if options["seed"] is not None:  # a re-ask with the same seed could repeat the same mistake
                options["seed"] += 1
        return results  # type: ignore[return-value]

    async def achat(self, messages: Conversation, *, schema: SchemaLike | None = None,
                    temperature: float | None = None, max_tokens: int | None = None,
                    seed: int | None = None) -> ChatResult:
        """Answer one conversation; raises the :class:`LLMError` it ended in."""
        (result,) = await self.achat_many([messages], schema=schema, temperature=temperature,
                                          max_tokens=max_tokens, seed=seed)
        if isinstance(result, LLMError):
            raise result
        return result

    def chat(self, messages: Conversation, **kwargs: Any) -> ChatResult:
        """Synchronous :meth:`achat`; works in scripts and inside Jupyter's running event loop."""
        return run_sync(self.achat(messages, **kwargs))

    def chat_many(self, conversations: Sequence[Conversation], **kwargs: Any) -> list[ChatResult | LLMError]:
        """Synchronous :meth:`achat_many`."""
        return run_sync(self.achat_many(conversations, **kwargs))

    def close(self) -> None:  # noqa: B027 - an optional hook, not every backend holds resources
        """Release resources (a local model's memory); the client is unusable afterwards."""


def _per_conversation_specs(schema: SchemaLike | None, schemas: Sequence[SchemaLike | None] | None,
                            count: int) -> list[JSONSchema | None]:
    """One :class:`JSONSchema` (or None) per conversation; each distinct schema is checked and wrapped once."""
    if schemas is None:
        return [JSONSchema(schema) if schema is not None else None] * count
    if schema is not None:
        raise ValueError("pass either schema= (one for every conversation) or schemas= (one per conversation), "
                         "not both")
    if isinstance(schemas, (dict, str, bytes)) or not isinstance(schemas, Sequence):
        raise TypeError("schemas= takes a list with one schema (or None) per conversation; for one schema shared "
                        "by all, pass schema=")
    if len(schemas) != count:
        raise ValueError(f"schemas= has {len(schemas)} entries for {count} conversation(s); give one per "
                         "conversation")
    distinct = {id(given): given for given in schemas if given is not None}
    wrapped = {key: JSONSchema(given) for key, given in distinct.items()}
    return [None if given is None else wrapped[id(given)] for given in schemas]


def run_sync(coro):
    """Run a coroutine to completion from synchronous code, even where an event loop already runs (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
