"""CPU-only speed-ups for the embedded demo model (README, "Models"): a decode attention, a top-p sampler and the
choice scorer's batching, each computing what stock transformers computes, faster on a CPU. Each call site
(``models``, ``llm.local_backend``, ``evaluation.choice``) hooks in with ``if cpu_speedups.enabled(device):``;
``EC2ER_CPU_SPEEDUPS=0`` turns them off. Tested against stock transformers in tests/test_models.py,
tests/test_sampling.py and tests/test_evaluation.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

SWITCH = "EC2ER_CPU_SPEEDUPS"
_ON, _OFF = ("1", "true", "on", "yes", ""), ("0", "false", "off", "no")
_REPLACED_SWITCH = "EC2ER_ATTENTION"  # the decode attention's own switch before this module


def enabled(device: Any) -> bool:
    """Whether to use the speed-ups for a model on ``device`` (``"cpu"``, ``"cuda:0"``, a ``torch.device``):
    on a CPU unless ``EC2ER_CPU_SPEEDUPS=0``."""
    if _REPLACED_SWITCH in os.environ:
        raise ValueError(f"{_REPLACED_SWITCH} was replaced by {SWITCH}: unset it, and set {SWITCH}=0 for stock "
                         "transformers (SDPA attention, its own sampler) on CPU")
    setting = os.environ.get(SWITCH, "").strip().lower()
    if setting not in _ON + _OFF:
        raise ValueError(f"{SWITCH}={os.environ[SWITCH]!r}: use 1 (the default: speed-ups on CPU) or 0 (stock "
                         "transformers everywhere)")
    return setting in _ON and str(device).split(":")[0] == "cpu"


@contextmanager
def disabled() -> Iterator[None]:
    """Within the block, :func:`enabled` is False (e.g. to load a stock model next to a sped-up one)."""
    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[SWITCH]
        else:
            os.environ[SWITCH] = before


# 1. Decode attention. On CPU, PyTorch's fused SDPA kernel is slow for a single query row (a decode step: ~2.6 ms per
# layer at batch 8 over 670 cached tokens, two thirds of the step), and eager attention copies the grouped
# keys/values (repeat_kv). CPU_ATTENTION keeps SDPA for prompts (prefill, choice scoring) and computes decode steps
# as two batched matmuls on the grouped heads, without copies: the same outputs up to float rounding.
CPU_ATTENTION = "ec2er_cpu_sdpa"

# Architectures whose attention is plain scaled dot-product over grouped key/value heads (no logit soft-capping,
# no attention sinks), where CPU_ATTENTION computes exactly what SDPA does.
PLAIN_ATTENTION_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def decode_attention_for(path: str) -> str | None:
    """The attention implementation to load the checkpoint ``path`` with on CPU: :data:`CPU_ATTENTION` for
    plain-attention architectures, else None (transformers' default)."""
    from transformers import AttentionInterface, AttentionMaskInterface, AutoConfig
    from transformers.masking_utils import sdpa_mask

    if AutoConfig.from_pretrained(path).model_type not in PLAIN_ATTENTION_MODEL_TYPES:
        return None
    if CPU_ATTENTION not in AttentionInterface._global_mapping:  # register once
        AttentionInterface.register(CPU_ATTENTION, grouped_decode_attention)
        AttentionMaskInterface.register(CPU_ATTENTION, sdpa_mask)
    return CPU_ATTENTION


def grouped_decode_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                             dropout: float = 0.0, scaling: float | None = None, **kwargs: Any):
    """A transformers attention function: SDPA when several query positions are computed, else (one position,
    a decode step) softmax(q k^T) v over each key/value head's group of query heads. ``attention_mask`` is SDPA's
    (boolean, True = attend, or None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, positions, dim = query.shape
    if positions != 1 or module.training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if scaling is None else scaling
    grouped = query.view(batch, kv_heads, heads // kv_heads, dim)  # query head h reads key/value head h // group
    scores = torch.matmul(grouped, key.transpose(2, 3)) * scale  # (batch, kv_heads, group, keys)
    if attention_mask is not None:
        mask = attention_mask[..., -key.shape[2]:]  # (batch, 1, 1, keys)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(weights, value)  # (batch, kv_heads, group, dim)
    return output.reshape(batch, heads, 1, dim).transpose(1, 2), None


# 2. Sampling. Transformers' top-p sorts the whole vocabulary of every row at every step and draws one exponential per
# token (~45 ms of a ~120 ms step at batch 16 on a 2-core CPU). This sampler looks for the nucleus among the
# ``candidates`` most likely tokens (a topk; a row whose nucleus is larger is sorted in full), draws one token of it
# with one uniform number per row, and leaves only that token possible, so ``generate`` stays greedy. The
# distribution is transformers': softmax(logits / temperature) restricted to TopPLogitsWarper's nucleus. Its own
# torch.Generator makes a seeded call reproduce without touching torch's global random state.


def nucleus_sampler(temperature: float, top_p: float, seed: int | None, candidates: int = 256) -> Any:
    """A transformers logits processor that samples the next token (temperature, then top-p) and returns scores
    where only that token is possible; pass it last, with ``do_sample=False``."""
    import torch
    from transformers import LogitsProcessor

    class NucleusSampler(LogitsProcessor):
        def __init__(self, temperature: float, top_p: float, seed: int | None, candidates: int):
            if temperature <= 0:
                raise ValueError(f"temperature must be > 0 to sample (0 is greedy), got {temperature}")
            if not 0 < top_p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
            self.temperature, self.top_p, self.candidates, self.seed = temperature, top_p, candidates, seed
            self.generator: torch.Generator | None = None  # made on the first call, on the logits' device

        def nucleus(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Per row, the tokens of the nucleus (most likely first) and their probabilities (zero beyond the
            nucleus), as ``(token ids, probabilities)`` of equal shape."""
            logprobs = torch.log_softmax(scores.float() / self.temperature, dim=-1)
            if self.top_p >= 1:
                return torch.arange(scores.shape[-1], device=scores.device).expand_as(logprobs), logprobs.exp()
            k = min(self.candidates, scores.shape[-1])
            top, index = logprobs.topk(k, dim=-1)  # sorted, most likely first
            probs = top.exp()
            short = probs.sum(-1) < self.top_p  # the nucleus is larger than k tokens: sort those rows in full
            if short.any():
                full, full_index = logprobs[short].sort(dim=-1, descending=True)
                width = full.shape[-1]
                padded = probs.new_zeros(len(probs), width)
                padded_index = index.new_zeros(len(probs), width)
                padded[:, :k], padded_index[:, :k] = probs, index
                padded[short], padded_index[short] = full.exp(), full_index
                probs, index = padded, padded_index
            # Keep a token while the tokens more likely than it hold less than top_p (always the most likely one).
            probs = probs * ((probs.cumsum(-1) - probs) < self.top_p)
            return index, probs

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self.generator is None:
                self.generator = torch.Generator(device=scores.device)
                if self.seed is None:
                    self.generator.seed()
                else:
                    self.generator.manual_seed(self.seed)
            index, probs = self.nucleus(scores)
            dead = ~(probs.sum(-1) > 0)  # every token masked (a finished row of a grammar): any token will do
            if dead.any():
                probs[dead] = 0.0  # (NaN after the softmax of a row of -inf)
                probs[dead, 0] = 1.0
            # Inverse-CDF draw: one uniform number per row (torch.multinomial draws one per entry: 36 ms a step
            # at batch 16 over the whole vocabulary when top_p is 1).
            cumulative = probs.double().cumsum(-1)
            threshold = torch.rand(len(probs), 1, generator=self.generator, device=probs.device, dtype=torch.float64)
            choice = torch.searchsorted(cumulative, threshold * cumulative[:, -1:], right=True)
            positions = torch.arange(probs.shape[-1], device=probs.device)
            last_possible = torch.where(probs > 0, positions, 0).amax(-1, keepdim=True)
            choice = torch.minimum(choice, last_possible)  # (a threshold rounding up to the total)
            chosen = torch.full_like(scores, float("-inf"))
            chosen.scatter_(-1, index.gather(-1, choice), 0.0)
            return chosen

    return NucleusSampler(temperature, top_p, seed, candidates)


