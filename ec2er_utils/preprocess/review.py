"""The paper's manual review (§3.4), in the order :func:`review_step` runs it: a seeded, stratified sample
(:func:`sample_for_review`), a CSV sheet per annotator (:func:`write_review_sheet`, or the :class:`ReviewForm`),
the filled-in sheets read back (:func:`read_review_sheet`), Cohen's kappa (:func:`agreement`) and the verdicts in the
items (:func:`apply_review`). What the verdicts mean and the departure from the paper: README, chapter 03.
"""
from __future__ import annotations

import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..formatting import EU_CAUSE_QUESTION, LETTERS
from ..paths import data_dir
from ..schemas import DatasetItem
from ..taxonomy import PAPER_KAPPA, PAPER_REVIEW_SIZE
from .questions import lettered, question_slots
from .split import processed_dir
from .steps import StepReport, StepResult, drop

ANNOTATORS = ("annotator_1", "annotator_2")
ITEM_COLUMNS = ("item_id", "task", "category", "scenario", "question", "options", "answer", "explanation",
                "cause_question", "cause_options", "cause_answer", "cause_explanation")
JUDGEMENT_COLUMNS = ("label_correct", "explanation_valid", "ambiguous", "confidence", "issue", "notes")
# §3.4's three systematic issues, as the sheet's optional "issue" column spells them.
ISSUES = ("not_in_scenario", "ambiguous_label", "skipped_steps", "other")
CONFIDENCE_SCALE = (1, 5)
_YES, _NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}
SHEET_GUIDE = (
    "label_correct: yes/no - the marked answer(s) (for EU items both the emotion and the cause) are right for the "
    "scenario | explanation_valid: yes/no - the explanation is coherent and grounded in the scenario | ambiguous: "
    "yes/no - another option is equally defensible | confidence: 1-5 - how sure you are the marked answer is right "
    "| issue (optional): not_in_scenario, ambiguous_label, skipped_steps or other | notes (optional): free text")


class ReviewSheetError(ValueError):
    """A review sheet that cannot be read: the file, the row, the column and the fix are named."""


class Annotation(BaseModel):
    """One annotator's judgement of one item (one filled-in row of a sheet)."""

    item_id: str
    label_correct: bool
    explanation_valid: bool
    ambiguous: bool
    confidence: int
    issue: str = ""
    notes: str = ""

    @property
    def appropriate(self) -> bool:
        """The paper's judgement: the item's label and explanation are appropriate given the scenario."""
        return self.label_correct and self.explanation_valid


def sample_for_review(items: Sequence[DatasetItem], n: int = PAPER_REVIEW_SIZE, *, seed: int = 0,
                      ) -> list[DatasetItem]:
    """``n`` items stratified by (task, category), in their original order: each stratum gets its proportional
    share (largest remainders first), drawn with ``random.Random(seed)``. All items when there are at most ``n``."""
    if n < 0:
        raise ValueError(f"review sample size must be >= 0, got {n}")
    if n >= len(items):
        return list(items)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        strata[(item.task, item.category)].append(index)
    shares = {key: n * len(members) / len(items) for key, members in strata.items()}
    quota = {key: int(share) for key, share in shares.items()}
    for key in sorted(shares, key=lambda k: (-(shares[k] - quota[k]), k))[:n - sum(quota.values())]:
        quota[key] += 1
    rng = random.Random(seed)
    chosen = [i for key in sorted(strata) for i in rng.sample(strata[key], quota[key])]
    return [items[i] for i in sorted(chosen)]


def sheet_row(item: DatasetItem) -> dict[str, str]:
    """An item as a sheet row: what it asks (options lettered, one per line) and empty judgement columns."""
    row = dict.fromkeys((*ITEM_COLUMNS, *JUDGEMENT_COLUMNS), "")
    row.update(item_id=item.item_id, task=item.task, category=item.category, scenario=item.scenario)
    for slot, options, answer, explanation in question_slots(item):
        prefix = "" if slot == "main" else "cause_"
        question = item.question if slot == "main" else EU_CAUSE_QUESTION.format(subject=item.subject)
        row.update({f"{prefix}question": question, f"{prefix}options": lettered(options),
                    f"{prefix}answer": (f"{LETTERS[options.index(answer)]}) " if answer in options else "") + answer,
                    f"{prefix}explanation": explanation})
    return row


def write_review_sheet(items: Sequence[DatasetItem], path: str | os.PathLike, *, overwrite: bool = False) -> bool:
    """Write the sheet for ``items`` to ``path`` (CSV). An existing file is kept unless ``overwrite``: it may hold a
    person's work. Returns whether the file was written."""
    import pandas as pd

    path = Path(path)
    if path.exists() and not overwrite:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_sheet(pd.DataFrame([sheet_row(i) for i in items], columns=[*ITEM_COLUMNS, *JUDGEMENT_COLUMNS]), path)
    return True


