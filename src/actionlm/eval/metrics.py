"""Classification metrics and the evaluation outputs every method writes, so that the report
compares GAP, LLM-AR and SUGAR on identical definitions.

``predictions.parquet`` (one row per test sample):
    sample_id  string
    label      int32    true class (index into ``class_names``)
    pred       int32    top-1 class
    correct    bool     pred == label
    top5       list<int32>  the five best classes, best first (fewer when K < 5)
    score      float32  the top-1 score (method-specific scale: logit, log-likelihood)
    scores     list<float32>  every class's score, in ``class_names`` order (-inf: a class
               the method cannot predict);
               what ``actionlm ensemble`` fuses
    + method-specific extra columns (an LLM's generated answer and the classes it names)
    metadata: actionlm.class_names, actionlm.method, ... (caller's ``metadata``)

``metrics.json``: n, top1, top5, mean_class_accuracy (mean over classes present in the test
split of their recall), per_class_accuracy, class_names, confusion (rows: true, columns:
predicted; counts), plus the caller's metadata. ``confusion.png``: the row-normalised matrix.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow as pa

from actionlm.errors import ActionlmError
from actionlm.io import atomic_path, with_metadata, write_json, write_parquet

matplotlib.use("Agg")


def topk_predictions(scores: np.ndarray, k: int = 5) -> np.ndarray:
    """[N, min(k, K)] class indices by descending score (ties: lower index first)."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def classification_metrics(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """top-1, top-5, mean per-class accuracy and the confusion matrix of [N, K] scores."""
    if scores.ndim != 2 or scores.shape[0] != len(labels) or scores.shape[1] != n_classes:
        raise ActionlmError(
            f"scores of shape {scores.shape} do not fit {len(labels)} labels x {n_classes} classes"
        )
    if len(labels) == 0:
        raise ActionlmError("no samples to evaluate")
    top = topk_predictions(scores)
    pred = top[:, 0]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.where(present, np.diag(confusion) / np.maximum(support, 1), np.nan)
    return {
        "n": int(len(labels)),
        "top1": float((pred == labels).mean()),
        "top5": float((top == labels[:, None]).any(axis=1).mean()),
        "mean_class_accuracy": float(np.nanmean(recall)),
        "per_class_accuracy": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": confusion.tolist(),
    }


def plot_confusion(confusion: np.ndarray, class_names: list[str], title: str,
                   path: str | os.PathLike) -> None:
    """Row-normalised confusion matrix (rows: true class) as a PNG."""
    import matplotlib.pyplot as plt

    rows = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 3 + 0.25 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def score_lists(scores: np.ndarray) -> pa.ListArray:
    """[N, K] scores as N float32 lists of K."""
    n, k = scores.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(scores.astype(np.float32).ravel()))


def write_evaluation(out_dir: str | os.PathLike, scores: np.ndarray, labels: np.ndarray,
                     sample_ids: list[str], class_names: list[str],
                     extra: dict[str, list] | None = None, metadata: dict | None = None) -> dict:
    """Write predictions.parquet, metrics.json and confusion.png; return the metrics."""
    out_dir = Path(out_dir)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(set(class_names)) != len(class_names):
        raise ActionlmError("class names are not unique")
    metrics = classification_metrics(scores, labels, len(class_names))
    top = topk_predictions(scores)
    pred = top[:, 0]
    columns = {
        "sample_id": pa.array(list(sample_ids), pa.string()),
        "label": pa.array(labels.astype(np.int32)),
        "pred": pa.array(pred.astype(np.int32)),
        "correct": pa.array(pred == labels),
        "top5": pa.array(top.astype(np.int32).tolist(), pa.list_(pa.int32())),
        "score": pa.array(scores[np.arange(len(pred)), pred].astype(np.float32)),
        "scores": score_lists(scores),
    }
    for name, values in (extra or {}).items():
        columns[name] = values if isinstance(values, pa.Array) else pa.array(list(values))
    table = pa.table(columns)
    meta = {"class_names": class_names, **(metadata or {})}
    write_parquet(table.replace_schema_metadata(with_metadata(table.schema, **meta).metadata),
                  out_dir / "predictions.parquet")
    metrics = {**metrics, "class_names": class_names, **(metadata or {})}
    write_json(metrics, out_dir / "metrics.json")
    title = f"{(metadata or {}).get('method', '')} top-1 {metrics['top1']:.1%} (n={metrics['n']})"
    plot_confusion(np.asarray(metrics["confusion"]), class_names, title.strip(),
                   out_dir / "confusion.png")
    return metrics
