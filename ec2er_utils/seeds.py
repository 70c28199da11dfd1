"""Seeds derived from a run's seed and a place in the run, never from what was drawn before: every random choice of a
stage takes its own seed from ``(run seed, keys...)``, so a resumed run, or one shard of a run, draws exactly what
an uninterrupted run draws at the same place."""

from __future__ import annotations

import hashlib
import random
from typing import Any

SAMPLING_SEED_MODULUS = 2**31 - 1  # servers take a signed 32-bit sampling seed


def derived_seed(seed: int, *keys: Any) -> int:
    """A 64-bit integer that depends only on ``seed`` and ``keys`` (by their ``repr``), the same in every process.

    ``hash()`` would differ between interpreters (string hashing is salted); SHA-256 of the ``repr`` does not.
    """
    digest = hashlib.sha256(repr((seed, *keys)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def rng_for(seed: int, *keys: Any) -> random.Random:
    """A random generator for one place of a run (e.g. ``rng_for(seed, "attributes", index)``)."""
    return random.Random(derived_seed(seed, *keys))


def sampling_seed(seed: int, *keys: Any) -> int:
    """A per-call sampling seed for an LLM request, in the range a server accepts."""
    return (derived_seed(seed, *keys) >> 32) % SAMPLING_SEED_MODULUS
