"""Training clips for the GCN encoders, made a whole batch at a time on tensors.

Every sequence of the requested splits is held once, concatenated along time
(``SequenceStore``: [total frames, bodies, joints, 3] + start and length per sample; memory =
the real frames, no padding to 300). A batch is cut from it with one gather and one blend:

- crop (CTR-GCN's ``valid_crop_resize``): in training a random share p ~ U[lo, hi] of the
  valid frames (at least ``min(window, length)`` of them) at a random start; at test a
  centred share p (0.95);
- resize to ``window`` frames by linear interpolation with half-pixel centres, exactly what
  ``F.interpolate(mode="bilinear", align_corners=False)`` does per sample;
- optional random rotation about the three axes (angles ~ U[-theta, theta]);
- the store's skeleton stream (``modality``: joint, bone, joint_motion, bone_motion;
  actionlm.data.streams): bones are taken once when the sequences are loaded (the same as
  after the crop, resize and rotation, which act on every joint alike), motion last, per
  batch, as in CTR-GCN's feeder.

All randomness comes from the ``torch.Generator`` passed in, so a batch is a pure function
of (seed, epoch, batch index): that is what makes training resumable bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from actionlm.data.split_files import SplitFiles, iter_split_batches
from actionlm.data.streams import bones, check_modality, motion
from actionlm.errors import ActionlmError


@dataclass
class SequenceStore:
    frames: torch.Tensor  # float32 [total frames, bodies, joints, 3]: joints, or bones
    starts: torch.Tensor  # int64 [N], first frame of each sample in ``frames``
    lengths: torch.Tensor  # int64 [N]
    labels: torch.Tensor  # int64 [N]
    sample_ids: list[str]
    splits: list[str]
    modality: str = "joint"  # the stream make_clips cuts (frames hold bones for bone*)

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def n_joints(self) -> int:
        return self.frames.shape[2]

    def subset(self, split: str) -> SequenceStore:
        """The samples of one split (frames shared, not copied)."""
        keep = [i for i, s in enumerate(self.splits) if s == split]
        index = torch.tensor(keep, dtype=torch.long)
        return SequenceStore(self.frames, self.starts[index], self.lengths[index],
                             self.labels[index], [self.sample_ids[i] for i in keep],
                             [split] * len(keep), self.modality)


def pad_bodies(values: np.ndarray, n_frames: int, n_bodies: int, n_joints: int,
               bodies: int) -> np.ndarray:
    """[frames, bodies, joints, 3] with extra bodies dropped and missing ones zero."""
    sample = values.reshape(n_frames, n_bodies, n_joints, 3)[:, :bodies]
    if n_bodies >= bodies:
        return sample
    out = np.zeros((n_frames, bodies, n_joints, 3), np.float32)
    out[:, :n_bodies] = sample
    return out


def load_sequences(files: SplitFiles, splits: tuple[str, ...], bodies: int = 2,
                   modality: str = "joint") -> SequenceStore:
    """Every sample of ``splits`` of the split table, in skeletons.parquet order, held for
    clips of stream ``modality`` (its bones taken here, once)."""
    check_modality(modality)
    chunks, lengths, labels, ids, split_names = [], [], [], [], []
    joint_counts: set[int] = set()
    batches = iter_split_batches(files, splits, rows_per_batch=256)
    for batch, names in tqdm(batches, unit="batch", desc="load", leave=False, delay=2):
        joints = batch["joints"]
        values = joints.values.to_numpy(zero_copy_only=False)
        offsets = joints.offsets.to_numpy()
        for i, (n_frames, n_bodies, n_joints) in enumerate(zip(
                batch["n_frames"].to_pylist(), batch["n_bodies"].to_pylist(),
                batch["n_joints"].to_pylist())):
            joint_counts.add(n_joints)
            chunks.append(pad_bodies(values[offsets[i]:offsets[i + 1]], n_frames, n_bodies,
                                     n_joints, bodies))
            lengths.append(n_frames)
        labels += batch["label"].to_pylist()
        ids += batch["sample_id"].to_pylist()
        split_names += names
    if not ids:
        raise ActionlmError(f"{files.split}: no samples in split(s) {', '.join(splits)}")
    if len(joint_counts) != 1:
        raise ActionlmError(f"{files.skeletons}: samples have different joint counts "
                            f"{sorted(joint_counts)}")
    lengths_t = torch.tensor(lengths, dtype=torch.long)
    frames = torch.from_numpy(np.concatenate(chunks))
    return SequenceStore(
        frames=bones(frames) if modality.startswith("bone") else frames,
        starts=torch.cumsum(lengths_t, 0) - lengths_t,
        lengths=lengths_t,
        labels=torch.tensor(labels, dtype=torch.long),
        sample_ids=ids,
        splits=split_names,
        modality=modality,
    )


def crop_windows(lengths: torch.Tensor, interval: tuple[float, ...], window: int,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, length) of each sample's crop, in frames of that sample."""
    n = lengths.double()
    if len(interval) == 1:  # centred share p
        bias = torch.floor((1 - interval[0]) * n / 2)
        return bias.long(), (n - 2 * bias).long()
    low, high = interval
    share = low + torch.rand(len(n), generator=generator, dtype=torch.float64) * (high - low)
    crop = torch.minimum(torch.maximum(torch.floor(n * share), torch.minimum(n, torch.tensor(
        float(window)))), n)
    start = torch.floor(torch.rand(len(n), generator=generator, dtype=torch.float64)
                        * (n - crop + 1))
    return start.long(), crop.long()


