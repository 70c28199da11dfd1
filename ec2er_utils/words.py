"""Content words of English text: what the heuristics that compare two texts' information look at.

Used by the redundant-turn check of dialogue generation (:mod:`ec2er_utils.generation.transcript`) and by the
explanation-consistency filter of preprocessing (:mod:`ec2er_utils.preprocess.filters`).
"""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    "a an the and or but if so to of in on at for with from by as is are was were be been being am i you he she "
    "it we they me him her us them my your his its our their this that these those there here do does did have "
    "has had will would can could should may might must not no yes yeah ok okay just really very also too then "
    "than what which who whom when where why how about into out up down over again more most some any all each "
    "own same such only because while until after before like feel feels felt think thinks thought "
    "s t re ve ll d m".split())
_WORD = re.compile(r"[a-z0-9']+")


def stem(word: str) -> str:
    """Crude stemming so that "encouraging"/"encourage", "bullies"/"bully" and "teachers"/"teacher" match."""
    word = word.strip("'").removesuffix("'s")
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    else:
        for suffix in ("ingly", "edly", "ing", "ed", "ly", "es", "s"):
            if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def content_words(text: str) -> set[str]:
    """The stemmed words of ``text`` that are not stop words (casefolded; curly apostrophes read as straight)."""
    return {stem(w) for w in _WORD.findall(text.casefold().replace("\u2019", "'")) if w not in STOPWORDS}
