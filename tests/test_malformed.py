"""Malformed-input corpus: bad input never passes silently.

Every kind of broken input is built here, in tmp_path, from real sample files of the shared
folder (only read, never copied into the repository). Without ``--strict`` a broken sample is
skipped and listed in ``DIR/rejected.parquet`` with its file and an informative reason, the
good samples beside it still reach ``DIR/skeletons.parquet``, and the summary line counts the
rejections. With ``--strict`` the command stops at the first one: exit code 2, one
``actionlm: error:`` line on stderr naming the file, no traceback, and neither the output
folder nor a ``.partial`` staging folder left behind. A broken whole input (an npz or pickle
that cannot be opened, an empty folder) is a command error in both modes.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from actionlm.cli import main

NTU_RAW = "datasets/ntu-samples/raw"
NTU_GOOD = ("S001C001P003R002A005", "S001C001P004R001A017")  # 68 frames, 2 bodies; 97, 1 body
NTU_ARGS = ("--dataset", "ntu60", "--protocols", "xsub")  # xview needs more than one camera
NW_UCLA = "datasets/nw-ucla/all_sqe"
NW_UCLA_GOOD = ("a01_s01_e00_v01", "a02_s01_e00_v01")
NPZ = "datasets/ntu-samples/ctrgcn-npz/NTU60_CS.npz"


# --------------------------------------------------------------------------- running the CLI


@dataclass
class Result:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The one line a failed command may print: exactly one, and no traceback."""
        assert "Traceback" not in self.out + self.err
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.err!r}"
        assert lines[0].startswith("actionlm: error: "), lines[0]
        return lines[0]


def prepare_cli(capsys, fmt: str, src: Path | None, out: Path, *extra: str) -> Result:
    argv = ["prepare", "--format", fmt, "--out", str(out), "--workers", "1", *extra]
    if src is not None:
        argv += ["--src", str(src)]
    code = main(argv)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was created by a failed command"
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "staging folder left behind"


def assert_rejected(out: Path, expected: dict[str, str]) -> pd.DataFrame:
    """``rejected.parquet`` lists exactly the sources of ``expected``, each with a reason that
    contains the expected substring."""
    rejected = pd.read_parquet(out / "rejected.parquet")
    reasons = dict(zip(rejected["source"], rejected["reason"]))
    assert len(reasons) == len(rejected), "a source is listed twice"
    assert sorted(reasons) == sorted(expected)
    wrong = {s: (want, reasons[s]) for s, want in expected.items() if want not in reasons[s]}
    assert not wrong, f"reasons lack the expected words (expected, got): {wrong}"
    return rejected


def assert_summary(result: Result, n_samples: int, n_rejected: int) -> None:
    assert result.code == 0, result.err
    first = result.out.splitlines()[0]
    assert first.startswith(f"prepared {n_samples} samples, rejected {n_rejected}; "), first
    listed = [line for line in result.out.splitlines() if line.startswith("  rejected ")]
    assert len(listed) == min(n_rejected, 20)
    if n_rejected > 20:
        assert f"  ... {n_rejected - 20} more in " in result.out


# --------------------------------------------------------------------------- NTU raw corpus

CRLF = b"\r\n"


def ntu_frames(data: bytes) -> list[list[bytes]]:
    """The frames of a well-formed raw file, each as its lines (body count first)."""
    lines = data.split(CRLF)
    frames, i = [], 1
    for _ in range(int(lines[0])):
        end = i + 1 + int(lines[i]) * (2 + 25)
        frames.append(lines[i:end])
        i = end
    assert not any(lines[i:]), "not a well-formed file"
    return frames


def ntu_file(frames: list[list[bytes]], n_frames: int | str | None = None) -> bytes:
    header = str(len(frames) if n_frames is None else n_frames).encode()
    return CRLF.join([header, *(line for frame in frames for line in frame)]) + CRLF


def set_field(frames: list[list[bytes]], field: int, value: bytes, frame=4, joint=3) -> bytes:
    """Replace one of the 12 fields of a joint line of the first body (lines: body count,
    body info, joint count, then the joints)."""
    frames = [list(f) for f in frames]
    fields = frames[frame][3 + joint].split(b" ")
    assert len(fields) == 12
    fields[field] = value
    frames[frame][3 + joint] = b" ".join(fields)
    return ntu_file(frames)


def set_line(frames: list[list[bytes]], frame: int, index: int, value: bytes) -> bytes:
    frames = [list(f) for f in frames]
    frames[frame][index] = value
    return ntu_file(frames)


def truncated_mid_frame(one: list[list[bytes]]) -> bytes:
    frames = [list(f) for f in one[:41]]
    frames[-1] = frames[-1][: 3 + 10]  # frame 41 keeps 10 of its 25 joint lines
    return ntu_file(frames, n_frames=len(one))


