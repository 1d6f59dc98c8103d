"""Fixed-size training tensors from a skeleton table and a split table (SplitFiles): every
sequence of the requested splits, resized in time to ``window`` frames, zero-padded to
``bodies`` bodies, then turned into the skeleton stream ``modality`` (actionlm.data.streams:
joint, bone, joint_motion, bone_motion), per chunk on tensors.

Models with a fixed input length (the LLM-AR VQ-VAE, W = window / 4 tokens) read their data
through here. Sequences are resized by linear interpolation over time with the first and last
frames kept (``align_corners`` sampling); all index arithmetic is vectorised per Parquet
record batch, so memory is bounded by one batch plus the resized output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from actionlm.data.split_files import SplitFiles, iter_split_batches
from actionlm.data.streams import skeleton_stream
from actionlm.errors import ActionlmError


@dataclass
class SplitTensors:
    """Resized samples: ``joints`` float32 [N, window, bodies, joints, 3] (of the stream
    asked for), ``labels`` int64 [N], and per sample its id and split name (train / val /
    test)."""

    joints: torch.Tensor
    labels: torch.Tensor
    sample_ids: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)


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


def iter_split_tensors(
    files: SplitFiles,
    window: int,
    splits: tuple[str, ...] | None = None,
    bodies: int = 2,
    rows_per_batch: int = 512,
    modality: str = "joint",
) -> Iterator[SplitTensors]:
    """Stream the samples of ``splits`` (every split of the table when None) in chunks of at
    most ``rows_per_batch``, in skeletons.parquet order, as stream ``modality``."""
    if window < 2 or bodies < 1:
        raise ActionlmError(f"window must be >= 2 and bodies >= 1 (got {window}, {bodies})")
    source = str(files.skeletons)
    for batch, split_names in iter_split_batches(files, splits, rows_per_batch):
        joints = torch.from_numpy(resize_batch(batch, window, bodies, source))
        yield SplitTensors(
            joints=skeleton_stream(joints, modality),
            labels=torch.from_numpy(batch["label"].to_numpy().astype(np.int64)),
            sample_ids=batch["sample_id"].to_pylist(),
            splits=split_names,
        )


def load_split(files: SplitFiles, split: str, window: int, bodies: int = 2,
               modality: str = "joint") -> SplitTensors:
    """All samples of one split as one SplitTensors (raises if the split is empty)."""
    chunks = list(iter_split_tensors(files, window, (split,), bodies, modality=modality))
    if not chunks:
        raise ActionlmError(f"{files.split}: no {split!r} samples")
    return SplitTensors(
        joints=torch.cat([c.joints for c in chunks]),
        labels=torch.cat([c.labels for c in chunks]),
        sample_ids=[s for c in chunks for s in c.sample_ids],
        splits=[s for c in chunks for s in c.splits],
    )
