"""The ``openai`` backend: any OpenAI-compatible endpoint (vLLM serving gpt-oss-20b as in the paper, OpenAI itself,
``transformers serve``, llama.cpp's server).

Concurrency is bounded by a semaphore; retries with exponential backoff on 429, 5xx, connection errors and
timeouts are the openai SDK's own (``max_retries``); structured output is requested with ``response_format``
(enforced by vLLM and OpenAI, ignored by some servers) and always validated on our side as well.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import openai
from pydantic import SecretStr

from .base import Completion, JSONSchema, LLMClient, LLMError, LLMRequestError, Message

# Servers that ignore the key (vLLM without --api-key, transformers serve) still need a non-empty one.
_PLACEHOLDER_KEY = "EMPTY"


class OpenAIClient(LLMClient):
    """Chat with an OpenAI-compatible server. The API key is held as a secret and never printed or logged."""

    backend = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | SecretStr | None = None,
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 4,
                 structured_output: bool = True, extra_body: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = key if isinstance(key, SecretStr) else SecretStr(key or _PLACEHOLDER_KEY)
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.structured_output = structured_output
        self.extra_body = extra_body or {}

    def __repr__(self) -> str:
        return f"OpenAIClient(model={self.model!r}, base_url={self.base_url!r}, api_key=**********)"

    def _redact(self, text: str) -> str:
        secret = self._api_key.get_secret_value()
        return text.replace(secret, "**********") if secret and secret != _PLACEHOLDER_KEY else text

    async def _complete_batch(self, conversations: list[list[Message]], *, schemas: list[JSONSchema | None],
                              temperature: float, max_tokens: int, seed: int | None,
                              ) -> list[Completion | LLMError]:
        # One SDK client per batch: an httpx client belongs to the event loop that created it, and the sync
        # wrappers may run each batch on a fresh loop.
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key.get_secret_value(),
                                      timeout=self.timeout, max_retries=self.max_retries) as client:
            limit = asyncio.Semaphore(self.concurrency)

            async def one(messages: list[Message], schema: JSONSchema | None) -> Completion | LLMError:
                async with limit:
                    return await self._complete_one(client, messages, schema, temperature, max_tokens, seed)

            return await _gather_with_progress([one(c, s) for c, s in zip(conversations, schemas, strict=True)],
                                               self.progress, self.model)

    async def _complete_one(self, client: openai.AsyncOpenAI, messages: list[Message], schema: JSONSchema | None,
                            temperature: float, max_tokens: int, seed: int | None) -> Completion | LLMError:
        request: dict[str, Any] = dict(model=self.model, messages=messages, temperature=temperature,
                                       max_tokens=max_tokens)
        if seed is not None:
            request["seed"] = seed
        if self.top_p < 1:
            request["top_p"] = self.top_p
        if schema is not None and self.structured_output:
            request["response_format"] = schema.response_format()
        if self.extra_body:
            request["extra_body"] = self.extra_body
        where = self.base_url or "OpenAI"
        try:
            response = await client.chat.completions.create(**request)
            if not response.choices:
                return LLMRequestError(f"{where} returned no choices")
            choice = response.choices[0]
            message = choice.message
            extra = message.model_extra or {}
            # vLLM returns gpt-oss's analysis channel as `reasoning` (newer) or `reasoning_content` (older).
            reasoning = extra.get("reasoning") or extra.get("reasoning_content")
            usage = response.usage
        except openai.APIStatusError as err:
            detail = err.message
            if " - " not in detail and err.body:  # FastAPI-style servers put the reason in {"detail": ...}
                body = err.body.get("detail") or err.body.get("message") if isinstance(err.body, dict) else err.body
                detail = f"{detail} - {str(body)[:300]}"
            return LLMRequestError(self._redact(f"HTTP {err.status_code} from {where} "
                                                f"(max_retries={self.max_retries}): {detail}"),
                                   status_code=err.status_code)
        except openai.APITimeoutError:
            return LLMRequestError(f"timed out after {self.timeout:g}s at {where} (max_retries={self.max_retries})")
        except openai.APIConnectionError as err:
            return LLMRequestError(self._redact(f"cannot reach {where} (max_retries={self.max_retries}): {err}"))
        except (openai.APIError, ValueError, AttributeError, TypeError, IndexError) as err:
            return LLMRequestError(self._redact(f"malformed response from {where}: {type(err).__name__}: {err}"))
        return Completion(text=message.content or "", reasoning=reasoning, finish_reason=choice.finish_reason,
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0)


async def _gather_with_progress(coros: list, progress: bool, label: str) -> list:
    """``asyncio.gather`` in order, with a tqdm bar when there is more than one request."""
    if not progress or len(coros) < 2:
        return await asyncio.gather(*coros)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(coros), desc=f"{label}", unit="req", leave=False)

    async def tick(coro):
        try:
            return await coro
        finally:
            bar.update(1)

    try:
        return await asyncio.gather(*(tick(c) for c in coros))
    finally:
        bar.close()
