"""Joint names and bones of the skeleton layouts that actionlm reads, in one place, so that
the stick-figure renderer and the GCN graph draw the same body.

Bones are (child, parent) pairs, 0-based; the tables below write them 1-based as the
datasets' documentation does.
"""

from __future__ import annotations

from dataclasses import dataclass

from actionlm.errors import ActionlmError


@dataclass(frozen=True)
class SkeletonLayout:
    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]  # (child, parent), 0-based

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


def _layout(name: str, joint_names: tuple[str, ...], bones_1based: list[tuple[int, int]]):
    bones = tuple((child - 1, parent - 1) for child, parent in bones_1based)
    return SkeletonLayout(name, joint_names, bones)


# Kinect v2, NTU RGB+D 60/120 (Shahroudy et al. 2016, Fig. 1).
NTU25 = _layout(
    "ntu25",
    (
        "spine base", "mid-spine", "neck", "head",
        "left shoulder", "left elbow", "left wrist", "left hand",
        "right shoulder", "right elbow", "right wrist", "right hand",
        "left hip", "left knee", "left ankle", "left foot",
        "right hip", "right knee", "right ankle", "right foot",
        "spine at the shoulders", "left hand tip", "left thumb", "right hand tip", "right thumb",
    ),
    [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
        (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
        (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
    ],
)

# Kinect v1 (NW-UCLA, Wang et al. 2014): the 20-joint tree rooted at the shoulder centre.
KINECT_V1_20 = _layout(
    "kinect_v1_20",
    (
        "hip center", "spine", "shoulder center", "head",
        "left shoulder", "left elbow", "left wrist", "left hand",
        "right shoulder", "right elbow", "right wrist", "right hand",
        "left hip", "left knee", "left ankle", "left foot",
        "right hip", "right knee", "right ankle", "right foot",
    ),
    [
        (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
        (19, 18), (20, 19),
    ],
)

LAYOUTS: dict[str, SkeletonLayout] = {layout.name: layout for layout in (NTU25, KINECT_V1_20)}


def layout_for_joints(n_joints: int) -> SkeletonLayout:
    """The layout of a skeleton table from its joint count (25: NTU, 20: NW-UCLA)."""
    for layout in LAYOUTS.values():
        if layout.n_joints == n_joints:
            return layout
    known = ", ".join(f"{lay.name} ({lay.n_joints})" for lay in LAYOUTS.values())
    raise ActionlmError(f"no skeleton layout with {n_joints} joints (known: {known})")
