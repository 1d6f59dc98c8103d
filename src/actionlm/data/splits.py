"""Assign every sample of a skeleton table to train/val/test under one protocol (xsub, xview,
xset, view3, view2, or a zero-shot protocol) -> one split table (sample_id, split; the protocol
in its schema metadata ``actionlm.protocol``). ``actionlm prepare`` writes DIR/splits/P.parquet.

Standard protocols follow the datasets' papers (NTU60: Shahroudy et al. 2016; NTU120: Liu et
al. 2019; NW-UCLA: Wang et al. 2014). Zero-shot protocols (actionlm.data.zero_shot:
``unseen{K}_seed{S}``, ``{base}_unseen{K}_seed{S}``, SynSE's and SMIE's benchmarks) hold classes
out of training: seen classes train, unseen classes test, and under a base protocol the seen
classes of its test side form ``test_seen`` (GZSL); metadata ``unseen_labels`` lists them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from actionlm.cli_args import fraction, non_negative_int
from actionlm.data.classes import read_class_names
from actionlm.data.zero_shot import VALIDATION_SHARE, ZeroShotProtocol, zero_shot_protocol
from actionlm.errors import ActionlmError
from actionlm.io import read_table, with_metadata, write_parquet

NTU60_XSUB_TRAIN = frozenset(
    [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
)
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset(
    [45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85,
     86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103]
)

SPLIT_SCHEMA = pa.schema(
    [pa.field("sample_id", pa.string(), nullable=False),
     pa.field("split", pa.string(), nullable=False)]
)

EMBEDDED_SPLITS_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)
SPLIT_META_COLUMNS = ("sample_id", "label", "subject", "camera", "setup", "replication")

# protocol -> (metadata column it needs, predicate for "train", predicate for "test")
STANDARD_PROTOCOLS = {
    "xsub": ("subject", lambda s: s.isin(NTU120_XSUB_TRAIN), lambda s: ~s.isin(NTU120_XSUB_TRAIN)),
    "xview": ("camera", lambda c: c.isin([2, 3]), lambda c: c == 1),
    "xset": ("setup", lambda s: s % 2 == 0, lambda s: s % 2 == 1),
    "view3": ("camera", lambda v: v.isin([1, 2]), lambda v: v == 3),
    "view2": ("camera", lambda v: v == 1, lambda v: v == 2),
}
# protocol -> (samples of its train side, samples of its test side), for messages
STANDARD_SIDES = {
    "xsub": ("of a training subject (the papers' cross-subject list)",
             "of a test subject (one not in the papers' cross-subject training list)"),
    "xview": ("of camera 2 or 3", "of camera 1"),
    "xset": ("of an even setup", "of an odd setup"),
    "view3": ("of camera 1 or 2", "of camera 3"),
    "view2": ("of camera 1", "of camera 2"),
}
# The standard protocols of each dataset: what ``actionlm prepare`` writes when not told which
# (it skips, with a warning, those that the data cannot form).
DEFAULT_PROTOCOLS = {
    "ntu60": ["xsub", "xview"],
    "ntu120": ["xsub", "xset"],
    "nw_ucla": ["view3", "view2"],
    "synthetic": ["xsub", "xview"],
}


class UnformableProtocolError(ActionlmError):
    """The samples at hand cannot form ``protocol``; ``reason`` says why (without the name)."""

    def __init__(self, protocol: str, reason: str, message: str):
        super().__init__(message)
        self.protocol = protocol
        self.reason = reason


class EmptySplitError(UnformableProtocolError):
    """``protocol`` would leave its ``part`` split (train or test) without a sample."""

    def __init__(self, protocol: str, part: str, missing: str):
        super().__init__(protocol, f"{missing} for its {part} split",
                         f"protocol {protocol!r} leaves the {part} split empty: {missing}")
        self.part = part


def _missing_samples(protocol: str, part: str) -> str:
    """What a ``protocol`` whose ``part`` split is empty has no sample of."""
    if protocol in STANDARD_SIDES:
        return f"no sample {STANDARD_SIDES[protocol][part == 'test']}"
    zero_shot = zero_shot_protocol(protocol)
    kind = "an unseen" if part == "test" else "a seen"
    if zero_shot is not None and zero_shot.parent is not None:
        return f"no sample of {kind} class among the training samples of {zero_shot.parent.name}"
    if zero_shot is not None and zero_shot.base in STANDARD_SIDES:
        return f"no sample {STANDARD_SIDES[zero_shot.base][part == 'test']} of {kind} class"
    return f"no sample of {kind} class"


def standard_sides(meta: pd.DataFrame, protocol: str) -> tuple[pd.Series, pd.Series]:
    """(train side, test side) masks of a standard protocol over the samples of ``meta``."""
    column, is_train, is_test = STANDARD_PROTOCOLS[protocol]
    values = meta[column]
    if values.isna().all():
        raise UnformableProtocolError(
            protocol, f"it needs the {column!r} of each sample, which this dataset does not have",
            f"protocol {protocol!r} needs the {column!r} of each sample, which this dataset "
            "does not have")
    return is_train(values).fillna(False), is_test(values).fillna(False)


def zero_shot_sides(meta: pd.DataFrame, protocol: ZeroShotProtocol, n_classes: int,
                    seed: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(train, test, test_seen) masks of a zero-shot protocol (actionlm.data.zero_shot)."""
    unseen = meta["label"].isin(protocol.unseen_classes(n_classes))
    if protocol.parent is not None:  # validation: the parent's training samples only
        parent_train = zero_shot_sides(meta, protocol.parent, n_classes, seed)[0]
        kept = held_out_share(meta, parent_train & ~unseen, VALIDATION_SHARE, seed)
        return parent_train & ~unseen & ~kept, parent_train & unseen, kept
    if protocol.base is None:
        return ~unseen, unseen, pd.Series(False, index=meta.index)
    base_train, base_test = standard_sides(meta, protocol.base)
    return base_train & ~unseen, base_test & unseen, base_test & ~unseen


