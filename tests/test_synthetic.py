"""Synthetic NTU RGB+D files: format, determinism, NTU split semantics, realism and difficulty."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from actionlm.data import synthetic
from actionlm.data.classes import NTU120_CLASS_NAMES, NTU_MUTUAL_ACTIONS
from actionlm.data.synthetic import SYNTHETIC_ACTIONS, generate_ntu_files, write_ntu_skeleton

NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})\.skeleton")
# CTR-GCN's NTU bones (child, parent), 1-based.
BONES = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
         (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
         (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]
CHILD, PARENT = (np.array(b) - 1 for b in zip(*BONES, strict=True))
XSUB_TRAIN = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
# Bones away from the (noisier) wrists and hands.
STEADY = [b for b, bone in enumerate(BONES) if not set(bone) & {7, 8, 11, 12, 22, 23, 24, 25}]
END_JOINTS = [3, 15, 19, 21, 22, 23, 24]  # head, feet, hand tips, thumbs (0-based)
N_SUBJECTS, N_REPS = 10, 2


def read_skeleton(path: Path) -> tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Minimal strict reader: frame count and {body id: (frame indices, xyz (n, 25, 3))}."""
    text = path.read_bytes().decode("ascii")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    n_frames, i, bodies = int(lines[0]), 1, {}
    for f in range(n_frames):
        n_bodies, i = int(lines[i]), i + 1
        for _ in range(n_bodies):
            info = lines[i].split()
            assert len(info) == 10 and lines[i + 1] == "25"
            rows = np.array([r.split() for r in lines[i + 2:i + 27]], float)
            assert rows.shape == (25, 12)
            bodies.setdefault(int(info[0]), ([], []))[0].append(f)
            bodies[int(info[0])][1].append(rows[:, :3])
            i += 27
    assert i == len(lines)
    return n_frames, {b: (np.array(fs), np.stack(x)) for b, (fs, x) in bodies.items()}


def spread_flags(xyz: np.ndarray) -> np.ndarray:
    """Frames CTR-GCN's denoising calls noisy: x-spread > 0.8 * y-spread."""
    x, y = np.ptp(xyz[..., 0], axis=1), np.ptp(xyz[..., 1], axis=1)
    return x > 0.8 * y


def denoise(bodies: dict) -> dict:
    """CTR-GCN's rules: drop bodies tracked <= 11 frames or noisy in >= 69.754 % of their frames."""
    return {b: v for b, v in bodies.items()
            if len(v[0]) > 11 and spread_flags(v[1]).mean() < 0.69754}


def ids(path: Path) -> tuple[int, ...]:
    return tuple(int(g) for g in NAME.fullmatch(path.name).groups())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[Path, tuple[int, dict]]:
    out = tmp_path_factory.mktemp("ntu")
    paths = generate_ntu_files(out, n_subjects=N_SUBJECTS, n_replications=N_REPS,
                               frames=(30, 50), workers=2)
    assert paths == sorted(out.iterdir())
    return {p: read_skeleton(p) for p in paths}


def test_action_set_follows_ntu() -> None:
    assert len(SYNTHETIC_ACTIONS) >= 12
    assert len(set(SYNTHETIC_ACTIONS) & NTU_MUTUAL_ACTIONS) >= 2
    assert all(1 <= a <= len(NTU120_CLASS_NAMES) for a in SYNTHETIC_ACTIONS)


def test_deterministic_bytes_regardless_of_workers(tmp_path: Path) -> None:
    kw = {"actions": (10, 58), "n_subjects": 2, "n_replications": 1, "frames": (20, 30)}
    a = generate_ntu_files(tmp_path / "a", seed=3, **kw)
    b = generate_ntu_files(tmp_path / "b", seed=3, workers=2, **kw)
    c = generate_ntu_files(tmp_path / "c", seed=4, **kw)
    assert [p.name for p in a] == [p.name for p in b] == [p.name for p in c]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b, strict=True))
    assert all(p.read_bytes() != q.read_bytes() for p, q in zip(a, c, strict=True))


def test_rejects_unknown_actions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no synthetic motion"):
        generate_ntu_files(tmp_path, actions=(120,))


def test_names_cover_every_combination(dataset) -> None:
    got = sorted(ids(p) for p in dataset)
    want = sorted((1, c, p, r, a) for c in (1, 2, 3) for p in range(1, N_SUBJECTS + 1)
                  for r in range(1, N_REPS + 1) for a in SYNTHETIC_ACTIONS)
    assert got == want


