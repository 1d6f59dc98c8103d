"""Plot a 2-D map of a frozen encoder's features -> PNG: the first two principal components
of each sample's time-averaged feature, coloured by class, to see whether an encoder (CE, GAP,
SUGAR) separates the classes of a split.

PCA (a linear, deterministic projection) rather than t-SNE: distances and clusters in the map
are those of the features, with no perplexity to tune; the axes give the variance explained.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib
import numpy as np

from actionlm.data.classes import read_class_names
from actionlm.data.features import read_features
from actionlm.errors import ActionlmError
from actionlm.io import atomic_path

matplotlib.use("Agg")
log = logging.getLogger(__name__)

LEGEND_MAX_CLASSES = 20


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] -> coordinates on the first two principal axes [N, 2] and the share of the
    variance each explains [2] (SVD of the centred matrix)."""
    if features.shape[0] < 2:
        raise ActionlmError("an embedding map needs at least 2 samples")
    centred = features - features.mean(axis=0, keepdims=True)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((2, features.shape[1]))
    components[: min(2, len(axes))] = axes[:2]
    variance = singular**2
    explained = np.zeros(2)
    explained[: min(2, len(variance))] = variance[:2] / max(variance.sum(), 1e-12)
    return centred @ components.T, explained


def class_names(path: Path | None, labels: np.ndarray) -> dict[int, str]:
    """label -> name from classes.parquet (the label itself when no table is given)."""
    if path is None:
        return {int(label): str(label) for label in np.unique(labels)}
    return dict(enumerate(read_class_names(path)))


def plot_embedding(coords: np.ndarray, explained: np.ndarray, labels: np.ndarray,
                   names: dict[int, str], title: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    classes = np.unique(labels)
    colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for i, label in enumerate(classes):
        chosen = labels == label
        ax.scatter(coords[chosen, 0], coords[chosen, 1], s=10, alpha=0.75,
                   color=colours(i % colours.N), label=names.get(int(label), str(label)))
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.set_title(title)
    if len(classes) <= LEGEND_MAX_CLASSES:
        ax.legend(fontsize=6, markerscale=1.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", type=Path, required=True, help="features.parquet")
    p.add_argument("--classes", type=Path, help="classes.parquet (names for the legend)")
    p.add_argument("--split", default="test", help="which split's samples to map")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="encoder features")


def run(args: argparse.Namespace) -> None:
    feature_set = read_features(args.features, (args.split,))
    pooled = feature_set.features.mean(dim=1).double().numpy()
    labels = feature_set.labels.numpy()
    coords, explained = pca_2d(pooled)
    plot_embedding(coords, explained, labels, class_names(args.classes, labels),
                   f"{args.title} ({args.split}, n={len(labels)})", args.out)
    log.info("%d %s samples, PC 1-2 explain %.0f%% -> %s", len(labels), args.split,
             100 * explained.sum(), args.out)