def _save_sheet(frame, path: Path) -> None:
    """Replace ``path`` in one step (via a temporary file), UTF-8 with a byte-order mark for spreadsheet programs."""
    temporary = path.with_name(path.name + ".tmp")
    frame.to_csv(temporary, index=False, encoding="utf-8-sig")
    temporary.replace(path)


def review_folder(output_dir: str | os.PathLike | None = None) -> Path:
    """Where the sheets live: ``<processed>/review`` (default ``data/processed/review``)."""
    return processed_dir(output_dir) / "review"


class ReviewForm:
    """An ipywidgets form over one sheet: an item at a time, the judgement as buttons and a slider-like choice, saved
    to the same CSV on every move (so closing the notebook loses nothing). Display it in Jupyter; ``widgets``
    holds the inputs and :meth:`go` moves between rows (what the Previous/Next buttons call)."""

    def __init__(self, path: str | os.PathLike):
        import ipywidgets as widgets
        import pandas as pd

        self.path = Path(path)
        self.frame = pd.read_csv(self.path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if self.frame.empty:
            raise ReviewSheetError(f"{self.path}: the sheet has no items to review")
        choice = ["", "yes", "no"]
        self.widgets = {name: widgets.ToggleButtons(options=choice, description=name)
                        for name in ("label_correct", "explanation_valid", "ambiguous")}
        low, high = CONFIDENCE_SCALE
        self.widgets["confidence"] = widgets.ToggleButtons(options=["", *map(str, range(low, high + 1))],
                                                           description="confidence")
        self.widgets["issue"] = widgets.Dropdown(options=["", *ISSUES], description="issue")
        self.widgets["notes"] = widgets.Textarea(description="notes")
        self.item = widgets.HTML()
        self.position = widgets.Label()
        previous, following = widgets.Button(description="Previous"), widgets.Button(description="Next")
        previous.on_click(lambda _: self.go(self.row - 1))
        following.on_click(lambda _: self.go(self.row + 1))
        self.box = widgets.VBox([self.position, self.item, *self.widgets.values(),
                                 widgets.HBox([previous, following])])
        self.row = 0
        self._show()

    def _show(self) -> None:
        import html

        record = self.frame.iloc[self.row]
        parts = [f"<b>{html.escape(c)}</b>: {html.escape(record[c]).replace(chr(10), '<br>')}"
                 for c in ITEM_COLUMNS if record[c]]
        self.item.value = "<br>".join(parts)
        for name, widget in self.widgets.items():
            widget.value = record[name] if record[name] in getattr(widget, "options", [record[name]]) else ""
        self.position.value = f"item {self.row + 1} of {len(self.frame)} ({self.path.name}); {SHEET_GUIDE}"

    def save(self) -> None:
        """Write the current row's inputs into the sheet and the sheet to disk."""
        for name, widget in self.widgets.items():
            self.frame.at[self.frame.index[self.row], name] = widget.value
        _save_sheet(self.frame, self.path)

    def go(self, row: int) -> None:
        """Save, then show ``row`` (kept within the sheet)."""
        self.save()
        self.row = min(max(row, 0), len(self.frame) - 1)
        self._show()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box)


def _flag(value: str, where: str, column: str) -> bool:
    text = value.strip().casefold()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ReviewSheetError(f"{where}, column {column!r}: {value!r} is not yes or no; write yes or no "
                           "(y/n, true/false and 1/0 are read too)")


