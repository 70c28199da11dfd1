"""Temperature and nucleus (top-p) sampling for the ``local`` backend, as a transformers logits processor.

Why not transformers' own sampler: for top-p it sorts the whole vocabulary of every row at every step, then draws
one exponential per vocabulary entry (``torch.multinomial``). On this 2-core CPU, at batch 16 with SmolLM2's 49,152
tokens, that is ~45 ms of a ~120 ms decode step. :class:`NucleusSampler` looks for the nucleus among the
``candidates`` most likely tokens (a ``topk``), which holds it at nearly every step; only a row whose nucleus is
larger is sorted in full. It then draws one token among the nucleus and marks it as the only possible one, so that
``generate`` runs in greedy mode and simply takes it. The distribution sampled from is exactly transformers':
softmax(logits / temperature), restricted to the smallest set of most likely tokens whose probability reaches
``top_p`` (``TopPLogitsWarper``'s rule, tested against it in tests/test_llm_client.py).

Draws come from a ``torch.Generator`` of the sampler's own, so a seeded call reproduces without touching torch's
global random state.
"""

from __future__ import annotations

from typing import Any


def nucleus_sampler(temperature: float, top_p: float, seed: int | None, candidates: int = 256) -> Any:
    """A :class:`NucleusSampler` (defined lazily: importing this module does not import torch/transformers)."""
    return _sampler_class()(temperature, top_p, seed, candidates)


def _sampler_class():
    import torch
    from transformers import LogitsProcessor

    class NucleusSampler(LogitsProcessor):
        """Samples the next token (temperature, then top-p) and returns scores where only it is possible."""

        def __init__(self, temperature: float, top_p: float, seed: int | None, candidates: int = 256):
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

    return NucleusSampler
