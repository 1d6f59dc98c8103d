"""Average the metrics of one method over the protocols of a zero-shot family (the seeds of
unseen{K}_seed{S}, SMIE's three splits; actionlm.data.zero_shot) -> one JSON: mean and standard
deviation of top-1, top-5 and mean class accuracy, of the evaluation by generation
(``generation``: top1, top5, no_class) and of generalized zero-shot (``gzsl``: seen, unseen,
harmonic; ``gzsl.calibrated`` too) where every protocol has one.

LLM-AR (Sec. 4.4, Table 8) draws the held-out classes 5 times and reports the mean; a single
draw says little, since some class triples are much easier to tell apart than others.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from actionlm.errors import ActionlmError
from actionlm.io import write_json

AVERAGED = ("top1", "top5", "mean_class_accuracy")
GZSL = ("seen", "unseen", "harmonic")


def summarize_seeds(paths: list[Path]) -> dict:
    """Mean/std over the metrics.json files of one method, one per seed."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise ActionlmError(f"{path}: unreadable metrics ({err})") from None
        missing = [k for k in (*AVERAGED, "method", "protocol") if k not in runs[-1]]
        if missing:
            raise ActionlmError(f"{path}: not an evaluation's metrics.json (no {missing})")
    if not runs:
        raise ActionlmError("no metrics files to average")
    methods = {r["method"] for r in runs}
    if len(methods) > 1:
        raise ActionlmError(
            f"metrics of different methods {sorted(methods)}: average one at a time")
    summary = {"method": methods.pop(), "runs": len(runs),
               "protocols": [r["protocol"] for r in runs], "n": [r["n"] for r in runs]}
    summary.update(mean_std(runs, AVERAGED))
    if all("generation" in r for r in runs):
        summary["generation"] = mean_std([r["generation"] for r in runs],
                                         ("top1", "top5", "no_class"))
    if all("gzsl" in r for r in runs):
        summary["gzsl"] = mean_std([r["gzsl"] for r in runs], GZSL)
        if all("calibrated" in r["gzsl"] for r in runs):
            summary["gzsl"]["calibrated"] = mean_std([r["gzsl"]["calibrated"] for r in runs],
                                                     GZSL)
    return summary


def mean_std(runs: list[dict], keys: tuple[str, ...]) -> dict:
    """``key`` and ``key_std`` (over the runs; 0 for one run) of each key the runs hold."""
    out = {}
    for key in (k for k in keys if all(k in r for r in runs)):
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("metrics", type=Path, nargs="+",
                   help="metrics.json of each protocol of the family (seeds, splits)")
    p.add_argument("--out", type=Path, required=True, help="summary JSON to write")


def run(args: argparse.Namespace) -> None:
    summary = summarize_seeds(args.metrics)
    write_json(summary, args.out)
    print(f"{summary['method']} over {summary['runs']} protocols: top-1 {summary['top1']:.1%} "
          f"(std {summary['top1_std']:.1%}), top-5 {summary['top5']:.1%}")