def truncated_mid_line(data: bytes) -> bytes:
    lines = data.split(CRLF)
    k = 1 + 48 * 28 + 3 + 12  # joint 13 of frame 49 (one body: 28 lines per frame)
    assert lines[1 + 48 * 28] == b"1" and len(lines[k].split(b" ")) == 12
    return data[: len(CRLF.join(lines[:k])) + len(CRLF) + len(lines[k]) // 2]


def wrong_joint_count(one: list[list[bytes]]) -> bytes:
    frames = [list(f) for f in one]
    frames[4][2] = b"24"
    del frames[4][3 + 24]
    return ntu_file(frames)


def all_zero_coordinates(one: list[list[bytes]]) -> bytes:
    frames = [
        f[:3] + [b" ".join([b"0", b"0", b"0", *line.split(b" ")[3:]]) for line in f[3:]]
        for f in one
    ]
    return ntu_file(frames)


@dataclass
class RealNtu:
    """The two real files: ``one`` (one body, 97 frames) and ``two`` (two bodies, 68 frames)."""

    one: bytes
    two: bytes

    @property
    def frames(self) -> list[list[bytes]]:
        return ntu_frames(self.one)

    @property
    def frames2(self) -> list[list[bytes]]:
        return ntu_frames(self.two)


@dataclass
class NtuKind:
    name: str
    reason: str  # a substring the rejection reason must contain
    make: Callable[[Path, RealNtu], None]
    file_name: str | None = None  # default: a valid NTU name of its own
    action: int = 17


def content(build: Callable[[RealNtu], bytes]) -> Callable[[Path, RealNtu], None]:
    return lambda path, real: path.write_bytes(build(real))


def make_directory(path: Path, real: RealNtu) -> None:
    path.mkdir()


def make_unreadable(path: Path, real: RealNtu) -> None:
    """chmod 000; where that does not stop reads (root), a dangling link in its place."""
    path.write_bytes(real.one)
    path.chmod(0)
    try:
        path.open("rb").close()
    except PermissionError:
        return
    path.unlink()
    path.symlink_to(path.with_name("vanished.tmp"))


def _fields(real: RealNtu, n: int) -> bytes:
    line = real.frames[4][3 + 3]  # joint 4 of frame 5
    return set_line(real.frames, 4, 3 + 3, b" ".join((line.split(b" ") * 2)[:n]))


K = NtuKind
NTU_KINDS = [
    K("nul_filled", "NUL", content(lambda r: b"\x00" * 4096)),
    K("nul_bytes_inside", "NUL", content(lambda r: r.one[:5000] + bytes(64) + r.one[5064:])),
    K("empty_file", "empty file", content(lambda r: b"")),
    K("blank_lines_only", "empty file", content(lambda r: b"\r\n \r\n\r\n")),
    K("truncated_mid_frame", "truncated", content(lambda r: truncated_mid_frame(r.frames))),
    K("truncated_mid_joint_line", "truncated", content(lambda r: truncated_mid_line(r.one))),
    K("truncated_at_frame_boundary", "truncated",
      content(lambda r: ntu_file(r.frames[:60], n_frames=97))),
    K("wrong_joint_count_24", "24 joints", content(lambda r: wrong_joint_count(r.frames))),
    K("non_integer_joint_count", "joint count",
      content(lambda r: set_line(r.frames, 4, 2, b"25.0"))),
    K("joint_line_11_fields", "11 fields", content(lambda r: _fields(r, 11))),
    K("joint_line_13_fields", "13 fields", content(lambda r: _fields(r, 13))),
    K("non_numeric_coordinate", "non-numeric", content(lambda r: set_field(r.frames, 1, b"abc"))),
    K("non_numeric_other_field", "non-numeric", content(lambda r: set_field(r.frames, 5, b"zz"))),
    K("digit_separator_in_number", "non-numeric",
      content(lambda r: set_field(r.frames, 0, b"1_0"))),
    K("latin1_byte_in_number", "non-numeric",
      content(lambda r: set_field(r.frames, 2, b"3.\xe90"))),
    K("nan_coordinate", "non-finite", content(lambda r: set_field(r.frames, 0, b"nan"))),
    K("inf_coordinate", "non-finite", content(lambda r: set_field(r.frames, 2, b"-inf"))),
    K("float32_overflow", "non-finite", content(lambda r: set_field(r.frames, 1, b"1e40"))),
    K("zero_frames", "0 frames", content(lambda r: b"0\r\n")),
    K("negative_frame_count", "-5 frames", content(lambda r: ntu_file(r.frames, n_frames=-5))),
    K("non_integer_frame_count", "number of frames",
      content(lambda r: ntu_file(r.frames, n_frames="ninety-seven"))),
    K("all_frames_empty", "frames are empty", content(lambda r: ntu_file([[b"0"]] * 5))),
    K("non_integer_body_count", "body count", content(lambda r: set_line(r.frames, 2, 0, b"1.5"))),
    K("negative_body_count", "negative body count",
      content(lambda r: set_line(r.frames, 2, 0, b"-1"))),
    K("more_bodies_declared_than_present", "joint count",
      content(lambda r: set_line(r.frames, 4, 0, b"2"))),
    K("trailing_garbage", "after the 97 declared frames",
      content(lambda r: r.one + b"1\r\ngarbage\r\n")),
    K("all_zero_coordinates", "no non-zero frame",
      content(lambda r: all_zero_coordinates(r.frames))),
    K("only_noise_bodies", "11 frames", content(lambda r: ntu_file(r.frames2[:10]))),
    K("bad_file_name", "not of the form", content(lambda r: r.one),
      file_name="take_off_a_shoe.skeleton"),
    K("action_not_in_dataset", "is not a class of dataset 'ntu60'", content(lambda r: r.one),
      action=120),
    K("directory_named_like_a_file", "cannot read", make_directory),
    K("unreadable_file", "cannot read", make_unreadable),
]


def ntu_folder(shared: Path, folder: Path, kinds: list[NtuKind]) -> dict[str, str]:
    """The two real files plus one file per kind; returns {source: reason substring}."""
    folder.mkdir()
    raw = {name: (shared / NTU_RAW / f"{name}.skeleton").read_bytes() for name in NTU_GOOD}
    for name, data in raw.items():
        (folder / f"{name}.skeleton").write_bytes(data)
    real = RealNtu(one=raw[NTU_GOOD[1]], two=raw[NTU_GOOD[0]])
    expected = {}
    for kind in kinds:
        index = NTU_KINDS.index(kind) + 10
        path = folder / (kind.file_name or f"S002C001P{index:03d}R001A{kind.action:03d}.skeleton")
        kind.make(path, real)
        expected[str(path)] = kind.reason
    return expected


def test_corpus_is_large_and_each_ntu_mutation_really_changes_the_file(shared):
    one = (shared / NTU_RAW / f"{NTU_GOOD[1]}.skeleton").read_bytes()
    two = (shared / NTU_RAW / f"{NTU_GOOD[0]}.skeleton").read_bytes()
    assert ntu_file(ntu_frames(one)) == one and ntu_file(ntu_frames(two)) == two
    names = [k.name for k in NTU_KINDS] + list(NW_UCLA_KINDS) + list(NW_UCLA_NAMED_KINDS) \
        + [kind for kind, _ in NPZ_ROW_KINDS.values()] + list(NPZ_FILE_KINDS) \
        + list(PYSKL_KINDS) + list(PYSKL_FILE_KINDS)
    assert len(names) == len(set(names)) and len(names) >= 24


@pytest.mark.parametrize("workers", [1, 2])
def test_ntu_corpus_rejects_each_bad_file_and_keeps_the_good(shared, tmp_path, capsys, workers):
    src, out = tmp_path / "raw", tmp_path / "out"
    expected = ntu_folder(shared, src, NTU_KINDS)
    assert len(list(src.glob("*.skeleton"))) > 16  # more than one batch: the pool is used
    result = prepare_cli(capsys, "ntu-raw", src, out, *NTU_ARGS, "--workers", str(workers))
    assert_summary(result, 2, len(NTU_KINDS))
    rejected = assert_rejected(out, expected)
    ids = {str(src / n): n.removesuffix(".skeleton") for n in os.listdir(src)}
    assert list(rejected["sample_id"]) == [ids[s] for s in rejected["source"]]
    skeletons = pd.read_parquet(out / "skeletons.parquet", columns=["sample_id", "source"])
    assert sorted(skeletons["sample_id"]) == list(NTU_GOOD)
    assert set(skeletons["source"]) == {str(src / f"{n}.skeleton") for n in NTU_GOOD}
    assert (out / "splits" / "xsub.parquet").is_file()
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("kind", NTU_KINDS, ids=lambda k: k.name)
def test_ntu_strict_stops_at_the_bad_file(shared, tmp_path, capsys, kind):
    src, out = tmp_path / "raw", tmp_path / "out"
    ((bad, reason),) = ntu_folder(shared, src, [kind]).items()
    result = prepare_cli(capsys, "ntu-raw", src, out, *NTU_ARGS, "--strict")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"actionlm: error: {bad}: ") and reason in line
    assert result.out == ""
    assert_nothing_written(out)


