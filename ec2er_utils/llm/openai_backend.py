"""The ``openai`` backend: any OpenAI-compatible endpoint (vLLM, OpenAI, ``transformers serve``, llama.cpp's server).

Retries are the openai SDK's (``max_retries``). Configuration errors are not retried and end in
:class:`~ec2er_utils.llm.base.LLMFatalError`, which stops a run: HTTP 401/403 (the key), HTTP 404 (the model name or
the URL's path), and a server this client has never reached. Once a server has answered, losing it is an
:class:`~ec2er_utils.llm.base.LLMRequestError` like any other transport failure.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import openai
from pydantic import SecretStr
from tqdm.auto import tqdm

from .base import Completion, JSONSchema, LLMClient, LLMError, LLMFatalError, LLMRequestError, Message

# Servers that ignore the key (vLLM without --api-key, transformers serve) still need a non-empty one.
_PLACEHOLDER_KEY = "EMPTY"
# Answers no retry or resume mends: the key is rejected, or the model or path is unknown.
FATAL_STATUS = (401, 403, 404)


class _SDKClient(openai.AsyncOpenAI):
    """The SDK's client, except that a fatal answer is never retried (not even when the server's
    ``x-should-retry`` header asks for it; by default the SDK retries only 408, 409, 429 and 5xx)."""

    def _should_retry(self, response) -> bool:
        return response.status_code not in FATAL_STATUS and super()._should_retry(response)


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
        self._reached = False  # any answer from the server, even an HTTP error: it runs at base_url

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
        async with _SDKClient(base_url=self.base_url, api_key=self._api_key.get_secret_value(),
                              timeout=self.timeout, max_retries=self.max_retries) as client:
            limit = asyncio.Semaphore(self.concurrency)
            with tqdm(total=len(conversations), desc=self.model, unit="req", leave=False,
                      disable=not self.progress or len(conversations) < 2) as bar:

                async def one(messages: list[Message], schema: JSONSchema | None) -> Completion | LLMError:
                    async with limit:
                        answer = await self._complete_one(client, messages, schema, temperature, max_tokens, seed)
                    bar.update(1)
                    return answer

                answers = await asyncio.gather(*(one(c, s) for c, s in zip(conversations, schemas, strict=True)))
            first = next((n for n, a in enumerate(answers) if isinstance(a, LLMFatalError)), None)
            if first is not None and answers[first].status_code == 404:  # the one achat_many raises
                answers[first] = await self._name_served_models(client, answers[first])
            return answers

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
            self._reached = True
            if not response.choices:
                return LLMRequestError(f"{where} returned no choices")
            choice = response.choices[0]
            message = choice.message
            extra = message.model_extra or {}
            # vLLM returns gpt-oss's analysis channel as `reasoning` (newer) or `reasoning_content` (older).
            reasoning = extra.get("reasoning") or extra.get("reasoning_content")
            usage = response.usage
        except openai.APIStatusError as err:
            self._reached = True
            detail = err.message
            if " - " not in detail and err.body:  # FastAPI-style servers put the reason in {"detail": ...}
                body = err.body.get("detail") or err.body.get("message") if isinstance(err.body, dict) else err.body
                detail = f"{detail} - {str(body)[:300]}"
            if err.status_code in FATAL_STATUS:
                return self._fatal(f"HTTP {err.status_code} from {where}: {detail}", err.status_code)
            return LLMRequestError(self._redact(f"HTTP {err.status_code} from {where} "
                                                f"(max_retries={self.max_retries}): {detail}"),
                                   status_code=err.status_code)
        except openai.APITimeoutError:
            return LLMRequestError(f"timed out after {self.timeout:g}s at {where} (max_retries={self.max_retries})")
        except openai.APIConnectionError as err:
            problem = f"cannot reach {where} (max_retries={self.max_retries}): {err}"
            if not self._reached:
                return self._fatal(problem, None)
            return LLMRequestError(self._redact(problem))
        except (openai.APIError, ValueError, AttributeError, TypeError, IndexError) as err:
            return LLMRequestError(self._redact(f"malformed response from {where}: {type(err).__name__}: {err}"))
        return Completion(text=message.content or "", reasoning=reasoning, finish_reason=choice.finish_reason,
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0)

    def _fatal(self, problem: str, status_code: int | None) -> LLMFatalError:
        """The error that stops a run: what happened, why it stops, and the fix."""
        where = self.base_url or "the OpenAI API"
        if status_code in (401, 403):
            cause = "the server rejected the API key, which no retry or resume mends"
            fix = (f"set OPENAI_API_KEY to a key that {where} accepts (vLLM: the value given to `vllm serve "
                   "--api-key`), or unset it for a server started without a key, and check that base_url is your "
                   "server's")
        elif status_code == 404:
            cause = (f"the server does not know the model {self.model!r} (or base_url's path is wrong), which no "
                     "retry or resume mends")
            fix = (f"pass as the model (generator_model, model) a name the server serves (vLLM serves the name "
                   f"given to `vllm serve`; GET {where}/models lists them), and a base_url that ends in /v1, e.g. "
                   "http://localhost:8000/v1")
        else:
            cause = "no server has answered there in this session, so no request can be answered"
            fix = (f"is the server running at {where}? Start it first (e.g. `vllm serve {self.model}` or "
                   "`transformers serve`) and wait until it answers, or correct base_url")
        message = f"{problem.rstrip('. ')}. Stopped: {cause}. Fix: {fix}."
        return LLMFatalError(self._redact(message), status_code=status_code, fix=self._redact(fix))

    async def _name_served_models(self, client: openai.AsyncOpenAI, error: LLMFatalError) -> LLMFatalError:
        """A 404's error with the names the server serves, when it lists them (``GET /models``)."""
        try:
            page = await client.with_options(max_retries=0, timeout=min(self.timeout, 10.0)).models.list()
            served = sorted(model.id for model in page.data)
        except (openai.OpenAIError, AttributeError, TypeError, ValueError):
            return error
        if not served:
            return error
        listing = ", ".join(repr(name) for name in served[:10]) + (" ..." if len(served) > 10 else "")
        return LLMFatalError(self._redact(f"{error} The server serves: {listing}."), status_code=error.status_code,
                             fix=error.fix)

