"""Candidate frames per class for the visual-knowledge step (SUGAR Step 1), and the choice of
the most mutually dissimilar ones by CLIP image features.

Frames come from an image folder per class when the dataset has RGB (``DIR/{class_id}/`` or
``DIR/{class_name}/``, ``*.jpg|*.jpeg|*.png``), otherwise from stick-figure renders of the
skeleton sequences (front view, bones of the dataset's layout), so that the step also runs on
skeleton-only datasets.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from actionlm.data.skeleton_layouts import SkeletonLayout, layout_for_joints
from actionlm.data.table import sample_joints
from actionlm.device import autocast
from actionlm.errors import ActionlmError, InputError
from actionlm.io import read_table

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BODY_COLOURS = ("#1f3a93", "#c0392b", "#27ae60", "#8e44ad")


@dataclass(frozen=True)
class Frame:
    origin: str  # the image file, or "<sample_id> frame <t>" for a render
    png: bytes


def encode_png(image: Image.Image, max_side: int) -> bytes:
    """RGB PNG, downscaled so that its longer side is at most ``max_side`` pixels (a vision
    model bills by image size; SUGAR's descriptions need no more detail)."""
    image = image.convert("RGB")
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def class_folder(frames_dir: Path, class_id: int, class_name: str) -> Path | None:
    """``DIR/{class_id}`` or ``DIR/{class_name}`` (a '/' in the name written as '_')."""
    for name in (str(class_id), class_name, class_name.replace("/", "_")):
        if (frames_dir / name).is_dir():
            return frames_dir / name
    return None


def folder_frames(folder: Path, max_side: int) -> list[Frame]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    frames = []
    for path in paths:
        try:
            with Image.open(path) as image:
                frames.append(Frame(str(path), encode_png(image, max_side)))
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(str(path), f"not a readable image ({err})") from None
    return frames


def render_stick_figures(
    joints: np.ndarray, layout: SkeletonLayout, frame_indices: Iterable[int], size_px: int
) -> list[bytes]:
    """PNG stick figures of the given frames of one [frames, bodies, joints, 3] sequence,
    seen from the front (x right, y up), on fixed axes fitted to the whole sequence so that
    motion shows as displacement. All-zero bodies (padding) are not drawn."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    present = np.abs(joints).sum(axis=(2, 3)) > 0  # [frames, bodies]
    points = joints[..., :2][present]
    low, high = points.reshape(-1, 2).min(axis=0), points.reshape(-1, 2).max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2 * 1.1, 1e-3)
    figure = Figure(figsize=(size_px / 100, size_px / 100), dpi=100, facecolor="white")
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    axes.set_xlim(centre[0] - half, centre[0] + half)
    axes.set_ylim(centre[1] - half, centre[1] + half)
    bones = np.array(layout.bones)
    artists = []
    for body in range(joints.shape[1]):
        colour = BODY_COLOURS[body % len(BODY_COLOURS)]
        lines = axes.add_collection(LineCollection([], colors=colour, linewidths=2.5))
        (dots,) = axes.plot([], [], "o", color=colour, markersize=3)
        artists.append((lines, dots))
    pngs = []
    for t in frame_indices:
        for body, (lines, dots) in enumerate(artists):
            xy = joints[t, body, :, :2] if present[t, body] else np.empty((0, 2))
            lines.set_segments(xy[bones] if len(xy) else [])
            dots.set_data(xy[:, 0], xy[:, 1])
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", facecolor="white")
        pngs.append(buffer.getvalue())
    return pngs


def skeleton_frames(
    skeletons: Path, labels: list[int], samples_per_class: int, frames_per_sample: int,
    size_px: int, seed: int,
) -> dict[int, list[Frame]]:
    """Stick-figure frames, evenly spaced in time, of ``samples_per_class`` samples per class
    drawn with ``seed``; only those samples' joints are read."""
    index = read_table(skeletons, columns=["sample_id", "label"]).to_pandas()
    rng = np.random.default_rng(seed)
    chosen: dict[int, list[str]] = {}
    for label in labels:
        ids = sorted(index.loc[index["label"] == label, "sample_id"])
        if not ids:
            raise ActionlmError(f"{skeletons}: class {label} has no sample to render frames from")
        picks = rng.choice(len(ids), size=min(samples_per_class, len(ids)), replace=False)
        chosen[label] = [ids[i] for i in sorted(picks)]
    wanted = [sample_id for ids in chosen.values() for sample_id in ids]
    rows = read_table(
        skeletons, columns=["sample_id", "n_frames", "n_bodies", "n_joints", "joints"],
        filters=[("sample_id", "in", wanted)],
    ).to_pylist()
    by_id = {row["sample_id"]: row for row in rows}
    frames: dict[int, list[Frame]] = {}
    for label, ids in chosen.items():
        frames[label] = []
        for sample_id in ids:
            joints = sample_joints(by_id[sample_id])
            layout = layout_for_joints(joints.shape[2])
            times = np.linspace(0, len(joints) - 1, frames_per_sample).round().astype(int)
            times = np.unique(times)
            pngs = render_stick_figures(joints, layout, times, size_px)
            frames[label] += [Frame(f"{sample_id} frame {t}", png) for t, png in zip(times, pngs)]
    return frames


def clip_image_features(
    frames: list[Frame], clip, preprocess, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """L2-normalised CLIP image embeddings [len(frames), d] (SUGAR: "transform each frame via
    the vision encoder from CLIP into features")."""
    out = []
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(frames), batch_size):
            batch = torch.stack([preprocess(Image.open(io.BytesIO(frame.png)))
                                 for frame in frames[start : start + batch_size]])
            out.append(F.normalize(clip.encode_image(batch.to(device)).float(), dim=-1).cpu())
    return torch.cat(out).numpy()


def farthest_point_selection(features: np.ndarray, k: int, min_distance: float = 1e-6) -> list[int]:
    """Indices (ascending) of at most ``k`` mutually dissimilar rows of L2-normalised
    ``features``: SUGAR's "most dissimilar image set", built greedily on cosine distance.

    Start from the row least similar to all others on average; then repeatedly add the row
    whose nearest chosen row is farthest. Stops early when only rows within ``min_distance``
    of a chosen one remain (duplicate frames are what the selection exists to drop).
    """
    if len(features) == 0 or k < 1:
        return []
    similarity = features @ features.T
    chosen = [int(np.argmin(similarity.mean(axis=1)))]
    nearest = 1.0 - similarity[chosen[0]]
    while len(chosen) < min(k, len(features)):
        candidate = int(np.argmax(nearest))
        if nearest[candidate] <= min_distance:
            break
        chosen.append(candidate)
        nearest = np.minimum(nearest, 1.0 - similarity[candidate])
    return sorted(chosen)