def test_strict_failure_leaves_an_earlier_output_untouched(shared, tmp_path, capsys):
    src, out = tmp_path / "raw", tmp_path / "out"
    ntu_folder(shared, src, [])
    assert prepare_cli(capsys, "ntu-raw", src, out, *NTU_ARGS).code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (src / "S002C001P010R001A017.skeleton").write_bytes(b"97\r\n1\r\n")
    result = prepare_cli(capsys, "ntu-raw", src, out, *NTU_ARGS, "--strict")
    assert result.code == 2 and "S002C001P010R001A017.skeleton" in result.error_line()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".out.partial-*"))


# --------------------------------------------------------------------------- NW-UCLA corpus


def nw_record(shared: Path, stem: str = NW_UCLA_GOOD[0]) -> dict:
    return json.loads((shared / NW_UCLA / f"{stem}.json").read_text())


def _dump(record: object) -> bytes:
    return json.dumps(record).encode()


def _with(**changes) -> Callable[[dict], bytes]:
    return lambda rec: _dump({**rec, **changes})


def _skel(edit: Callable[[list], object]) -> Callable[[dict], bytes]:
    """The record with its skeletons [T][20][3] replaced by ``edit(skeletons)``."""
    return lambda rec: _dump({**rec, "skeletons": edit(rec["skeletons"])})


