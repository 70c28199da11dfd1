"""One LLM client for every notebook: ``make_client("local")`` or ``make_client("openai", base_url=...)``."""

from __future__ import annotations

from typing import Any

from .base import (ChatResult, Completion, JSONSchema, LLMClient, LLMError, LLMFatalError, LLMInvalidJSONError,
                   LLMRequestError, SchemaViolation, Usage, extract_json_text, run_sync)

BACKENDS = ("local", "openai")

__all__ = ["BACKENDS", "ChatResult", "Completion", "JSONSchema", "LLMClient", "LLMError", "LLMFatalError",
           "LLMInvalidJSONError", "LLMRequestError", "SchemaViolation", "Usage", "extract_json_text", "make_client",
           "run_sync"]


def make_client(backend: str = "local", model: str | None = None, **options: Any) -> LLMClient:
    """Create the client for ``backend``.

    - ``local``: ``model`` is an alias (default ``smollm2``, the embedded model), a Hugging Face id or a folder;
      options: ``adapter``, ``batch_size``, ``dtype``, ``device``.
    - ``openai``: ``model`` is the name the server knows (e.g. ``openai/gpt-oss-20b``); options: ``base_url``,
      ``api_key`` (default ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``), ``concurrency``, ``timeout``,
      ``max_retries``, ``structured_output``, ``extra_body``.

    Common options: ``temperature`` (0 = greedy), ``top_p`` (nucleus sampling, default 1), ``max_tokens``, ``seed``,
    ``max_reasks``, ``progress``.
    """
    backend = (backend or "").strip().lower()
    if backend == "local":
        from .local_backend import LocalClient

        return LocalClient(model, **options)
    if backend == "openai":
        from .openai_backend import OpenAIClient

        if not model:
            raise ValueError("backend='openai' needs model=<the model name the server serves>, "
                             "e.g. 'openai/gpt-oss-20b' for the paper's vLLM set-up")
        return OpenAIClient(model, **options)
    raise ValueError(f"Unknown LLM backend {backend!r}; use one of {', '.join(BACKENDS)}")
