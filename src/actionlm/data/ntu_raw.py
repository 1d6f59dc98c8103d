"""NTU RGB+D 60/120 raw ``.skeleton`` files -> denoised, centred joint arrays.

Numerically the same as the de-facto reference preprocessing (SGN / CTR-GCN's
``get_raw_skes_data.py`` -> ``get_raw_denoised_data.py`` -> ``seq_transformation.py``),
including its quirks (body intervals assumed contiguous, the second actor's interval starting
at frame 0), so that models trained on either output see the same numbers. Parsing is
vectorised: joint lines go through Arrow's CSV parser, converting only x, y, z to floats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from actionlm.data.table import Sample
from actionlm.errors import InputError

NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
N_JOINTS = 25
FIELDS_PER_JOINT = 12
CENTER_JOINT = 1  # 0-based: joint 2, the middle of the spine

# Denoising thresholds of the reference (get_raw_denoised_data.py).
NOISE_LENGTH_MAX = 11  # bodies tracked in <= 11 frames are noise
NOISE_SPREAD_RATIO = 0.8  # a frame is noisy when x-spread > 0.8 * y-spread
NOISE_SPREAD_FRACTION = 0.69754  # a body with >= this fraction of noisy frames is dropped


@dataclass
class RawBody:
    joints: np.ndarray  # float32 [appearances, 25, 3], in order of appearance
    first: int  # valid-frame index of the first appearance
    motion: float = 0.0

    @property
    def last(self) -> int:
        # The reference assumes a body's appearances are contiguous (interval = first..first+n-1).
        return self.first + len(self.joints) - 1


def parse_ntu_name(stem: str, source: str) -> dict[str, int]:
    match = NTU_NAME.fullmatch(stem)
    if match is None:
        raise InputError(source, f"file name {stem!r} is not of the form SsssCcccPpppRrrrAaaa")
    setup, camera, subject, replication, action = (int(g) for g in match.groups())
    return dict(setup=setup, camera=camera, subject=subject, replication=replication,
                action=action)


def _count(lines: list[bytes], i: int, what: str, source: str) -> int:
    if i >= len(lines):
        raise InputError(source, f"truncated: file ends at line {i + 1} where {what} was expected")
    try:
        return int(lines[i])
    except ValueError:
        raise InputError(
            source, f"line {i + 1}: expected {what} (an integer), got {lines[i][:40]!r}"
        ) from None


_JOINT_COLUMNS = [str(i) for i in range(FIELDS_PER_JOINT)]
_CSV_READ = pa_csv.ReadOptions(column_names=_JOINT_COLUMNS, use_threads=False)
_CSV_PARSE = pa_csv.ParseOptions(delimiter=" ")
_CSV_CONVERT = pa_csv.ConvertOptions(
    include_columns=_JOINT_COLUMNS[:3], column_types={c: pa.float32() for c in _JOINT_COLUMNS[:3]}
)


# Every byte a joint line may contain; anything else (letters as in nan/inf, quotes, '_',
# non-ASCII) sends the file to the checked path, which also vets the 9 fields not converted.
_NUMBER_BYTES = b"0123456789+-.eE \t\r\n"
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _xyz_fast(lines: list[bytes], block_starts: list[int]) -> np.ndarray | None:
    """x, y, z of the 25-line joint blocks via Arrow's C++ CSV parser (which also insists on
    exactly 12 fields per line), or None on any irregularity; the checked path then names
    the offending line."""
    text = b"\n".join(chain.from_iterable(lines[i : i + N_JOINTS] for i in block_starts))
    if text.translate(None, _NUMBER_BYTES):
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(text), read_options=_CSV_READ, parse_options=_CSV_PARSE,
            convert_options=_CSV_CONVERT,
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != N_JOINTS * len(block_starts):
        return None
    xyz = np.column_stack([column.to_numpy() for column in table.columns])
    return xyz.reshape(-1, N_JOINTS, 3)


def _xyz_checked(lines: list[bytes], joint_lines: np.ndarray, source: str) -> np.ndarray:
    """Slow line-by-line path that names the offending line; used when the fast path balks."""
    xyz = np.empty((len(joint_lines), 3), dtype=np.float32)
    for row, i in enumerate(joint_lines):
        fields = lines[i].split()
        if len(fields) != FIELDS_PER_JOINT:
            raise InputError(
                source, f"line {i + 1}: {len(fields)} fields, a joint line has {FIELDS_PER_JOINT}"
            )
        for k, field in enumerate(fields):
            if _NUMBER.fullmatch(field) is None:
                try:
                    kind = "non-numeric" if math.isfinite(float(field)) else "non-finite"
                except ValueError:
                    kind = "non-numeric"
                what = "coordinate" if k < 3 else f"value in field {k + 1}"
                raise InputError(source, f"line {i + 1}: {kind} {what} {field[:20]!r}")
        xyz[row] = [float(f) for f in fields[:3]]
    return xyz.reshape(-1, N_JOINTS, 3)


def read_raw_bodies(data: bytes, source: str) -> tuple[dict[bytes, RawBody], int]:
    """Parse a file into bodies keyed by body id; drop empty frames (get_raw_skes_data.py)."""
    if not data.strip():
        raise InputError(source, "empty file")
    if b"\x00" in data:
        raise InputError(source, "file contains NUL bytes (corrupt or incomplete copy)")
    lines = data.rstrip().split(b"\n")  # no trailing blank line: a missing frame is 'truncated'
    n_frames = _count(lines, 0, "the number of frames", source)
    if n_frames <= 0:
        raise InputError(source, f"declares {n_frames} frames")
    line = 1
    valid = -1
    occurrences: list[tuple[bytes, int]] = []  # (body id, valid-frame index)
    joint_line_starts: list[int] = []
    frame, expected = 0, "a body count"
    try:  # hot loop: errors are diagnosed from `line` and `expected` when they happen
        for frame in range(n_frames):
            expected = "a body count"
            n_bodies = int(lines[line])
            line += 1
            if n_bodies == 0:
                continue
            if n_bodies < 0:
                raise InputError(source, f"line {line}: negative body count {n_bodies}")
            valid += 1
            for _ in range(n_bodies):
                expected = "a body info line"
                body_id = lines[line].split(None, 1)[0]
                expected = "a joint count"
                n_joints = int(lines[line + 1])
                if n_joints != N_JOINTS:
                    raise InputError(
                        source, f"line {line + 2}: {n_joints} joints, expected {N_JOINTS}"
                    )
                line += 2
                occurrences.append((body_id, valid))
                joint_line_starts.append(line)
                line += N_JOINTS
    except IndexError:
        raise InputError(source, f"truncated: file ends inside frame {frame + 1}") from None
    except ValueError:
        bad = line + (expected == "a joint count")
        raise InputError(
            source, f"line {bad + 1}: expected {expected} (an integer), got {lines[bad][:40]!r}"
        ) from None
    if line > len(lines) or (joint_line_starts and not lines[line - 1].strip()):
        raise InputError(source, f"truncated: file ends inside frame {frame + 1}")
    if any(extra.strip() for extra in lines[line:]):
        raise InputError(
            source, f"line {line + 1}: content after the {n_frames} declared frames"
        )
    if valid < 0:
        raise InputError(source, f"all {n_frames} frames are empty (no body tracked)")

    xyz = _xyz_fast(lines, joint_line_starts)
    if xyz is None:
        joint_lines = (np.asarray(joint_line_starts)[:, None] + np.arange(N_JOINTS)).reshape(-1)
        xyz = _xyz_checked(lines, joint_lines, source)
    if not np.isfinite(xyz).all():
        bad = int(np.flatnonzero(~np.isfinite(xyz).reshape(-1, 3).all(axis=1))[0])
        line_no = joint_line_starts[bad // N_JOINTS] + bad % N_JOINTS + 1
        raise InputError(source, f"line {line_no}: non-finite coordinate (nan/inf)")

    appearances: dict[bytes, list[int]] = {}
    firsts: dict[bytes, int] = {}
    for k, (body_id, frame) in enumerate(occurrences):
        appearances.setdefault(body_id, []).append(k)
        firsts.setdefault(body_id, frame)
    bodies = {b: RawBody(xyz[idx], firsts[b]) for b, idx in appearances.items()}
    if len(bodies) > 1:
        for body in bodies.values():
            body.motion = _motion(body.joints)
    return bodies, valid + 1


def _motion(joints: np.ndarray) -> float:
    """Motion amount: the summed per-axis variance of all joint positions (float32)."""
    return np.sum(np.var(joints.reshape(-1, 3), axis=0))


def _noisy_frame_mask(joints: np.ndarray) -> np.ndarray:
    spread = joints.max(axis=1) - joints.min(axis=1)  # [appearances, 3]
    return spread[:, 0] > NOISE_SPREAD_RATIO * spread[:, 1]


def denoise_bodies(bodies: dict[bytes, RawBody], source: str) -> list[RawBody]:
    """Drop noisy bodies by length, then by spread; return the rest, most motion first."""
    kept = {b: body for b, body in bodies.items() if len(body.joints) > NOISE_LENGTH_MAX}
    if not kept:
        raise InputError(source, f"no body is tracked in more than {NOISE_LENGTH_MAX} frames")
    if len(kept) > 1:
        for body_id in list(kept):
            if len(kept) == 1:
                break
            body = kept[body_id]
            noisy = _noisy_frame_mask(body.joints)
            n_noisy = int(noisy.sum())
            if n_noisy == 0:
                continue
            if n_noisy / len(noisy) >= NOISE_SPREAD_FRACTION:
                del kept[body_id]
            else:
                body.motion = min(body.motion, _motion(body.joints[~noisy]))
    return sorted(kept.values(), key=lambda body: body.motion, reverse=True)


def assign_actors(bodies: list[RawBody], n_frames: int) -> np.ndarray:
    """Place the main actor and at most one other in a [frames, 2, 25, 3] array
    (get_two_actors_points); bodies overlapping both actors are dropped."""
    out = np.zeros((n_frames, 2, N_JOINTS, 3), dtype=np.float32)
    main = bodies[0]
    out[main.first : main.last + 1, 0] = main.joints
    start1, end1 = main.first, main.last
    start2, end2 = 0, 0  # the reference's virtual initial interval of actor 2
    for body in bodies[1:]:
        start, end = body.first, body.last
        if min(end1, end) - max(start1, start) <= 0:
            out[start : end + 1, 0] = body.joints
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:
            out[start : end + 1, 1] = body.joints
            start2, end2 = min(start, start2), max(end, end2)
    return out


def center_on_first_frame(joints: np.ndarray, center_joint: int, source: str) -> np.ndarray:
    """Translate so that ``center_joint`` of body 0 in its first non-zero frame is the origin;
    all-zero (missing) body slots stay zero (seq_transformation.seq_translation)."""
    present = joints.reshape(joints.shape[0], joints.shape[1], -1).any(axis=2)  # [T, M]
    first = np.flatnonzero(present[:, 0])
    if first.size == 0:
        raise InputError(source, "the main body has no non-zero frame")
    origin = joints[first[0], 0, center_joint].copy()
    centered = joints - origin
    centered[~present] = 0.0
    return centered


def ntu_joints_from_bytes(data: bytes, source: str) -> np.ndarray:
    """Denoised, centred float32 joints [frames, 1 or 2 bodies, 25, 3] of one raw file."""
    bodies, n_frames = read_raw_bodies(data, source)
    if len(bodies) == 1:
        (body,) = bodies.values()
        joints = np.zeros((n_frames, 1, N_JOINTS, 3), dtype=np.float32)
        joints[body.first : body.last + 1, 0] = body.joints
    else:
        ranked = denoise_bodies(bodies, source)
        if len(ranked) == 1:
            joints = np.zeros((n_frames, 1, N_JOINTS, 3), dtype=np.float32)
            joints[ranked[0].first : ranked[0].last + 1, 0] = ranked[0].joints
        else:
            joints = assign_actors(ranked, n_frames)
        # remove_missing_frames: drop frames in which every kept body is absent.
        joints = joints[joints.reshape(n_frames, -1).sum(axis=1) != 0]
        if joints.shape[0] == 0:
            raise InputError(source, "no frame left after denoising")
    return center_on_first_frame(joints, CENTER_JOINT, source)


def load_ntu_file(path: str | Path) -> Sample:
    path = Path(path)
    source = str(path)
    meta = parse_ntu_name(path.name.removesuffix(".skeleton"), source)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(source, f"cannot read: {err.strerror or err}") from None
    joints = ntu_joints_from_bytes(data, source)
    return Sample(
        sample_id=path.name.removesuffix(".skeleton"),
        native_action=meta["action"],
        joints=joints,
        source=source,
        subject=meta["subject"],
        camera=meta["camera"],
        setup=meta["setup"],
        replication=meta["replication"],
    )
