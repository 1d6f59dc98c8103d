"""Fuse the class scores of several evaluations (skeleton streams, methods) into one, evaluated
like a method -> OUT/predictions.parquet, metrics.json, confusion.png.

Contract of ``actionlm ensemble --predictions P1 P2 [...] [--weights W1 W2 ...]
[--normalize none|softmax] [--names N1 N2 ...] --out DIR``:

- Members: the ``predictions.parquet`` of ``actionlm evaluate`` (actionlm.eval.metrics), read
  as sample_id, label, correct, scores and the metadata class_names, method, protocol. A file
  without a ``scores`` column (evaluated before it was written) is refused: evaluate it again.
- Checks, each member against the first, as one ``ActionlmError`` naming both files and what
  differs: the same set of sample ids (rows are aligned by sample id to the first file's
  order, so the order in a file does not matter), the same label per sample, the same
  class_names in the same order. Every score is finite or -inf, at least one finite per sample.
- Weights: one per member, each >= 0 and one at least > 0 (default 1.0 each); a member of
  weight 0 adds nothing. ``--normalize softmax`` turns each member's scores into class
  probabilities per sample first (a class at -inf gets 0 from that member), so members of
  different scales (logits, log-likelihoods) count by their weights; ``none`` (the default)
  adds the raw scores, as GAP's ensemble.py adds its CTR-GCN logits.
- Fused scores = sum_i w_i * s_i, written by ``write_evaluation`` with the first member's
  sample order and labels and the metadata method "ensemble", members (the paths as given),
  member_names (``--names``, else each member's method), weights, normalize, member_top1 (each
  member's top-1 as it was evaluated) and the first member's protocol if it records one. The
  log gives each member's top-1, the fusion's, and its gain over the best member.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from actionlm.cli_args import non_negative_float
from actionlm.errors import ActionlmError
from actionlm.eval.metrics import write_evaluation
from actionlm.io import parquet_file, read_table, table_metadata

log = logging.getLogger(__name__)

NORMALIZE = ("none", "softmax")


@dataclass(frozen=True)
class Member:
    """One evaluation's predictions."""

    path: str
    sample_ids: list[str]
    labels: np.ndarray  # [N] int64
    scores: np.ndarray  # [N, K] float64
    class_names: list[str]
    method: str | None
    protocol: str | None
    top1: float  # as evaluated (its correct column)


def read_member(path: str | os.PathLike) -> Member:
    """The predictions of ``path`` with their full score matrix, checked."""
    if "scores" not in parquet_file(path).schema_arrow.names:
        raise ActionlmError(f"{path}: no scores column (evaluated before class scores were "
                            "written): run its evaluation again")
    table = read_table(path, ["sample_id", "label", "correct", "scores"])
    class_names = table_metadata(table, "class_names")
    if not class_names:
        raise ActionlmError(f"{path}: no actionlm.class_names metadata")
    scores = score_matrix(path, table["scores"], len(class_names))
    sample_ids = table["sample_id"].to_pylist()
    if len(set(sample_ids)) != len(sample_ids):
        raise ActionlmError(f"{path}: sample ids are not unique")
    return Member(str(path), sample_ids, table["label"].to_numpy().astype(np.int64), scores,
                  class_names, table_metadata(table, "method"), table_metadata(table, "protocol"),
                  float(table["correct"].to_numpy().mean()))


def score_matrix(path: str | os.PathLike, column, n_classes: int) -> np.ndarray:
    """The [N, K] float64 matrix of a scores column; each score finite or -inf, one finite
    per row at least."""
    if column.null_count or (pc.list_value_length(column).to_numpy() != n_classes).any():
        raise ActionlmError(f"{path}: a scores row is not {n_classes} scores (one per class)")
    scores = pc.list_flatten(column).to_numpy().astype(np.float64).reshape(-1, n_classes)
    finite = np.isfinite(scores)
    if not (finite | (scores == -np.inf)).all() or not finite.any(axis=1).all():
        raise ActionlmError(f"{path}: scores must be finite or -inf, with a finite one per sample")
    return scores


def class_difference(first: Member, other: Member) -> str | None:
    for i, (a, b) in enumerate(zip(first.class_names, other.class_names)):
        if a != b:
            return (f"class order differs at position {i}: {a!r} in {first.path}, {b!r} in "
                    f"{other.path}")
    if len(first.class_names) != len(other.class_names):
        return (f"{len(first.class_names)} classes in {first.path}, {len(other.class_names)} in "
                f"{other.path}")
    return None