def _point(xyz: list) -> Callable[[list], list]:
    """Joint 1 of frame 2 set to ``xyz``."""
    return lambda sk: [sk[0], [xyz, *sk[1][1:]], *sk[2:]]


SHAPE_20 = "expected (frames, 20, 3)"
NW_UCLA_KINDS: dict[str, tuple[str, Callable[[dict], bytes]]] = {
    # name: (reason substring, a01 record -> file bytes)
    "nw_invalid_json": ("not valid JSON", lambda rec: _dump(rec)[:500]),
    "nw_nul_filled": ("not valid JSON", lambda rec: bytes(2048)),
    "nw_empty_file": ("not valid JSON", lambda rec: b""),
    "nw_deeply_nested": ("not valid JSON", lambda rec: b"[" * 100_000 + b"]" * 100_000),
    "nw_not_an_object": ("no 'skeletons'", lambda rec: _dump(rec["skeletons"])),
    "nw_missing_skeletons": ("no 'skeletons'", lambda rec: _dump({"label": rec["label"]})),
    "nw_19_joints": (f"(44, 19, 3), {SHAPE_20}", _skel(lambda sk: [f[:19] for f in sk])),
    "nw_2d_skeletons": (f"(44, 60), {SHAPE_20}", _skel(lambda sk: [sum(f, []) for f in sk])),
    "nw_ragged_frames": ("not a numeric", _skel(lambda sk: [sk[0], sk[1][:19]])),
    "nw_string_coordinates": ("not a numeric",
                              _skel(lambda sk: [[[str(v) for v in j] for j in f] for f in sk])),
    "nw_null_coordinate": ("not a numeric", _skel(_point([None, 0.0, 3.0]))),
    "nw_zero_frames": ("zero frames", _with(skeletons=[])),
    "nw_nan_coordinate": ("non-finite", _skel(_point([float("nan"), 0.0, 3.0]))),
    "nw_infinite_coordinate": ("non-finite", _skel(_point([0.0, float("inf"), 3.0]))),
    "nw_all_zero": ("no non-zero frame", _with(skeletons=[[[0.0, 0.0, 0.0]] * 20] * 5)),
    "nw_label_disagrees": ("disagrees with the file name's action", _with(label=3)),
    "nw_label_is_boolean": ("disagrees with the file name's action", _with(label=True)),
    "nw_file_name_field_disagrees": ("'file_name'", _with(file_name="a02_s01_e00_v01")),
}
NW_UCLA_NAMED_KINDS = {  # kinds that are about the file's name: {file name: reason}
    "bad_name.json": "not of the form aAA_sSS_eEE_vVV",
    "a07_s01_e00_v01.json": "not an NW-UCLA class",  # a07 and a10 are not in the 10 classes
}


def nw_folder(shared: Path, folder: Path, kinds: list[str]) -> dict[str, str]:
    folder.mkdir()
    for stem in NW_UCLA_GOOD:
        (folder / f"{stem}.json").write_bytes((shared / NW_UCLA / f"{stem}.json").read_bytes())
    rec = nw_record(shared)
    expected = {}
    for i, name in enumerate(kinds):
        if name in NW_UCLA_NAMED_KINDS:
            path, reason = folder / name, NW_UCLA_NAMED_KINDS[name]
            path.write_text(json.dumps({**rec, "file_name": path.stem}))
        else:
            path = folder / f"a01_s20_e{i:02d}_v01.json"
            reason, build = NW_UCLA_KINDS[name]
            changes = {} if name == "nw_file_name_field_disagrees" else {"file_name": path.stem}
            path.write_bytes(build({**rec, **changes}))
        expected[str(path)] = reason
    return expected


