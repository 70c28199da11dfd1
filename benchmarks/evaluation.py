"""Items/s of the batched EmoBench evaluator vs a one-item-at-a-time generate loop like the official harness.

    .venv/bin/python benchmarks/evaluation.py [--n 40] [--batch-size 16] [--repeats 3] [--threads N]
                                              [--no-plain-choice] [--no-batched-generate] [--no-same-attention-loop]

Same model (the embedded SmolLM2-135M-Instruct, loaded once, in the dtype :func:`load_model_and_tokenizer` picks:
bfloat16 on this CPU), same English items (half EU, half EA):

1. ``choice``, batched (after a warm-up on as many other items): :func:`ec2er_utils.evaluation.predict_choice`
   with :class:`ChoiceScorer` as the evaluator runs it: no decoding, each shared prompt prefix computed once (the
   chat template up to the scenario for all questions, the scenario for an EU item's two questions), length-sorted
   batches with little padding;
2. (unless ``--no-plain-choice``) the same scores with ``share_prefixes=False``: every prompt computed in full
   (the scorer's method before prefix sharing, batched the same way); shows what the sharing buys;
3. the official harness's loop, transcribed from its ``src/model.py`` (``LLM.gen_response``): for each item in turn,
   a transformers ``text-generation`` pipeline on its system + user messages with ``max_new_tokens=50`` (its budget
   without chain-of-thought) and ``return_full_text=False``, then JSON parsing. The harness builds its pipeline from
   the checkpoint with transformers' defaults, so its attention is transformers' SDPA; here the pipeline wraps a
   second copy of the model loaded that way (CPU speed-ups off) in the same dtype as the choice path
   (bfloat16 on this CPU, the dtype SmolLM2 is published in; the embedded checkpoint, dequantised from a GGUF, is
   stored in float32, which the harness would run slower, at half the matmul speed of bfloat16 here: not used, it
   would flatter the ratio) and the same threads. Other differences, none of which slows the loop:
   ``do_sample=False`` is spelled out (the model's generation config is greedy anyway); transformers' warnings are
   silenced (one per item about the default ``max_length``); it tries each item once, as the harness does (its retry
   loop returns on the first failure);
3b. (unless ``--no-same-attention-loop``) the same loop on the choice path's own model, with the CPU attention of
   :mod:`ec2er_utils.cpu_speedups` (faster decode steps over long contexts and large batches; at one item of ~300
   tokens it makes little difference): the ratio then measures what batching, prefix sharing and not decoding
   buy, nothing else;
4. (unless ``--no-batched-generate``) the ``official`` protocol batched through the local LLM client.

The two choice runs take seconds, the loops minutes, and compute-bound choice scoring varies most on a shared
machine (±15% between runs with nothing else running here), so each choice run is timed ``--repeats`` times and the
ratios use the median. Prints items/s of each and the ratios, with the machine's load (1-minute load average and,
where the kernel has it, the share of time runnable tasks waited for a CPU) before and after each timed run.
Absolute numbers on a shared 2-core machine mean little; read the ratios with the load beside them. On a machine
busy with other work, pass ``--threads 1``: torch's threads then wait on each other while the OS runs other
processes, which slows small per-token steps by an order of magnitude and distorts the comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from ec2er_utils import cpu_speedups
from ec2er_utils.emobench import load_emobench, task_of
from ec2er_utils.evaluation import (ChoiceScorer, official_messages, parse_official_reply, predict_choice,
                                    predict_official)
from ec2er_utils.models import DEFAULT_MODEL, load_model_and_tokenizer

CPU_PRESSURE = Path("/proc/pressure/cpu")


def load_note() -> str:
    """The 1-minute load average and, from Linux's pressure stall information, the share of the last 10 s in
    which some runnable task waited for a CPU."""
    note = f"load {os.getloadavg()[0]:.1f}"
    if CPU_PRESSURE.exists():
        fields = dict(part.split("=") for part in CPU_PRESSURE.read_text().splitlines()[0].split()[1:])
        note += f", cpu wait {float(fields['avg10']):.0f}%"
    return note


def timed(label: str, n: int, run, repeats: int = 1):
    """Items/s of ``run()`` over ``n`` items (the median of ``repeats`` timings) and its last result."""
    before = load_note()
    elapsed = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        elapsed.append(time.perf_counter() - started)
    median = statistics.median(elapsed)
    each = "" if repeats == 1 else f", median of {', '.join(f'{e:.1f}' for e in elapsed)}s"
    print(f"{label:<58} {n / median:8.2f} items/s  ({n} items in {median:.1f}s{each}; {before} -> {load_note()})",
          flush=True)
    return n / median, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="items (half EU, half EA)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timings of each choice run (the median counts)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--no-plain-choice", action="store_true", help="skip choice without prefix sharing")
    parser.add_argument("--no-batched-generate", action="store_true", help="skip the batched official protocol")
    parser.add_argument("--no-same-attention-loop", action="store_true",
                        help="skip the loop on the choice path's model (CPU attention)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    n_eu, n_ea = args.n // 2, args.n - args.n // 2
    eu, ea = load_emobench("EU", limit=2 * n_eu), load_emobench("EA", limit=2 * n_ea)
    items = eu[:n_eu] + ea[:n_ea]
    # Warm-up on other items of the same kinds, as many: the first large batches of a process pay for memory and
    # kernel set-up that a full evaluation amortises, and would otherwise count against whichever runs first.
    warm_up_items = (eu[n_eu:] + ea[n_ea:]) or items[:2]
    model, tokenizer = load_model_and_tokenizer(DEFAULT_MODEL)
    import torch

    print(f"model: {DEFAULT_MODEL} (SmolLM2-135M-Instruct), {model.dtype}, {model.config._attn_implementation} "
          f"attention, {torch.get_num_threads()} torch thread(s) on {os.cpu_count()} CPU(s), {len(items)} English "
          "EmoBench items")

    scorer = ChoiceScorer(hf_model=model, tokenizer=tokenizer, batch_size=args.batch_size)
    predict_choice(warm_up_items, scorer)
    choice_rate, _ = timed(f"choice, batched, shared prefixes (batch {args.batch_size})", len(items),
                           lambda: predict_choice(items, scorer), args.repeats)
    if not args.no_plain_choice:
        plain = ChoiceScorer(hf_model=model, tokenizer=tokenizer, batch_size=args.batch_size, share_prefixes=False)
        plain_rate, _ = timed(f"choice, batched, full prompts (batch {args.batch_size})", len(items),
                              lambda: predict_choice(items, plain), args.repeats)

    from transformers import logging as transformers_logging
    from transformers import pipeline

    transformers_logging.set_verbosity_error()  # else a max_length warning per generated reply
    with cpu_speedups.disabled():  # the harness's attention: transformers' default
        harness_model, _ = load_model_and_tokenizer(DEFAULT_MODEL, dtype=model.dtype)
    loops = {"official harness loop, one item at a time (50 tokens)": harness_model}
    if not args.no_same_attention_loop:
        loops["the same loop on the choice path's model (CPU attention)"] = model
    loop_rates, loop_replies = {}, {}
    for label, loop_model in loops.items():
        generator = pipeline("text-generation", model=loop_model, tokenizer=tokenizer)

        def official_loop(generator=generator):
            replies = []
            for item in items:
                out = generator(official_messages(item), max_new_tokens=50, return_full_text=False,
                                do_sample=False)
                replies.append(parse_official_reply(out[0]["generated_text"], task_of(item)))
            return replies

        generator(official_messages(items[0]), max_new_tokens=2, return_full_text=False, do_sample=False)  # warm-up
        attention = loop_model.config._attn_implementation
        loop_rates[label], loop_replies[label] = timed(f"{label} [{attention}]", len(items), official_loop)
    harness = next(iter(loops))
    loop_rate, parsed = loop_rates[harness], sum(reply.ok for reply in loop_replies[harness])
    print(f"\nratio batched choice / official harness loop: {choice_rate / loop_rate:.1f}x "
          f"(target >= 10); the loop parsed {parsed}/{len(items)} replies, choice needs no parsing")
    if len(loop_rates) > 1:
        same = list(loop_rates.values())[1]
        print(f"ratio batched choice / the same loop with the CPU attention: {choice_rate / same:.1f}x")
    if not args.no_plain_choice:
        print(f"ratio without prefix sharing: {plain_rate / loop_rate:.1f}x; prefix sharing alone: "
              f"{choice_rate / plain_rate:.2f}x")

    if not args.no_batched_generate:
        from ec2er_utils.llm import make_client

        client = make_client("local", temperature=0, max_tokens=50, batch_size=16, progress=False)
        generate_rate, _ = timed("official protocol, batched generation (batch 16)", len(items),
                                 lambda: predict_official(items, client, attempts=1))
        print(f"ratio batched official / sequential official loop: {generate_rate / loop_rate:.1f}x")


if __name__ == "__main__":
    main()
