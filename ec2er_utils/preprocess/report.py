"""The chapter's report: counts per step and drop reason, our category counts next to the paper's, skew, and the
dataset card (``data/processed/README.md``) written with the processed splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..schemas import DatasetItem
from ..taxonomy import PAPER_EA_COUNTS, PAPER_EU_COUNTS
from .balance import category_counts
from .filters import TASK_CATEGORIES
from .questions import is_emotion_question, item_questions
from .steps import StepReport

PAPER_COUNTS = {"EU": PAPER_EU_COUNTS, "EA": PAPER_EA_COUNTS}


def counts_vs_paper(items: Iterable[DatasetItem]) -> list[dict[str, Any]]:
    """Rows (task, category, ours, paper, our share, paper share) for a side-by-side table."""
    ours = category_counts(items)
    rows = []
    for task, categories in TASK_CATEGORIES.items():
        total, paper_total = sum(ours[task].values()), sum(PAPER_COUNTS[task].values())
        for category in categories:
            rows.append({"task": task, "category": category, "ours": ours[task][category],
                         "paper": PAPER_COUNTS[task][category],
                         "our_share": ours[task][category] / total if total else None,
                         "paper_share": PAPER_COUNTS[task][category] / paper_total})
    return rows


def skew_summary(items: Sequence[DatasetItem], top: int = 5) -> dict[str, Any]:
    """The paper's other skew worry (§3.3: "particular emotions or personas"): reported, not filtered."""
    emotions = Counter(i.correct_answer for i in items if is_emotion_question(i))
    personas = Counter(i.persona_id or "unknown" for i in items)
    return {"distinct_gold_emotions": len(emotions), "top_gold_emotions": dict(emotions.most_common(top)),
            "personas": len(personas), "max_items_per_persona": max(personas.values(), default=0),
            "top_personas": dict(personas.most_common(top))}


def steps_table(reports: Sequence[StepReport]) -> list[dict[str, Any]]:
    """One row per step (in, out, dropped, reasons), validation expanded into its filters: the notebook's table."""
    rows = []
    for report in reports:
        inner = report.notes.get("steps") if report.step == "validation" else None
        for sub in ([StepReport.model_validate(s) for s in inner] if inner else [report]):
            rows.append({"step": sub.step, "in": sub.n_in, "out": sub.n_out, "dropped": len(sub.dropped),
                         "reasons": ", ".join(f"{k}: {v}" for k, v in sub.by_reason.items())})
    return rows


def dataset_card(split: dict[str, list[DatasetItem]], reports: Sequence[StepReport], split_notes: dict[str, Any],
                 *, inputs: Sequence[str] = ()) -> str:
    """The dataset card (README.md) for data/processed: counts, provenance, filters, license note."""
    everything = [i for part in split.values() for i in part]
    lines = ["# EC2ER synthetic emotional-reasoning training set (processed)", "",
             "Written by `notebooks/03_preprocess.ipynb` (`ec2er_utils.preprocess`), paper §3.3-3.4.", "",
             "## Counts", "", "| split | EU items | EA items | questions |", "|---|---:|---:|---:|"]
    for name, part in split.items():
        lines.append(f"| {name} | {sum(i.task == 'EU' for i in part)} | {sum(i.task == 'EA' for i in part)} | "
                     f"{sum(len(item_questions(i)) for i in part)} |")
    lines += ["", f"Split: {split_notes.get('method')}" + (f" ({split_notes['reason']})"
                                                           if split_notes.get("reason") else ""), "",
              "| task | category | ours | paper |", "|---|---|---:|---:|"]
    lines += [f"| {r['task']} | {r['category']} | {r['ours']} | {r['paper']} |" for r in counts_vs_paper(everything)]
    models = Counter(i.generator_model or "unknown" for i in everything)
    pipelines = Counter(i.pipeline or "unknown" for i in everything)
    lines += ["", "## Provenance", "",
              f"- inputs: {', '.join(inputs) if inputs else 'not recorded'}",
              f"- pipelines: {dict(pipelines)}", f"- generator models: {dict(models)}",
              f"- personas: {len({i.persona_id for i in everything if i.persona_id})}, dialogues: "
              f"{len({i.dialogue_id for i in everything if i.dialogue_id})}",
              "", "## Filters (items in -> out, drops by reason)", ""]
    for report in reports:
        reasons = ", ".join(f"{k}: {v}" for k, v in report.by_reason.items()) or "none dropped"
        lines.append(f"- **{report.step}**: {report.n_in} -> {report.n_out} ({reasons})")
    lines += ["", "## License and intended use", "",
              "Synthetic text written by the generator model(s) above; no real users' data. Its use is subject to "
              "the generator model's license and terms. EmoBench (MIT license, Sabour et al. 2024) was used only "
              "to *remove* overlapping scenarios; no EmoBench text is included. For research on emotional "
              "reasoning; not for clinical or diagnostic use. Items written by small demo models are mostly of "
              "poor quality: they exercise the pipeline, they are not a substitute for the paper's dataset.", ""]
    return "\n".join(lines)
