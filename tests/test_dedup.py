"""Fuzzy de-duplication: LSH candidates + Levenshtein confirmation agree with exhaustive comparison."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from ec2er_utils.preprocess.dedup import (
    LSHParams,
    SimilarPair,
    best_reference_matches,
    candidate_pairs,
    first_occurrences,
    minhash_signatures,
    normalise_for_matching,
    similar_pairs,
)

VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ve", "zo") for b in
              ("bar", "cen", "dil", "fos", "gun", "hep", "jat", "kor", "lum", "mas", "nix", "pol")]


def synthetic_corpus(n_texts: int, n_planted: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """Random texts of 50-120 words; each planted text copies an earlier one with 1-6% of its words edited."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choices(VOCABULARY, k=rng.randint(50, 120))) for _ in range(n_texts)]
    planted = []
    for _ in range(n_planted):
        original = rng.randrange(len(texts))
        words = texts[original].split()
        for _ in range(max(1, int(len(words) * rng.choice((0.01, 0.03, 0.06))))):
            position = rng.randrange(len(words))
            edit = rng.choice(("substitute", "delete", "insert", "typo"))
            if edit == "substitute":
                words[position] = rng.choice(VOCABULARY)
            elif edit == "delete":
                del words[position]
            elif edit == "insert":
                words.insert(position, rng.choice(VOCABULARY))
            else:
                words[position] = words[position][:-1] + "q"
        planted.append((original, len(texts)))
        texts.append(" ".join(words))
    return texts, planted


def test_lsh_finds_every_planted_duplicate_and_agrees_with_exhaustive():
    texts, planted = synthetic_corpus(400, 60)
    normal = [normalise_for_matching(t) for t in texts]
    true_planted = {p for p in planted if Levenshtein.normalized_similarity(normal[p[0]], normal[p[1]]) >= 0.9}
    assert len(true_planted) >= 50  # the edits mostly stay above the threshold
    lsh = {(p.first, p.second) for p in similar_pairs(texts, 0.9, method="lsh")}
    exhaustive = {(p.first, p.second) for p in similar_pairs(texts, 0.9, method="exhaustive")}
    assert true_planted <= exhaustive
    recall = len(true_planted & lsh) / len(true_planted)
    assert recall >= 0.99
    assert lsh <= exhaustive  # LSH confirms every candidate exactly, so it never reports a false pair
    assert len(lsh) / len(exhaustive) >= 0.99


def test_similarity_is_on_casefolded_whitespace_collapsed_text():
    texts = ["Anna was happy to see her old friend at the station", "anna   WAS happy to see her old friend at the "
             "station", "Completely unrelated words about a kitchen"]
    for method in ("lsh", "exhaustive"):
        pairs = similar_pairs(texts, 0.95, method=method)
        assert [(p.first, p.second, p.similarity) for p in pairs] == [(0, 1, 1.0)]


def test_first_occurrence_keeps_the_earliest_and_breaks_chains():
    # A~B and B~C, but A !~ C: B is dropped as a duplicate of A, so C (whose only match was B) is kept
    texts = ["a", "b", "c"]
    pairs = [SimilarPair(0, 1, 0.95), SimilarPair(1, 2, 0.95)]
    verdict = first_occurrences(texts, pairs)
    assert verdict[0] is None and verdict[1] == pairs[0] and verdict[2] is None
    # with A~C too, C goes as well, pointing at A
    verdict = first_occurrences(texts, [*pairs, SimilarPair(0, 2, 0.91)])
    assert verdict[2] == SimilarPair(0, 2, 0.91)


def test_first_occurrences_marks_exact_and_near_copies():
    base = "Maria waited two hours at the airport for her brother who never called to say the flight was late"
    texts = [base, base.replace("two hours", "two hour"), "Something else entirely happened on a different day",
             base]
    verdict = first_occurrences(texts, similar_pairs(texts, 0.9))
    assert verdict[0] is None and verdict[2] is None
    assert verdict[1].first == 0 and verdict[1].similarity >= 0.9
    assert verdict[3].first == 0 and verdict[3].similarity == 1.0


def test_lsh_is_deterministic_and_signatures_do_not_depend_on_other_texts():
    texts, _ = synthetic_corpus(80, 10, seed=3)
    first, _ = minhash_signatures(texts)
    alone, _ = minhash_signatures(texts[5:6])
    assert (first[5] == alone[0]).all()
    assert (candidate_pairs(texts) == candidate_pairs(texts)).all()
    other_seed, _ = minhash_signatures(texts[:3], LSHParams(seed=1))
    assert not (other_seed == first[:3]).all()


def test_short_and_empty_texts_are_handled():
    texts = ["", "", "hi", "hi", "one two", "one two", "x"]
    pairs = {(p.first, p.second) for p in similar_pairs(texts, 0.9, method="lsh")}
    assert pairs == {(0, 1), (2, 3), (4, 5)}
    assert similar_pairs([], method="lsh") == [] and similar_pairs(["only"], method="lsh") == []


def test_bad_threshold_or_method_is_refused():
    with pytest.raises(ValueError, match="threshold"):
        similar_pairs(["a", "b"], 1.5)
    with pytest.raises(ValueError, match="method"):
        similar_pairs(["a", "b"], 0.9, method="fast")


def test_reference_matches_by_similarity_and_by_containment():
    reference = "Sarah found out that her younger brother is being bullied at school but he begged her not to tell."
    queries = [reference.upper(),
               "It was a long week. " + reference + " She did not know what to do about it at all, honestly.",
               "A story about a cat that climbs trees and never comes down before dinner time."]
    plain = best_reference_matches(queries, [reference], 0.9)
    assert plain[0][0] == 0 and plain[0][2] == "levenshtein" and plain[1] is None and plain[2] is None
    contained = best_reference_matches(queries, [reference], 0.9, containment=0.9)
    assert contained[1][0] == 0 and contained[1][2] == "contained" and contained[2] is None
