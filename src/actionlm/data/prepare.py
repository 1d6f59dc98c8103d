"""Read skeleton data in one of several formats and write DIR/skeletons.parquet (denoised,
centred joints), DIR/classes.parquet, DIR/rejected.parquet (inputs that could not be used,
with the reason) and DIR/splits/{protocol}.parquet.

Files are decoded in worker processes with a bounded number of batches in flight, and rows
are streamed to Parquet in row groups, so memory does not grow with the number of files.
The workers exit with this process however it ends, SIGKILL included (a scheduler's time
limit, the OOM killer): see actionlm.data.pool.

Output is staged in ``.{DIR name}.partial-{host}-{pid}-{random}`` beside DIR and moved into
DIR once complete. A killed run cannot remove its staging folder, so every run first removes
those of DIR that runs on the same host left behind (their pid is not running any more).

``--format synthetic`` generates NTU raw files into DIR/raw; their ``source`` is that path
relative to DIR (``raw/S001C001P001R001A001.skeleton``), so tables do not depend on where
DIR is.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from actionlm.cli_args import fraction, non_negative_int, positive_int
from actionlm.data import ctrgcn_npz, nw_ucla, pyskl
from actionlm.data.classes import ClassTable, ntu_class_table, nw_ucla_class_table
from actionlm.data.ntu_raw import NTU_NAME, load_ntu_files
from actionlm.data.pool import ParentBoundPool
from actionlm.data.splits import (
    DEFAULT_PROTOCOLS,
    SPLIT_META_COLUMNS,
    STANDARD_PROTOCOLS,
    UnformableProtocolError,
    make_split,
    write_embedded_splits,
    write_split,
)
from actionlm.data.table import (
    Rejection,
    Sample,
    SkeletonTableWriter,
    load_each,
    write_classes,
    write_rejected,
)
from actionlm.data.zero_shot import zero_shot_protocol
from actionlm.errors import ActionlmError, InputError
from actionlm.io import owned_prefix, remove_leftovers

log = logging.getLogger(__name__)

FORMATS = ("ntu-raw", "ctrgcn-npz", "nw-ucla", "pyskl", "synthetic")
FILES_PER_TASK = 16
IN_FLIGHT_PER_WORKER = 4  # keeps the workers busy while this process writes a row group
FORMAT_DATASETS = {"nw-ucla": "nw_ucla"}
# The per-sample metadata a format records (what the standard protocols split by); npz and
# pyskl files carry their own splits instead.
NTU_METADATA = frozenset({"subject", "camera", "setup", "replication"})
FORMAT_METADATA = {"ntu-raw": NTU_METADATA, "synthetic": NTU_METADATA,
                   "nw-ucla": frozenset({"subject", "camera", "replication"})}


@dataclass
class PrepareSummary:
    n_samples: int
    rejected: list[Rejection] = field(default_factory=list)
    protocols: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # default protocol -> why not written
    inferred: str = ""  # how --dataset was inferred, when it was not given

    def line(self) -> str:
        skipped = "".join(f"; skipped {protocol}: {why}" for protocol, why in self.skipped.items())
        inferred = f"; {self.inferred}" if self.inferred else ""
        return (
            f"prepared {self.n_samples} samples, rejected {len(self.rejected)}; "
            f"protocols: {', '.join(self.protocols) or 'none'}{skipped}{inferred}"
        )


def load_files_parallel(
    load_batch: Callable[[list[Path]], list[Sample | Rejection]],
    paths: list[Path],
    workers: int,
    reader_module: str,
) -> Iterator[Sample | Rejection]:
    """Decode files in batches in ``workers`` processes, yielding results in input order with
    at most IN_FLIGHT_PER_WORKER batches per worker in flight (backpressure keeps memory
    bounded).

    Workers come from a fork server that imports only ``reader_module``, not this process's
    state (threads included). Starting it takes a fresh interpreter and those imports (about
    half a second), so a background thread starts the first worker while this process
    decodes the first batches itself. A ProcessPoolExecutor rather than a multiprocessing
    Pool: the Pool's worker-handler thread wakes up for every result."""
    batches = deque(paths[i : i + FILES_PER_TASK] for i in range(0, len(paths), FILES_PER_TASK))
    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            yield from load_batch(batch)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([reader_module])
    pool = ParentBoundPool(workers, ctx)
    try:
        with ThreadPoolExecutor(1) as starter:
            first_worker = starter.submit(lambda: pool.submit(os.getpid).result())
            while batches and not first_worker.done():
                yield from load_batch(batches.popleft())
            first_worker.result()
        pending: deque = deque()
        while batches or pending:
            while batches and len(pending) < IN_FLIGHT_PER_WORKER * workers:
                pending.append(pool.submit(load_batch, batches.popleft()))
            yield from pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


