"""NTU RGB+D 60/120 raw ``.skeleton`` files -> denoised, centred joint arrays.

Numerically the same as the de-facto reference preprocessing (SGN / CTR-GCN's
``get_raw_skes_data.py`` -> ``get_raw_denoised_data.py`` -> ``seq_transformation.py``),
including its quirks (body intervals assumed contiguous, the second actor's interval starting
at frame 0), so that models trained on either output see the same numbers. Parsing is
vectorised: the joint lines of a batch of files go through one call of Arrow's CSV parser,
converting only x, y, z to floats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from actionlm.data.table import Rejection, Sample
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

    @property
    def last(self) -> int:
        # The reference assumes a body's appearances are contiguous (interval = first..first+n-1).
        return self.first + len(self.joints) - 1

    @cached_property
    def motion(self) -> float:
        """Computed only when two or more bodies survive denoising and must be ranked: most
        multi-body files keep one, and the variance is a good part of their parse time."""
        return _motion(self.joints)


def parse_ntu_name(stem: str, source: str) -> dict[str, int]:
    match = NTU_NAME.fullmatch(stem)
    if match is None:
        raise InputError(source, f"file name {stem!r} is not of the form SsssCcccPpppRrrrAaaa")
    setup, camera, subject, replication, action = (int(g) for g in match.groups())
    return dict(setup=setup, camera=camera, subject=subject, replication=replication,
                action=action)


_JOINT_COLUMNS = [str(i) for i in range(FIELDS_PER_JOINT)]
_CSV_READ = pa_csv.ReadOptions(column_names=_JOINT_COLUMNS, use_threads=False)
# Blank lines are rows (of one field: an error), so rows can be added (a stray '\r' splits a
# line) but never lost, and a batch's row count matches only when every file's does.
_CSV_PARSE = pa_csv.ParseOptions(delimiter=" ", ignore_empty_lines=False)
_CSV_CONVERT = pa_csv.ConvertOptions(
    include_columns=_JOINT_COLUMNS[:3], column_types={c: pa.float32() for c in _JOINT_COLUMNS[:3]}
)
# Arrow's default pool (mimalloc) hands a batch's megabytes back to the OS after each call,
# and faulting them in again cost a quarter of the parse time; malloc keeps them.
_CSV_MEMORY = pa.system_memory_pool()


# Every byte a joint line may contain; anything else (letters as in nan/inf, quotes, '_',
# non-ASCII) sends the file to the checked path, which also vets the 9 fields not converted.
_NUMBER_BYTES = b"0123456789+-.eE \t\r\n"
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class _JointBlocks:
    """Where a raw file's joint lines are: one 25-line block per tracked body per frame."""

    data: bytes  # the file without trailing whitespace
    first_lines: list[int]  # 0-based line index of each block's first joint line
    owners: list[tuple[bytes, int]]  # (body id, valid-frame index) of each block
    n_frames: int  # frames in which at least one body is tracked
    blocks: list[memoryview]  # each block's 25 lines: views of `data`, copied only when joined

    @property
    def text(self) -> bytes:
        """The joint lines, as the CSV parser reads them."""
        return b"\n".join(self.blocks)


