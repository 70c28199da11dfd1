"""Items/s of the batched EmoBench evaluator vs a one-item-at-a-time generate loop like the official harness.

    .venv/bin/python benchmarks/evaluation.py [--n 40] [--batch-size 16] [--threads N] [--no-batched-generate]

Same model (the embedded SmolLM2-135M-Instruct, loaded once), same English items (half EU, half EA):

1. ``choice``, batched: :func:`ec2er_utils.evaluation.predict_choice`, one forward pass per question, no decoding;
2. the official harness's loop: for each item in turn, a transformers ``text-generation`` pipeline on its system +
   user messages with ``max_new_tokens=50`` (its budget without chain-of-thought), then JSON parsing;
3. (unless ``--no-batched-generate``) the ``official`` protocol batched through the local LLM client.

Prints items/s of each and the ratios. Absolute numbers on a shared 2-core machine mean little; read the ratios.
On a machine busy with other work, pass ``--threads 1``: torch's threads then wait on each other while the OS runs
other processes, which slows small per-token steps by an order of magnitude and distorts the comparison.
"""

from __future__ import annotations

import argparse
import time

from ec2er_utils.emobench import load_emobench, task_of
from ec2er_utils.evaluation import ChoiceScorer, official_messages, parse_official_reply, predict_choice
from ec2er_utils.evaluation.runner import predict_official
from ec2er_utils.models import load_model_and_tokenizer


def timed(label: str, n: int, run) -> float:
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    print(f"{label:<58} {n / elapsed:8.2f} items/s  ({n} items in {elapsed:.1f}s)", flush=True)
    return n / elapsed, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="items (half EU, half EA)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--no-batched-generate", action="store_true", help="skip the batched official protocol")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    items = load_emobench("EU", limit=args.n // 2) + load_emobench("EA", limit=args.n - args.n // 2)
    model, tokenizer = load_model_and_tokenizer("smollm2")
    import torch

    print(f"model: smollm2 (SmolLM2-135M-Instruct), {model.dtype}, {torch.get_num_threads()} torch thread(s), "
          f"{len(items)} English EmoBench items")

    scorer = ChoiceScorer(hf_model=model, tokenizer=tokenizer, batch_size=args.batch_size)
    predict_choice(items[:2], scorer)  # warm-up
    choice_rate, _ = timed(f"choice, batched (batch {args.batch_size})", len(items),
                           lambda: predict_choice(items, scorer))

    from transformers import pipeline

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)

    def official_loop():
        replies = []
        for item in items:
            out = generator(official_messages(item), max_new_tokens=50, max_length=None, return_full_text=False,
                            do_sample=False)
            replies.append(parse_official_reply(out[0]["generated_text"], task_of(item)))
        return replies

    generator(official_messages(items[0]), max_new_tokens=2, return_full_text=False, do_sample=False)  # warm-up
    loop_rate, replies = timed("official harness loop, one item at a time (50 tokens)", len(items), official_loop)
    parsed = sum(r.ok for r in replies)
    print(f"\nratio batched choice / sequential official loop: {choice_rate / loop_rate:.1f}x "
          f"(target >= 10); the loop parsed {parsed}/{len(items)} replies, choice needs no parsing")

    if not args.no_batched_generate:
        from ec2er_utils.llm import make_client

        client = make_client("local", temperature=0, max_tokens=50, batch_size=16, progress=False)
        generate_rate, _ = timed("official protocol, batched generation (batch 16)", len(items),
                                 lambda: predict_official(items, client, attempts=1))
        print(f"ratio batched official / sequential official loop: {generate_rate / loop_rate:.1f}x")


if __name__ == "__main__":
    main()
