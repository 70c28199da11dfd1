"""Batched vs one-at-a-time generation with the local backend (and, with --server, concurrent vs sequential
requests to a real OpenAI-compatible server), measured side by side in one run on the same prompts.

    .venv/bin/python -m benchmarks.llm_client [--n 16] [--max-tokens 64] [--server]

Run it as a module from the repository root: ``--server`` takes the server from ``tools/`` (developer tooling, not
installed).

Prints completion tokens/s for each mode and the ratio. Absolute times on a shared 2-core machine mean little;
the ratio is the number to read.
"""

from __future__ import annotations

import argparse
import time

from ec2er_utils.llm import ChatResult, make_client

TOPICS = ["losing a job", "a friend moving away", "a surprise party", "a failed exam", "a new baby sister",
          "an argument with a boss", "winning a prize", "a cancelled holiday"]


def conversations(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"In two sentences, how might someone feel after {TOPICS[i % len(TOPICS)]}?"}]
            for i in range(n)]


def tokens_per_second(run) -> tuple[float, int]:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    tokens = sum(r.usage.completion_tokens for r in results if isinstance(r, ChatResult))
    return tokens / elapsed, tokens


def compare(client, convs, label: str) -> None:
    client.chat(convs[0])  # warm-up: load kernels, compile grammar caches
    batched, batched_tokens = tokens_per_second(lambda: client.chat_many(convs))
    sequential, sequential_tokens = tokens_per_second(lambda: [client.chat(c) for c in convs])
    print(f"{label}: batched/concurrent {batched:.1f} tok/s ({batched_tokens} tokens), "
          f"sequential {sequential:.1f} tok/s ({sequential_tokens} tokens), ratio {batched / sequential:.2f}x",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="conversations per mode")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--server", action="store_true", help="also measure the openai backend against "
                        "`transformers serve --continuous-batching` on loopback")
    args = parser.parse_args()
    convs = conversations(args.n)
    # Greedy decoding, so both modes generate comparable amounts of text.
    local = make_client("local", temperature=0, max_tokens=args.max_tokens, batch_size=args.batch_size,
                        progress=False)
    compare(local, convs, f"local smollm2 (batch {args.batch_size}, {local.hf_model.dtype})")
    local.close()
    if args.server:
        from tools.local_server import local_openai_server

        with local_openai_server() as server:
            remote = make_client("openai", model=server.model, base_url=server.base_url, temperature=0,
                                 max_tokens=args.max_tokens, concurrency=8, progress=False)
            compare(remote, convs, "openai backend -> transformers serve --continuous-batching (8 concurrent)")


if __name__ == "__main__":
    main()