def _find_joint_blocks(data: bytes, source: str) -> _JointBlocks:
    """Walk a file's frame/body/joint structure, dropping empty frames (get_raw_skes_data.py).

    Lines are located by one vectorised newline search rather than split into objects: the
    walk slices out only the count and body-info lines, and each 25-line joint block is one
    slice of the file."""
    if not data.strip():
        raise InputError(source, "empty file")
    if b"\x00" in data:
        raise InputError(source, "file contains NUL bytes (corrupt or incomplete copy)")
    data = data.rstrip()  # no trailing blank line: a missing frame is 'truncated'
    # Line i (0-based, as in data.split(b"\n")) is data[bounds[i] + 1 : bounds[i + 1]].
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    bounds = [-1, *newlines.tolist(), len(data)]
    n_lines = len(bounds) - 1

    def line_at(i: int) -> bytes:
        return data[bounds[i] + 1 : bounds[i + 1]]

    try:
        n_frames = int(line_at(0))
    except ValueError:
        raise InputError(
            source, f"line 1: expected the number of frames (an integer), got {line_at(0)[:40]!r}"
        ) from None
    if n_frames <= 0:
        raise InputError(source, f"declares {n_frames} frames")
    line = 1
    valid = -1
    owners: list[tuple[bytes, int]] = []  # (body id, valid-frame index)
    first_lines: list[int] = []
    frame, expected = 0, "a body count"
    try:  # hot loop: errors are diagnosed from `line` and `expected` when they happen
        for frame in range(n_frames):  # noqa: B007 - the except clauses report it
            expected = "a body count"
            n_bodies = int(data[bounds[line] + 1 : bounds[line + 1]])
            line += 1
            if n_bodies == 0:
                continue
            if n_bodies < 0:
                raise InputError(source, f"line {line}: negative body count {n_bodies}")
            valid += 1
            for _ in range(n_bodies):
                expected = "a body info line"
                body_id = data[bounds[line] + 1 : bounds[line + 1]].split(None, 1)[0]
                expected = "a joint count"
                n_joints = int(data[bounds[line + 1] + 1 : bounds[line + 2]])
                if n_joints != N_JOINTS:
                    raise InputError(
                        source, f"line {line + 2}: {n_joints} joints, expected {N_JOINTS}"
                    )
                line += 2
                owners.append((body_id, valid))
                first_lines.append(line)
                line += N_JOINTS
    except IndexError:
        raise InputError(source, f"truncated: file ends inside frame {frame + 1}") from None
    except ValueError:
        bad = line + (expected == "a joint count")
        raise InputError(
            source, f"line {bad + 1}: expected {expected} (an integer), got {line_at(bad)[:40]!r}"
        ) from None
    if line > n_lines or (first_lines and not line_at(line - 1).strip()):
        raise InputError(source, f"truncated: file ends inside frame {frame + 1}")
    if data[bounds[line] + 1 :].strip():
        raise InputError(
            source, f"line {line + 1}: content after the {n_frames} declared frames"
        )
    if valid < 0:
        raise InputError(source, f"all {n_frames} frames are empty (no body tracked)")
    view = memoryview(data)
    blocks = [view[bounds[i] + 1 : bounds[i + N_JOINTS]] for i in first_lines]
    return _JointBlocks(data, first_lines, owners, valid + 1, blocks)


def _xyz_fast(text: bytes, n_blocks: int) -> np.ndarray | None:
    """x, y, z of ``n_blocks`` 25-line joint blocks via Arrow's C++ CSV parser (which also
    insists on exactly 12 fields per line), or None on any irregularity; the checked path
    then names the offending line."""
    if text.translate(None, _NUMBER_BYTES):
        return None
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(text), read_options=_CSV_READ, parse_options=_CSV_PARSE,
            convert_options=_CSV_CONVERT, memory_pool=_CSV_MEMORY,
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != N_JOINTS * n_blocks or any(c.null_count for c in table.columns):
        return None  # an empty field is a null: the checked path counts the fields
    xyz = np.column_stack([_float32_values(column) for column in table.columns])
    return xyz.reshape(-1, N_JOINTS, 3)


def _float32_values(column: pa.ChunkedArray) -> np.ndarray:
    """A null-free float32 column as numpy, read from its buffers: pyarrow's to_numpy()
    imports pandas, which would cost each worker process a few tenths of a second."""
    return np.concatenate([
        np.frombuffer(chunk.buffers()[1], np.float32, len(chunk), 4 * chunk.offset)
        for chunk in column.chunks
    ])


def _xyz_of_files(files: list[_JointBlocks]) -> list[np.ndarray | None]:
    """x, y, z of each file's joint blocks: one CSV call for the whole batch (the parser's
    fixed cost per call is about a tenth of a file's parse), per file when the batch call
    balks, and None for a file that needs the checked path."""
    if len(files) > 1:
        counts = [len(f.first_lines) for f in files]
        xyz = _xyz_fast(b"\n".join(chain.from_iterable(f.blocks for f in files)), sum(counts))
        if xyz is not None:
            return np.split(xyz, np.cumsum(counts)[:-1])
    return [_xyz_fast(f.text, len(f.first_lines)) for f in files]


def _xyz_checked(blocks: _JointBlocks, source: str) -> np.ndarray:
    """Slow line-by-line path that names the offending line; used when the fast path balks."""
    lines = blocks.data.split(b"\n")
    joint_lines = (np.asarray(blocks.first_lines)[:, None] + np.arange(N_JOINTS)).reshape(-1)
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