def test_nw_ucla_corpus_rejects_each_bad_file_and_keeps_the_good(shared, tmp_path, capsys):
    src, out = tmp_path / "all_sqe", tmp_path / "out"
    kinds = list(NW_UCLA_KINDS) + list(NW_UCLA_NAMED_KINDS)
    expected = nw_folder(shared, src, kinds)
    result = prepare_cli(capsys, "nw-ucla", src, out, "--protocols", "none")
    assert_summary(result, 2, len(kinds))
    assert_rejected(out, expected)
    skeletons = pd.read_parquet(out / "skeletons.parquet", columns=["sample_id"])
    assert sorted(skeletons["sample_id"]) == list(NW_UCLA_GOOD)


@pytest.mark.parametrize("kind", list(NW_UCLA_KINDS) + list(NW_UCLA_NAMED_KINDS))
def test_nw_ucla_strict_stops_at_the_bad_file(shared, tmp_path, capsys, kind):
    src, out = tmp_path / "all_sqe", tmp_path / "out"
    ((bad, reason),) = nw_folder(shared, src, [kind]).items()
    result = prepare_cli(capsys, "nw-ucla", src, out, "--strict")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"actionlm: error: {bad}: ") and reason in line
    assert_nothing_written(out)


# --------------------------------------------------------------------------- CTR-GCN npz corpus


def npz_arrays(shared: Path) -> dict[str, np.ndarray]:
    with np.load(shared / NPZ) as f:
        return {k: f[k] for k in f.files}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


NPZ_ROW_KINDS = {  # row of x_test / y_test: (kind, reason substring)
    2: ("npz_label_row_all_zero", "not a one-hot row"),
    3: ("npz_label_row_two_hot", "not a one-hot row"),
    4: ("npz_label_row_half", "not a one-hot row"),
    5: ("npz_sample_all_zero", "all frames are zero"),
    6: ("npz_sample_nan", "non-finite"),
    7: ("npz_sample_inf", "non-finite"),
}


def test_npz_rejects_bad_rows_and_keeps_the_good(shared, tmp_path, capsys):
    arrays = npz_arrays(shared)
    x, y = arrays["x_test"].copy(), arrays["y_test"].copy()
    assert len(x) == 11 and (y.sum(axis=1) == 1).all()
    y[2] = 0
    y[3, (np.argmax(y[3]) + 1) % y.shape[1]] = 1
    y[4] *= 0.5
    x[5] = 0
    x[6, 10, 40] = np.nan
    x[7, 0, 0] = np.inf
    src = write_npz(tmp_path / "NTU60_CS.npz", {**arrays, "x_test": x, "y_test": y})
    out = tmp_path / "out"
    result = prepare_cli(capsys, "ctrgcn-npz", src, out, "--dataset", "ntu60")
    assert_summary(result, 11 - len(NPZ_ROW_KINDS), len(NPZ_ROW_KINDS))
    expected = {f"{src}[x_test][{i}]": reason for i, (_, reason) in NPZ_ROW_KINDS.items()}
    rejected = assert_rejected(out, expected)
    assert sorted(rejected["sample_id"]) == sorted(f"test_{i}" for i in NPZ_ROW_KINDS)
    skeletons = pd.read_parquet(out / "skeletons.parquet", columns=["sample_id"])
    assert sorted(skeletons["sample_id"]) == sorted(
        f"test_{i}" for i in range(11) if i not in NPZ_ROW_KINDS)
    split = pd.read_parquet(out / "splits" / "xsub.parquet")
    assert set(split["sample_id"]) == set(skeletons["sample_id"])  # no rejected sample in a split


def _npz_member_bytes(arrays: dict[str, np.ndarray], replace: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array)
            zf.writestr(f"{name}.npy", replace.get(name, member.getvalue()))
    return buf.getvalue()


def _short_member(a: dict[str, np.ndarray]) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": a["x_test"].shape})
    return _npz_member_bytes(a, {"x_test": header.getvalue() + a["x_test"][:5].tobytes()})


def _bad_crc(a: dict[str, np.ndarray]) -> bytes:
    data = bytearray(_npz_member_bytes(a, {}))
    start = data.index(b"x_test.npy") + 200  # inside the stored (uncompressed) x_test data
    data[start : start + 64] = bytes(64)
    return bytes(data)


