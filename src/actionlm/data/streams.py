"""Skeleton streams (modalities): joint, bone, joint_motion, bone_motion, made from joint
coordinates on tensors by the loaders; nothing is stored as another copy of the dataset.

Reference order, per sample, CTR-GCN's feeders (Uason-Chen/CTR-GCN feeders/feeder_ntu.py,
feeder_ucla.py): valid_crop_resize, random rotation, then bone (each joint minus its parent of
the layout's bones; a root, paired with itself there, gives zero), then motion (frame t + 1
minus frame t, the last frame zero). Bone motion is bone, then motion.

``bones`` is linear in the joints alone, and cropping, resizing (the same weights for every
joint) and rotating (the same matrix for every joint) act on time and coordinates alone, so
bones may be taken before them with the same result (to float rounding): the clip loader
(actionlm.data.clips) converts the held sequences once at load and adds only ``motion`` per
batch. The fixed-size loader (actionlm.data.tensors) applies ``skeleton_stream`` after its
resize.
"""

from __future__ import annotations

import torch

from actionlm.data.skeleton_layouts import MODALITIES, SkeletonLayout, layout_for_joints
from actionlm.errors import ActionlmError


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ActionlmError(f"unknown skeleton stream (modality) {modality!r}: use one of "
                            f"{', '.join(MODALITIES)}")


def parent_index(layout: SkeletonLayout) -> torch.Tensor:
    """int64 [joints]: each joint's parent in ``layout``; a root is its own parent."""
    parent = list(range(layout.n_joints))
    for child, joint_parent in layout.bones:
        parent[child] = joint_parent
    return torch.tensor(parent)


def bones(joints: torch.Tensor, layout: SkeletonLayout | None = None) -> torch.Tensor:
    """[..., joints, 3] joint coordinates -> each joint minus its parent (a new tensor), in one
    gather; ``layout``: by default the one with ``joints.shape[-2]`` joints."""
    parent = parent_index(layout or layout_for_joints(joints.shape[-2]))
    # the parents' coordinates as columns of [.., joints x 3], int32 indices: on the CPU ~2x
    # faster than gathering [.., joints, 3] rows with int64 ones
    columns = (parent[:, None] * 3 + torch.arange(3)).flatten().int().to(joints.device)
    flat = joints.reshape(-1, len(columns))
    parents = flat.index_select(1, columns)
    return torch.sub(flat, parents, out=parents).view_as(joints)


def motion(clips: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] -> frame t + 1 minus frame t, the last frame zero (a new tensor)."""
    out = torch.empty_like(clips)
    torch.sub(clips[:, 1:], clips[:, :-1], out=out[:, :-1])
    out[:, -1] = 0
    return out


def skeleton_stream(joints: torch.Tensor, modality: str,
                    layout: SkeletonLayout | None = None) -> torch.Tensor:
    """The ``modality`` stream of clips ``joints`` [B, T, bodies, joints, 3] (same shape; the
    input itself for ``joint``)."""
    check_modality(modality)
    x = bones(joints, layout) if modality.startswith("bone") else joints
    return motion(x) if modality.endswith("motion") else x