def _raw_bodies(blocks: _JointBlocks, xyz: np.ndarray | None, source: str) -> dict[bytes, RawBody]:
    """A file's bodies keyed by body id, from its joint blocks and their x, y, z (None: read
    them with the checked path)."""
    if xyz is None:
        xyz = _xyz_checked(blocks, source)
    if not np.isfinite(xyz).all():
        bad = int(np.flatnonzero(~np.isfinite(xyz).reshape(-1, 3).all(axis=1))[0])
        line_no = blocks.first_lines[bad // N_JOINTS] + bad % N_JOINTS + 1
        raise InputError(source, f"line {line_no}: non-finite coordinate (nan/inf)")
    appearances: dict[bytes, list[int]] = {}
    firsts: dict[bytes, int] = {}
    for k, (body_id, frame) in enumerate(blocks.owners):
        appearances.setdefault(body_id, []).append(k)
        firsts.setdefault(body_id, frame)
    return {b: RawBody(xyz[idx], firsts[b]) for b, idx in appearances.items()}


def read_raw_bodies(data: bytes, source: str) -> tuple[dict[bytes, RawBody], int]:
    """Parse one file into bodies keyed by body id, and its number of non-empty frames."""
    blocks = _find_joint_blocks(data, source)
    (xyz,) = _xyz_of_files([blocks])
    return _raw_bodies(blocks, xyz, source), blocks.n_frames


def _motion(joints: np.ndarray) -> float:
    """Motion amount: the summed per-axis variance of all joint positions (float32)."""
    return np.sum(np.var(joints.reshape(-1, 3), axis=0))


def _noisy_frame_mask(joints: np.ndarray) -> np.ndarray:
    # Per-axis views: numpy reduces a 25-long strided row far faster than the middle axis.
    x, y = joints[:, :, 0], joints[:, :, 1]
    return x.max(axis=1) - x.min(axis=1) > NOISE_SPREAD_RATIO * (y.max(axis=1) - y.min(axis=1))


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
    ranked = list(kept.values())
    if len(ranked) > 1:
        ranked.sort(key=lambda body: body.motion, reverse=True)
    return ranked


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


def _joints_from_bodies(bodies: dict[bytes, RawBody], n_frames: int, source: str) -> np.ndarray:
    """Denoised, centred float32 joints [frames, 1 or 2 bodies, 25, 3] of a file's bodies."""
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


def ntu_joints_from_bytes(data: bytes, source: str) -> np.ndarray:
    """Denoised, centred float32 joints [frames, 1 or 2 bodies, 25, 3] of one raw file."""
    return _joints_from_bodies(*read_raw_bodies(data, source), source)


def _open_ntu_file(path: Path) -> tuple[dict[str, int], _JointBlocks]:
    source = str(path)
    meta = parse_ntu_name(path.name.removesuffix(".skeleton"), source)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(source, f"cannot read: {err.strerror or err}") from None
    return meta, _find_joint_blocks(data, source)


def _ntu_sample(path: Path, meta: dict[str, int], blocks: _JointBlocks,
                xyz: np.ndarray | None) -> Sample:
    source = str(path)
    joints = _joints_from_bodies(_raw_bodies(blocks, xyz, source), blocks.n_frames, source)
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


def load_ntu_file(path: str | Path) -> Sample:
    path = Path(path)
    meta, blocks = _open_ntu_file(path)
    (xyz,) = _xyz_of_files([blocks])
    return _ntu_sample(path, meta, blocks, xyz)


def load_ntu_files(paths: list[Path]) -> list[Sample | Rejection]:
    """Each file as a Sample, or as a Rejection saying why it cannot be used; the joint lines
    of all readable files go through the CSV parser in one call."""
    opened: list[tuple[Path, dict[str, int], _JointBlocks] | Rejection] = []
    for path in map(Path, paths):
        try:
            opened.append((path, *_open_ntu_file(path)))
        except InputError as err:
            opened.append(Rejection(err.source, err.reason, path.stem))
    readable = [item for item in opened if not isinstance(item, Rejection)]
    xyz = iter(_xyz_of_files([blocks for _, _, blocks in readable]))
    results: list[Sample | Rejection] = []
    for item in opened:
        if not isinstance(item, Rejection):
            try:
                item = _ntu_sample(*item, next(xyz))
            except InputError as err:
                item = Rejection(err.source, err.reason, item[0].stem)
        results.append(item)
    return results