def test_write_ntu_skeleton_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    xyz = rng.normal(0, 0.5, (2, 25, 3)) + np.array([0.0, 0.0, 3.0])
    path = tmp_path / "S001C001P001R001A001.skeleton"
    write_ntu_skeleton(path, [[(72057594037937513, xyz[0])], [], [(5, xyz[0]), (6, xyz[1])]])
    raw = path.read_bytes()
    assert raw.startswith(b"3\r\n1\r\n72057594037937513 ") and b"\r\n0\r\n2\r\n5 " in raw
    n_frames, bodies = read_skeleton(path)
    assert n_frames == 3 and sorted(bodies) == [5, 6, 72057594037937513]
    assert bodies[5][0].tolist() == [2]
    np.testing.assert_allclose(bodies[6][1][0], xyz[1], rtol=1e-6, atol=1e-7)
    joint = np.array(raw.split(b"\r\n")[4].split(), float)
    assert joint[-1] == 2 and np.isclose(np.linalg.norm(joint[7:11]), 1, atol=1e-5)
    head = np.array(raw.split(b"\r\n")[7].split(), float)
    assert np.all(head[7:11] == 0)  # Kinect gives end joints no orientation
    assert 0 < joint[3] < 512 and 0 < joint[5] < 1920  # depth / colour pixels of a visible joint


def test_reader_reads_real_ntu_files_alike(shared: Path) -> None:
    """The strict reader used on synthetic files also accepts real NTU dumps (same layout)."""
    for path in sorted((shared / "datasets" / "ntu-samples" / "raw").glob("*.skeleton")):
        n_frames, bodies = read_skeleton(path)
        _, xyz = max(bodies.values(), key=lambda v: len(v[0]))
        assert len(xyz) == n_frames and np.all(xyz[..., 2] > 1)


def test_fields_are_plausible(dataset) -> None:
    path = next(p for p in dataset if ids(p)[4] == 58)
    rows = [line.split() for line in path.read_bytes().decode().split("\r\n") if
            len(line.split()) == 12]
    joints = np.array(rows, float)
    assert len(joints) % 25 == 0 and np.all(joints[:, 11] == 2)
    assert 1.5 < np.median(joints[:, 2]) < 5.0  # Kinect depth range, metres
    norms = np.linalg.norm(joints[:, 7:11], axis=1).reshape(-1, 25)
    np.testing.assert_allclose(np.delete(norms, END_JOINTS, axis=1), 1, atol=1e-5)
    assert np.all(norms[:, END_JOINTS] == 0)
    info = [line.split() for line in path.read_bytes().decode().split("\r\n") if
            len(line.split()) == 10]
    assert all(int(r[0]) > 2**56 for r in info)


def test_cameras_film_one_performance_from_ntu_angles(dataset) -> None:
    """R001 faces C002 (+45 deg), R002 faces C003 (-45 deg); C001 sits in between at 0 deg."""
    facing: dict[tuple[int, int], list[float]] = {}
    frames: dict[tuple, set[int]] = {}
    for p, (n, bodies) in dataset.items():
        _, cam, subj, rep, act = ids(p)
        frames.setdefault((subj, rep, act), set()).add(n)
        if act in NTU_MUTUAL_ACTIONS:
            continue
        _, xyz = max(bodies.values(), key=lambda v: len(v[0]))
        shoulders = xyz[0, 8] - xyz[0, 4]  # right minus left shoulder, first frame
        facing.setdefault((rep, cam), []).append(np.degrees(np.arctan2(shoulders[2], shoulders[0])))
    assert all(len(s) == 1 for s in frames.values())  # the three cameras share the frame count
    expected = {(1, 1): -45, (1, 2): 0, (1, 3): -90, (2, 1): 45, (2, 2): 90, (2, 3): 0}
    for key, angle in expected.items():
        assert abs(np.mean(facing[key]) - angle) < 10, (key, np.mean(facing[key]))


def test_forward_kinematics_keeps_bone_lengths() -> None:
    for action in (6, 27, 43, 55):
        for stage in synthetic._perform(0, 1, 3, 1, action, (40, 60), 10):
            lengths = np.linalg.norm(stage[:, CHILD] - stage[:, PARENT], axis=-1)
            assert np.ptp(lengths, axis=0).max() < 1e-9


def test_motion_programs_do_what_their_names_say() -> None:
    """Clean stage joints (floor y = 0, metres) of a few takes per class."""
    def takes(action: int) -> list[list[np.ndarray]]:
        return [synthetic._perform(0, 1, s, r, action, (40, 80), 10) for s in (1, 4, 7)
                for r in (1, 2)]

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b, axis=-1).min())

    for (body,) in takes(10):  # clapping: the hands meet
        assert gap(body[:, 7], body[:, 11]) < 0.06
    for a, b in takes(58):  # handshake: the right hands meet
        assert gap(a[:, 11], b[:, 11]) < 0.06
    for a, b in takes(55):  # hugging: pelvises come close
        assert gap(a[:, 0], b[:, 0]) < 0.5
    for (body,) in takes(38):  # salute: a hand at the head
        assert min(gap(body[:, h], body[:, 3]) for h in (7, 11)) < 0.16
    for (body,) in takes(8):  # sitting down: the pelvis drops
        assert body[0, 0, 1] - body[-1, 0, 1] > 0.2
    for (body,) in takes(27):  # jump up: both feet leave the floor
        assert body[:, [15, 19], 1].min(1).max() > 0.06
    for (body,) in takes(24):  # kicking: a foot swings up
        assert body[:, [15, 19], 1].max() > 0.4
    for (body,) in takes(43):  # falling: the head ends near the floor
        assert body[-1, 3, 1] < 0.6