def _list_files(src: Path, pattern: str, what: str) -> list[Path]:
    if not src.is_dir():
        raise ActionlmError(f"{src}: not a directory (expected a folder of {what})")
    paths = sorted(src.glob(pattern), key=lambda path: path.name)  # Path comparison is slow
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


def class_list(fmt: str, dataset: str | None, actions: list[int] | None) -> ClassTable:
    """The classes a prepare of ``fmt`` writes, known before any file is read: the synthetic
    actions, the format's own list (NW-UCLA), or an NTU list (``dataset``, ``actions``)."""
    if fmt == "synthetic":
        from actionlm.data.synthetic import SYNTHETIC_ACTIONS

        dataset, actions = dataset or "synthetic", actions or list(SYNTHETIC_ACTIONS)
    dataset = dataset or FORMAT_DATASETS.get(fmt)
    if dataset is None:
        raise ActionlmError(f"--dataset is required for --format {fmt} (ntu60, ntu120, ...)")
    return resolve_classes(dataset, actions)


def infer_ntu_dataset(actions: Iterable[int]) -> str:
    """ntu60 when no action id is above 60, else ntu120."""
    return "ntu60" if max(actions) <= 60 else "ntu120"


def ntu_name_metadata(paths: list[Path]) -> pd.DataFrame:
    """What the names of NTU raw files say (SsssCcccPpppRrrrAaaa): one row per file whose name
    has that form, with sample_id, action and the columns the standard protocols split by."""
    rows = []
    for path in paths:
        stem = path.name.removesuffix(".skeleton")
        if (match := NTU_NAME.fullmatch(stem)) is not None:
            setup, camera, subject, replication, action = map(int, match.groups())
            rows.append((stem, action, subject, camera, setup, replication))
    return pd.DataFrame(rows, columns=["sample_id", "action", "subject", "camera", "setup",
                                       "replication"])


def formable_protocols(
    protocols: list[str], explicit: bool, check: Callable[[str], object]
) -> tuple[list[str], dict[str, str]]:
    """(the protocols that ``check`` accepts, {protocol: why} of those it finds unformable).
    An unformable protocol asked for ``explicitly`` is an error; one of the dataset's
    defaults is skipped (the caller warns once the run succeeds: a failing run prints only
    its error), and an error only when none of them is left."""
    kept, skipped = [], {}
    for protocol in protocols:
        try:
            check(protocol)
        except UnformableProtocolError as err:
            if explicit:
                raise
            skipped[protocol] = err.reason
        else:
            kept.append(protocol)
    if protocols and not kept:
        why = "; ".join(f"{protocol}: {reason}" for protocol, reason in skipped.items())
        raise ActionlmError(f"this data can form none of the standard protocols ({why}); name "
                            "protocols with --protocols, or --protocols none for no split")
    return kept, skipped


def _check_from_names(
    names: pd.DataFrame, classes: ClassTable, src: Path, val_fraction: float, seed: int
) -> Callable[[str], object]:
    """A check of a protocol against the samples that the file names promise, before any
    file is decoded (files that then turn out unusable are checked again after decoding)."""
    labels = names["action"].map(classes.label_of)
    meta = names.assign(label=labels)[labels.notna()].astype({"label": int})
    meta = meta[list(SPLIT_META_COLUMNS)].reset_index(drop=True)

    def check(protocol: str) -> object:
        if meta.empty:  # no usable name: decoding says what is wrong with the files
            return None
        try:
            return make_split(meta, protocol, len(classes), val_fraction, seed)
        except UnformableProtocolError as err:
            err.args = (f"{err} (among the {len(meta)} .skeleton files of {src} that "
                        f"{classes.dataset} can use)",)
            raise

    return check


