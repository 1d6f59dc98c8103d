"""Baseline for bench_prepare.py: the reference NTU preprocessing done the way CTR-GCN's three
scripts do it (get_raw_skes_data -> get_raw_denoised_data -> seq_transformation): read all
lines, convert each joint line's xyz and colour fields with their own small numpy calls, grow
per-body arrays frame by frame, hand every stage's result to the next through pickle (the
scripts write .pkl files between stages; here in memory), translate frame by frame, pad to a
common length.

Written for this benchmark (same algorithm and per-line costs as the reference, checked
against its output on the real files); not used by the pipeline.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

LENGTH_MAX, SPREAD_RATIO, SPREAD_FRACTION = 11, 0.8, 0.69754


def read_bodies(path: Path) -> tuple[dict, int]:
    lines = path.read_text().splitlines()
    n_frames, cursor, valid, bodies = int(lines[0]), 1, -1, {}
    dropped = 0
    for _ in range(n_frames):
        n_bodies = int(lines[cursor])
        cursor += 1
        if n_bodies == 0:
            dropped += 1
            continue
        valid += 1
        frame = np.zeros((n_bodies, 25, 3), dtype=np.float32)
        colors = np.zeros((n_bodies, 25, 2), dtype=np.float32)
        for b in range(n_bodies):
            body_id = lines[cursor].split()[0]
            n_joints = int(lines[cursor + 1])
            cursor += 2
            for j in range(n_joints):
                fields = lines[cursor].split()
                frame[b, j] = np.array(fields[:3], dtype=np.float32)
                colors[b, j] = np.array(fields[5:7], dtype=np.float32)
                cursor += 1
            if body_id not in bodies:
                bodies[body_id] = {"joints": frame[b], "colors": colors[b, None],
                                   "interval": [valid]}
            else:
                entry = bodies[body_id]
                entry["joints"] = np.vstack((entry["joints"], frame[b]))
                entry["colors"] = np.vstack((entry["colors"], colors[b, None]))
                entry["interval"].append(entry["interval"][-1] + 1)
    if len(bodies) > 1:
        for entry in bodies.values():
            entry["motion"] = np.sum(np.var(entry["joints"], axis=0))
    return bodies, n_frames - dropped


def denoise(bodies: dict) -> list:
    bodies = {k: v for k, v in bodies.items() if len(v["interval"]) > LENGTH_MAX}
    if len(bodies) == 1:
        return list(bodies.values())
    for key in list(bodies):
        if len(bodies) == 1:
            break
        entry = bodies[key]
        points = entry["joints"].reshape(-1, 25, 3)
        good = [i for i in range(len(points))
                if np.ptp(points[i, :, 0]) <= SPREAD_RATIO * np.ptp(points[i, :, 1])]
        n_noise = len(points) - len(good)
        if n_noise == 0:
            continue
        if n_noise / len(points) >= SPREAD_FRACTION:
            del bodies[key]
        else:
            entry["motion"] = min(entry["motion"],
                                  np.sum(np.var(points[good].reshape(-1, 3), axis=0)))
    return sorted(bodies.values(), key=lambda e: e["motion"], reverse=True)


def denoised_joints(raw: tuple[dict, int]) -> np.ndarray:
    bodies, n_frames = raw
    if len(bodies) == 1:
        entry = next(iter(bodies.values()))
        out = np.zeros((n_frames, 75), dtype=np.float32)
        out[entry["interval"][0] : entry["interval"][-1] + 1] = entry["joints"].reshape(-1, 75)
        return out
    ranked = denoise(bodies)
    if len(ranked) == 1:
        out = np.zeros((n_frames, 75), dtype=np.float32)
        iv = ranked[0]["interval"]
        out[iv[0] : iv[-1] + 1] = ranked[0]["joints"].reshape(-1, 75)
    else:
        out = np.zeros((n_frames, 150), dtype=np.float32)
        s1, e1 = ranked[0]["interval"][0], ranked[0]["interval"][-1]
        out[s1 : e1 + 1, :75] = ranked[0]["joints"].reshape(-1, 75)
        s2, e2 = 0, 0
        for entry in ranked[1:]:
            s, e = entry["interval"][0], entry["interval"][-1]
            if min(e1, e) - max(s1, s) <= 0:
                out[s : e + 1, :75] = entry["joints"].reshape(-1, 75)
                s1, e1 = min(s, s1), max(e, e1)
            elif min(e2, e) - max(s2, s) <= 0:
                out[s : e + 1, 75:] = entry["joints"].reshape(-1, 75)
                s2, e2 = min(s, s2), max(e, e2)
    return out[out.sum(axis=1) != 0]


def translate(joints: np.ndarray) -> np.ndarray:
    two = joints.shape[1] == 150
    if two:
        missing1 = np.where(joints[:, :75].sum(axis=1) == 0)[0]
        missing2 = np.where(joints[:, 75:].sum(axis=1) == 0)[0]
    i = 0
    while i < len(joints) and not np.any(joints[i, :75] != 0):
        i += 1
    origin = np.copy(joints[i, 3:6])
    for f in range(len(joints)):
        joints[f] -= np.tile(origin, 50 if two else 25)
    if two:
        joints[missing1, :75] = 0
        joints[missing2, 75:] = 0
    return joints


def run_baseline(paths: list[Path]) -> np.ndarray:
    """All files -> one [N, max_frames, 150] array, everything held in memory as the reference."""
    raw = pickle.loads(pickle.dumps([read_bodies(p) for p in paths]))  # raw_skes_data.pkl
    # raw_denoised_joints.pkl, written and read back as CTR-GCN does (this process's own data)
    denoised = pickle.loads(pickle.dumps([denoised_joints(r) for r in raw]))
    sequences = [translate(d) for d in denoised]
    aligned = np.zeros((len(sequences), max(len(s) for s in sequences), 150), dtype=np.float32)
    for k, seq in enumerate(sequences):
        aligned[k, : len(seq), : seq.shape[1]] = seq
    return aligned
