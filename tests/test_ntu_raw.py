"""NTU raw parsing and denoising: equal to CTR-GCN's reference preprocessing on real files,
and each denoising rule checked on constructed bodies."""

from __future__ import annotations

import numpy as np
import pytest

from actionlm.data.ntu_raw import (
    RawBody,
    assign_actors,
    center_on_first_frame,
    denoise_bodies,
    load_ntu_file,
    load_ntu_files,
    ntu_joints_from_bytes,
)
from actionlm.data.table import Rejection
from actionlm.errors import InputError


def as_reference_layout(joints: np.ndarray) -> np.ndarray:
    """[T, bodies, 25, 3] -> CTR-GCN's [T, 150] (2 bodies x 25 joints x xyz, zero-padded)."""
    flat = np.zeros((joints.shape[0], 150), dtype=np.float32)
    flat[:, : joints.shape[1] * 75] = joints.reshape(joints.shape[0], -1)
    return flat


@pytest.mark.parametrize("name", ["S001C001P003R002A005", "S001C001P004R001A017"])
def test_real_files_match_ctrgcn_reference(shared, name):
    reference = np.load(shared / "datasets/ntu-samples/ctrgcn-reference/centered_frames.npz")[name]
    sample = load_ntu_file(shared / f"datasets/ntu-samples/raw/{name}.skeleton")
    assert sample.joints.dtype == np.float32
    assert sample.joints.shape[0] == reference.shape[0]
    np.testing.assert_allclose(as_reference_layout(sample.joints), reference, atol=1e-4, rtol=0)
    assert (sample.setup, sample.camera, sample.subject) == (1, 1, int(name[9:12]))
    assert sample.native_action == int(name[-3:])


def test_noisy_second_body_is_dropped(shared):
    """S001C001P003R002A005 tracks two bodies in every frame; the reference keeps one."""
    data = (shared / "datasets/ntu-samples/raw/S001C001P003R002A005.skeleton").read_bytes()
    assert data.split(b"\r\n")[1] == b"2"
    assert ntu_joints_from_bytes(data, "x").shape[1] == 1


def test_irregular_whitespace_takes_the_checked_path_with_same_numbers(shared):
    data = (shared / "datasets/ntu-samples/raw/S001C001P004R001A017.skeleton").read_bytes()
    fast = ntu_joints_from_bytes(data, "x")
    irregular = data.replace(b"\r\n", b"\n").replace(b" ", b" \t ")
    np.testing.assert_allclose(ntu_joints_from_bytes(irregular, "x"), fast, atol=1e-6)


def test_a_batch_parses_like_each_file_alone(shared, tmp_path):
    """The joint lines of a batch go through one CSV call: every file must get the numbers or
    the reason it gets alone, and row-count errors of two files must not cancel out (a lone
    CR splitting a joint line adds a row, a blank joint line would drop one)."""
    raw = shared / "datasets/ntu-samples/raw"
    one = (raw / "S001C001P004R001A017.skeleton").read_bytes()
    lines = one.split(b"\r\n")
    assert len(lines[10].split()) == 12  # a joint line of frame 1
    extra_row, blank_line = list(lines), list(lines)
    extra_row[10] += b"\r" + lines[10]
    blank_line[10] = b""
    files = {
        "S001C001P003R002A005": (raw / "S001C001P003R002A005.skeleton").read_bytes(),
        "S002C001P001R001A017": b"\r\n".join(extra_row),
        "S002C001P002R001A017": one,
        "S002C001P003R001A017": b"\r\n".join(blank_line),
    }
    paths = []
    for name, data in files.items():
        paths.append(tmp_path / f"{name}.skeleton")
        paths[-1].write_bytes(data)
    batch = load_ntu_files(paths)
    assert [isinstance(item, Rejection) for item in batch] == [False, True, False, True]
    assert "24 fields" in batch[1].reason and "0 fields" in batch[3].reason
    for path, item in zip(paths, batch):
        if isinstance(item, Rejection):
            with pytest.raises(InputError, match=item.reason):
                load_ntu_file(path)
        else:
            np.testing.assert_array_equal(item.joints, load_ntu_file(path).joints)


def body(n: int, first: int = 0, offset: float = 0.0, wide: bool = False, seed: int = 0) -> RawBody:
    """A standing-person-like body (tall: y-spread > x-spread) or a wide blob."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 25, 3)).astype(np.float32) * np.float32(0.05)
    pts[:, :, 1] += np.linspace(-0.8, 0.8, 25, dtype=np.float32)
    if wide:
        pts[:, :, 0], pts[:, :, 1] = pts[:, :, 1] * 2, pts[:, :, 0]
    pts[:, :, 0] += offset
    b = RawBody(pts, first)
    b.motion = float(np.sum(np.var(pts.reshape(-1, 3), axis=0)))
    return b


def test_denoise_drops_short_bodies_and_orders_by_motion():
    short = body(11, seed=1)  # tracked in <= 11 frames: noise
    still = body(40, seed=2)
    moving = body(40, seed=3)
    moving.joints[:, :, 0] += np.linspace(0, 1, 40, dtype=np.float32)[:, None]
    moving.motion = float(np.sum(np.var(moving.joints.reshape(-1, 3), axis=0)))
    ranked = denoise_bodies({b"a": short, b"b": still, b"c": moving}, "x")
    assert ranked == [moving, still]


def test_denoise_drops_wide_bodies_by_spread():
    person, blob = body(30, seed=4), body(30, wide=True, seed=5)
    assert denoise_bodies({b"p": person, b"o": blob}, "x") == [person]


def test_assign_actors_reference_quirks():
    """A body that does not overlap the main actor extends actor 1; the first other body goes
    to actor 2 whose interval starts at frame 0; a body overlapping both is dropped."""
    main = body(20, first=0, seed=6)
    later = body(12, first=20, seed=7)  # after the main actor: continues actor 1
    second = body(25, first=5, offset=1.0, seed=8)  # overlaps main: actor 2, interval [0, 29]
    third = body(15, first=10, offset=2.0, seed=9)  # overlaps both: dropped
    out = assign_actors([main, later, second, third], 40)
    np.testing.assert_array_equal(out[:20, 0], main.joints)
    np.testing.assert_array_equal(out[20:32, 0], later.joints)
    np.testing.assert_array_equal(out[5:30, 1], second.joints)
    assert not out[32:, 0].any() and not out[30:, 1].any() and not out[:5, 1].any()


def test_centering_keeps_missing_body_slots_zero():
    joints = np.ones((3, 2, 25, 3), dtype=np.float32)
    joints[0, 0] = 0.0  # body 1 missing in frame 0: origin comes from frame 1
    joints[1, 0, 1] = [2.0, 3.0, 4.0]
    joints[2, 1] = 0.0  # body 2 missing in frame 2
    centered = center_on_first_frame(joints, 1, "x")
    assert not centered[0, 0].any() and not centered[2, 1].any()
    np.testing.assert_array_equal(centered[1, 0, 1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(centered[0, 1, 0], [-1.0, -2.0, -3.0])
