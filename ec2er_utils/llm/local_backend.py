"""The ``local`` backend: in-process transformers (+ optional PEFT adapter), batched over many conversations.

With a schema, decoding is constrained by xgrammar's transformers logits processor (the grammar engine vLLM
uses), so even the 135M embedded model can only emit JSON that matches the schema. Generation stops on the
grammar's stop ids, which come from the tokenizer's EOS (``<|im_end|>`` for SmolLM2 once materialised).
"""

from __future__ import annotations

import asyncio
import json
import threading
from functools import lru_cache
from typing import Any

from tqdm.auto import tqdm

from .. import cpu_speedups
from .base import Completion, JSONSchema, LLMClient, LLMError, LLMRequestError, Message


class LocalClient(LLMClient):
    """Generate with a transformers model in this process. Greedy when ``temperature == 0``, else seeded sampling."""

    backend = "local"

    def __init__(self, model: str | None = None, *, adapter: str | None = None, batch_size: int = 8,
                 dtype: Any = None, device: str | None = None, **kwargs: Any):
        from ..models import load_model_and_tokenizer, resolve_model

        spec = resolve_model(model)
        super().__init__(spec.display_name, **kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.adapter = adapter
        self.hf_model, self.tokenizer = load_model_and_tokenizer(spec.display_name, adapter=adapter, dtype=dtype,
                                                                 device=device)
        self._lock = threading.Lock()  # one generate() at a time: the model is shared, torch uses every core
        self._grammar_compiler = None

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return f"LocalClient(model={self.model!r}{adapter}, dtype={self.hf_model.dtype})"

    @lru_cache(maxsize=32)  # noqa: B019 - one client lives for a notebook; schemas are few
    def _compiled(self, schema_json: str):
        import xgrammar as xgr

        if self._grammar_compiler is None:
            # The model's vocab can be larger than the tokenizer's (padding rows); the bitmask must cover it.
            vocab_size = self.hf_model.get_output_embeddings().weight.shape[0]
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size,
                                                      stop_token_ids=_eos_ids(self.tokenizer))
            self._grammar_compiler = xgr.GrammarCompiler(info)
        # any_whitespace=False: free whitespace lets a small model pad forever instead of closing the object.
        return self._grammar_compiler.compile_json_schema(schema_json, any_whitespace=False)

    async def _complete_batch(self, conversations: list[list[Message]], *, schemas: list[JSONSchema | None],
                              temperature: float, max_tokens: int, seed: int | None,
                              ) -> list[Completion | LLMError]:
        return await asyncio.to_thread(self._generate_all, conversations, schemas, temperature, max_tokens, seed)

    def _generate_all(self, conversations, schemas, temperature, max_tokens, seed) -> list[Completion | LLMError]:
        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in conversations]
        # Constrained and free-text conversations go to separate batches (a grammar applies to every row of a
        # generate call); within each, sorted by length so each batch pads little. Schemas may differ by row:
        # xgrammar takes one grammar per row. Answers go back in the caller's order.
        batches = []
        for constrained in (False, True):
            order = sorted((i for i in range(len(prompts)) if (schemas[i] is not None) == constrained),
                           key=lambda i: len(prompts[i]))
            batches += [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        results: list[Completion | LLMError | None] = [None] * len(prompts)
        with tqdm(total=len(prompts), desc=self.model, unit="conv", leave=False,
                  disable=not self.progress or len(batches) < 2) as bar:
            for number, batch in enumerate(batches):
                batch_seed = None if seed is None else seed + number
                try:
                    answers = self._generate([prompts[i] for i in batch], [schemas[i] for i in batch],
                                             temperature, max_tokens, batch_seed)
                except RuntimeError as err:  # e.g. out of memory: fail this batch, keep the run going
                    answers = [LLMRequestError(f"local generation failed: {err}")] * len(batch)
                for i, answer in zip(batch, answers, strict=True):
                    results[i] = answer
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _generate(self, prompts: list[str], schemas: list[JSONSchema | None], temperature: float, max_tokens: int,
                  seed: int | None) -> list[Completion]:
        """One generate call; ``schemas`` are all None (free text) or all schemas, one per prompt."""
        import torch

        tok = self.tokenizer
        inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.hf_model.device)
        eos_ids = _eos_ids(tok)
        processors = []
        kwargs: dict[str, Any] = dict(max_new_tokens=max_tokens, eos_token_id=eos_ids, pad_token_id=tok.pad_token_id,
                                      do_sample=False, temperature=None, top_p=None, top_k=None)
        if schemas[0] is not None:
            import xgrammar as xgr

            # One grammar per row (json.dumps keeps the field order: reasoning before answer); a batch with a single
            # schema passes it once. The processor is single-use, by design.
            compiled = {id(schema): self._compiled(json.dumps(schema.json_schema)) for schema in schemas}
            grammars = [compiled[id(schema)] for schema in schemas]
            processors.append(xgr.contrib.hf.LogitsProcessor(grammars[0] if len(compiled) == 1 else grammars))
        if temperature > 0:
            if cpu_speedups.enabled(self.hf_model.device):
                # CPU only: the same distribution, faster. As the last processor it draws the token and leaves only
                # it possible, so generate() stays greedy; it is seeded by its own generator.
                processors.append(cpu_speedups.nucleus_sampler(temperature, self.top_p, seed))
            else:  # transformers' sampler: temperature, then top-p (top_k=0: no top-k cut)
                kwargs.update(do_sample=True, temperature=temperature, top_p=self.top_p, top_k=0)
        if processors:
            kwargs["logits_processor"] = processors
        # transformers' sampler draws from torch's random state: seed it for this call only, then restore it.
        seeded = seed is not None and kwargs["do_sample"]
        device = self.hf_model.device
        fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seeded)
        with self._lock, torch.inference_mode(), fork:
            if seeded:
                torch.manual_seed(seed)
            output = self.hf_model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        completions = []
        for row, prompt_length in zip(new_tokens.tolist(), prompt_lengths, strict=True):
            stop = next((k for k, t in enumerate(row) if t in eos_ids), None)
            generated = row if stop is None else row[:stop]
            completions.append(Completion(
                text=tok.decode(generated, skip_special_tokens=True),
                prompt_tokens=int(prompt_length),
                completion_tokens=len(generated) + (0 if stop is None else 1),
                finish_reason="length" if stop is None else "stop"))
        return completions

    def close(self) -> None:
        import gc

        self.hf_model = None
        self.tokenizer = None
        self._compiled.cache_clear()
        gc.collect()


def _eos_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's EOS plus any the chat format also ends on."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)
