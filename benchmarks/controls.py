"""Controls of the train -> evaluate machinery (issue 15): the overfit check and the k-fold generalisation control.

    .venv/bin/python benchmarks/controls.py overfit [--items 16] [--task EA] [--epochs 10] [--no-base]
    .venv/bin/python benchmarks/controls.py kfold [--k 5] [--folds 0 1] [--tasks EU EA] [--max-steps 480]
                                                  [--epochs 3] [--protocols choice reason-score]
    .venv/bin/python benchmarks/controls.py protocols --adapter runs/<model>/<run-id>/adapter [--limit 20]

``protocols`` evaluates the base model and an adapter (e.g. the CPU demo's, notebook 04) under every local protocol
(``choice`` under the cyclic orders, ``cloze``/``cloze-norm`` in EmoBench's order, ``reason-score`` in the orders of
``--reason-orders``) on the first ``--limit`` items per task, and prints the robust table with the letter-prior
baselines and the paired comparison.

Both train on EmoBench itself (options shuffled for the k-fold control, explanations written from the labels):
CONTROLS of the machinery, never training data for the paper's runs. Everything goes through
:mod:`ec2er_utils.evaluation.controls` (the package's real training and evaluation paths) and writes under
``--out`` (default ``results/control-overfit`` / ``results/control-kfold``); a re-run reuses what is there.
Results on the embedded model are in benchmarks/README.md. ``--json`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from ec2er_utils.evaluation.controls import DEFAULT_FOLDS, MATCHING_PROTOCOL, kfold_control, overfit_check
from ec2er_utils.models import DEFAULT_MODEL
from ec2er_utils.taxonomy import OVERALL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("control", choices=("overfit", "kfold", "protocols"))
    parser.add_argument("--model", default=None, help="alias or id; default the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--out", type=Path, default=None, help="folder of the runs and predictions")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--language", default="en")
    parser.add_argument("--items", type=int, default=16, help="overfit: items to memorise")
    parser.add_argument("--task", default="EA", help="overfit: EmoBench task of the items")
    parser.add_argument("--no-base", action="store_true", help="overfit: skip the base model's evaluation")
    parser.add_argument("--k", type=int, default=DEFAULT_FOLDS, help="kfold: number of folds")
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="kfold: folds to run (default all)")
    parser.add_argument("--tasks", nargs="*", default=["EU", "EA"], help="kfold: EmoBench tasks")
    parser.add_argument("--protocols", nargs="*", default=None,
                        help=f"default: overfit {MATCHING_PROTOCOL} and choice; kfold choice")
    parser.add_argument("--orders", default="cyclic", help="kfold: option orders asked (cyclic or original)")
    parser.add_argument("--adapter", type=Path, default=None, help="protocols: the adapter to compare with its base")
    parser.add_argument("--limit", type=int, default=20, help="protocols: first items per task")
    parser.add_argument("--reason-orders", default="original", help="protocols: orders for reason-score")
    parser.add_argument("--epochs", type=float, default=None, help="training epochs (overfit default 10)")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps; -1 all epochs")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--target-modules", default=None, help="attention or all-linear")
    args = parser.parse_args()
    training = {key: value for key, value in (("num_train_epochs", args.epochs), ("max_steps", args.max_steps),
                                              ("learning_rate", args.learning_rate),
                                              ("target_modules", args.target_modules)) if value is not None}
    started = time.perf_counter()
    pd.set_option("display.width", 200)
    if args.control == "overfit":
        result = overfit_check(args.items, task=args.task, model=args.model, with_base=not args.no_base,
                               out_root=args.out, language=args.language,
                               **({"protocols": args.protocols} if args.protocols else {}), **training)
        print(result.summary())
        payload = {"control": "overfit", **{k: v for k, v in vars(result).items() if k != "training"},
                   "training": {k: str(v) if isinstance(v, Path) else v for k, v in result.training.items()}}
    elif args.control == "protocols":
        payload = compare_protocols(args)
    else:
        if "max_steps" not in training:
            training["max_steps"] = -1  # all epochs: the CPU demo's 4 steps teach nothing
        result = kfold_control(args.k, folds=args.folds, tasks=args.tasks, language=args.language, model=args.model,
                               protocols=args.protocols or ("choice",), orders=args.orders, out_root=args.out,
                               **training)
        print(f"{args.k}-fold control (a control of the machinery, not paper training data): {result.model}, "
              f"folds {[f['fold'] for f in result.folds]}, settings {result.settings}")
        print("\nPer fold (Overall):\n" + result.fold_table().round(3).to_string(index=False))
        payload = {"control": "kfold", "model": result.model, "settings": result.settings, "folds": result.folds,
                   "pooled": {}}
        for protocol in result.pooled:
            print(f"\nPooled over the folds run, {protocol}: base vs tuned")
            comparison = result.comparison(protocol)
            print(comparison[comparison["category"] == OVERALL].round(3).to_string(index=False))
            robust = result.robust(protocol)
            print(robust.round(3).to_string())
            payload["pooled"][protocol] = {"comparison": result.pooled[protocol]["comparison"],
                                           "robust": robust.reset_index().to_dict(orient="records")}
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


def compare_protocols(args) -> dict:
    """Base vs ``--adapter`` under every local protocol, through :func:`evaluate` (which checks the adapter is
    applied first)."""
    from ec2er_utils.evaluation import EvalConfig, compare_runs, evaluate, leaderboard_frame, letter_table, robust_table
    from ec2er_utils.evaluation.runner import LOCAL_PROTOCOLS

    if args.adapter is None:
        raise SystemExit("protocols needs --adapter (a LoRA folder of notebook 04: runs/<model>/<run-id>/adapter)")
    out = args.out or Path("results") / "control-protocols"
    payload = {"control": "protocols", "adapter": str(args.adapter), "limit": args.limit, "protocols": {}}
    for protocol in args.protocols or LOCAL_PROTOCOLS:
        orders = {"choice": "cyclic", "reason-score": args.reason_orders}.get(protocol, "original")
        runs = [evaluate(EvalConfig(model=args.model or DEFAULT_MODEL, adapter=adapter, protocol=protocol,
                                    orders=orders, language=args.language, limit=args.limit,
                                    out_dir=out / label / protocol, label=f"{label}"), progress=False)
                for label, adapter in (("base", None), ("adapter", args.adapter))]
        robust = robust_table(leaderboard_frame(*runs), language=args.language)
        metrics = ("correct", "order_mean", "strict") if orders == "cyclic" else ("correct",)
        comparison = pd.concat([compare_runs(*runs, language=args.language, metric=m) for m in metrics])
        comparison = comparison[comparison["category"] == OVERALL]
        print(f"\n{protocol} ({orders} orders), first {args.limit} items per task:\n{robust.round(3).to_string()}")
        print(comparison[["task", "metric", "n", "accuracy_a", "accuracy_b", "delta", "ci_low", "ci_high",
                          "mcnemar_p"]].round(3).to_string(index=False))
        print(letter_table(*runs, language=args.language).unstack("label").round(2).to_string())
        payload["protocols"][protocol] = {"orders": orders, "robust": robust.reset_index().to_dict(orient="records"),
                                          "comparison": comparison.to_dict(orient="records")}
    return payload


if __name__ == "__main__":
    main()
