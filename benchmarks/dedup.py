"""Benchmark: fuzzy de-duplication of 100,000 scenarios (issue 4; paper §3.3).

Builds a synthetic corpus with planted near-duplicates, then prints

(a) the time ``ec2er_utils.preprocess.dedup.similar_pairs(method="lsh")`` takes on 100,000 scenarios (target
    <= 60 s on 2 cores) and the recall of the planted duplicates (target >= 0.99), and
(b) on a 5,000-scenario sample, the agreement of LSH with exhaustive all-pairs comparison (rapidfuzz ``cdist``).

Synthetic scenarios are word-level Markov-chain text trained on EmoBench's English scenarios (``shared/emobench``,
when present; otherwise Zipf-distributed pseudo-words), 50-200 tokens (words and punctuation marks) each, so
unrelated scenarios share the same common phrases as real ones. A planted duplicate is a copy of an earlier
scenario with 1-10% of its words edited (substituted, deleted, inserted, swapped with a neighbour, or given a
typo); copies of copies make clusters. A planted pair counts as a duplicate only if its real Levenshtein similarity
reaches the threshold; weaker ones are reported separately. Wall time on a shared machine includes waiting for
the CPU, so the process's CPU time is printed too.

    .venv/bin/python benchmarks/dedup.py                 # the full benchmark (~3 minutes on 2 cores)
    .venv/bin/python benchmarks/dedup.py --n 20000 --sample 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import defaultdict

import numpy as np
from rapidfuzz.distance import Levenshtein

from ec2er_utils.preprocess.dedup import (
    DEFAULT_THRESHOLD,
    LSHParams,
    first_occurrences,
    normalise_for_matching,
    similar_pairs,
)
from ec2er_utils.paths import shared_dir

TOKEN = re.compile(r"\w+|[^\w\s]")
EDIT_RATES = (0.01, 0.02, 0.04, 0.06, 0.08, 0.10)


def training_corpus() -> tuple[list[str], str]:
    folder = shared_dir()
    texts = []
    if folder is not None:
        for name in ("EU.jsonl", "EA.jsonl"):
            path = folder / "emobench" / name
            if path.is_file():
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                texts += [r["scenario"] for r in rows if r.get("language") == "en"]
    if texts:
        return texts, f"Markov chain over {len(texts)} EmoBench English scenarios"
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghiklmnoprstuvwy") for _ in range(rng.randint(1, 9))) for _ in range(20000)]
    weights = 1 / np.arange(1, len(words) + 1)
    sample = rng.choices(words, weights=weights.tolist(), k=200_000)
    return [" ".join(sample[i:i + 100]) + "." for i in range(0, len(sample), 100)], "Zipf pseudo-words"


class ScenarioGenerator:
    """Order-1 word Markov chain: locally plausible text with the corpus' phrase statistics."""

    def __init__(self, corpus: list[str], seed: int):
        self.rng = random.Random(seed)
        self.next_tokens: dict[str, list[str]] = defaultdict(list)
        for text in corpus:
            tokens = ["<s>", *TOKEN.findall(text), "</s>"]
            for before, after in zip(tokens, tokens[1:], strict=False):
                self.next_tokens[before].append(after)
        self.vocabulary = sorted({t for text in corpus for t in re.findall(r"[A-Za-z]+", text)})

    def scenario(self, n_words: int) -> str:
        out, previous = [], "<s>"
        choice = self.rng.choice
        while len(out) < n_words:
            token = choice(self.next_tokens[previous])
            if token == "</s>":
                previous = "<s>"
                continue
            out.append(token)
            previous = token
        return re.sub(r" ([^\w\s])", r"\1", " ".join(out))

    def near_duplicate(self, text: str, rate: float) -> str:
        words = text.split(" ")
        rng = self.rng
        for _ in range(max(1, round(len(words) * rate))):
            i = rng.randrange(len(words))
            edit = rng.choice(("substitute", "delete", "insert", "swap", "typo", "typo"))
            if edit == "substitute":
                words[i] = rng.choice(self.vocabulary)
            elif edit == "delete" and len(words) > 10:
                del words[i]
            elif edit == "insert":
                words.insert(i, rng.choice(self.vocabulary))
            elif edit == "swap" and i + 1 < len(words):
                words[i], words[i + 1] = words[i + 1], words[i]
            elif edit == "typo":
                word, k = words[i], rng.randrange(len(words[i]) + 1)
                letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
                words[i] = word[:k] + letter + word[k + 1:] if rng.random() < 0.5 else word[:k] + letter + word[k:]
        return " ".join(words)


