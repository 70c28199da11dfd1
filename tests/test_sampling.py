"""The CPU sampler of ec2er_utils.cpu_speedups: the same distribution as transformers' temperature and top-p
warpers, seeded draws, grammar masks respected (fast: random logits, no model); and the local backend with the
speed-ups off: transformers' own sampler, the same greedy replies (slow: the embedded model)."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from ec2er_utils import cpu_speedups
from ec2er_utils.cpu_speedups import nucleus_sampler

VOCAB = 2000


def logits(rows: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    peaked = torch.randn(rows, VOCAB, generator=generator) * 4  # nucleus of a few dozen tokens
    flat = torch.randn(2, VOCAB, generator=generator) * 0.1  # nucleus of ~1,800 tokens: beyond the topk shortcut
    return torch.cat([peaked, flat])


def transformers_probabilities(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    warped = TemperatureLogitsWarper(temperature)(None, scores.clone())
    warped = TopPLogitsWarper(top_p)(None, warped)
    return torch.softmax(warped, dim=-1)


@pytest.mark.parametrize("temperature, top_p", [(0.8, 0.9), (1.0, 0.5), (0.7, 1.0), (1.3, 0.99)])
def test_nucleus_is_transformers_top_p_after_temperature(temperature, top_p):
    scores = logits()
    sampler = nucleus_sampler(temperature, top_p, seed=0, candidates=64)
    index, probs = sampler.nucleus(scores)
    ours = torch.zeros_like(scores).scatter_(-1, index, probs)
    ours = ours / ours.sum(-1, keepdim=True)
    expected = transformers_probabilities(scores, temperature, top_p)
    assert torch.equal(ours > 0, expected > 0)  # the same tokens kept, row by row
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    if top_p < 1:
        assert (expected[-1] > 0).sum() > 64  # the flat rows took the full-sort path


def test_draws_follow_the_nucleus_distribution():
    scores = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0]])
    expected = transformers_probabilities(scores, 0.8, 0.9)[0]
    sampler = nucleus_sampler(0.8, 0.9, seed=123, candidates=4)
    draws = sampler(None, scores.expand(20000, -1)).argmax(-1)  # 20,000 rows: 20,000 independent draws
    frequencies = torch.bincount(draws, minlength=6).float() / len(draws)
    torch.testing.assert_close(frequencies, expected, atol=0.012, rtol=0)
    assert frequencies[expected == 0].sum() == 0  # never outside the nucleus


def test_output_allows_only_the_drawn_token_and_respects_a_grammar_mask():
    scores = logits()
    scores[:, : VOCAB // 2] = float("-inf")  # what a grammar forbids
    out = nucleus_sampler(0.8, 0.9, seed=1)(None, scores)
    assert ((out == 0).sum(-1) == 1).all() and (torch.isinf(out).sum(-1) == VOCAB - 1).all()
    assert (out.argmax(-1) >= VOCAB // 2).all()


def test_seeded_draws_reproduce_and_seeds_differ():
    scores = logits(rows=8)

    def draws(seed):
        sampler = nucleus_sampler(1.0, 0.95, seed=seed)
        return torch.stack([sampler(None, scores).argmax(-1) for _ in range(5)])

    assert torch.equal(draws(7), draws(7))
    assert not torch.equal(draws(7), draws(8))
    state = torch.get_rng_state()
    draws(9)
    assert torch.equal(torch.get_rng_state(), state)  # torch's global random state is left alone


def test_a_row_with_every_token_masked_does_not_fail():
    scores = logits(rows=2)
    scores[0] = float("-inf")
    out = nucleus_sampler(0.8, 0.9, seed=0)(None, scores)
    assert ((out == 0).sum(-1) == 1).all()


@pytest.mark.parametrize("temperature, top_p", [(0, 0.9), (0.8, 0), (0.8, 1.5)])
def test_bad_settings(temperature, top_p):
    with pytest.raises(ValueError):
        nucleus_sampler(temperature, top_p, seed=0)


@pytest.mark.slow
def test_local_backend_without_speed_ups_uses_transformers_and_replies_the_same(monkeypatch):
    """EC2ER_CPU_SPEEDUPS=0: SDPA attention and transformers' sampler (seeded, reproducible); greedy replies equal
    those of the sped-up client, token for token."""
    from ec2er_utils.llm import make_client

    conversations = [[{"role": "user", "content": text}] for text in
                     ("Tell me about grief.", "Describe a therapy session in detail. " * 20, "Hi")]
    replies = {}
    for setting in ("1", "0"):
        monkeypatch.setenv(cpu_speedups.SWITCH, setting)
        client = make_client("local", dtype=torch.float32, batch_size=3, max_tokens=24, top_p=0.9,
                             progress=False)
        replies[client.hf_model.config._attn_implementation] = [
            r.text for r in client.chat_many(conversations, temperature=0)]
    assert set(replies) == {cpu_speedups.CPU_ATTENTION, "sdpa"}
    assert replies["sdpa"] == replies[cpu_speedups.CPU_ATTENTION]

    # The last client has the speed-ups off: sampling is transformers' own, never the CPU sampler.
    monkeypatch.setattr(cpu_speedups, "nucleus_sampler", lambda *a, **k: pytest.fail("the CPU sampler was used"))
    state = torch.get_rng_state()

    def sampled(seed):
        return [r.text for r in client.chat_many(conversations, temperature=1.0, seed=seed)]

    assert sampled(5) == sampled(5) != sampled(6)
    assert torch.equal(torch.get_rng_state(), state)  # the seed applies to these calls only
    client.close()
