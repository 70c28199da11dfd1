"""Step 4, decontamination: no training scenario may be a near-copy of an EmoBench scenario (the test set).

It runs before de-duplication and balancing (the paper lists it last): every step that drops items must run
before the category cap, or the final set could break the 1.5x rule again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..schemas import DatasetItem
from .dedup import best_reference_matches
from .steps import StepReport, StepResult, drop


def load_emobench_scenarios(emobench_dir: str | os.PathLike | None = None,
                            language: str = "en") -> list[tuple[str, str]]:
    """EmoBench scenarios as ("EU:<qid>" / "EA:<qid>", scenario), loaded as the evaluation does
    (:func:`ec2er_utils.emobench.load_emobench`: ``emobench_dir``, else ``$EMOBENCH_DIR``, else
    ``shared/emobench``, else the Hugging Face copy). ``language``: "en" (default), "zh" or "all"."""
    from ..emobench import load_emobench

    folder = str(emobench_dir) if emobench_dir else None
    return [(f"{task}:{item.qid}", item.scenario) for task in ("EU", "EA")
            for item in load_emobench(task, language, folder)]


def decontaminate(items: Sequence[DatasetItem], references: Sequence[tuple[str, str]], *,
                  threshold: float = 0.8, containment: float | None = 0.9, workers: int = -1) -> StepResult:
    """Drop items whose scenario is a near-duplicate of any reference (EmoBench) scenario: normalised
    Levenshtein similarity >= ``threshold``, or, with ``containment``, the reference copied almost verbatim
    inside a longer scenario (:func:`~ec2er_utils.preprocess.dedup.best_reference_matches`). Reason
    ``emobench_overlap``."""
    matches = best_reference_matches([i.scenario for i in items], [text for _, text in references], threshold,
                                     containment=containment, workers=workers)
    kept, dropped = [], []
    for item, match in zip(items, matches, strict=True):
        if match is None:
            kept.append(item)
        else:
            index, score, how = match
            dropped.append(drop(item, "emobench_overlap", f"{how} {score:.2f} with EmoBench {references[index][0]}"))
    return StepResult(kept, StepReport(step="decontamination", n_in=len(items), n_out=len(kept), dropped=dropped,
                                       notes={"references": len(references), "threshold": threshold,
                                              "containment": containment}))
