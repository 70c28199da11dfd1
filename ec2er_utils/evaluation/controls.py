"""Controls of the train -> evaluate machinery (issue 15): the overfit check (:func:`overfit_check`) and the
scenario-disjoint k-fold control (:func:`kfold_control`). Both train with ``ec2er_utils.training`` and evaluate with
:func:`~ec2er_utils.evaluation.evaluate` on a folder holding only the chosen items; everything they write is marked
:data:`CONTROL`. What they check and what they measured: README, chapter 05."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..emobench import EmoBenchItem, emobench_file, load_tasks, task_of
from ..formatting import Question
from ..jsonl import read_json, write_json_atomic
from ..models import DEFAULT_MODEL, load_model_and_tokenizer, model_folder_name
from ..paths import results_dir
from ..schemas import EUItem
from ..taxonomy import OVERALL
from .adapter_check import AdapterNotApplied, check_adapter_applied
from .choice import ChoiceScorer, best_letter
from .prompts import paper_questions
from .report import EvaluationRun, compare_runs, leaderboard_frame, robust_table
from .runner import EvalConfig, evaluate
from .scoring import DEFAULT_SEED, Prediction, summarize

CONTROL = "control"  # in every run folder, training source and label a control writes: never paper training data
DEFAULT_FOLDS = 5
OVERFIT_THRESHOLD = 0.9  # the accuracy the overfit check must reach on its own training items
NEAR_ZERO_LOSS = 0.1  # a final training loss above this has not memorised the items yet
# The settings with which a user reached 14/16 on 16 EA items (issue 15): hard training on few items.
OVERFIT_TRAINING = {"learning_rate": 1e-3, "num_train_epochs": 10, "target_modules": "all-linear",
                    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "warmup_ratio": 0.0}
MATCHING_PROTOCOL = "reason-score"  # asks the question the way training answers it: reasoning, then the letter
RESULT_FILE = "result.json"  # what a control measured, beside its runs (read back by saved_control_results)


def scenario_key(item: EmoBenchItem) -> tuple[str, str]:
    """What ties EmoBench questions to one scenario: the task and the qid (an EU item's Chinese twin has the same
    qid; EU and EA number their scenarios independently)."""
    return task_of(item), item.qid


def scenario_folds(items: Sequence[EmoBenchItem], k: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
                   ) -> list[list[EmoBenchItem]]:
    """``k`` folds of ``items`` with no scenario in two folds: each task's scenarios shuffled with ``seed`` and
    dealt round-robin (an equal share of each task per fold). Each fold keeps the items' input order."""
    if k < 2:
        raise ValueError(f"k={k}: a k-fold control needs at least 2 folds")
    keys_by_task: dict[str, list[tuple[str, str]]] = {}
    for key in dict.fromkeys(scenario_key(item) for item in items):  # each scenario once, in input order
        keys_by_task.setdefault(key[0], []).append(key)
    fold_of: dict[tuple[str, str], int] = {}
    for task, keys in sorted(keys_by_task.items()):
        if len(keys) < k:
            raise ValueError(f"{len(keys)} {task} scenarios cannot fill {k} folds; use k <= {len(keys)}")
        random.Random(f"{seed}:{task}").shuffle(keys)
        fold_of.update({key: position % k for position, key in enumerate(keys)})
    return [[item for item in items if fold_of[scenario_key(item)] == fold] for fold in range(k)]


def label_explanation(item: EmoBenchItem, part: str) -> str:
    """A reasoning written from the gold labels, naming the correct option's text."""
    if isinstance(item, EUItem):
        if part == "emotion":
            return f"{item.subject} would ultimately feel {item.emotion_label}. The reason: {item.cause_label}."
        return f"{item.subject} feels {item.emotion_label} because of this: {item.cause_label}."
    return f"The most effective {item.question_type.lower()} for {item.subject} is: {item.label}."


def control_questions(items: Sequence[EmoBenchItem], *, shuffle_seed: int | None = DEFAULT_SEED) -> list[Question]:
    """The items as training questions in the format the evaluation asks
    (:func:`~ec2er_utils.evaluation.prompts.paper_questions`), options shuffled per question with ``shuffle_seed``
    (None keeps EmoBench's order), explanations from :func:`label_explanation`, ``kind`` starting ``control/``."""
    questions = []
    for item in items:
        for part, question in paper_questions(item).items():
            options = list(question.options)
            gold = options[question.answer_index]
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}:{task_of(item)}:{item.language}:{item.qid}:{part}").shuffle(options)
            questions.append(dataclasses.replace(question, options=tuple(options), answer_index=options.index(gold),
                                                 explanation=label_explanation(item, part),
                                                 kind=f"{CONTROL}/{question.kind}"))
    return questions


