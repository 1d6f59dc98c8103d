"""Fixed-size training tensors from a prepared dataset: every sequence of one protocol's
split, resized in time to ``window`` frames and zero-padded to ``bodies`` bodies.

Models with a fixed input length (the LLM-AR VQ-VAE, W = window / 4 tokens) read their data
through here. Sequences are resized by linear interpolation over time with the first and last
frames kept (``align_corners`` sampling); all index arithmetic is vectorised per Parquet
record batch, so memory is bounded by one batch plus the resized output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from actionlm.errors import ActionlmError

READ_COLUMNS = ["sample_id", "label", "n_frames", "n_bodies", "n_joints", "joints"]


@dataclass
class SplitTensors:
    """Resized samples: ``joints`` float32 [N, window, bodies, joints, 3], ``labels`` int64 [N],
    and per sample its id and split name (train / val / test)."""

    joints: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)


def read_split_assignment(data_dir: str | os.PathLike, protocol: str) -> dict[str, str]:
    """sample_id -> split name from DIR/splits/{protocol}.parquet."""
    path = Path(data_dir) / "splits" / f"{protocol}.parquet"
    if not path.is_file():
        raise ActionlmError(f"{path}: no such split file (run `actionlm split` for {protocol!r})")
    table = pq.read_table(path, columns=["sample_id", "split"])
    return dict(zip(table["sample_id"].to_pylist(), table["split"].to_pylist()))


def resize_batch(batch: pa.RecordBatch, window: int, bodies: int, source: str) -> np.ndarray:
    """Resize every row of a skeletons.parquet record batch to [window, bodies, joints, 3].

    Output frame k of a sequence of n frames samples position k (n - 1) / (window - 1):
    one gather of the two neighbouring frames and one blend for the whole batch."""
    n_frames = batch["n_frames"].to_numpy().astype(np.int64)
    n_bodies = batch["n_bodies"].to_numpy().astype(np.int64)
    n_joints = np.unique(batch["n_joints"].to_numpy())
    if len(n_joints) != 1:
        raise ActionlmError(f"{source}: samples have different joint counts {n_joints.tolist()}")
    joint_values = int(n_joints[0]) * 3
    joints = batch["joints"]
    offsets = joints.offsets.to_numpy().astype(np.int64)
    values = joints.values.to_numpy(zero_copy_only=False)
    frame_size = n_bodies * joint_values
    if np.any(np.diff(offsets) != n_frames * frame_size) or np.any(n_frames < 1):
        raise ActionlmError(
            f"{source}: joints length does not match n_frames x n_bodies x n_joints x 3"
        )

    position = np.arange(window) * ((n_frames[:, None] - 1) / max(window - 1, 1))
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, n_frames[:, None] - 1)
    weight = (position - lower)[..., None].astype(np.float32)

    out = np.zeros((len(n_frames), window, bodies * joint_values), dtype=np.float32)
    kept_bodies = np.minimum(n_bodies, bodies)
    for count in np.unique(kept_bodies):
        rows = np.flatnonzero(kept_bodies == count)
        width = int(count) * joint_values
        start = offsets[rows, None, None] + np.arange(width)[None, None, :]
        lo = values[start + lower[rows, :, None] * frame_size[rows, None, None]]
        hi = values[start + upper[rows, :, None] * frame_size[rows, None, None]]
        out[rows, :, :width] = lo + (hi - lo) * weight[rows]
    return out.reshape(len(n_frames), window, bodies, int(n_joints[0]), 3)


def iter_split_batches(
    data_dir: str | os.PathLike,
    protocol: str,
    splits: tuple[str, ...] | None,
    rows_per_batch: int = 512,
) -> Iterator[tuple[pa.RecordBatch, list[str]]]:
    """skeletons.parquet record batches (READ_COLUMNS) holding only the samples of ``splits``
    (all splits of the protocol when None), each with its rows' split names, streamed in file
    order; raises at the end if some of the split's sample ids were not in the file."""
    assignment = read_split_assignment(data_dir, protocol)
    if splits is not None:
        assignment = {s: name for s, name in assignment.items() if name in splits}
    path = Path(data_dir) / "skeletons.parquet"
    if not path.is_file():
        raise ActionlmError(f"{path}: no such file (run `actionlm prepare`)")
    wanted = pa.array(list(assignment), pa.string())
    found = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows_per_batch, columns=READ_COLUMNS):
        batch = batch.filter(pc.is_in(batch["sample_id"], value_set=wanted))
        if batch.num_rows == 0:
            continue
        found += batch.num_rows
        yield batch, [assignment[s] for s in batch["sample_id"].to_pylist()]
    if found != len(assignment):
        raise ActionlmError(
            f"{Path(data_dir) / 'splits' / f'{protocol}.parquet'}: {len(assignment) - found} "
            f"sample ids of the requested splits are not in {path}"
        )


def iter_split_tensors(
    data_dir: str | os.PathLike,
    protocol: str,
    window: int,
    splits: tuple[str, ...] | None = None,
    bodies: int = 2,
    rows_per_batch: int = 512,
) -> Iterator[SplitTensors]:
    """Stream the samples of ``splits`` (all splits of the protocol when None) in chunks of at
    most ``rows_per_batch``, in skeletons.parquet order."""
    if window < 2 or bodies < 1:
        raise ActionlmError(f"window must be >= 2 and bodies >= 1 (got {window}, {bodies})")
    source = str(Path(data_dir) / "skeletons.parquet")
    for batch, split_names in iter_split_batches(data_dir, protocol, splits, rows_per_batch):
        yield SplitTensors(
            joints=torch.from_numpy(resize_batch(batch, window, bodies, source)),
            labels=torch.from_numpy(batch["label"].to_numpy().astype(np.int64)),
            sample_ids=batch["sample_id"].to_pylist(),
            splits=split_names,
        )


def load_split(
    data_dir: str | os.PathLike, protocol: str, split: str, window: int, bodies: int = 2
) -> SplitTensors:
    """All samples of one split as one SplitTensors (raises if the split is empty)."""
    chunks = list(iter_split_tensors(data_dir, protocol, window, (split,), bodies))
    if not chunks:
        raise ActionlmError(f"{data_dir}: protocol {protocol!r} has no {split!r} samples")
    return SplitTensors(
        joints=torch.cat([c.joints for c in chunks]),
        labels=torch.cat([c.labels for c in chunks]),
        sample_ids=[s for c in chunks for s in c.sample_ids],
        splits=[s for c in chunks for s in c.splits],
    )
