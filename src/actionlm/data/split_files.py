"""The two files a stage reads samples from: ``skeletons.parquet`` and one protocol's split
table (``sample_id``, ``split``; written by ``actionlm split``, which names the protocol in
the schema metadata ``actionlm.protocol``).

Stages receive both paths on their command line (``--skeletons``, ``--split``) and never
derive one from the other; ``SplitFiles.prepared`` gives the usual pair of a prepared folder
for Python callers. Samples stream from skeletons.parquet in record batches holding only the
requested splits' rows, so memory is bounded by one batch. Both are read through
actionlm.io's checked reader: a truncated or non-Parquet file, or one without a needed column,
is a one-line ActionlmError naming it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from actionlm.errors import ActionlmError
from actionlm.io import iter_batches, parquet_file, read_table, table_metadata

READ_COLUMNS = ["sample_id", "label", "n_frames", "n_bodies", "n_joints", "joints"]


@dataclass(frozen=True)
class SplitFiles:
    """skeletons.parquet and the split table of one protocol over it."""

    skeletons: Path
    split: Path

    @classmethod
    def prepared(cls, data_dir: str | os.PathLike, protocol: str) -> SplitFiles:
        """The pair that ``actionlm prepare`` + ``actionlm split`` write into DIR."""
        data_dir = Path(data_dir)
        return cls(data_dir / "skeletons.parquet", data_dir / "splits" / f"{protocol}.parquet")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SplitFiles:
        return cls(Path(args.skeletons), Path(args.split))

    @property
    def protocol(self) -> str:
        """The protocol the split table was made for (its file stem when unrecorded)."""
        self._require_split()
        schema = parquet_file(self.split).schema_arrow
        return table_metadata(schema, "protocol") or self.split.stem

    def assignment(self) -> dict[str, str]:
        """sample_id -> split name (train / val / test)."""
        self._require_split()
        table = read_table(self.split, columns=["sample_id", "split"])
        return dict(zip(table["sample_id"].to_pylist(), table["split"].to_pylist()))

    def _require_split(self) -> None:
        if not self.split.is_file():
            raise ActionlmError(f"{self.split}: no such split file (run `actionlm split`)")


def iter_split_batches(
    files: SplitFiles, splits: tuple[str, ...] | None, rows_per_batch: int = 512,
    columns: list[str] = READ_COLUMNS,
) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
    """skeletons.parquet record batches of ``columns`` (with sample_id) holding only the
    samples of ``splits`` (every split of the table when None), each with its rows' split
    names, in file order; raises at the end if some of the split's sample ids were not in the
    file."""
    assignment = files.assignment()
    if splits is not None:
        assignment = {s: name for s, name in assignment.items() if name in splits}
    if not files.skeletons.is_file():
        raise ActionlmError(f"{files.skeletons}: no such file (run `actionlm prepare`)")
    wanted = pa.array(list(assignment), pa.string())
    found = 0
    for batch in iter_batches(files.skeletons, columns, rows_per_batch):
        batch = batch.filter(pc.is_in(batch["sample_id"], value_set=wanted))
        if batch.num_rows == 0:
            continue
        found += batch.num_rows
        yield batch, [assignment[s] for s in batch["sample_id"].to_pylist()]
    if found != len(assignment):
        raise ActionlmError(f"{files.split}: {len(assignment) - found} sample ids of the "
                            f"requested splits are not in {files.skeletons}")


def longest_sequence(files: SplitFiles, splits: tuple[str, ...]) -> int:
    """Frames of the longest sample of ``splits`` (0 when none); reads no joints."""
    batches = iter_split_batches(files, splits, columns=["sample_id", "n_frames"])
    return max((pc.max(batch["n_frames"]).as_py() for batch, _ in batches), default=0)


def check_window(window: int, longest: int) -> None:
    """Refuse a training window longer than the longest training sequence (``longest``
    frames; 0: no samples, left to the caller): it would only interpolate frames, and a huge
    one exhausts memory."""
    if 0 < longest < window:
        raise ActionlmError(f"window {window} is longer than the longest training sequence "
                            f"({longest} frames): it would only interpolate frames")


def add_split_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--skeletons`` and ``--split``: the files a stage reads its samples from."""
    p.add_argument("--skeletons", type=Path, required=required,
                   help="skeletons.parquet written by 'actionlm prepare'")
    p.add_argument("--split", type=Path, required=required,
                   help="one protocol's split table written by 'actionlm split'")