def protocol_problem(fmt: str, classes: ClassTable, protocol: str) -> str | None:
    """Why data of ``fmt`` with ``classes`` cannot form ``protocol``, or None: a zero-shot
    protocol needs K below the class count (a benchmark: its dataset's classes) and its base's
    metadata, a standard protocol the metadata column it splits by (npz and pyskl files carry
    their own splits: only the file knows)."""
    if (zero_shot := zero_shot_protocol(protocol)) is not None:
        if (why := zero_shot.problem(len(classes))) is not None or zero_shot.base is None:
            return why
        why = protocol_problem(fmt, classes, zero_shot.base)
        return None if why is None else f"{protocol} is on {zero_shot.base}: {why}"
    column = STANDARD_PROTOCOLS[protocol][0]
    if column in FORMAT_METADATA.get(fmt, {column}):
        return None
    return f"{protocol} splits by each sample's {column}, which {fmt} data does not record"


def _ntu_paths(src: Path | None) -> list[Path]:
    if src is None:
        raise ActionlmError("--src is required for --format ntu-raw")
    return _list_files(src, "*.skeleton", "NTU .skeleton files")


def _sources(
    fmt: str, src: Path | None, workers: int, trust_pickle: bool, classes: ClassTable,
    paths: list[Path] | None = None,
) -> tuple[Iterable[Sample | Rejection], dict[str, dict[str, str]]]:
    """Samples of the input plus any splits the input format carries itself (``paths``: the
    files of an ntu-raw ``src``, when already listed)."""
    if src is None:
        raise ActionlmError(f"--src is required for --format {fmt}")
    if fmt == "ntu-raw":
        paths = _ntu_paths(src) if paths is None else paths
        return load_files_parallel(load_ntu_files, paths, workers, load_ntu_files.__module__), {}
    if fmt == "nw-ucla":
        paths = _list_files(src, "*.json", "NW-UCLA all_sqe JSON files")
        load_batch = partial(load_each, nw_ucla.load_nw_ucla_file)
        return load_files_parallel(load_batch, paths, workers, nw_ucla.__name__), {}
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
    into it only once every table (splits included) has been written.

    ``protocols`` None: the input's own splits, else the dataset's standard protocols, of
    which those the data cannot form (an empty train or test split) are skipped with a
    warning (``summary.skipped``); an error only when none is left. A protocol named in
    ``protocols`` that the data cannot form is an error. For ntu-raw the file names
    (SsssCcccPpppRrrrAaaa) are checked before any file is decoded, and ``dataset`` None is
    inferred from the highest action id they carry (ntu60 up to A060, else ntu120)."""
    workers = workers or os.cpu_count() or 1
    given_dataset = dataset
    if out.exists() and not out.is_dir():
        raise ActionlmError(f"{out}: --out exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=owned_prefix(out.name, "partial"), dir=out.parent))
    try:
        explicit = protocols is not None
        paths: list[Path] | None = None
        names = pd.DataFrame()
        if fmt == "ntu-raw" and dataset is None:
            paths = _ntu_paths(src)
            names = ntu_name_metadata(paths)
            if names.empty:
                raise ActionlmError(f"{src}: no file name of the form SsssCcccPpppRrrrAaaa "
                                    "to infer --dataset from; give --dataset (ntu60, ntu120)")
            dataset = infer_ntu_dataset(names["action"])
        classes = class_list(fmt, dataset, actions)
        skipped: dict[str, str] = {}
        if fmt == "ntu-raw":  # check the protocols against the file names before decoding
            if paths is None:
                paths = _ntu_paths(src)
                names = ntu_name_metadata(paths)
            if protocols is None:
                protocols = DEFAULT_PROTOCOLS.get(classes.dataset, [])
            check = _check_from_names(names, classes, src, val_fraction, seed)
            protocols, skipped = formable_protocols(protocols, explicit, check)
        inferred = "" if fmt != "ntu-raw" or given_dataset is not None else (
            f"--dataset not given: {dataset}, inferred from the highest action id in the file "
            f"names (A{names['action'].max():03d})")
        if fmt == "synthetic":
            from actionlm.data.synthetic import generate_ntu_files

            src = staging / "raw"
            generate_ntu_files(src, actions=list(classes.native_ids), seed=seed,
                               workers=workers, **(synthetic or {}))
            fmt = "ntu-raw"
        samples, embedded_splits = _sources(fmt, src, workers, trust_pickle, classes, paths)
        if src == staging / "raw":  # generated here: name the files by their place in out
            samples = _relative_to(staging, samples)
        summary = PrepareSummary(0, skipped=skipped, inferred=inferred)
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

        def write(protocol: str) -> None:
            summary.protocols[protocol] = write_split(
                staging / "skeletons.parquet", staging / "classes.parquet",
                staging / "embedded_splits.parquet", protocol,
                staging / "splits" / f"{protocol}.parquet", val_fraction=val_fraction, seed=seed,
            )

        summary.skipped |= formable_protocols(protocols, explicit, write)[1]
        if summary.inferred:
            log.info("%s", summary.inferred)
        for protocol, why in summary.skipped.items():
            log.warning("skipped protocol %r (a default, not asked for): %s", protocol, why)
        out.mkdir(exist_ok=True)
        for item in staging.iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging folders of ``out`` that killed runs on this host left behind;
    those of running processes, of other hosts and of unknown owners stay."""
    for path in remove_leftovers(out.parent, "partial", out.name):
        log.warning("removed %s, left behind by a killed run", path)


