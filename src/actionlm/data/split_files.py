"""The two files a stage reads samples from: ``skeletons.parquet`` and one protocol's split
table (``sample_id``, ``split``; written by ``actionlm split``, which names the protocol in
the schema metadata ``actionlm.protocol``).

Stages receive both paths on their command line (``--skeletons``, ``--split``) and never
derive one from the other; ``SplitFiles.prepared`` gives the usual pair of a prepared folder
for Python callers. Samples stream from skeletons.parquet in record batches holding only the
requested splits' rows, so memory is bounded by one batch.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from actionlm.errors import ActionlmError
from actionlm.io import table_metadata

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
        return table_metadata(pq.read_schema(self.split), "protocol") or self.split.stem

    def assignment(self) -> dict[str, str]:
        """sample_id -> split name (train / val / test)."""
        self._require_split()
        table = pq.read_table(self.split, columns=["sample_id", "split"])
        return dict(zip(table["sample_id"].to_pylist(), table["split"].to_pylist()))

    def _require_split(self) -> None:
        if not self.split.is_file():
            raise ActionlmError(f"{self.split}: no such split file (run `actionlm split`)")


def iter_split_batches(
    files: SplitFiles, splits: tuple[str, ...] | None, rows_per_batch: int = 512
) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
    """skeletons.parquet record batches (READ_COLUMNS) holding only the samples of ``splits``
    (every split of the table when None), each with its rows' split names, in file order;
    raises at the end if some of the split's sample ids were not in the file."""
    assignment = files.assignment()
    if splits is not None:
        assignment = {s: name for s, name in assignment.items() if name in splits}
    if not files.skeletons.is_file():
        raise ActionlmError(f"{files.skeletons}: no such file (run `actionlm prepare`)")
    wanted = pa.array(list(assignment), pa.string())
    found = 0
    parquet = pq.ParquetFile(files.skeletons)
    for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=READ_COLUMNS):
        batch = batch.filter(pc.is_in(batch["sample_id"], value_set=wanted))
        if batch.num_rows == 0:
            continue
        found += batch.num_rows
        yield batch, [assignment[s] for s in batch["sample_id"].to_pylist()]
    if found != len(assignment):
        raise ActionlmError(f"{files.split}: {len(assignment) - found} sample ids of the "
                            f"requested splits are not in {files.skeletons}")


def add_split_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--skeletons`` and ``--split``: the files a stage reads its samples from."""
    p.add_argument("--skeletons", type=Path, required=required,
                   help="skeletons.parquet written by 'actionlm prepare'")
    p.add_argument("--split", type=Path, required=required,
                   help="one protocol's split table written by 'actionlm split'")