def test_bone_lengths_constant_per_body_and_per_subject(dataset) -> None:
    per_subject: dict[int, list[np.ndarray]] = {}
    for p, (_, bodies) in dataset.items():
        if ids(p)[4] in NTU_MUTUAL_ACTIONS:
            continue  # the partner is another subject
        _, xyz = max(denoise(bodies).values(), key=lambda v: len(v[0]))
        lengths = np.linalg.norm(xyz[:, CHILD] - xyz[:, PARENT], axis=-1)
        # jitter only: real NTU bones deviate by ~1 cm typically, up to ~5 cm for hands and feet
        deviation = np.median(np.abs(lengths - np.median(lengths, 0)), 0)
        assert deviation[STEADY].max() < 0.04 and deviation.max() < 0.06
        per_subject.setdefault(ids(p)[2], []).append(np.median(lengths, 0))
    means = np.array([np.mean(v, 0) for v in per_subject.values()])
    within = np.mean([np.std(v, 0) for v in per_subject.values()], 0)
    between = means.std(0)
    trunk_leg_arm = [0, 1, 5, 6, 13, 14]
    assert np.all(between[trunk_leg_arm] > 1.5 * within[trunk_leg_arm])
    arm_to_leg = (means[:, 5] + means[:, 6]) / (means[:, 13] + means[:, 14])
    assert np.ptp(arm_to_leg) > 0.05  # proportions differ, not just overall size
    assert np.ptp(means[:, [13, 14]].sum(1)) > 0.08  # legs differ by > 8 cm between subjects


def test_two_person_actions_have_two_bodies_every_frame(dataset) -> None:
    for p, (n, bodies) in dataset.items():
        real = denoise(bodies)
        if ids(p)[4] in NTU_MUTUAL_ACTIONS:
            assert len(real) == 2
            assert all(len(frames) == n for frames, _ in real.values())
        else:
            assert len(real) == 1


def test_dirt_is_present_and_denoising_removes_only_it(dataset) -> None:
    empty = spurious = short = wide = 0
    for p, (n, bodies) in dataset.items():
        seen = np.zeros(n, int)
        for frames, _ in bodies.values():
            seen[frames] += 1
        empty += bool((seen == 0).any())
        expected = 2 if ids(p)[4] in NTU_MUTUAL_ACTIONS else 1
        spurious += len(bodies) > expected
        short += any(len(f) <= 11 for f, _ in bodies.values())
        wide += any(len(f) > 11 and spread_flags(x).mean() >= 0.69754 for f, x in bodies.values())
    assert 0.02 * len(dataset) < empty < 0.1 * len(dataset)
    assert 0.05 * len(dataset) < spurious < 0.2 * len(dataset)
    assert short > 10 and wide > 10


def test_real_bodies_are_taller_than_wide_from_every_camera(dataset) -> None:
    flagged: dict[tuple[int, int], list[float]] = {}
    for p, (_, bodies) in dataset.items():
        for _, xyz in denoise(bodies).values():
            flagged.setdefault((ids(p)[1], ids(p)[4]), []).append(spread_flags(xyz).mean())
    for (camera, action), fractions in flagged.items():
        assert max(fractions) < 0.55, (camera, action)  # well below the 69.754 % cut
        if action != 43:  # only a faller, lying on the floor at the end, is often wide
            assert np.mean(fractions) < 0.08, (camera, action)


def features(n: int, bodies: dict, length: int = 32) -> np.ndarray:
    """Up to two most active denoised bodies, centred on frame 0's mid-spine, resized in time."""
    ranked = sorted(denoise(bodies).values(), key=lambda v: -v[1].var(0).sum())[:2]
    seq = np.zeros((n, 2, 25, 3))
    for k, (frames, xyz) in enumerate(ranked):
        seq[frames, k] = xyz
    seq = seq[np.isin(np.arange(n), np.concatenate([f for f, _ in ranked]))]
    seq = np.where(np.any(seq != 0, -1, keepdims=True), seq - seq[0, 0, 1], 0)
    t = np.linspace(0, len(seq) - 1, length)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(seq) - 1)
    w = (t - lo)[:, None, None, None]
    return ((1 - w) * seq[lo] + w * seq[hi]).ravel()


def nearest_centroid_accuracy(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    classes = np.unique(y[train])
    centroids = np.stack([x[train & (y == c)].mean(0) for c in classes])
    dist = ((x[~train, None] - centroids[None]) ** 2).sum(-1)
    return float((classes[dist.argmin(1)] == y[~train]).mean())


def test_nearest_centroid_is_far_from_perfect_and_from_chance(dataset) -> None:
    x = np.stack([features(n, bodies) for n, bodies in dataset.values()])
    meta = np.array([ids(p) for p in dataset])
    y = meta[:, 4]
    xsub = nearest_centroid_accuracy(x, y, np.isin(meta[:, 2], XSUB_TRAIN))
    xview = nearest_centroid_accuracy(x, y, meta[:, 1] != 1)
    assert 0.35 <= xsub <= 0.70, xsub
    assert 0.35 <= xview <= 0.70, xview
