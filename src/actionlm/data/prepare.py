"""``actionlm prepare``: any supported input format -> ``skeletons.parquet``, ``classes.parquet``,
``rejected.parquet`` and ``splits/{protocol}.parquet`` in one output folder.

Files are decoded in worker processes with a bounded number of batches in flight, and rows
are streamed to Parquet in row groups, so memory does not grow with the number of files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from actionlm.data import ctrgcn_npz, nw_ucla, pyskl
from actionlm.data.classes import ClassTable, ntu_class_table, nw_ucla_class_table
from actionlm.data.ntu_raw import load_ntu_file
from actionlm.data.splits import (
    DEFAULT_PROTOCOLS,
    EMBEDDED_SPLITS_SCHEMA,
    SPLIT_META_COLUMNS,
    make_split,
    split_table,
)
from actionlm.data.table import (
    Rejection,
    Sample,
    SkeletonTableWriter,
    load_each,
    write_classes,
    write_rejected,
)
from actionlm.errors import ActionlmError, InputError
from actionlm.io import write_parquet

log = logging.getLogger(__name__)

FORMATS = ("ntu-raw", "ctrgcn-npz", "nw-ucla", "pyskl", "synthetic")
FILES_PER_TASK = 16
IN_FLIGHT_PER_WORKER = 2
FORMAT_DATASETS = {"nw-ucla": "nw_ucla"}


@dataclass
class PrepareSummary:
    n_samples: int
    rejected: list[Rejection] = field(default_factory=list)
    protocols: dict[str, dict] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"prepared {self.n_samples} samples, rejected {len(self.rejected)}; "
            f"protocols: {', '.join(self.protocols) or 'none'}"
        )


def load_files_parallel(
    loader: Callable[[Path], Sample], paths: list[Path], workers: int
) -> Iterator[Sample | Rejection]:
    """Decode files in ``workers`` processes, yielding results in input order with at most
    2 x workers batches in flight (backpressure keeps memory bounded). Workers come from a
    fork server that imports only the reader's module, not this process's state."""
    batch_loader = partial(load_each, loader)
    batches = [paths[i : i + FILES_PER_TASK] for i in range(0, len(paths), FILES_PER_TASK)]
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            yield from batch_loader(batch)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([loader.__module__])
    with ctx.Pool(workers) as pool:
        pending: deque = deque()
        todo = iter(batches)
        for batch in todo:
            pending.append(pool.apply_async(batch_loader, (batch,)))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _list_files(src: Path, pattern: str, what: str) -> list[Path]:
    if not src.is_dir():
        raise ActionlmError(f"{src}: not a directory (expected a folder of {what})")
    paths = sorted(src.glob(pattern))
    if not paths:
        raise ActionlmError(f"{src}: no {what} ({pattern}) found")
    return paths


def resolve_classes(dataset: str, actions: list[int] | None) -> ClassTable:
    if dataset == "nw_ucla":
        return nw_ucla_class_table()
    if dataset in ("ntu60", "ntu120"):
        return ntu_class_table(dataset, actions)
    if actions:
        table = ntu_class_table("ntu120", actions)
        return ClassTable(dataset, table.native_ids, table.names)
    raise ActionlmError(
        f"dataset {dataset!r} has no built-in class list: use ntu60, ntu120 or nw_ucla, "
        "or give the NTU action ids of its classes with --actions"
    )


def _sources(
    fmt: str, src: Path | None, workers: int, trust_pickle: bool, classes: ClassTable
) -> tuple[Iterable[Sample | Rejection], dict[str, dict[str, str]]]:
    """Samples of the input plus any splits the input format carries itself."""
    if src is None:
        raise ActionlmError(f"--src is required for --format {fmt}")
    if fmt == "ntu-raw":
        paths = _list_files(src, "*.skeleton", "NTU .skeleton files")
        return load_files_parallel(load_ntu_file, paths, workers), {}
    if fmt == "nw-ucla":
        paths = _list_files(src, "*.json", "NW-UCLA all_sqe JSON files")
        return load_files_parallel(nw_ucla.load_nw_ucla_file, paths, workers), {}
    if fmt == "ctrgcn-npz":
        if not src.is_file():
            raise ActionlmError(f"{src}: not a file (expected a CTR-GCN .npz)")
        membership: dict[str, str] = {}

        def samples() -> Iterator[Sample | Rejection]:
            for item in ctrgcn_npz.iter_npz_samples(src, len(classes)):
                if isinstance(item, Sample):
                    membership[item.sample_id] = item.sample_id.split("_", 1)[0]
                yield item

        return samples(), {ctrgcn_npz.protocol_from_file_name(src): membership}
    if fmt == "pyskl":
        if not src.is_file():
            raise ActionlmError(f"{src}: not a file (expected a pyskl .pkl)")
        data = pyskl.load_pyskl_pickle(src, trust_pickle)
        return pyskl.iter_pyskl_samples(data, src), pyskl.pyskl_split_membership(data)
    raise ActionlmError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def prepare(
    fmt: str,
    src: Path | None,
    out: Path,
    *,
    dataset: str | None,
    actions: list[int] | None = None,
    protocols: list[str] | None = None,
    strict: bool = False,
    trust_pickle: bool = False,
    workers: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    synthetic: dict | None = None,
) -> PrepareSummary:
    """Write the whole output folder, or nothing: files are staged beside ``out`` and moved
    into it only once every table (splits included) has been written."""
    workers = workers or os.cpu_count() or 1
    if out.exists() and not out.is_dir():
        raise ActionlmError(f"{out}: --out exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        if fmt == "synthetic":
            from actionlm.data.synthetic import SYNTHETIC_ACTIONS, generate_ntu_files

            actions = actions or list(SYNTHETIC_ACTIONS)
            dataset = dataset or "synthetic"
            src = staging / "raw"
            generate_ntu_files(src, actions=actions, seed=seed, workers=workers, **(synthetic or {}))
            fmt = "ntu-raw"
        if dataset is None:
            dataset = FORMAT_DATASETS.get(fmt)
            if dataset is None:
                raise ActionlmError(f"--dataset is required for --format {fmt} (ntu60, ntu120, ...)")
        classes = resolve_classes(dataset, actions)
        samples, embedded_splits = _sources(fmt, src, workers, trust_pickle, classes)
        summary = PrepareSummary(0)
        with SkeletonTableWriter(staging / "skeletons.parquet", classes, {"format": fmt}) as writer:
            # delay: a run that fails fast prints its one-line error and no progress bar
            for item in tqdm(samples, desc="prepare", unit="sample", mininterval=5.0, delay=2.0):
                if isinstance(item, Sample) and (reason := writer.check(item)) is not None:
                    item = Rejection(item.source, reason, item.sample_id)
                if isinstance(item, Rejection):
                    if strict:
                        raise InputError(item.source, item.reason)
                    log.warning("rejected %s: %s", item.source, item.reason)
                    summary.rejected.append(item)
                    continue
                writer.add(item)
        summary.n_samples = writer.n_written
        write_rejected(summary.rejected, staging / "rejected.parquet")
        write_classes(classes, staging / "classes.parquet")
        write_embedded_splits(embedded_splits, staging / "embedded_splits.parquet")
        if protocols is None:
            protocols = list(embedded_splits) or DEFAULT_PROTOCOLS.get(classes.dataset, [])
        for protocol in protocols:
            summary.protocols[protocol] = write_split(
                staging, protocol, val_fraction=val_fraction, seed=seed
            )
        out.mkdir(exist_ok=True)
        for item in staging.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_embedded_splits(embedded: dict[str, dict[str, str]], path: Path) -> None:
    rows = [(sid, protocol, split) for protocol, m in embedded.items() for sid, split in m.items()]
    table = pa.table(
        {"sample_id": [r[0] for r in rows], "protocol": [r[1] for r in rows],
         "split": [r[2] for r in rows]},
        schema=EMBEDDED_SPLITS_SCHEMA,
    )
    write_parquet(table, path)


def write_split(data_dir: Path, protocol: str, *, val_fraction: float = 0.0, seed: int = 0) -> dict:
    """Write ``data_dir/splits/{protocol}.parquet``: the input file's own partition when it
    carried one under that name, otherwise computed from the samples' metadata."""
    meta = pq.read_table(data_dir / "skeletons.parquet", columns=list(SPLIT_META_COLUMNS)).to_pandas()
    n_classes = pq.read_metadata(data_dir / "classes.parquet").num_rows
    embedded = pq.read_table(data_dir / "embedded_splits.parquet").to_pandas()
    embedded = embedded[embedded["protocol"] == protocol]
    if len(embedded):
        membership = dict(zip(embedded["sample_id"], embedded["split"]))
        frame = meta[["sample_id"]].assign(split=meta["sample_id"].map(membership)).dropna()
        info = {"protocol": protocol, "from": "input file",
                "counts": {k: int(v) for k, v in frame["split"].value_counts().items()}}
    else:
        frame, info = make_split(meta, protocol, n_classes, val_fraction, seed)
    write_parquet(split_table(frame, info), data_dir / "splits" / f"{protocol}.parquet")
    return info
