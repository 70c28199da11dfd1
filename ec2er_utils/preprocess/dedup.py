"""Step 5, fuzzy de-duplication (paper §3.3): near-identical scenarios, found fast enough for 100,000 of them.

:func:`deduplicate` is the step on items; the functions above it work on plain texts (also used by decontamination
and ``benchmarks/dedup.py``). Two texts are *near-duplicates* when the normalised Levenshtein similarity of their
casefolded, whitespace-collapsed forms (rapidfuzz; 1 - edit distance / length of the longer text) is at least
``threshold`` (default 0.9). The methods differ only in which pairs they compare:

- ``"exhaustive"``: all pairs, ``rapidfuzz.process.cdist`` (exact; ~N²/2 comparisons, fine up to a few thousand).
- ``"lsh"``: candidate pairs by MinHash LSH over word bigrams, each confirmed by the same similarity. One-permutation
  MinHash (one seeded 64-bit hash per bigram, ``bands * rows`` bins, empty ones filled by "optimal densification",
  Shrivastava 2017), then texts that agree on one of ``bands`` bands of ``rows`` values are candidates: with bigram
  Jaccard J, probability 1 - (1 - J**rows)**bands. Near-duplicates at similarity >= 0.9 of 50-200-word texts have
  J >= ~0.5, found with probability >= 0.9997 at the defaults (rows=3, bands=60). It can miss edits spread over
  many words, and is tuned for thresholds >= 0.85 and texts over ~20 words (else more bands, or exhaustive).
- ``"auto"`` (default): exhaustive up to ``EXHAUSTIVE_MAX`` texts, LSH above.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ..schemas import DatasetItem
from .questions import is_emotion_question
from .steps import StepReport, StepResult, drop

DEFAULT_THRESHOLD = 0.9
EXHAUSTIVE_MAX = 3000  # "auto" compares all pairs up to this many texts (about 4.5M comparisons)
_CDIST_CHUNK = 1000  # rows per rapidfuzz.cdist call, to bound memory (chunk x N float32)

Method = Literal["auto", "exhaustive", "lsh"]

_U64 = np.uint64
_M32 = _U64(0xFFFFFFFF)
_POLY = 0x100000001B3  # odd, so invertible modulo 2**64
_POLY_INV = pow(_POLY, -1, 2**64)
# bytes that belong to a word: ASCII letters, digits, underscore, and every byte of a multi-byte UTF-8 character
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyz0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[128:] = True


@dataclass(frozen=True)
class LSHParams:
    """MinHash-LSH settings: ``bands * rows`` MinHash bins over word ``ngram``s, seeded."""

    rows: int = 3
    bands: int = 60
    ngram: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SimilarPair:
    """Texts ``first`` < ``second`` (indices) are near-duplicates with this Levenshtein similarity."""

    first: int
    second: int
    similarity: float


def normalise_for_matching(text: str) -> str:
    """Casefold and collapse whitespace: what near-duplicate comparisons compare."""
    return " ".join(text.casefold().split())


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed, well-spread 64-bit hash (uint64 arithmetic wraps, as intended)."""
    x = values.astype(_U64, copy=True)
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def _word_hashes(normalised: Sequence[str], chunk_chars: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word of every text, vectorised: returns (word hashes, number of words per text)."""
    hashes, counts = [], []
    start = 0
    while start < len(normalised):
        stop, size = start, 0
        while stop < len(normalised) and (stop == start or size + len(normalised[stop]) <= chunk_chars):
            size += len(normalised[stop]) + 1
            stop += 1
        chunk_hashes, chunk_counts = _word_hashes_chunk(normalised[start:stop])
        hashes.append(chunk_hashes)
        counts.append(chunk_counts)
        start = stop
    if not counts:
        return np.zeros(0, _U64), np.zeros(0, np.int64)
    return np.concatenate(hashes), np.concatenate(counts)


def _word_hashes_chunk(normalised: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    data = "\x00".join(t.replace("\x00", " ") for t in normalised).encode("utf-8")
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size == 0:
        return np.zeros(0, _U64), np.zeros(len(normalised), np.int64)
    is_word = _WORD_BYTE[raw].astype(np.int8)
    edges = np.diff(is_word, prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    # polynomial hash of raw[s:e] = (prefix[e] - prefix[s]) * POLY^-s, all modulo 2**64
    powers = np.cumprod(np.full(raw.size, _POLY, dtype=_U64))
    prefix = np.concatenate([np.zeros(1, _U64), np.cumsum(raw.astype(_U64) * powers, dtype=_U64)])
    del powers
    inverse_powers = np.concatenate([np.ones(1, _U64), np.cumprod(np.full(raw.size, _POLY_INV, dtype=_U64))])
    hashes = _mix64((prefix[ends] - prefix[starts]) * inverse_powers[starts] + (ends - starts).astype(_U64))
    separators = np.flatnonzero(raw == 0)
    text_of_word = np.searchsorted(separators, starts)
    counts = np.bincount(text_of_word, minlength=len(normalised)).astype(np.int64)
    return hashes, counts


def _unique_rows(codes: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort-based; numpy's hash-based ``unique`` is much slower on millions of ints)."""
    codes = np.sort(codes)
    return codes[np.concatenate([[True], codes[1:] != codes[:-1]])] if codes.size else codes


def _shingles(word_hashes: np.ndarray, counts: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram hashes and the text each belongs to; a text shorter than ``ngram`` words is one shingle."""
    text_ids = np.repeat(np.arange(len(counts)), counts)
    total = len(word_hashes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
    valid = np.zeros(total, dtype=bool)
    if total >= ngram:
        valid[:total - ngram + 1] = text_ids[:total - ngram + 1] == text_ids[ngram - 1:]
    index = np.flatnonzero(valid)
    combined = word_hashes[index]
    for offset in range(1, ngram):
        combined = _mix64(combined * _U64(0x9E3779B97F4A7C15) + word_hashes[index + offset])
    owners = text_ids[index]
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if short.size:  # rare: texts of fewer than ngram words hash all their words into one shingle
        extra = []
        for text in short.tolist():
            words = word_hashes[starts[text]:starts[text] + counts[text]]
            value = words[:1]
            for offset in range(1, words.size):  # array arithmetic: uint64 wraps silently, as in the vector path
                value = _mix64(value * _U64(0x9E3779B97F4A7C15) + words[offset:offset + 1])
            extra.append(value[0])
        combined = np.concatenate([combined, np.array(extra, dtype=_U64)])
        owners = np.concatenate([owners, short])
    return combined, owners


def minhash_signatures(texts: Sequence[str], params: LSHParams = LSHParams(), *,
                       normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One-permutation MinHash signatures (``len(texts) x bands*rows`` uint32) and which texts have any words.

    ``normalised=True`` says the texts already went through :func:`normalise_for_matching`.
    """
    normalised = list(texts) if normalised else [normalise_for_matching(t) for t in texts]
    n_texts, n_bins = len(normalised), params.rows * params.bands
    hashes, counts = _word_hashes(normalised)
    shingles, owner = _shingles(hashes, counts, params.ngram)
    shingles = _mix64(shingles ^ _U64(params.seed * 0x9E3779B97F4A7C15 % 2**64))
    bins = (((shingles & _M32) * _U64(n_bins)) >> _U64(32)).astype(np.int64)
    values = (shingles >> _U64(32)).astype(np.uint32)
    cells = owner * n_bins + bins
    signature = np.full(n_texts * n_bins, np.iinfo(np.uint32).max, dtype=np.uint32)
    np.minimum.at(signature, cells, values)
    filled = np.zeros(n_texts * n_bins, dtype=bool)
    filled[cells] = True
    signature, filled = signature.reshape(n_texts, n_bins), filled.reshape(n_texts, n_bins)
    has_words = counts > 0
    _densify(signature, filled, has_words, params.seed)
    return signature, has_words


def _densify(signature: np.ndarray, filled: np.ndarray, has_words: np.ndarray, seed: int) -> None:
    """Fill empty bins in place: bin j borrows from bin choice(j, attempt), the same choice for every text."""
    n_bins = signature.shape[1]
    flat_signature, flat_filled = signature.reshape(-1), filled.reshape(-1)
    source = flat_signature.copy()
    cells = np.flatnonzero(~filled & has_words[:, None])
    rows, cols = np.divmod(cells, n_bins)
    bin_ids = np.arange(n_bins, dtype=_U64)
    attempt = 0
    while cells.size:
        attempt += 1
        choice = (_mix64(bin_ids * _U64(0xD6E8FEB86659FD93) + _U64(attempt + 1_000_003 * seed))
                  % _U64(n_bins)).astype(np.int64)
        picked = rows * n_bins + choice[cols]
        found = flat_filled[picked]
        salt = np.uint32((attempt * 0x9E3779B1) & 0xFFFFFFFF)
        flat_signature[cells[found]] = source[picked[found]] ^ salt
        keep = ~found
        cells, rows, cols = cells[keep], rows[keep], cols[keep]


def _pairs_within_groups(members: np.ndarray, group_starts: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """All (i < j) pairs inside each group of a sorted member array, vectorised per group size."""
    out = []
    for size in _unique_rows(group_sizes[group_sizes > 1]).tolist():
        starts = group_starts[group_sizes == size]
        block = np.sort(members[starts[:, None] + np.arange(size)[None, :]], axis=1)
        first, second = np.triu_indices(size, 1)
        out.append(np.stack([block[:, first].ravel(), block[:, second].ravel()], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def candidate_pairs(texts: Sequence[str], params: LSHParams = LSHParams(), *, normalised: bool = False) -> np.ndarray:
    """Pairs (i < j, shape ``M x 2``) that share at least one LSH band; texts without words pair with each other."""
    signature, has_words = minhash_signatures(texts, params, normalised=normalised)
    n_texts = len(texts)
    if n_texts < 2:
        return np.zeros((0, 2), dtype=np.int64)
    coefficients = _mix64(np.arange(1, params.rows + 1, dtype=_U64)) | _U64(1)
    keys = np.empty((params.bands, n_texts), dtype=_U64)
    for band in range(params.bands):
        block = signature[:, band * params.rows:(band + 1) * params.rows].astype(_U64)
        keys[band] = _mix64((block * coefficients).sum(axis=1, dtype=_U64) + _U64(band))
    keys[:, ~has_words] = _U64(0)  # wordless texts share one bucket (compared exactly below)
    keys[1:, ~has_words] = np.arange(1, params.bands, dtype=_U64)[:, None]
    flat_keys = keys.ravel()
    order = np.argsort(flat_keys, kind="stable")
    sorted_keys = flat_keys[order]
    boundaries = np.flatnonzero(np.diff(sorted_keys)) + 1
    group_starts = np.concatenate([[0], boundaries])
    group_sizes = np.diff(np.concatenate([group_starts, [sorted_keys.size]]))
    pairs = _pairs_within_groups(order % n_texts, group_starts, group_sizes)
    if pairs.size == 0:
        return pairs
    codes = _unique_rows(pairs[:, 0].astype(np.int64) * n_texts + pairs[:, 1])
    return np.stack([codes // n_texts, codes % n_texts], axis=1)


def _confirm(normalised: Sequence[str], pairs: np.ndarray, threshold: float) -> list[SimilarPair]:
    lengths = np.fromiter((len(t) for t in normalised), dtype=np.int64, count=len(normalised))
    if pairs.size:
        short = np.minimum(lengths[pairs[:, 0]], lengths[pairs[:, 1]])
        long = np.maximum(lengths[pairs[:, 0]], lengths[pairs[:, 1]])
        # 1 - distance/long >= threshold needs long - short <= (1 - threshold) * long
        pairs = pairs[(long - short) <= (1.0 - threshold) * long + 1e-9]
    found = []
    for first, second in pairs.tolist():
        score = Levenshtein.normalized_similarity(normalised[first], normalised[second], score_cutoff=threshold)
        if score >= threshold:
            found.append(SimilarPair(first, second, float(score)))
    return found


def _exhaustive_pairs(normalised: Sequence[str], threshold: float, workers: int) -> list[SimilarPair]:
    found = []
    for start in range(0, len(normalised), _CDIST_CHUNK):
        block = process.cdist(normalised[start:start + _CDIST_CHUNK], normalised,
                              scorer=Levenshtein.normalized_similarity, score_cutoff=threshold,
                              dtype=np.float32, workers=workers)
        rows, cols = np.nonzero(block >= threshold)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + row < col:
                # re-score in float64 so both methods report identical numbers
                score = Levenshtein.normalized_similarity(normalised[start + row], normalised[col])
                if score >= threshold:
                    found.append(SimilarPair(start + row, col, float(score)))
    return found


def similar_pairs(texts: Sequence[str], threshold: float = DEFAULT_THRESHOLD, *, method: Method = "auto",
                  params: LSHParams = LSHParams(), workers: int = -1) -> list[SimilarPair]:
    """All near-duplicate pairs (i < j) found by ``method``, sorted by (i, j); see the module docstring."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if method not in ("auto", "exhaustive", "lsh"):
        raise ValueError(f"method must be 'auto', 'exhaustive' or 'lsh', got {method!r}")
    normalised = [normalise_for_matching(t) for t in texts]
    if method == "exhaustive" or (method == "auto" and len(texts) <= EXHAUSTIVE_MAX):
        found = _exhaustive_pairs(normalised, threshold, workers)
    else:
        found = _confirm(normalised, candidate_pairs(normalised, params, normalised=True), threshold)
    return sorted(found, key=lambda p: (p.first, p.second))


def first_occurrences(texts: Sequence[str], pairs: Sequence[SimilarPair]) -> list[SimilarPair | None]:
    """For each text, the earlier *kept* text it duplicates (the most similar one), or None if it is kept.

    Greedy in index order: text j is dropped when it is a near-duplicate of some earlier text that was kept, so
    a kept text never duplicates another kept one, and a chain A~B~C with A !~ C keeps A and C.
    """
    earlier: dict[int, list[SimilarPair]] = {}
    for pair in pairs:
        earlier.setdefault(pair.second, []).append(pair)
    verdict: list[SimilarPair | None] = [None] * len(texts)
    for index in range(len(texts)):
        matches = [p for p in earlier.get(index, ()) if verdict[p.first] is None]
        if matches:
            verdict[index] = max(matches, key=lambda p: (p.similarity, -p.first))
    return verdict


def best_reference_matches(queries: Sequence[str], references: Sequence[str],
                           threshold: float = DEFAULT_THRESHOLD, *, containment: float | None = None,
                           workers: int = -1) -> list[tuple[int, float, str] | None]:
    """For each query, its most similar reference at or above ``threshold`` as (index, score, how), else None.

    Exhaustive (references are small, e.g. EmoBench's 800 scenarios). ``how`` is ``"levenshtein"`` for
    normalised Levenshtein similarity; with ``containment`` set, a reference that appears almost verbatim *inside*
    a longer query (``rapidfuzz.fuzz.partial_ratio`` / 100 >= containment, reference no longer than the query) also
    matches, as ``"contained"``: Levenshtein alone misses a copied scenario padded with new sentences.
    """
    from rapidfuzz import fuzz

    results: list[tuple[int, float, str] | None] = [None] * len(queries)
    if not queries or not references:
        return results
    normal_queries = [normalise_for_matching(q) for q in queries]
    normal_refs = [normalise_for_matching(r) for r in references]
    scores = process.cdist(normal_queries, normal_refs, scorer=Levenshtein.normalized_similarity,
                           score_cutoff=threshold, dtype=np.float32, workers=workers)
    for row in np.flatnonzero(scores.max(axis=1) >= threshold):
        col = int(scores[row].argmax())
        results[row] = (col, float(Levenshtein.normalized_similarity(normal_queries[row], normal_refs[col])),
                        "levenshtein")
    if containment is not None:
        partial = process.cdist(normal_queries, normal_refs, scorer=fuzz.partial_ratio,
                                score_cutoff=containment * 100, dtype=np.float32, workers=workers)
        ref_lengths = np.array([len(r) for r in normal_refs])
        for row in range(len(queries)):
            if results[row] is not None:
                continue
            usable = (partial[row] >= containment * 100) & (ref_lengths <= len(normal_queries[row]))
            if usable.any():
                col = int(np.where(usable, partial[row], -1).argmax())
                results[row] = (col, float(partial[row, col]) / 100, "contained")
    return results


def dedup_groups(item: DatasetItem) -> tuple[str, ...]:
    """Kinds of question an item asks. Scenarios are compared only within a kind: an emotion item and an EA item
    written about the same moment of a dialogue teach different things, so both are kept."""
    if item.source_format == "emobench_eu":
        return ("EU-emotion", "EU-cause")
    if item.task == "EA":
        return ("EA",)
    return ("EU-emotion",) if is_emotion_question(item) else ("EU-cause",)


def deduplicate(items: Sequence[DatasetItem], *, threshold: float = DEFAULT_THRESHOLD, method: Method = "auto",
                workers: int = -1) -> StepResult:
    """Drop items whose scenario is a near-duplicate (normalised Levenshtein >= ``threshold``) of an earlier kept
    item asking the same kind of question; the earliest item is kept. Reason ``near_duplicate``."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        for group in dedup_groups(item):
            by_group[group].append(index)
    pairs = [SimilarPair(members[p.first], members[p.second], p.similarity) for members in by_group.values()
             for p in similar_pairs([items[i].scenario for i in members], threshold, method=method, workers=workers)]
    kept, dropped = [], []
    for item, duplicate in zip(items, first_occurrences(items, pairs), strict=True):
        if duplicate is None:
            kept.append(item)
        else:
            dropped.append(drop(item, "near_duplicate",
                                f"{duplicate.similarity:.2f} similar to {items[duplicate.first].item_id}"))
    return StepResult(kept, StepReport(step="de-duplication", n_in=len(items), n_out=len(kept), dropped=dropped,
                                       notes={"threshold": threshold, "method": method}))
