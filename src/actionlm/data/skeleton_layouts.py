"""Joint names and bones of the skeleton layouts that actionlm reads, in one place, so that
the stick-figure renderer and the GCN graph draw the same body.

Bones are (child, parent) pairs, 0-based; the tables below write them 1-based as the
datasets' documentation does. ``parts`` are GAP's six body parts (Fig. 3c) as 0-based joint
groups; the 2- and 4-part partitions are their unions (``partition``). A new layout is one
``_layout`` call: names, bones, parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from actionlm.errors import ActionlmError


@dataclass(frozen=True)
class SkeletonLayout:
    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]  # (child, parent), 0-based
    parts: dict[str, tuple[int, ...]]  # the six body parts of GAP, 0-based joints

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def partition(self, n_parts: int) -> dict[str, tuple[int, ...]]:
        """GAP's partitions (Fig. 3): 1 = the whole body (global), 2 = upper/lower,
        4 = head / hand+arm / hip / leg+foot, 6 = the six parts. Keys name the description
        parts whose texts a group's text combines (``+``-joined)."""
        p = self.parts
        groups = {
            1: [("global", range(self.n_joints))],
            2: [("head+hand+arm", p["head"] + p["hand"] + p["arm"]),
                ("hip+leg+foot", p["hip"] + p["leg"] + p["foot"])],
            4: [("head", p["head"]), ("hand+arm", p["hand"] + p["arm"]), ("hip", p["hip"]),
                ("leg+foot", p["leg"] + p["foot"])],
            6: [(name, p[name]) for name in BODY_PARTS],
        }
        if n_parts not in groups:
            raise ActionlmError(f"partition into {n_parts} parts: use 1, 2, 4 or 6")
        return {name: tuple(sorted(set(joints))) for name, joints in groups[n_parts]}


# the six body parts of GAP's part descriptions, in their order (describe, LoRA answers)
BODY_PARTS = ("head", "hand", "arm", "hip", "leg", "foot")


def _layout(name: str, joint_names: tuple[str, ...], bones_1based: list[tuple[int, int]],
            parts_1based: dict[str, list[int]]) -> SkeletonLayout:
    bones = tuple((child - 1, parent - 1) for child, parent in bones_1based)
    parts = {part: tuple(j - 1 for j in parts_1based[part]) for part in BODY_PARTS}
    return SkeletonLayout(name, joint_names, bones, parts)


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
    # GAP's 4-part groups (head 3,4,21; hand+arm 5-12,22-25; hip 1,2,3,13,17; leg+foot 13-20)
    # split further at the wrist and the ankle.
    {"head": [3, 4, 21], "hand": [7, 8, 11, 12, 22, 23, 24, 25], "arm": [5, 6, 9, 10],
     "hip": [1, 2, 3, 13, 17], "leg": [13, 14, 17, 18], "foot": [15, 16, 19, 20]},
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
    {"head": [3, 4], "hand": [7, 8, 11, 12], "arm": [5, 6, 9, 10], "hip": [1, 2, 13, 17],
     "leg": [13, 14, 17, 18], "foot": [15, 16, 19, 20]},
)

LAYOUTS: dict[str, SkeletonLayout] = {layout.name: layout for layout in (NTU25, KINECT_V1_20)}


def layout_for_joints(n_joints: int) -> SkeletonLayout:
    """The layout of a skeleton table from its joint count (25: NTU, 20: NW-UCLA)."""
    for layout in LAYOUTS.values():
        if layout.n_joints == n_joints:
            return layout
    known = ", ".join(f"{lay.name} ({lay.n_joints})" for lay in LAYOUTS.values())
    raise ActionlmError(f"no skeleton layout with {n_joints} joints (known: {known})")


def require_same_layout(data_joints: int, model_joints: int, data: object, model: object) -> None:
    """A model reads only the skeleton layout it was trained on. Cross-dataset zero-shot feeds
    one dataset's skeletons to another's VQ-VAE or encoder, so NTU60 -> NTU120 works but NTU
    (25 Kinect v2 joints) -> NW-UCLA (20 Kinect v1 joints) cannot: say so in one line, naming
    both the data and the model (and so both datasets)."""
    if data_joints == model_joints:
        return

    def describe(n: int) -> str:
        names = [layout.name for layout in LAYOUTS.values() if layout.n_joints == n]
        return f"{n} joints ({names[0]})" if names else f"{n} joints"

    raise ActionlmError(f"{data}: skeletons of {describe(data_joints)}, but {model} was trained "
                        f"on {describe(model_joints)}; a model reads only its own skeleton layout")


# The skeleton streams a network can read (actionlm.data.streams computes them from joints).
MODALITIES = ("joint", "bone", "joint_motion", "bone_motion")
# Each stream's default weight in a score fusion: GAP's ensemble.py (MartinXM/GAP) adds the four
# streams' logits with alpha [0.8, 0.8, 0.2, 0.2] (joint, bone, joint-motion, bone-motion: 4:4:1:1)
# and joint + bone with equal weights; not its 3-stream [0.6, 0.6, 0.4], and not pyskl's
# 2:2:1:1 (configs/ctrgcn/README.md), which weighs the motion streams twice as much.
STREAM_WEIGHTS = {"joint": 0.8, "bone": 0.8, "joint_motion": 0.2, "bone_motion": 0.2}