def check_samples(first: Member, other: Member) -> None:
    for a, b in ((first, other), (other, first)):
        known = set(b.sample_ids)
        missing = [s for s in a.sample_ids if s not in known]
        if missing:
            raise ActionlmError(f"{len(missing)} samples of {a.path} are not in {b.path}: "
                                f"{missing[:5]}")


def align(first: Member, other: Member) -> Member:
    """``other`` with its rows in ``first``'s sample order, once both are found to evaluate
    the same samples with the same labels over the same classes."""
    difference = class_difference(first, other)
    if difference:
        raise ActionlmError(f"{first.path} and {other.path}: {difference}")
    check_samples(first, other)
    position = {s: i for i, s in enumerate(other.sample_ids)}
    order = np.array([position[s] for s in first.sample_ids], dtype=np.int64)
    labels = other.labels[order]
    differ = np.flatnonzero(labels != first.labels)
    if differ.size:
        i = differ[0]
        raise ActionlmError(
            f"{differ.size} samples have another label in {other.path} than in {first.path}, "
            f"e.g. {first.sample_ids[i]!r}: {first.class_names[first.labels[i]]!r} in "
            f"{first.path}, {first.class_names[labels[i]]!r} in {other.path}")
    return replace(other, sample_ids=first.sample_ids, labels=labels, scores=other.scores[order])


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax; -inf scores get 0 (every row has a finite score: score_matrix)."""
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def check_options(n_members: int, weights: list[float], normalize: str,
                  names: list[str] | None) -> None:
    if n_members < 2:
        raise ActionlmError(f"an ensemble needs two predictions files at least, got {n_members}")
    if len(weights) != n_members:
        raise ActionlmError(f"--weights: {len(weights)} weights for {n_members} predictions files")
    if not all(np.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
        raise ActionlmError(f"--weights {weights}: each must be >= 0, one at least > 0")
    if normalize not in NORMALIZE:
        raise ActionlmError(f"--normalize {normalize!r}: expected one of {NORMALIZE}")
    if names is not None and len(names) != n_members:
        raise ActionlmError(f"--names: {len(names)} names for {n_members} predictions files")


def fuse(members: list[Member], weights: list[float], normalize: str) -> np.ndarray:
    """sum_i w_i * s_i over aligned members (s_i softmax-normalised when asked); a member of
    weight 0 adds nothing (not even 0 * -inf)."""
    scores = [softmax(m.scores) if normalize == "softmax" else m.scores for m in members]
    return sum(w * s for w, s in zip(weights, scores) if w > 0)


def ensemble(paths: list[str | os.PathLike], out_dir: str | os.PathLike,
             weights: list[float] | None = None, normalize: str = "none",
             names: list[str] | None = None) -> dict:
    """Fuse the evaluations ``paths`` and write the fusion's evaluation; return its metrics."""
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    check_options(len(paths), weights, normalize, names)
    first, *others = [read_member(p) for p in paths]
    members = [first, *(align(first, m) for m in others)]
    fused = fuse(members, weights, normalize)
    metadata = {
        "method": "ensemble", "members": [str(p) for p in paths],
        "member_names": names or [m.method or m.path for m in members], "weights": weights,
        "normalize": normalize, "member_top1": [m.top1 for m in members],
        **({"protocol": first.protocol} if first.protocol is not None else {}),
    }
    metrics = write_evaluation(out_dir, fused, first.labels, first.sample_ids, first.class_names,
                               metadata=metadata)
    log_fusion(metrics)
    return metrics


def log_fusion(metrics: dict) -> None:
    for name, top1, weight in zip(metrics["member_names"], metrics["member_top1"],
                                  metrics["weights"]):
        log.info("member %s (weight %g): top-1 %.2f%%", name, weight, 100 * top1)
    gain = metrics["top1"] - max(metrics["member_top1"])
    log.info("ensemble (%s): top-1 %.2f%%, %+.2f points over the best member (n=%d)",
             metrics["normalize"], 100 * metrics["top1"], 100 * gain, metrics["n"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", type=Path, nargs="+", required=True,
                   help="predictions.parquet of each member evaluation")
    p.add_argument("--weights", type=non_negative_float, nargs="+", default=None,
                   help="score weight of each member, in order (default: 1 each)")
    p.add_argument("--normalize", choices=NORMALIZE, default="none",
                   help="softmax: fuse class probabilities; none: raw scores (GAP)")
    p.add_argument("--names", nargs="+", default=None,
                   help="a name per member for the log and metrics (default: its method)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for predictions.parquet, metrics.json, confusion.png")


def run(args: argparse.Namespace) -> None:
    ensemble(args.predictions, args.out, args.weights, args.normalize, args.names)
