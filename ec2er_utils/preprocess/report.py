"""The chapter's report: counts per step and drop reason, our category counts next to the paper's, skew, and the
dataset card (``data/processed/README.md``) written with the processed splits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ..schemas import DatasetItem
from ..taxonomy import PAPER_COUNTS, TASK_CATEGORIES
from .balance import category_counts
from .questions import is_emotion_question, item_questions
from .review import describe_kappa
from .steps import StepReport


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


def quality_card(rules: StepReport | None, judge: StepReport | None) -> list[str]:
    """The dataset card's quality-gate section: the rules' thresholds and drops, the judge's model, threshold,
    drops and mean scores (§3.3's linguistic checks)."""
    lines = ["## Quality gate (§3.3 linguistic checks)", ""]
    if rules is not None:
        thresholds = ", ".join(f"{k} {v}" for k, v in rules.notes.items())
        lines.append(f"- rules ({thresholds}): {rules.n_in} -> {rules.n_out}, dropped {rules.by_reason or 'none'}")
    if judge is None or judge.notes.get("disabled"):
        lines.append("- LLM judge: off (judge_backend = None)")
    elif judge.notes.get("skipped"):
        lines.append(f"- LLM judge: {judge.notes['skipped']}")
    else:
        notes = judge.notes
        share = f"{len(judge.dropped) / judge.n_in:.0%}" if judge.n_in else "n/a"
        lines.append(f"- LLM judge `{notes['model']}` ({notes['backend']}), threshold {notes['threshold']}: "
                     f"{judge.n_in} -> {judge.n_out}, rejected {share} ({judge.by_reason or 'none'}); mean "
                     f"criteria (1-5): {notes['criteria_means']}. Kept items carry `quality_score` (0-1).")
        if notes.get("kept_below_threshold"):
            lines.append(f"  Kept below the threshold by the judge_min_keep floor of {notes['min_keep']}: "
                         f"{notes['kept_below_threshold']}.")
        lines.append("  The scores are a model's opinion, not a human review; a small judge (the embedded 135M "
                     "model) scores almost at random.")
    return lines


def review_card(review: StepReport | None, items: Sequence[DatasetItem]) -> list[str]:
    """The dataset card's §3.4 section: the review sample, and once annotated, Cohen's kappa with its CI beside
    the paper's, the counts, and how many final items carry a confidence."""
    lines = ["## Manual review (§3.4)", ""]
    if review is None:
        return [*lines, "- not run"]
    notes = review.notes
    lines.append(f"- sample: {notes['sample_size']} items (seed {notes['seed']}), stratified by task and "
                 f"category: {notes['strata']}")
    if notes.get("status") != "annotated":
        return [*lines, f"- {notes.get('status')}"]
    found = notes["agreement"]
    lines += [f"- Cohen's kappa on 'label and explanation appropriate', {found['n']} items judged by both: "
              f"{describe_kappa(found)}; the paper reports {found['paper_kappa']}",
              f"- disagreements: {len(found['disagreements'])}; reviewed items kept as ambiguous: "
              f"{notes['ambiguous_kept']}; rejected by both annotators: {notes['rejected']}",
              f"- items with a `confidence` in this set: {sum(i.confidence is not None for i in items)} "
              "(the annotators' mean confidence, 0-1; unreviewed items have none)"]
    return lines


def card_header(split: dict[str, list[DatasetItem]]) -> str:
    """The card's YAML header for the Hugging Face Hub (``huggingface_hub.DatasetCardData``): license, task
    categories, size, and one config whose splits are the JSONL files, so ``load_dataset(repo_id)`` reads them."""
    from huggingface_hub import DatasetCardData

    n = sum(len(part) for part in split.values())
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K"
    files = [{"split": name, "path": f"{name}.jsonl"} for name, part in split.items() if part]
    return DatasetCardData(
        license="other", license_name="generator-model-terms", language=["en"], pretty_name="EC2ER processed",
        task_categories=["question-answering", "text-generation"], task_ids=["multiple-choice-qa"],
        size_categories=[size], tags=["emotional-reasoning", "synthetic", "emobench", "chain-of-thought"],
        configs=[{"config_name": "default", "data_files": files}]).to_yaml()


def dataset_card(split: dict[str, list[DatasetItem]], reports: Sequence[StepReport], split_notes: dict[str, Any],
                 *, inputs: Sequence[str] = ()) -> str:
    """The dataset card (README.md) for data/processed: counts, provenance, filters, license note."""
    everything = [i for part in split.values() for i in part]
    lines = ["---", card_header(split), "---", "", "# EC2ER synthetic emotional-reasoning training set (processed)", "",
             "Written by `notebooks/03_preprocess.ipynb` (`ec2er_utils.preprocess`), paper §3.3-3.4.", "",
             "## Counts", "", "| split | EU items | EA items | questions |", "|---|---:|---:|---:|"]
    for name, part in split.items():
        lines.append(f"| {name} | {sum(i.task == 'EU' for i in part)} | {sum(i.task == 'EA' for i in part)} | "
                     f"{sum(len(item_questions(i)) for i in part)} |")
    lines += ["", f"Split: {split_notes.get('method')}" + (f" ({split_notes['reason']})"
                                                           if split_notes.get("reason") else ""), "",
              "| task | category | ours | paper |", "|---|---|---:|---:|"]
    lines += [f"| {r['task']} | {r['category']} | {r['ours']} | {r['paper']} |" for r in counts_vs_paper(everything)]
    eu = [i for i in everything if i.task == "EU" and is_emotion_question(i)]
    mixed = sum(" & " in i.correct_answer for i in eu)
    lines += ["", f"Emotion labels: {mixed} of {len(eu)} EU emotion questions have a mixed-emotion label "
                  "(a pair felt at once, EmoBench's \"X & Y\"; EmoBench's English EU: 63 of 200)."]
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
    by_step = {r.step: r for r in reports}
    lines += ["", *quality_card(by_step.get("quality rules"), by_step.get("quality judge")),
              "", *review_card(by_step.get("review"), everything)]
    lines += ["", "## License and intended use", "",
              "Synthetic text written by the generator model(s) above; no real users' data. Its use is subject to "
              "the generator model's license and terms. EmoBench (MIT license, Sabour et al. 2024) was used only "
              "to *remove* overlapping scenarios; no EmoBench text is included. For research on emotional "
              "reasoning; not for clinical or diagnostic use. Items written by small demo models are mostly of "
              "poor quality: they exercise the pipeline, they are not a substitute for the paper's dataset.", ""]
    return "\n".join(lines)
