"""The paper's Table 1 (EmoBench EU/EA accuracy of four 7-8B models, base and fine-tuned) and a comparison with ours.

``ec2er_utils/data/paper_table1.csv`` was transcribed once from the paper's text (fractions, as printed; the
paper's category spelling kept in ``paper_label``). The paper does not say which language, prompt or decoding it
used; its "Overall" values equal the item-weighted means of its categories under English EmoBench's category sizes,
so they are read as English, mean-over-items accuracies. The abstract's Mistral numbers (EU 10.5 -> 20.5, EA 40.5 ->
60.0) disagree with Table 1 (0.105 -> 0.155, 0.405 -> 0.625); the conclusion's "+47.6% EU, +54.3% EA" matches
Table 1, which is what the CSV holds.
"""

from __future__ import annotations

from importlib import resources

from ..taxonomy import OVERALL

PAPER_TABLE1 = "data/paper_table1.csv"
PAPER_LANGUAGE = "en"  # Table 1 reports English EmoBench only (see the module docstring)


def check_paper_language(language: str) -> None:
    if language != PAPER_LANGUAGE:
        raise ValueError(f"the paper's Table 1 reports English EmoBench only, so our {language!r} numbers have no "
                         "counterpart there; compare with language='en' (evaluate with language 'en' or 'all')")


def paper_table1():
    """Table 1 as a DataFrame: model, alias, fine_tuned (bool), task, category, paper_label, accuracy."""
    import pandas as pd

    with resources.files("ec2er_utils").joinpath(PAPER_TABLE1).open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle)
    table["fine_tuned"] = table["fine_tuned"].astype(str).str.lower().map({"true": True, "false": False})
    return table


def paper_row_name(model: str, fine_tuned: bool) -> str:
    return f"{model} ({'fine-tuned' if fine_tuned else 'base'})"


def compare_with_paper(frame, *, language: str = "en", metric: str = "accuracy"):
    """Our leaderboard (:func:`~ec2er_utils.evaluation.leaderboard_frame` of one or more runs) next to Table 1:
    per (task, category) our runs' accuracy and 95% CI (and over option orders), chance, the letter-prior
    baselines, then every paper model. English only, as the paper."""
    import pandas as pd

    check_paper_language(language)
    ours = frame[(frame["language"] == language) & (frame["metric"] == metric)]
    if ours.empty:
        raise ValueError(f"no {metric!r} rows for language {language!r} in the leaderboard to compare")
    robust = frame[(frame["language"] == language) & (frame["metric"] == "order_mean")]
    columns = {}
    for label, group in ours.groupby("label", sort=False):
        indexed = group.set_index(["task", "category"])
        columns[f"{label}"] = indexed["accuracy"]
        columns[f"{label} 95% CI"] = indexed.apply(lambda r: f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", axis=1)
        over_orders = robust[robust["label"] == label].set_index(["task", "category"])
        if not over_orders.empty:
            columns[f"{label} over orders"] = over_orders["accuracy"]
        if "own_letters" in indexed:
            columns[f"{label} own letters"] = indexed["own_letters"]
        if "chance" in indexed:
            columns["chance"] = indexed["chance"]
        for baseline, name in (("always_A", "always A"), ("majority_gold", "majority gold letter")):
            if baseline in indexed:
                columns[name] = indexed[baseline]
    paper = paper_table1()
    for (model, fine_tuned), group in paper.groupby(["model", "fine_tuned"], sort=False):
        columns[paper_row_name(model, fine_tuned)] = group.set_index(["task", "category"])["accuracy"]
    table = pd.DataFrame(columns)
    order = {"EU": 0, "EA": 1}
    keys = sorted(table.index, key=lambda k: (order.get(k[0], 2), k[1] != OVERALL, k[1]))
    return table.loc[keys]


def paper_long_with_ours(frame, *, language: str = "en"):
    """Paper rows and our runs in one long table (``source``, ``task``, ``category``, ``accuracy``), for plots."""
    import pandas as pd

    check_paper_language(language)
    paper = paper_table1()
    names = [paper_row_name(m, f) for m, f in zip(paper["model"], paper["fine_tuned"], strict=True)]
    paper = paper.assign(source=names)
    ours = frame[(frame["language"] == language) & (frame["metric"] == "accuracy")]
    ours = ours.assign(source=ours["label"] + " (ours, " + ours["protocol"] + ")")
    columns = ["source", "task", "category", "accuracy"]
    return pd.concat([paper[columns], ours[columns + ["ci_low", "ci_high"]]], ignore_index=True)