def held_out_share(meta: pd.DataFrame, mask: pd.Series, share: float, seed: int) -> pd.Series:
    """A seeded ``share`` of each class's samples within ``mask``."""
    held = pd.Series(False, index=meta.index)
    rng = np.random.default_rng(seed)
    for _, idx in meta.index[mask].to_series().groupby(meta.loc[mask, "label"]):
        held[rng.choice(idx.to_numpy(), size=int(round(share * len(idx))), replace=False)] = True
    return held


def make_split(
    meta: pd.DataFrame, protocol: str, n_classes: int, val_fraction: float = 0.0, seed: int = 0
) -> tuple[pd.DataFrame, dict]:
    """Assign each sample of ``meta`` (sample_id, label and the metadata columns) to
    train/val/test under ``protocol``; return the table and a description for its metadata."""
    if not 0 <= val_fraction < 1:
        raise ActionlmError(f"val_fraction {val_fraction}: expected a number in [0, 1)")
    info: dict = {"protocol": protocol}
    test_seen = pd.Series(False, index=meta.index)
    zero_shot = zero_shot_protocol(protocol)
    if protocol in STANDARD_PROTOCOLS:
        train, test = standard_sides(meta, protocol)
    elif zero_shot is not None:
        train, test, test_seen = zero_shot_sides(meta, zero_shot, n_classes, seed)
        info["unseen_labels"] = zero_shot.unseen_classes(n_classes)
    else:
        raise ActionlmError(
            f"unknown protocol {protocol!r}: expected one of {sorted(STANDARD_PROTOCOLS)}, "
            "unseen<K>_seed<S>, <base>_unseen<K>_seed<S> or a benchmark (actionlm.data."
            "zero_shot.BENCHMARKS)"
        )
    split = pd.Series(np.select([train, test, test_seen], ["train", "test", "test_seen"], ""),
                      index=meta.index)
    if val_fraction > 0:
        split[held_out_share(meta, train, val_fraction, seed)] = "val"
    out = pd.DataFrame({"sample_id": meta["sample_id"], "split": split})
    out = out[out["split"] != ""].reset_index(drop=True)
    counts = out["split"].value_counts()
    for part in ("train", "test"):
        if counts.get(part, 0) == 0:
            raise EmptySplitError(protocol, part, _missing_samples(protocol, part))
    info["counts"] = {k: int(v) for k, v in counts.items()}
    return out, info


def split_table(frame: pd.DataFrame, info: dict) -> pa.Table:
    columns = {"sample_id": frame["sample_id"].tolist(), "split": frame["split"].tolist()}
    return pa.table(columns, schema=with_metadata(SPLIT_SCHEMA, **info))


def write_embedded_splits(embedded: dict[str, dict[str, str]], path: Path) -> None:
    rows = [(sid, protocol, split) for protocol, m in embedded.items() for sid, split in m.items()]
    table = pa.table(
        {"sample_id": [r[0] for r in rows], "protocol": [r[1] for r in rows],
         "split": [r[2] for r in rows]},
        schema=EMBEDDED_SPLITS_SCHEMA,
    )
    write_parquet(table, path)


def write_split(skeletons: Path, classes: Path, embedded_splits: Path, protocol: str,
                out: Path, *, val_fraction: float = 0.0, seed: int = 0) -> dict:
    """Write the split table ``out`` (``actionlm.protocol`` in its metadata): the input file's
    own partition when ``embedded_splits`` holds one under that name, otherwise computed from
    the samples' metadata in ``skeletons``."""
    for path in (skeletons, classes, embedded_splits):
        if not Path(path).is_file():
            raise ActionlmError(f"{path}: no such file (run `actionlm prepare`)")
    meta = read_table(skeletons, columns=list(SPLIT_META_COLUMNS)).to_pandas()
    n_classes = len(read_class_names(classes))
    embedded = read_table(embedded_splits, columns=EMBEDDED_SPLITS_SCHEMA.names).to_pandas()
    embedded = embedded[embedded["protocol"] == protocol]
    if len(embedded):
        membership = dict(zip(embedded["sample_id"], embedded["split"]))
        frame = meta[["sample_id"]].assign(split=meta["sample_id"].map(membership)).dropna()
        info = {"protocol": protocol, "from": "input file",
                "counts": {k: int(v) for k, v in frame["split"].value_counts().items()}}
    else:
        frame, info = make_split(meta, protocol, n_classes, val_fraction, seed)
    write_parquet(split_table(frame, info), out)
    return info


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skeletons", type=Path, required=True,
                   help="skeletons.parquet written by 'actionlm prepare'")
    p.add_argument("--classes", type=Path, required=True, help="its classes.parquet")
    p.add_argument("--embedded-splits", type=Path, required=True,
                   help="its embedded_splits.parquet (the input format's own partitions)")
    p.add_argument("--protocol", required=True)
    p.add_argument("--out", type=Path, required=True, help="split table to write")
    p.add_argument("--val-fraction", type=fraction, default=0.0,
                   help="share of each class's training samples moved to a val split")
    p.add_argument("--seed", type=non_negative_int, default=0)


def run(args: argparse.Namespace) -> None:
    info = write_split(args.skeletons, args.classes, args.embedded_splits, args.protocol,
                       args.out, val_fraction=args.val_fraction, seed=args.seed)
    print(f"{args.protocol}: {info['counts']}")
