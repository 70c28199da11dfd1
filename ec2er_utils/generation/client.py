"""The LLM client for generation: the embedded model in-process, one OpenAI-compatible server, or several server
replicas (vLLM) that share the requests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from ..llm import BACKENDS, LLMClient, make_client
from ..parameters import StageConfig

CONCURRENCY = 2  # conversations in flight unless told otherwise (GeneratorConfig's and make_generator_client's)


class GeneratorConfig(StageConfig):
    """Which model generates, where it runs, and how it samples: the parameters chapters 01 and 02 share. Their
    configs (``MADSConfig``, ``ConciseConfig``) extend this one, so each notebook builds one config."""

    backend: Literal[BACKENDS] = "local"  # "local" (in-process) or "openai" (any OpenAI-compatible server, e.g. vLLM)
    generator_model: str | None = None  # None: the embedded model (local); an alias, HF id or served model name
    base_url: str | None = None  # backend "openai": one URL, or several comma-separated (server replicas)
    concurrency: int = Field(CONCURRENCY, ge=1)  # conversations in flight (one lockstep batch)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)  # nucleus sampling; 1.0 lets the 135M model drift into other languages
    seed: int = 0

    def client(self, **options: Any) -> LLMClient:
        return make_generator_client(self.backend, self.generator_model, base_url=self.base_url,
                                     concurrency=self.concurrency, temperature=self.temperature, top_p=self.top_p,
                                     seed=self.seed, **options)


def make_generator_client(backend: str = "local", model: str | None = None, *, base_url: str | None = None,
                          concurrency: int = CONCURRENCY, batch_size: int | None = None, temperature: float = 0.8,
                          seed: int | None = 0, max_reasks: int = 1, progress: bool = False,
                          **options: Any) -> LLMClient:
    """The LLM client for generation, sized for ``concurrency`` conversations at once.

    ``local``: the embedded model (``model=None``) or any alias / HF id / folder, up to ``batch_size`` replies per
    forward pass (default ``8 * concurrency``: extraction asks up to 4 EU + 4 EA items per conversation at once).
    ``openai``: an OpenAI-compatible server at ``base_url`` (key from ``OPENAI_API_KEY``); several comma-separated
    URLs give a :class:`ReplicaClient`. ``max_reasks``: how often a reply that is not schema-valid JSON is asked for
    again before the item counts as rejected.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    backend = (backend or "").strip().lower()
    common = dict(temperature=temperature, seed=seed, max_reasks=max_reasks, progress=progress, **options)
    if backend == "local":
        return make_client("local", model, batch_size=batch_size or 8 * concurrency, **common)
    if backend == "openai":
        urls = [u.strip() for u in (base_url or "").split(",") if u.strip()]
        if len(urls) > 1:
            return ReplicaClient([make_client("openai", model, base_url=u, concurrency=concurrency, **common)
                                  for u in urls])
        return make_client("openai", model, base_url=urls[0] if urls else None, concurrency=concurrency, **common)
    return make_client(backend, model, **options)  # raises the client's "unknown backend" error


class ReplicaClient(LLMClient):
    """Spreads each batch of requests round-robin over several clients serving the same model (vLLM replicas);
    validation, re-asks and usage accounting happen once, here, and the replicas only answer."""

    def __init__(self, replicas: Sequence[LLMClient]):
        if not replicas:
            raise ValueError("ReplicaClient needs at least one replica")
        models = {r.model for r in replicas}
        if len(models) != 1:
            raise ValueError(f"replicas must serve the same model, got {sorted(models)}")
        first = replicas[0]
        super().__init__(first.model, temperature=first.temperature, max_tokens=first.max_tokens, seed=first.seed,
                         max_reasks=first.max_reasks, progress=first.progress, top_p=first.top_p)
        self.replicas = list(replicas)
        self.backend = first.backend

    def __repr__(self) -> str:
        return f"ReplicaClient({', '.join(repr(r) for r in self.replicas)})"

    async def _complete_batch(self, conversations, *, schemas, temperature, max_tokens, seed):
        n = len(self.replicas)
        answers = await asyncio.gather(*(
            replica._complete_batch(conversations[i::n], schemas=schemas[i::n], temperature=temperature,
                                    max_tokens=max_tokens, seed=seed)
            for i, replica in enumerate(self.replicas) if conversations[i::n]))
        merged: list[Any] = [None] * len(conversations)
        for i, share_answers in enumerate(answers):
            merged[i::n] = share_answers
        return merged

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()