def _relative_to(root: Path, items: Iterable[Sample | Rejection]) -> Iterator[Sample | Rejection]:
    """``items`` with ``source`` the path of their file relative to ``root``."""
    for item in items:
        yield replace(item, source=os.path.relpath(item.source, root))


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    """Comma/space separated names; ``none`` is the empty list."""
    return [x for x in text.replace(",", " ").split() if x and x != "none"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    p.add_argument("--src", type=Path,
                   help="input folder (ntu-raw, nw-ucla) or file (ctrgcn-npz, pyskl)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--dataset", default=None,
                   help="class list: ntu60, ntu120, nw_ucla (default from the format; ntu-raw: "
                   "ntu60 if no file name has an action id above 60, else ntu120), or a name "
                   "with --actions")
    p.add_argument("--actions", type=_int_list, default=None,
                   help="NTU action ids (1-based) to keep, relabelled 0..n-1 in this order")
    p.add_argument("--protocols", type=_str_list, default=None,
                   help="protocols to write (xsub, xview, xset, view3, view2; zero-shot: "
                   "unseen<K>_seed<S>, <base>_unseen<K>_seed<S>, synse55_5, smie55_5_split1, "
                   "...); "
                   "default: the input's own splits, else the dataset's standard ones "
                   "(skipping, with a warning, those the data cannot form); a named protocol "
                   "the data cannot form is an error; 'none' for no split")
    p.add_argument("--val-fraction", type=fraction, default=0.0,
                   help="fraction of each class's training samples moved to a val split")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for val/unseen draws and synthetic data")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="decoding processes (default: all cores)")
    flag = argparse.BooleanOptionalAction
    p.add_argument("--strict", action=flag, default=False,
                   help="stop at the first unusable input")
    p.add_argument("--trust-pickle", action=flag, default=False,
                   help="allow unpickling a pyskl .pkl (pickle can execute code)")
    syn = p.add_argument_group("synthetic data (--format synthetic)")
    syn.add_argument("--subjects", type=positive_int, default=10)
    syn.add_argument("--replications", type=positive_int, default=2)
    syn.add_argument("--setups", type=positive_int, default=1)


def run(args: argparse.Namespace) -> None:
    summary = prepare(
        args.fmt,
        args.src,
        args.out,
        dataset=args.dataset,
        actions=args.actions,
        protocols=args.protocols,
        strict=args.strict,
        trust_pickle=args.trust_pickle,
        workers=args.workers,
        val_fraction=args.val_fraction,
        seed=args.seed,
        synthetic={"n_subjects": args.subjects, "n_replications": args.replications,
                   "n_setups": args.setups},
    )
    print(summary.line())
    for r in summary.rejected[:20]:
        print(f"  rejected {r.source}: {r.reason}")
    if len(summary.rejected) > 20:
        print(f"  ... {len(summary.rejected) - 20} more in {args.out / 'rejected.parquet'}")