def rotation_matrices(count: int, theta: float, generator: torch.Generator | None) -> torch.Tensor:
    """[count, 3, 3] rotations Rz Ry Rx with angles ~ U[-theta, theta] about each axis."""
    angle = (torch.rand(count, 3, generator=generator) * 2 - 1) * theta
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones(count), torch.zeros(count)

    def rot(a: int, b: int, i: int) -> torch.Tensor:
        m = torch.stack([one, zero, zero, zero, one, zero, zero, zero, one], 1).view(count, 3, 3)
        m = m.clone()
        m[:, a, a], m[:, b, b] = cos[:, i], cos[:, i]
        m[:, a, b], m[:, b, a] = -sin[:, i], sin[:, i]
        return m

    return rot(0, 1, 2) @ rot(0, 2, 1) @ rot(1, 2, 0)


def make_clips(store: SequenceStore, index: torch.Tensor, window: int,
               interval: tuple[float, ...], rotate: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, window, bodies, joints, 3] clips of the samples ``index``, in the store's stream."""
    lengths = store.lengths[index]
    start, crop = crop_windows(lengths, interval, window, generator)
    # half-pixel sampling positions inside each crop (align_corners=False), clamped at 0
    position = ((torch.arange(window, dtype=torch.float64) + 0.5) * crop[:, None] / window
                - 0.5).clamp(min=0)
    lower = position.floor().long()
    upper = torch.minimum(lower + 1, crop[:, None] - 1)
    base = (store.starts[index] + start)[:, None]
    rows = store.frames.view(len(store.frames), -1)
    lo = rows.index_select(0, (base + lower).flatten())
    hi = rows.index_select(0, (base + upper).flatten())
    weight = (position - lower).float().flatten()[:, None]
    clips = torch.lerp(lo, hi, weight).view(len(index), window, *store.frames.shape[1:])
    if rotate > 0:  # x R^T as three broadcast multiply-adds (a k=3 bmm is ~2x slower)
        columns = rotation_matrices(len(index), rotate, generator).transpose(1, 2)[:, None]
        points = clips.view(len(index), -1, 3)
        clips = sum(points[..., c: c + 1] * columns[:, :, c] for c in range(3)).view_as(clips)
    return motion(clips) if store.modality.endswith("motion") else clips