# 3. The choice scorer's batches. What a forward pass costs beyond its tokens, in tokens: on an idle 2-core CPU a
# one-token step of the 135M model takes as long as ~40 tokens of a batched prompt (reading the weights, thread
# hand-offs, Python); on a busy one far more, so it is counted high: a little padding is cheap either way.
FORWARD_OVERHEAD = 128

Row = TypeVar("Row")


def least_cost_batches(rows: Sequence[Row], widths: Sequence[int], budget: int) -> list[list[Row]]:
    """``rows``, sorted by their ``widths`` (tokens each), cut into the batches of least cost: a forward pass costs
    its tokens, padding included, plus :data:`FORWARD_OVERHEAD` tokens' worth, and holds at most ``budget`` tokens
    (a row wider than that alone)."""
    if list(widths) != sorted(widths):
        raise ValueError("least_cost_batches needs the rows sorted by width, narrowest first")
    # best[j]: least cost of the first j rows; cut[j]: where their last batch starts.
    best, cut = [0.0] + [float("inf")] * len(rows), [0] * (len(rows) + 1)
    for end in range(1, len(rows) + 1):
        for start in range(end - 1, -1, -1):
            padded = widths[end - 1] * (end - start)  # the widest row of a batch ending here is its last
            if padded > budget and start < end - 1:
                break
            cost = best[start] + padded + FORWARD_OVERHEAD
            if cost < best[end]:
                best[end], cut[end] = cost, start
    batches, end = [], len(rows)
    while end:
        batches.append(list(rows[cut[end]:end]))
        end = cut[end]
    return batches[::-1]
