"""MADS throughput: the same dialogues run one at a time (as the original notebooks did) and in lockstep batches
(``concurrency`` dialogues in flight, each step one ``chat_many``), against the same backend, side by side.

    .venv/bin/python benchmarks/generation.py [--dialogues 8] [--max-turns 2] [--backend local]
    .venv/bin/python benchmarks/generation.py --dialogues 32     # 4.1x on the 2-core CPU (benchmarks/README.md)
    .venv/bin/python -m benchmarks.generation --server              # transformers serve --continuous-batching
    .venv/bin/python benchmarks/generation.py --backend openai --base-url http://HOST:8000/v1 --model openai/gpt-oss-20b

``--server`` takes the server from ``tools/`` (developer tooling, not installed): run it as a module from the
repository root, as shown.

Prints dialogues/hour for both modes and their ratio. Both runs use the same personas, plan, seed and settings;
sequential means one dialogue at a time and one request at a time (local batch size 1, server concurrency 1).
Absolute rates on a shared 2-core machine mean little; the ratio is the number to read. On CPU the local backend
runs the speed-ups of :mod:`ec2er_utils.cpu_speedups` (``EC2ER_CPU_SPEEDUPS=0`` in the environment: stock
transformers). Measured runs: benchmarks/README.md.
The dialogue settings are tiny by default so the benchmark finishes in minutes on a CPU; pass paper-sized values
against a server.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

from ec2er_utils.generation import make_generator_client
from ec2er_utils.generation.mads import MADSConfig, run_mads
from ec2er_utils.personas import grid_personas
from ec2er_utils.themes import THEMES


def settings(args, concurrency: int) -> MADSConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny turn limits differ from the paper's on purpose
        return MADSConfig(num_dialogues=args.dialogues, min_turns=min(args.max_turns, 4), max_turns=args.max_turns,
                          eu_items=(args.items, args.items), ea_items=(args.items, args.items),
                          concurrency=concurrency, checkpoint_every=args.dialogues, seed=args.seed,
                          background_words=(30, 60), background_max_tokens=args.max_tokens,
                          turn_max_tokens=args.max_tokens, supervisor_max_tokens=max(60, args.max_tokens),
                          item_max_tokens=args.item_max_tokens, scenario_min_words=args.scenario_min_words)


def measure(client, args, concurrency: int, out: Path) -> dict:
    started = time.perf_counter()
    stats = run_mads(client, grid_personas(max(args.dialogues, 10), seed=args.seed), THEMES, out,
                     settings(args, concurrency), progress=False)
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "dialogues": stats["completed_this_session"],  # completed ones only
            "dialogues_per_hour": stats["completed_per_hour"] or 0.0,
            "completion_tokens": stats["usage"].get("completion_tokens", 0),
            "failed": stats["status"].get("failed", 0), "items": stats["eu_items"] + stats["ea_items"]}


def compare(make, args, label: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sequential_client, concurrent_client = make(1), make(args.dialogues)
        sequential_client.chat([{"role": "user", "content": "Say hello."}], max_tokens=4)  # warm-up
        sequential = measure(sequential_client, args, 1, Path(tmp) / "sequential")
        concurrent = measure(concurrent_client, args, args.dialogues, Path(tmp) / "concurrent")
    print(f"\n{label}: {args.dialogues} dialogues, max_turns={args.max_turns}, {args.max_tokens} tokens per turn, "
          f"{args.items}+{args.items} items per dialogue")
    print(f"{'mode':<28}{'wall s':>9}{'dialogues/h':>14}{'tokens':>9}{'tokens/s':>10}{'items':>7}{'failed':>8}")
    for name, row in (("sequential (1 at a time)", sequential), (f"concurrent ({args.dialogues} in flight)",
                                                                   concurrent)):
        print(f"{name:<28}{row['elapsed_s']:>9.1f}{row['dialogues_per_hour']:>14.1f}{row['completion_tokens']:>9}"
              f"{row['completion_tokens'] / row['elapsed_s']:>10.1f}{row['items']:>7}{row['failed']:>8}")
    print(f"ratio concurrent / sequential: {concurrent['dialogues_per_hour'] / sequential['dialogues_per_hour']:.2f}x",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=8, help="dialogues per mode (= concurrency when batched)")
    parser.add_argument("--max-turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32, help="per turn, background and verdict")
    parser.add_argument("--items", type=int, default=1, help="EU and EA items per dialogue")
    parser.add_argument("--item-max-tokens", type=int, default=200)
    parser.add_argument("--scenario-min-words", type=int, default=0, help="the notebooks use 50 (needs "
                        "--item-max-tokens 350 or more)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="local", choices=("local", "openai"))
    parser.add_argument("--model", default=None, help="local: alias/HF id/folder (default: embedded); openai: "
                        "the served model name")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server (backend openai)")
    parser.add_argument("--server", action="store_true", help="start `transformers serve --continuous-batching` "
                        "on loopback with the embedded model and benchmark the openai backend against it")
    args = parser.parse_args()

    if args.server:
        from tools.local_server import local_openai_server

        with local_openai_server() as server:
            compare(lambda n: make_generator_client("openai", server.model, base_url=server.base_url,
                                                    concurrency=n, temperature=0.8, seed=args.seed),
                    args, "openai backend -> transformers serve --continuous-batching (embedded model)")
        return
    if args.backend == "openai":
        compare(lambda n: make_generator_client("openai", args.model, base_url=args.base_url, concurrency=n,
                                                temperature=0.8, seed=args.seed),
                args, f"openai backend -> {args.base_url or 'OPENAI_BASE_URL'} ({args.model})")
        return
    client = make_generator_client("local", args.model, concurrency=args.dialogues, temperature=0.8, seed=args.seed)

    def local(n: int):  # one model in memory; only the batch size differs between the modes
        client.batch_size = 1 if n == 1 else 8 * n
        return client

    compare(local, args, f"local backend ({client.model}, {client.hf_model.dtype}, "
                         f"{client.hf_model.config._attn_implementation} attention)")
    client.close()


if __name__ == "__main__":
    main()