def build_corpus(n: int, duplicate_fraction: float, seed: int) -> tuple[list[str], list[tuple[int, int]], str]:
    corpus, source = training_corpus()
    generator = ScenarioGenerator(corpus, seed)
    rng = random.Random(seed + 1)
    texts: list[str] = []
    planted: list[tuple[int, int]] = []
    while len(texts) < n:
        if texts and rng.random() < duplicate_fraction:
            original = rng.randrange(len(texts))  # sometimes a copy of a copy: clusters, not only pairs
            planted.append((original, len(texts)))
            texts.append(generator.near_duplicate(texts[original], rng.choice(EDIT_RATES)))
        else:
            texts.append(generator.scenario(rng.randint(50, 200)))
    return texts, planted, source


def pair_set(pairs) -> set[tuple[int, int]]:
    return {(p.first, p.second) for p in pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="scenarios in the timed run")
    parser.add_argument("--sample", type=int, default=5_000, help="scenarios compared against all-pairs")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--duplicate-fraction", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2, help="rapidfuzz threads for the exhaustive comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = LSHParams()

    started = time.perf_counter()
    texts, planted, source = build_corpus(args.n, args.duplicate_fraction, args.seed)
    words = np.array([len(t.split()) for t in texts])
    print(f"corpus: {len(texts):,} scenarios ({source}), {words.mean():.0f} words on average "
          f"({words.min()}-{words.max()}), {len(planted):,} planted near-duplicates; "
          f"built in {time.perf_counter() - started:.0f} s (not timed)")

    started, cpu_started = time.perf_counter(), time.process_time()
    found = pair_set(similar_pairs(texts, args.threshold, method="lsh", params=params))
    lsh_seconds, lsh_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    normalised = [normalise_for_matching(t) for t in texts]
    true_planted = [p for p in planted
                    if Levenshtein.normalized_similarity(normalised[p[0]], normalised[p[1]]) >= args.threshold]
    recall = sum(p in found for p in true_planted) / max(1, len(true_planted))

    # (b) a sample rich in planted pairs (a uniform 5,000 of 100,000 would hold almost none), plus random others
    rng = random.Random(args.seed + 2)
    chosen: set[int] = set()
    for first, second in rng.sample(planted, min(len(planted), args.sample // 5)):
        chosen.update((first, second))
    others = [i for i in rng.sample(range(len(texts)), min(len(texts), args.sample * 2)) if i not in chosen]
    sample_ids = sorted(chosen | set(others[:max(0, args.sample - len(chosen))]))
    sample = [texts[i] for i in sample_ids]
    started = time.perf_counter()
    exhaustive = similar_pairs(sample, args.threshold, method="exhaustive", workers=args.workers)
    exhaustive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    lsh = similar_pairs(sample, args.threshold, method="lsh", params=params)
    sample_lsh_seconds = time.perf_counter() - started
    ex_set, lsh_set = pair_set(exhaustive), pair_set(lsh)
    agree_pairs = len(ex_set & lsh_set) / max(1, len(ex_set | lsh_set))
    sample_recall = len(ex_set & lsh_set) / max(1, len(ex_set))
    drop_ex = [v is None for v in first_occurrences(sample, exhaustive)]
    drop_lsh = [v is None for v in first_occurrences(sample, lsh)]
    agree_drops = float(np.mean([a == b for a, b in zip(drop_ex, drop_lsh, strict=True)])) if sample else 1.0

    print(f"\nthreshold: Levenshtein normalized_similarity >= {args.threshold}; LSH {params.bands} bands x "
          f"{params.rows} rows over word {params.ngram}-grams")
    print(f"{'measure':<58}{'measured':>14}{'target':>12}")
    print(f"{f'(a) LSH time for {len(texts):,} scenarios':<58}{lsh_seconds:>12.1f} s{'<= 60 s':>12}")
    print(f"{'    time / target':<58}{lsh_seconds / 60:>14.2f}{'<= 1.00':>12}")
    print(f"{'    CPU time of this process (wall time includes waiting)':<58}{lsh_cpu:>12.1f} s")
    print(f"{'    CPU cores / 1-minute load average':<58}{os.cpu_count():>8} / {os.getloadavg()[0]:<4.1f}")
    print(f"{f'(a) recall of planted duplicates ({len(true_planted):,} pairs)':<58}{recall:>14.4f}{'>= 0.99':>12}")
    print(f"{'    planted pairs below the threshold (not duplicates)':<58}{len(planted) - len(true_planted):>14,}")
    print(f"{'    near-duplicate pairs found in total':<58}{len(found):>14,}")
    print(f"{f'(b) sample: {len(sample):,} scenarios, all-pairs pairs':<58}{len(ex_set):>14,}")
    print(f"{'    all-pairs time / LSH time on the sample':<58}"
          f"{exhaustive_seconds:>7.1f}/{sample_lsh_seconds:<5.1f}s")
    print(f"{'    LSH recall of all-pairs near-duplicates':<58}{sample_recall:>14.4f}{'>= 0.99':>12}")
    print(f"{'    pair-set agreement |LSH & all| / |LSH | all|':<58}{agree_pairs:>14.4f}")
    print(f"{'    same keep/drop decision per scenario':<58}{agree_drops:>14.4f}")


if __name__ == "__main__":
    main()
