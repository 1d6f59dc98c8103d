"""The skeleton table (``skeletons.parquet``), its schema, and a streaming atomic writer.

One row per sample; joints are flattened in [frame, body, joint, xyz] order into a float32
list column whose shape is given by ``n_frames``, ``n_bodies`` and ``n_joints``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actionlm.data.classes import ClassTable
from actionlm.errors import ActionlmError, InputError
from actionlm.io import atomic_path, with_metadata, write_parquet

SKELETON_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int16(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("subject", pa.int16()),
        pa.field("camera", pa.int16()),
        pa.field("setup", pa.int16()),
        pa.field("replication", pa.int16()),
        pa.field("n_frames", pa.int32(), nullable=False),
        pa.field("n_bodies", pa.int8(), nullable=False),
        pa.field("n_joints", pa.int8(), nullable=False),
        pa.field("joints", pa.list_(pa.float32()), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("sample_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

CLASSES_SCHEMA = pa.schema(
    [
        pa.field("label", pa.int16(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("native_id", pa.int16(), nullable=False),
    ]
)


@dataclass
class Sample:
    """One decoded sequence before it gets its label from the dataset's class table."""

    sample_id: str
    native_action: int
    joints: np.ndarray  # float32 [frames, bodies, joints, 3]
    source: str
    subject: int | None = None
    camera: int | None = None
    setup: int | None = None
    replication: int | None = None


@dataclass
class Rejection:
    source: str
    reason: str
    sample_id: str | None = None


def load_each(loader: Callable[[Path], Sample], paths: list[Path]) -> list[Sample | Rejection]:
    """Apply a one-file reader to each path, turning its InputError into a Rejection."""
    out: list[Sample | Rejection] = []
    for path in paths:
        try:
            out.append(loader(path))
        except InputError as err:
            out.append(Rejection(err.source, err.reason, Path(path).stem))
    return out


@dataclass
class SkeletonTableWriter:
    """Stream samples into ``skeletons.parquet`` in row groups, renaming into place on close.

    Memory stays bounded by one row group whatever the number of samples.
    """

    path: Path
    classes: ClassTable
    metadata: dict = field(default_factory=dict)
    rows_per_group: int = 256
    _rows: list[Sample] = field(default_factory=list, init=False)
    _seen: set[str] = field(default_factory=set, init=False)
    n_written: int = field(default=0, init=False)

    def __enter__(self) -> SkeletonTableWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        schema = with_metadata(SKELETON_SCHEMA, dataset=self.classes.dataset, **self.metadata)
        # Dictionary-encoding the float lists costs 4x the write time for no gain.
        self._writer = pq.ParquetWriter(self._tmp, schema, use_dictionary=["class_name"])
        return self

    def check(self, sample: Sample) -> str | None:
        """Reason why ``sample`` cannot be added, or None."""
        if sample.sample_id in self._seen:
            return f"duplicate sample id {sample.sample_id!r}"
        if self.classes.label_of(sample.native_action) is None:
            return (
                f"action id {sample.native_action} is not a class of dataset "
                f"{self.classes.dataset!r} ({len(self.classes)} classes)"
            )
        return None

    def add(self, sample: Sample) -> None:
        reason = self.check(sample)
        if reason is not None:
            raise ValueError(reason)
        self._seen.add(sample.sample_id)
        self._rows.append(sample)
        if len(self._rows) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        labels = [self.classes.label_of(s.native_action) for s in rows]
        flat = np.concatenate([s.joints.reshape(-1) for s in rows]).astype(np.float32, copy=False)
        offsets = np.cumsum([0] + [s.joints.size for s in rows]).astype(np.int32)
        columns = {
            "sample_id": [s.sample_id for s in rows],
            "label": labels,
            "class_name": [self.classes.names[i] for i in labels],
            "subject": [s.subject for s in rows],
            "camera": [s.camera for s in rows],
            "setup": [s.setup for s in rows],
            "replication": [s.replication for s in rows],
            "n_frames": [s.joints.shape[0] for s in rows],
            "n_bodies": [s.joints.shape[1] for s in rows],
            "n_joints": [s.joints.shape[2] for s in rows],
            "joints": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
            "source": [s.source for s in rows],
        }
        batch = pa.RecordBatch.from_pydict(columns, schema=self._writer.schema)
        self._writer.write_batch(batch)
        self.n_written += len(rows)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._flush()
        self._writer.close()
        if exc_type is None and self.n_written == 0:
            empty = ActionlmError("no sample could be read from the input")
            self._atomic.__exit__(ActionlmError, empty, None)
            raise empty
        self._atomic.__exit__(exc_type, exc, tb)


def write_rejected(rejections: list[Rejection], path: str | os.PathLike) -> None:
    table = pa.Table.from_pylist(
        [{"source": r.source, "sample_id": r.sample_id, "reason": r.reason} for r in rejections],
        schema=REJECTED_SCHEMA,
    )
    write_parquet(table, path)


def write_classes(classes: ClassTable, path: str | os.PathLike) -> None:
    table = pa.table(
        {
            "label": pa.array(range(len(classes)), pa.int16()),
            "class_name": pa.array(classes.names, pa.string()),
            "native_id": pa.array(classes.native_ids, pa.int16()),
        },
        schema=with_metadata(CLASSES_SCHEMA, dataset=classes.dataset),
    )
    write_parquet(table, path)


def sample_joints(row: dict) -> np.ndarray:
    """The [frames, bodies, joints, 3] array of one row of ``skeletons.parquet``."""
    shape = (row["n_frames"], row["n_bodies"], row["n_joints"], 3)
    return np.asarray(row["joints"], dtype=np.float32).reshape(shape)