def _savez(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


NPZ_FILE_KINDS: dict[str, tuple[str, Callable[[dict], bytes]]] = {
    "npz_not_a_zip": ("not a readable npz archive", lambda a: b"x_test,y_test\n1,2\n"),
    "npz_nul_filled": ("not a readable npz archive", lambda a: b"\x00" * 4096),
    "npz_truncated_archive": ("not a readable npz archive", lambda a: _savez(a)[:100_000]),
    "npz_mismatched_lengths": ("11 samples but y_test has shape (10, 60)",
                               lambda a: _savez({**a, "y_test": a["y_test"][:10]})),
    "npz_wrong_width": ("expected (samples, frames, 150)",
                        lambda a: _savez({**a, "x_test": a["x_test"][:, :, :149]})),
    "npz_2d_x": ("expected (samples, frames, 150)",
                 lambda a: _savez({**a, "x_test": a["x_test"][:, 0]})),
    "npz_missing_labels": ("missing array 'y_test'",
                           lambda a: _savez({k: v for k, v in a.items() if k != "y_test"})),
    "npz_label_width": ("over 59 classes, expected 60",
                        lambda a: _savez({**a, "y_test": a["y_test"][:, :59]})),
    "npz_object_labels": ("pickle",
                          lambda a: _savez({**a, "y_test": np.array([None] * 11, dtype=object)})),
    "npz_string_x": ("not numeric", lambda a: _savez({**a, "x_test": a["x_test"].astype("U4")})),
    "npz_member_shorter_than_header": ("truncated", _short_member),
    "npz_corrupt_member": ("damaged", _bad_crc),
}


@pytest.mark.parametrize("kind", list(NPZ_FILE_KINDS))
def test_npz_whole_file_problem_is_a_one_line_error_in_both_modes(shared, tmp_path, capsys, kind):
    reason, build = NPZ_FILE_KINDS[kind]
    src = tmp_path / "NTU60_CS.npz"
    src.write_bytes(build(npz_arrays(shared)))
    for mode in ([], ["--strict"]):
        out = tmp_path / f"out{len(mode)}"
        result = prepare_cli(capsys, "ctrgcn-npz", src, out, "--dataset", "ntu60", *mode)
        assert result.code == 2
        line = result.error_line()
        assert line.startswith(f"actionlm: error: {src}: ") and reason in line, line
        assert_nothing_written(out)


def test_npz_strict_stops_at_the_first_bad_row(shared, tmp_path, capsys):
    arrays = npz_arrays(shared)
    x = arrays["x_test"].copy()
    x[4, 3, 7] = np.nan
    x[8] = 0
    src = write_npz(tmp_path / "NTU60_CS.npz", {**arrays, "x_test": x})
    out = tmp_path / "out"
    result = prepare_cli(capsys, "ctrgcn-npz", src, out, "--dataset", "ntu60", "--strict")
    assert result.code == 2
    assert result.error_line() == (
        f"actionlm: error: {src}[x_test][4]: non-finite coordinate (nan/inf)")
    assert_nothing_written(out)


# --------------------------------------------------------------------------- pyskl corpus


def pyskl_annotation(name, label, keypoint=None, seed=0) -> dict:
    if keypoint is None:
        keypoint = np.random.default_rng(seed).normal(size=(2, 30, 25, 3)).astype(np.float32)
    return {"frame_dir": name, "label": label, "keypoint": keypoint, "total_frames": 30}


PYSKL_GOOD = [pyskl_annotation("S001C001P001R001A001", 0, seed=1),
              pyskl_annotation("S001C002P002R001A002", 1, seed=2)]


def _pk(action: int, label: object, keypoint: object = None) -> dict:
    return pyskl_annotation(f"S001C001P003R001A{action:03d}", label, keypoint)


SHAPE = "expected (M, T>0, V, 2 or 3)"
PYSKL_KINDS: dict[str, tuple[str, object]] = {  # name: (reason substring, annotation)
    "pk_keypoint_3d": (SHAPE, _pk(3, 2, np.ones((30, 25, 3)))),
    "pk_keypoint_zero_frames": (SHAPE, _pk(4, 3, np.ones((2, 0, 25, 3)))),
    "pk_keypoint_4_channels": (SHAPE, _pk(5, 4, np.ones((2, 3, 25, 4)))),
    "pk_keypoint_strings": ("not a numeric array", _pk(6, 5, np.full((1, 3, 25, 3), "1"))),
    "pk_keypoint_ragged": ("not a numeric array", _pk(7, 6, [[[[1, 2, 3]]], [[[1, 2]]]])),
    "pk_keypoint_nan": ("non-finite", _pk(8, 7, np.full((1, 3, 25, 3), np.nan))),
    "pk_keypoint_all_zero": ("no non-zero frame", _pk(9, 8, np.zeros((1, 3, 25, 3)))),
    "pk_label_not_an_integer": ("not a 0-based integer", _pk(10, "x")),
    "pk_label_float": ("not a 0-based integer", _pk(11, 10.5)),
    "pk_label_negative": ("not a 0-based integer", _pk(12, -1)),
    "pk_label_not_in_dataset": ("is not a class of dataset 'ntu60'", _pk(70, 69)),
    "pk_frame_dir_not_a_string": ("'frame_dir'", pyskl_annotation(None, 0)),
    "pk_no_keypoint": ("lacks 'keypoint'", {"frame_dir": "S001C001P003R001A013", "label": 12}),
    "pk_annotation_not_a_dict": ("lacks 'keypoint'", ["S001C001P003R001A014", 13]),
    "pk_duplicate_frame_dir": ("duplicate sample id 'S001C001P001R001A001'",
                               pyskl_annotation("S001C001P001R001A001", 0, seed=3)),
}


def test_pyskl_rejects_each_bad_annotation_and_keeps_the_good(tmp_path, capsys):
    annotations = PYSKL_GOOD + [ann for _, ann in PYSKL_KINDS.values()]
    src = tmp_path / "ntu60_3danno.pkl"
    src.write_bytes(pickle.dumps({"split": {}, "annotations": annotations}))
    out = tmp_path / "out"
    result = prepare_cli(capsys, "pyskl", src, out, "--dataset", "ntu60", "--trust-pickle",
                         "--protocols", "none")
    assert_summary(result, 2, len(PYSKL_KINDS))
    expected = {f"{src}[annotations][{i}]": reason
                for i, (reason, _) in enumerate(PYSKL_KINDS.values(), start=len(PYSKL_GOOD))}
    assert_rejected(out, expected)
    skeletons = pd.read_parquet(out / "skeletons.parquet")
    assert list(skeletons["sample_id"]) == [a["frame_dir"] for a in PYSKL_GOOD]
    # the duplicate did not replace the first sample of that id
    first = np.asarray(skeletons["joints"][0]).reshape(30, 2, 25, 3)
    kp = PYSKL_GOOD[0]["keypoint"].transpose(1, 0, 2, 3)
    np.testing.assert_allclose(first, kp - kp[0, 0, 1], atol=1e-6)


@pytest.mark.parametrize("kind", list(PYSKL_KINDS))
def test_pyskl_strict_stops_at_the_bad_annotation(tmp_path, capsys, kind):
    reason, annotation = PYSKL_KINDS[kind]
    src = tmp_path / "ntu60_3danno.pkl"
    src.write_bytes(pickle.dumps({"annotations": PYSKL_GOOD + [annotation]}))
    out = tmp_path / "out"
    result = prepare_cli(capsys, "pyskl", src, out, "--dataset", "ntu60", "--trust-pickle",
                         "--strict")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"actionlm: error: {src}[annotations][2]: ") and reason in line, line
    assert_nothing_written(out)