def write_item_subset(items: Sequence[EmoBenchItem], folder: str | os.PathLike,
                      data_dir: str | os.PathLike | None = None) -> Path:
    """A folder holding EmoBench's own lines of ``items`` only, for ``EvalConfig(emobench_dir=folder)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {(task_of(item), item.language, item.qid) for item in items}
    for task in sorted({task for task, _, _ in wanted}):
        source = emobench_file(task, data_dir)
        lines = [line for line in source.read_text(encoding="utf-8").splitlines()
                 if line.strip() and (task, (row := json.loads(line))["language"], str(row["qid"])) in wanted]
        (folder / f"{task}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def train_control_adapter(questions: Sequence[Question], run_root: str | os.PathLike, run_id: str, *,
                          model: str | None = None, source: str, **settings: Any) -> dict[str, Any]:
    """Train a LoRA adapter on control questions (any ``TrainConfig`` setting in ``settings``) and save the run
    under ``run_root``; an adapter already there is reused (a control resumes)."""
    from .. import training

    config = training.TrainConfig(model=model or DEFAULT_MODEL, output_dir=str(run_root), run_id=run_id,
                                  max_eval_questions=0, **settings)
    existing = Path(run_root) / model_folder_name(config.spec) / run_id
    if (existing / "metrics.json").is_file():
        metrics, saved = read_json(existing / "metrics.json"), read_json(existing / "config.json")
        return {"run_dir": existing, "backend": saved["backend"], "steps": metrics["global_step"],
                "first_loss": metrics["first_loss"], "last_loss": metrics["last_loss"],
                "train_seconds": metrics["train_runtime_s"]}
    plan = training.prepare_run(config, n_train=len(questions))
    model_, tokenizer, backend = training.load_model_for_training(plan)
    trainer = training.build_trainer(model_, tokenizer, plan, questions)
    result = training.run_training(trainer, plan, len(questions))
    run_dir = training.save_run(model_, tokenizer, plan, result, backend=backend,
                                data={"train_questions": len(questions), "train_source": f"{CONTROL.upper()}: "
                                      f"{source} (a control of the machinery, never training data for the paper)"})
    del trainer, model_
    gc.collect()
    return {"run_dir": run_dir, "backend": backend, "steps": result.global_step, "first_loss": result.first_loss,
            "last_loss": result.last_loss, "train_seconds": result.train_runtime_s}


def _evaluate(items_dir: Path, tasks: Sequence[str], protocol: str, out_dir: Path, label: str, *,
              model: str | None, adapter: Path | None, orders: str, language: str):
    config = EvalConfig(model=model or DEFAULT_MODEL, adapter=adapter, protocol=protocol, orders=orders,
                        language=language, emobench_dir=items_dir, tasks=tuple(tasks), limit=None, out_dir=out_dir,
                        label=label)
    return evaluate(config, progress=False)


@dataclass
class OverfitResult:
    """What :func:`overfit_check` measured; ``passed`` when the matching protocol reached the threshold."""

    model: str
    items: list[str]  # "<task> <qid>"
    questions: int
    training: dict[str, Any]  # run_dir, backend, steps, first_loss, last_loss, train_seconds
    accuracy: dict[str, dict[str, Any]]  # "<label> <protocol>" -> correct, n, accuracy, ci_low, ci_high (exact)
    threshold: float
    passed: bool
    diagnostics: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"overfit check ({CONTROL}): {self.model}, {len(self.items)} items ({self.questions} questions), "
                 f"{self.training['steps']} steps, loss {self.training['first_loss']:.3f} -> "
                 f"{self.training['last_loss']:.3f} ({self.training['backend'].split(' (')[0]})"]
        for key, entry in self.accuracy.items():
            lines.append(f"  {key}: {entry['correct']}/{entry['n']} = {entry['accuracy']:.3f} (exact 95% CI "
                         f"{entry['ci_low']:.3f}-{entry['ci_high']:.3f})")
        lines.append(f"  {'PASSED' if self.passed else 'FAILED'}: {MATCHING_PROTOCOL} accuracy "
                     f"{'>=' if self.passed else '<'} {self.threshold} on the training items")
        lines += [f"  - {line}" for line in self.diagnostics]
        return "\n".join(lines)


def _accuracy(records: Sequence[Prediction]) -> dict[str, Any]:
    """Right answers out of n with the exact (Clopper-Pearson) 95% interval: on a handful of items a bootstrap
    interval of 8/8 would be [1, 1]."""
    from statsmodels.stats.proportion import proportion_confint

    correct = sum(r.correct for r in records)
    low, high = proportion_confint(correct, len(records), alpha=0.05, method="beta")
    return {"correct": correct, "n": len(records), "accuracy": correct / len(records), "ci_low": float(low),
            "ci_high": float(high)}


def overfit_check(n_items: int = 16, *, task: str = "EA", model: str | None = None,
                  protocols: Sequence[str] = (MATCHING_PROTOCOL, "choice"), with_base: bool = True,
                  out_root: str | os.PathLike | None = None, threshold: float = OVERFIT_THRESHOLD,
                  language: str = "en", item_seed: int = DEFAULT_SEED, **training_settings: Any) -> OverfitResult:
    """Train on ``n_items`` EmoBench items of ``task`` (chosen with ``item_seed``) with :data:`OVERFIT_TRAINING`
    (``training_settings`` override it), evaluate tuned (and base) on the same items with each protocol, and pass
    when :data:`MATCHING_PROTOCOL` reaches ``threshold``. Writes under ``out_root`` (default
    ``results_dir()/control-overfit``)."""
    if MATCHING_PROTOCOL not in protocols:
        raise ValueError(f"protocols {list(protocols)} lack {MATCHING_PROTOCOL!r}, the one the check is decided on")
    model = model or DEFAULT_MODEL
    out_root = Path(out_root) if out_root is not None else results_dir() / f"{CONTROL}-overfit"
    pool = load_tasks((task,), language)[task]
    items = random.Random(item_seed).sample(pool, n_items)
    questions = control_questions(items, shuffle_seed=None)
    settings = {**OVERFIT_TRAINING, "max_steps": -1, **training_settings}
    run_id = f"{CONTROL}-overfit-{task}{n_items}-seed{item_seed}"
    trained = train_control_adapter(questions, out_root / "runs", run_id, model=model,
                                    source=f"{n_items} EmoBench {task} items ({language})", **settings)
    adapter = Path(trained["run_dir"]) / "adapter"
    items_dir = write_item_subset(items, out_root / run_id / "items")
    accuracy: dict[str, dict[str, Any]] = {}
    diagnostics: list[str] = []
    for protocol in protocols:
        for label, which in (("tuned", adapter), *((("base", None),) if with_base else ())):
            try:
                run = _evaluate(items_dir, (task,), protocol, out_root / run_id / label / protocol,
                                f"{CONTROL}-{label}", model=model, adapter=which, orders="original",
                                language=language)
            except AdapterNotApplied as err:
                diagnostics.append(f"adapter not applied: {err}")
                continue
            accuracy[f"{label} {protocol}"] = _accuracy(run.records(task, language))
    matching = accuracy.get(f"tuned {MATCHING_PROTOCOL}")
    passed = matching is not None and matching["accuracy"] >= threshold
    if not passed:
        diagnostics += overfit_diagnostics(adapter, questions, trained, model=model)
    result = OverfitResult(model, [f"{task} {item.qid}" for item in items], len(questions), trained, accuracy,
                           threshold, passed, diagnostics)
    write_json_atomic(out_root / run_id / RESULT_FILE, {"control": "overfit", "summary": result.summary(),
                                                        **dataclasses.asdict(result)})
    return result


def overfit_diagnostics(adapter: Path, questions: Sequence[Question], trained: dict[str, Any], *,
                        model: str | None = None) -> list[str]:
    """Why an overfit check failed, one measurement a line: the final loss, whether the evaluation prompt is the
    trained text up to the answer letter, whether the adapter acts, and the letter accuracy after the trained
    reasoning (teacher forcing)."""
    from ..training import render_example

    lines = []
    if trained["last_loss"] is not None and trained["last_loss"] > NEAR_ZERO_LOSS:
        lines.append(f"loss not near zero: {trained['first_loss']:.3f} -> {trained['last_loss']:.3f} after "
                     f"{trained['steps']} steps (> {NEAR_ZERO_LOSS}); train longer or with a higher learning rate")
    hf_model, tokenizer = load_model_and_tokenizer(model, adapter=adapter)
    scorer = ChoiceScorer(hf_model=hf_model, tokenizer=tokenizer)
    mismatched = 0
    for question in questions:
        trained_text = "".join(render_example(question, tokenizer).values())
        if not trained_text.startswith(scorer.prompt(question, question.explanation)):
            mismatched += 1
    if mismatched:
        lines.append(f"format mismatch: for {mismatched}/{len(questions)} questions the reason-score prompt is not "
                     "the trained text up to the answer letter (compare ChoiceScorer.prompt with "
                     "training.render_example)")
    try:
        difference = check_adapter_applied(scorer, questions[0], adapter)
        lines.append(f"adapter applied: it moves the first question's letter log-probabilities by up to "
                     f"{difference:.3f}")
    except AdapterNotApplied as err:
        lines.append(f"adapter not applied: {err}")
    forced = scorer.option_logprobs(questions, reasonings=[q.explanation for q in questions])
    right = sum(best_letter(scores) == q.answer_letter for scores, q in zip(forced, questions, strict=True))
    lines.append(f"letter after the trained reasoning (teacher-forced): {right}/{len(questions)} right"
                 + ("; the letter was not learnt" if right < OVERFIT_THRESHOLD * len(questions) else
                    "; the letter is learnt, so the model's own reasoning differs from the trained one"))
    return lines


@dataclass
class KFoldResult:
    """What :func:`kfold_control` measured: per fold (training numbers, comparison rows per protocol) and
    ``pooled`` over the held-out predictions of every fold (protocol -> comparison rows and runs)."""

    model: str
    k: int
    settings: dict[str, Any]
    folds: list[dict[str, Any]]
    pooled: dict[str, dict[str, Any]]

    def comparison(self, protocol: str):
        """The pooled base-vs-tuned table (:func:`~ec2er_utils.evaluation.compare_runs` rows)."""
        import pandas as pd

        return pd.DataFrame(self.pooled[protocol]["comparison"])

    def robust(self, protocol: str):
        """Pooled :func:`~ec2er_utils.evaluation.robust_table` of base and tuned."""
        return robust_table(leaderboard_frame(*self.pooled[protocol]["runs"]),
                            language=self.settings["language"])

    def summary(self) -> str:
        lines = [f"{self.k}-fold control ({CONTROL} of the machinery): {self.model}, folds "
                 f"{[f['fold'] for f in self.folds]} of {self.k}, training {self.settings}"]
        for protocol, pooled in self.pooled.items():
            for row in pooled["comparison"]:
                if row["category"] == OVERALL:
                    lines.append(f"  pooled {protocol} {row['task']} {row['metric']}: base {row['accuracy_a']:.3f} "
                                 f"-> tuned {row['accuracy_b']:.3f}, delta {row['delta']:+.3f} (95% CI "
                                 f"{row['ci_low']:+.3f} to {row['ci_high']:+.3f}), McNemar p {row['mcnemar_p']:.3g},"
                                 f" n={row['n']}")
        return "\n".join(lines)

    def fold_table(self):
        import pandas as pd

        rows = []
        for fold in self.folds:
            for protocol, comparison in fold["comparisons"].items():
                for row in comparison:
                    if row["category"] == OVERALL:
                        rows.append({"fold": fold["fold"], "train items": fold["train_items"],
                                     "steps": fold["steps"], "loss": f"{fold['first_loss']:.2f} -> "
                                     f"{fold['last_loss']:.2f}", "protocol": protocol, **{
                                         k: row[k] for k in ("task", "metric", "n", "accuracy_a", "accuracy_b",
                                                             "delta", "ci_low", "ci_high", "mcnemar_p")}})
        return pd.DataFrame(rows).rename(columns={"accuracy_a": "base", "accuracy_b": "tuned"})


def kfold_control(k: int = DEFAULT_FOLDS, *, folds: Sequence[int] | None = None, tasks: Sequence[str] = ("EU", "EA"),
                  language: str = "en", model: str | None = None, protocols: Sequence[str] = ("choice",),
                  orders: str = "cyclic", out_root: str | os.PathLike | None = None, seed: int = DEFAULT_SEED,
                  **training_settings: Any) -> KFoldResult:
    """Per fold in ``folds`` (default all): train an adapter on the other folds' items, evaluate base and adapter
    on the held-out fold with each protocol, and compare them (official and, with cyclic orders, robust metrics).
    ``training_settings`` are ``TrainConfig`` settings. Writes under ``out_root`` (default
    ``results_dir()/control-kfold``); a re-run resumes."""
    model = model or DEFAULT_MODEL
    out_root = Path(out_root) if out_root is not None else results_dir() / f"{CONTROL}-kfold"
    everything = [item for items in load_tasks(tuple(tasks), language).values() for item in items]
    split = scenario_folds(everything, k, seed)
    metrics = ("correct", "order_mean", "strict") if orders == "cyclic" else ("correct",)
    settings = {"k": k, "tasks": list(tasks), "language": language, "protocols": list(protocols),
                "orders": orders, "seed": seed, **training_settings}
    fold_results = []
    held_out: dict[str, dict[str, list[Prediction]]] = {p: {"base": [], "tuned": []} for p in protocols}
    for fold in folds if folds is not None else range(k):
        train_items = [item for other, items in enumerate(split) if other != fold for item in items]
        trained = train_control_adapter(control_questions(train_items, shuffle_seed=seed), out_root / "runs",
                                        f"{CONTROL}-k{k}-fold{fold}-seed{seed}", model=model,
                                        source=f"EmoBench {'+'.join(tasks)} ({language}), {k}-fold control, all "
                                               f"folds but {fold}", **training_settings)
        items_dir = write_item_subset(split[fold], out_root / f"fold{fold}" / "items")
        comparisons = {}
        for protocol in protocols:
            runs = {label: _evaluate(items_dir, tasks, protocol, out_root / f"fold{fold}" / label / protocol,
                                     f"{CONTROL}-{label}-fold{fold}", model=model,
                                     adapter=Path(trained["run_dir"]) / "adapter" if label == "tuned" else None,
                                     orders=orders, language=language)
                    for label in ("base", "tuned")}
            for label, run in runs.items():
                held_out[protocol][label] += [r for task in tasks for r in run.records(task, language,
                                                                                       all_orders=True)]
            comparisons[protocol] = [row for metric in metrics
                                     for row in compare_runs(runs["base"], runs["tuned"], language=language,
                                                             metric=metric).to_dict(orient="records")]
        fold_results.append({"fold": fold, "train_items": len(train_items), "test_items": len(split[fold]),
                             **{key: trained[key] for key in ("steps", "first_loss", "last_loss", "train_seconds",
                                                              "backend")},
                             "run_dir": str(trained["run_dir"]), "comparisons": comparisons})
    pooled = {}
    for protocol, by_label in held_out.items():
        runs = [_pooled_run(out_root, label, protocol, records, orders)
                for label, records in by_label.items()]
        pooled[protocol] = {"runs": runs, "comparison": [row for metric in metrics for row in compare_runs(
            runs[0], runs[1], language=language, metric=metric).to_dict(orient="records")]}
    result = KFoldResult(model, k, settings, fold_results, pooled)
    write_json_atomic(out_root / RESULT_FILE, {"control": "kfold", "summary": result.summary(), "model": model,
                                               "settings": settings, "folds": fold_results,
                                               "pooled": {p: v["comparison"] for p, v in pooled.items()}})
    return result


def _pooled_run(out_root: Path, label: str, protocol: str, records: list[Prediction], orders: str):
    """The held-out predictions of every fold as one run (its leaderboards summarised afresh)."""
    by_task: dict[str, list[Prediction]] = {}
    for record in records:
        by_task.setdefault(record.task, []).append(record)
    run = EvaluationRun(out_root / "pooled" / label / protocol,
                        {"label": f"{CONTROL}-{label}-pooled", "protocol": protocol, "orders": orders})
    for task, task_records in by_task.items():
        run.predictions[task] = task_records
        languages = sorted({r.language for r in task_records})
        run.leaderboards[task] = {"task": task, "label": run.label, "protocol": protocol, "languages": {
            lang: summarize([r for r in task_records if r.language == lang]) for lang in languages}}
    return run


def saved_control_results(root: str | os.PathLike | None = None) -> list[str]:
    """The summaries of the controls saved under ``root`` (default ``results_dir()``), newest first."""
    root = Path(root) if root is not None else results_dir()
    found = sorted(root.glob(f"{CONTROL}-*/**/{RESULT_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [f"{path.parent}:\n{read_json(path)['summary']}" for path in found]
