"""Plot training curves -> one PNG: a panel per quantity, a line per run (the run is named by
its folder: encoders/gap/curves.parquet -> gap), so that CE, GAP and SUGAR or LLM-AR and SUGAR
can be compared at a glance.

``--kind`` picks the quantities of each stage's curves.parquet: encoder (train-encoder: loss,
contrastive term, train/val top-1 per epoch), vqvae (train-vqvae: reconstruction and the
human-bias losses of LLM-AR Eqs. 4-7, code perplexity and used codes per epoch), lora
(lora: answer-token loss and accuracy per step). Quantities a file lacks are left out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib
import pandas as pd

from actionlm.errors import ActionlmError
from actionlm.io import atomic_path, read_table

matplotlib.use("Agg")
log = logging.getLogger(__name__)

PANELS_PER_ROW = 3
# kind -> (x axis, plotted columns)
CURVE_PANELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "encoder": ("epoch", ("loss", "contrastive", "train_top1", "val_top1")),
    "vqvae": ("epoch", ("rec", "zipf", "context", "mmd", "perplexity", "used_codes")),
    "lora": ("step", ("loss", "token_accuracy")),
}


def read_curves(paths: list[Path]) -> dict[str, pd.DataFrame]:
    """Each run's curves, named by its folder."""
    runs = {}
    for path in paths:
        runs[Path(path).parent.name] = read_table(path).to_pandas()
    return runs


def plot_curves(runs: dict[str, pd.DataFrame], kind: str, title: str, path: Path) -> list[str]:
    """Write the figure; return the quantities plotted."""
    import matplotlib.pyplot as plt

    x, wanted = CURVE_PANELS[kind]
    plotted = {name: t for name, t in runs.items() if x in t.columns}
    columns = [c for c in wanted
               if any(c in t.columns and t[c].notna().any() for t in plotted.values())]
    if not columns:
        raise ActionlmError(f"{title}: none of {list(wanted)} against {x} in the curves tables")
    ncols = min(PANELS_PER_ROW, len(columns))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    for ax, column in zip(axes.flat, columns):
        for name, table in plotted.items():
            if column in table.columns:
                ax.plot(table[x], table[column], marker=".", label=name)
        ax.set_xlabel(x)
        ax.set_title(column)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return columns


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("curves", type=Path, nargs="+", help="curves.parquet of each run")
    p.add_argument("--kind", choices=sorted(CURVE_PANELS), required=True,
                   help="which stage wrote the curves")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="training curves")


def run(args: argparse.Namespace) -> None:
    columns = plot_curves(read_curves(args.curves), args.kind, args.title, args.out)
    log.info("%s of %d runs -> %s", ", ".join(columns), len(args.curves), args.out)