def read_review_sheet(path: str | os.PathLike) -> list[Annotation]:
    """A filled-in sheet's judgements, one :class:`Annotation` per row. Relative paths are under ``data_dir()``.

    Raises :class:`ReviewSheetError` naming the file, the spreadsheet row (the header is row 1) and the column for a
    missing column, an empty or unreadable judgement, a confidence outside 1-5, an unknown issue, or an item listed
    twice."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_absolute():
        path = data_dir() / path
    if not path.is_file():
        raise FileNotFoundError(f"review sheet {path} not found: notebook 03 writes blank sheets into "
                                f"{review_folder()}; fill them in and list the two in review_sheets")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in ("item_id", *JUDGEMENT_COLUMNS[:4]) if c not in frame.columns]
    if missing:
        raise ReviewSheetError(f"{path}: no column(s) {missing}; the sheet needs item_id and {JUDGEMENT_COLUMNS} "
                               "(write a fresh one with write_review_sheet)")
    annotations, seen = [], {}
    low, high = CONFIDENCE_SCALE
    for number, row in enumerate(frame.to_dict("records"), start=2):
        where = f"{path}, row {number} (item {row['item_id']!r})"
        empty = [c for c in JUDGEMENT_COLUMNS[:4] if not row[c].strip()]
        if empty:
            raise ReviewSheetError(f"{where}: {', '.join(empty)} not filled in; every row needs label_correct, "
                                   f"explanation_valid, ambiguous and confidence. {SHEET_GUIDE}")
        try:
            confidence = float(row["confidence"])
        except ValueError:
            confidence = None
        if confidence not in range(low, high + 1):  # a whole number: 3.0 is in the range, 3.5 is not
            raise ReviewSheetError(f"{where}, column 'confidence': {row['confidence']!r} is not a whole number "
                                   f"from {low} to {high}")
        issue = row.get("issue", "").strip()
        if issue and issue not in ISSUES:
            raise ReviewSheetError(f"{where}, column 'issue': {issue!r} is not one of {ISSUES} (or empty)")
        if row["item_id"] in seen:
            raise ReviewSheetError(f"{where}: item listed twice (also row {seen[row['item_id']]}); keep one row")
        seen[row["item_id"]] = number
        annotations.append(Annotation(
            item_id=row["item_id"], label_correct=_flag(row["label_correct"], where, "label_correct"),
            explanation_valid=_flag(row["explanation_valid"], where, "explanation_valid"),
            ambiguous=_flag(row["ambiguous"], where, "ambiguous"), confidence=int(confidence), issue=issue,
            notes=row.get("notes", "").strip()))
    return annotations


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> dict[str, Any]:
    """Cohen's kappa of two annotators' yes/no judgements of the same items, with its 95% confidence interval
    (``statsmodels.stats.inter_rater.cohens_kappa``: the asymptotic Wald interval, clipped to [-1, 1]).

    Returns ``kappa``, ``ci_low``, ``ci_high``, ``observed`` and ``expected`` agreement, ``n`` and the 2x2
    ``table`` (rows: the first annotator's no/yes, columns: the second's). When both annotators gave one and the
    same answer to every item, chance agreement is 1 and kappa is undefined: ``kappa`` is None and ``undefined``
    says why; when only one of them did, kappa is 0 but its interval is undefined (``ci_*`` None)."""
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa as statsmodels_kappa

    if len(first) != len(second):
        raise ValueError(f"the two annotators judged {len(first)} and {len(second)} items; kappa needs the same items")
    if not first:
        raise ValueError("kappa needs at least one item judged by both annotators")
    table = np.zeros((2, 2))
    for a, b in zip(first, second, strict=True):
        table[int(a), int(b)] += 1
    n = int(table.sum())
    observed = float(np.trace(table) / n)
    expected = float((table.sum(1) * table.sum(0)).sum() / n**2)
    out: dict[str, Any] = {"n": n, "observed": observed, "expected": expected, "table": table.astype(int).tolist(),
                           "kappa": None, "ci_low": None, "ci_high": None}
    if expected >= 1.0:
        out["undefined"] = "both annotators gave the same answer to every item: chance agreement is 1"
        return out
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero-variance margin: no interval, said below
        result = statsmodels_kappa(table)
    out["kappa"] = float(result.kappa)
    one_sided = table.sum(0).min() == 0 or table.sum(1).min() == 0
    if not one_sided and math.isfinite(result.kappa_low) and math.isfinite(result.kappa_upp):
        out.update(ci_low=max(-1.0, float(result.kappa_low)), ci_high=min(1.0, float(result.kappa_upp)))
    else:
        out["undefined"] = "no confidence interval: one annotator gave the same answer to every item"
    return out


def agreement(first: Sequence[Annotation], second: Sequence[Annotation]) -> dict[str, Any]:
    """The two annotators' agreement on the items both judged: kappa on the paper's judgement (``appropriate``:
    label correct and explanation valid) and on each yes/no question of the sheet, with confidence intervals; the
    items they disagree on; and the items only one of them judged (left out of every kappa)."""
    a, b = {x.item_id: x for x in first}, {x.item_id: x for x in second}
    common = [item_id for item_id in a if item_id in b]
    per_question = {name: cohen_kappa([getattr(a[i], name) for i in common], [getattr(b[i], name) for i in common])
                    for name in ("appropriate", "label_correct", "explanation_valid", "ambiguous")}
    return {"n": len(common), "paper_kappa": PAPER_KAPPA, **per_question["appropriate"],
            "per_question": per_question,
            "disagreements": [i for i in common if a[i].appropriate != b[i].appropriate],
            "only_first": [i for i in a if i not in b], "only_second": [i for i in b if i not in a]}


def describe_kappa(found: dict[str, Any]) -> str:
    """A kappa result (:func:`cohen_kappa`, :func:`agreement`) in words: the value and its 95% interval, or why
    either is undefined."""
    if found["kappa"] is None:
        return f"undefined ({found['undefined']})"
    if found["ci_low"] is None:
        return f"{found['kappa']:.2f} ({found['undefined']})"
    return f"{found['kappa']:.2f} (95% CI {found['ci_low']:.2f} to {found['ci_high']:.2f})"


def apply_review(items: Sequence[DatasetItem], first: Sequence[Annotation], second: Sequence[Annotation],
                 ) -> StepResult:
    """The review's verdicts in the items judged by both annotators (see the module docstring): ``confidence``
    and ``ambiguous`` set, items both judged inappropriate dropped (``review_rejected``). ``notes`` count
    reviewed, ambiguous and rejected items, and list reviewed ids that are not among ``items``."""
    a, b = {x.item_id: x for x in first}, {x.item_id: x for x in second}
    reviewed = {item_id for item_id in a if item_id in b}
    low, high = CONFIDENCE_SCALE
    kept, dropped = [], []
    counts: Counter = Counter()
    for item in items:
        if item.item_id not in reviewed:
            kept.append(item)
            continue
        x, y = a[item.item_id], b[item.item_id]
        counts["reviewed"] += 1
        if not x.appropriate and not y.appropriate:
            why = "; ".join(filter(None, {f"{v.issue} {v.notes}".strip() for v in (x, y)}))
            dropped.append(drop(item, "review_rejected", "both annotators judged the label or explanation wrong"
                                + (f": {why}" if why else "")))
            continue
        ambiguous = x.ambiguous or y.ambiguous or x.appropriate != y.appropriate
        counts["ambiguous"] += ambiguous
        confidence = ((x.confidence + y.confidence) / 2 - low) / (high - low)
        kept.append(item.model_copy(update={"confidence": confidence, "ambiguous": ambiguous}))
    present = {item.item_id for item in items}
    notes = {"reviewed": counts["reviewed"], "ambiguous_kept": counts["ambiguous"], "rejected": len(dropped),
             "not_in_dataset": sorted(reviewed - present)}
    return StepResult(kept, StepReport(step="review", n_in=len(items), n_out=len(kept), dropped=dropped,
                                       notes=notes))


def review_step(items: Sequence[DatasetItem], *, sample_size: int = PAPER_REVIEW_SIZE, seed: int = 0,
                folder: str | os.PathLike | None = None, sheets: Sequence[str] | None = None) -> StepResult:
    """Chapter 03's review step: draw the sample, write a blank sheet per annotator into ``folder`` (default
    :func:`review_folder`) where none exists yet, and, when ``sheets`` names the two filled-in sheets, read them,
    compute the agreement and apply the verdicts (:func:`apply_review`). ``notes`` hold the sample, whether each
    sheet in ``folder`` lists exactly the sample, and, once annotated, the agreement; without sheets
    ``notes["status"]`` says what to do."""
    import pandas as pd

    folder = Path(folder) if folder is not None else review_folder()
    sample = sample_for_review(items, sample_size, seed=seed)
    ids = [i.item_id for i in sample]
    matches = {}
    for name in ANNOTATORS:
        path = folder / f"{name}.csv"
        write_review_sheet(sample, path)
        listed = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", usecols=["item_id"])
        matches[str(path)] = listed["item_id"].tolist() == ids
    notes: dict[str, Any] = {"sample_size": len(sample), "sample": ids, "seed": seed,
                             "strata": dict(Counter(f"{i.task}/{i.category}" for i in sample)),
                             "sheets_match_sample": matches}
    if not sheets:
        stale = [p for p, same in matches.items() if not same]
        notes["status"] = (f"not annotated yet: two people fill in {' and '.join(matches)} (or copies), then set "
                           "review_sheets to the two files and run notebook 03 again"
                           + (f". {', '.join(stale)} predate(s) this sample (kept, never overwritten): delete "
                              "them to get sheets of the current sample" if stale else ""))
        return StepResult(list(items), StepReport(step="review", n_in=len(items), n_out=len(items), notes=notes))
    first, second = (read_review_sheet(path) for path in sheets)
    kept, report = apply_review(items, first, second)
    report.notes.update(notes, status="annotated", sheets=list(sheets), agreement=agreement(first, second),
                        outside_sample=sorted({x.item_id for x in [*first, *second]} - set(ids)))
    return StepResult(kept, report)