class _CreatesMarker:
    """Unpickling this creates a folder: the code execution a pickle allows."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pyskl_is_refused_before_anything_is_unpickled(tmp_path, capsys):
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps({"annotations": [_CreatesMarker(probe)]}))
    assert probe.is_dir()  # the payload does run when unpickled

    marker = tmp_path / "marker"
    src = tmp_path / "ntu60_3danno.pkl"
    src.write_bytes(pickle.dumps({"annotations": [_CreatesMarker(marker)]}))
    out = tmp_path / "out"
    for mode in ([], ["--strict"]):
        result = prepare_cli(capsys, "pyskl", src, out, "--dataset", "ntu60", *mode)
        assert result.code == 2
        line = result.error_line()
        assert line.startswith(f"actionlm: error: {src}: refusing to unpickle")
        assert "--trust-pickle" in line
        assert not marker.exists(), "the pickle was loaded without --trust-pickle"
        assert_nothing_written(out)


PYSKL_FILE_KINDS: dict[str, tuple[str, bytes]] = {
    "pk_nul_filled": ("cannot unpickle", b"\x00" * 1024),
    "pk_empty_file": ("cannot unpickle", b""),
    "pk_truncated": ("cannot unpickle",
                     pickle.dumps({"annotations": PYSKL_GOOD})[:300]),
    "pk_not_a_dict": ("no 'annotations' list", pickle.dumps([1, 2, 3])),
    "pk_annotations_not_a_list": ("no 'annotations' list", pickle.dumps({"annotations": {}})),
    "pk_split_wrong_shape": ("'split'", pickle.dumps({"split": {"xsub_train": 5},
                                                      "annotations": PYSKL_GOOD})),
}


@pytest.mark.parametrize("kind", list(PYSKL_FILE_KINDS))
def test_pyskl_whole_file_problem_is_a_one_line_error_in_both_modes(tmp_path, capsys, kind):
    reason, data = PYSKL_FILE_KINDS[kind]
    src = tmp_path / "ntu60_3danno.pkl"
    src.write_bytes(data)
    for mode in ([], ["--strict"]):
        out = tmp_path / f"out{len(mode)}"
        result = prepare_cli(capsys, "pyskl", src, out, "--dataset", "ntu60", "--trust-pickle",
                             *mode)
        assert result.code == 2
        line = result.error_line()
        assert line.startswith(f"actionlm: error: {src}: ") and reason in line, line
        assert_nothing_written(out)


# --------------------------------------------------------------------------- command-level errors


def _ntu(src: Path, dataset: str = "ntu60") -> list[str]:
    return ["--format", "ntu-raw", "--src", str(src), "--dataset", dataset]


def _empty_dir(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "raw").mkdir()
    return _ntu(tmp / "raw"), "no NTU .skeleton files"


def _no_matching_file(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "raw").mkdir()
    (tmp / "raw" / "README.txt").write_text("skeletons go here\n")
    (tmp / "raw" / "S001C001P001R001A001.skeleton.bak").write_bytes(b"1\r\n0\r\n")
    return _ntu(tmp / "raw"), "no NTU .skeleton files"


def _missing_src(tmp: Path, shared: Path) -> tuple[list[str], str]:
    return ["--format", "ntu-raw", "--dataset", "ntu60"], "--src is required"


def _src_does_not_exist(tmp: Path, shared: Path) -> tuple[list[str], str]:
    return ["--format", "nw-ucla", "--src", str(tmp / "nowhere")], "not a directory"


def _file_where_folder_expected(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "x.skeleton").write_bytes(b"1\r\n0\r\n")
    return _ntu(tmp / "x.skeleton"), "not a directory"


def _folder_where_file_expected(tmp: Path, shared: Path) -> tuple[list[str], str]:
    npz = tmp / "NTU60_CS.npz"
    npz.mkdir()
    return ["--format", "ctrgcn-npz", "--src", str(npz), "--dataset", "ntu60"], "not a file"


def _unknown_dataset(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "raw").mkdir()
    return _ntu(tmp / "raw", dataset="kinetics"), "no built-in class list"


def _every_file_rejected(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "raw").mkdir()
    for i in range(3):
        (tmp / "raw" / f"S001C001P00{i}R001A001.skeleton").write_bytes(b"\x00" * 100)
    return _ntu(tmp / "raw"), "no sample"


def _out_is_a_file(tmp: Path, shared: Path) -> tuple[list[str], str]:
    (tmp / "raw").mkdir()
    name = f"{NTU_GOOD[1]}.skeleton"
    (tmp / "raw" / name).write_bytes((shared / NTU_RAW / name).read_bytes())
    (tmp / "out").write_text("not a folder\n")
    return [*_ntu(tmp / "raw"), "--protocols", "none"], str(tmp / "out")


COMMAND_ERRORS = [_empty_dir, _no_matching_file, _missing_src, _src_does_not_exist,
                  _file_where_folder_expected, _folder_where_file_expected, _unknown_dataset,
                  _every_file_rejected, _out_is_a_file]


@pytest.mark.parametrize("case", COMMAND_ERRORS, ids=lambda f: f.__name__.strip("_"))
def test_command_level_problem_is_a_one_line_error(shared, tmp_path, capsys, case):
    args, words = case(tmp_path, shared)
    out = tmp_path / "out"
    out_was_file = out.is_file()
    code = main(["prepare", *args, "--out", str(out), "--workers", "1"])
    captured = capsys.readouterr()
    result = Result(code, captured.out, captured.err)
    assert result.code == 2
    assert words in result.error_line()
    if out_was_file:
        assert out.read_text() == "not a folder\n"
        assert not list(tmp_path.glob(".out.partial-*"))
    else:
        assert_nothing_written(out)


# --------------------------------------------------------------------------- the real command


def prepare_console(src: Path, out: Path, *extra: str) -> Result:
    """`actionlm prepare --format ntu-raw` run as the installed command, in its own process."""
    script = Path(sys.executable).with_name("actionlm")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "actionlm.cli"]
    proc = subprocess.run(
        [*command, "prepare", "--format", "ntu-raw", "--src", str(src), "--out", str(out),
         "--workers", "1", *extra], capture_output=True, text=True, timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_console_script_strict_error_is_one_line_without_traceback(shared, tmp_path):
    """The installed command, in its own process: no progress bar or log line besides the error."""
    src, out = tmp_path / "raw", tmp_path / "out"
    kind = next(k for k in NTU_KINDS if k.name == "truncated_mid_frame")
    ((bad, _),) = ntu_folder(shared, src, [kind]).items()
    result = prepare_console(src, out, "--dataset", "ntu60", "--strict")
    assert result.code == 2
    assert result.error_line().startswith(f"actionlm: error: {bad}: truncated")
    assert_nothing_written(out)

    lenient = prepare_console(src, out, "--dataset", "ntu60", "--protocols", "none")
    assert lenient.code == 0 and "Traceback" not in lenient.err
    assert lenient.out.startswith("prepared 2 samples, rejected 1; ")
    assert f"  rejected {bad}: truncated" in lenient.out
