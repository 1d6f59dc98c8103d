"""Good-path readers of the non-NTU-raw formats and the prepare outputs they produce."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from actionlm.data.ctrgcn_npz import true_length_and_bodies
from actionlm.data.prepare import prepare
from actionlm.data.table import sample_joints
from actionlm.errors import ActionlmError


def test_ctrgcn_npz_lengths_and_labels(shared, tmp_path):
    src = shared / "datasets/ntu-samples/ctrgcn-npz/NTU60_CS.npz"
    raw = np.load(src)
    summary = prepare("ctrgcn-npz", src, tmp_path / "out", dataset="ntu60", workers=1)
    assert summary.n_samples == 11 and not summary.rejected
    table = pd.read_parquet(tmp_path / "out/skeletons.parquet")
    assert list(table["label"]) == list(raw["y_test"].argmax(axis=1))  # A050..A060
    assert table["class_name"].iloc[0] == "punching/slapping other person"
    for i, row in table.iterrows():
        x = raw["x_test"][i]
        last = np.flatnonzero(x.any(axis=1))[-1] + 1
        assert row["n_frames"] == last
        joints = sample_joints(row)
        np.testing.assert_array_equal(joints.reshape(last, -1), x[:last, : row["n_bodies"] * 75])
    splits = pd.read_parquet(tmp_path / "out/splits/xsub.parquet")
    assert set(splits["split"]) == {"test"} and len(splits) == 11


def test_npz_second_body_copy_counts_as_one_body():
    """CTR-GCN's NTU120 script fills the second body with a copy of a lone actor."""
    x = np.zeros((300, 150), dtype=np.float32)
    x[:40, :75] = np.random.default_rng(0).normal(size=(40, 75))
    x[:40, 75:] = x[:40, :75]
    assert true_length_and_bodies(x) == (40, 1)
    x[:40, 75:] += 1.0
    assert true_length_and_bodies(x) == (40, 2)


def test_nw_ucla_labels_lengths_and_views(shared, tmp_path):
    src = shared / "datasets/nw-ucla/all_sqe"
    summary = prepare("nw-ucla", src, tmp_path / "out", dataset=None, workers=2,
                      protocols=["view2"])
    assert summary.n_samples == 1020 and not summary.rejected
    table = pd.read_parquet(tmp_path / "out/skeletons.parquet").set_index("sample_id")
    for name in ["a01_s01_e00_v01", "a12_s10_e04_v02", "a08_s03_e01_v01"]:
        record = pd.read_json(src / f"{name}.json", typ="series")
        row = table.loc[name]
        assert row["label"] == record["label"] - 1
        assert row["n_frames"] == len(record["skeletons"]) and row["n_joints"] == 20
        assert row["camera"] == int(name[-2:])
        original = np.asarray(record["skeletons"], dtype=np.float32)
        joints = sample_joints(row.to_dict())[:, 0]
        # centred on the spine joint of the first frame, otherwise unchanged
        np.testing.assert_allclose(joints, original - original[0, 1], atol=1e-6)
    classes = pd.read_parquet(tmp_path / "out/classes.parquet")
    assert list(classes["native_id"]) == [1, 2, 3, 4, 5, 6, 8, 9, 11, 12]
    splits = pd.read_parquet(tmp_path / "out/splits/view2.parquet").merge(
        table.reset_index()[["sample_id", "camera"]], on="sample_id")
    assert (splits.groupby("split")["camera"].unique().map(list).to_dict()
            == {"train": [1], "test": [2]})


def _pyskl_file(path, names, labels):
    rng = np.random.default_rng(0)
    annotations = [
        {"frame_dir": n, "label": label, "keypoint": rng.normal(size=(2, 30, 25, 3)).astype(np.float32),
         "total_frames": 30}
        for n, label in zip(names, labels)
    ]
    split = {"xsub_train": names[:2], "xsub_val": names[2:]}
    path.write_bytes(pickle.dumps({"split": split, "annotations": annotations}))


def test_pyskl_needs_trust_and_then_reads_keypoints_and_splits(tmp_path):
    names = ["S001C001P001R001A001", "S001C002P002R001A002", "S001C003P003R002A003"]
    src = tmp_path / "ntu60_3danno.pkl"
    _pyskl_file(src, names, [0, 1, 2])
    with pytest.raises(ActionlmError, match="--trust-pickle"):
        prepare("pyskl", src, tmp_path / "refused", dataset="ntu60")
    assert not (tmp_path / "refused").exists()
    summary = prepare("pyskl", src, tmp_path / "out", dataset="ntu60", trust_pickle=True)
    table = pd.read_parquet(tmp_path / "out/skeletons.parquet")
    assert summary.n_samples == 3 and list(table["label"]) == [0, 1, 2]
    assert list(table["subject"]) == [1, 2, 3] and list(table["n_bodies"]) == [2, 2, 2]
    split = pd.read_parquet(tmp_path / "out/splits/xsub.parquet")
    assert dict(zip(split["sample_id"], split["split"])) == dict(
        zip(names, ["train", "train", "test"]))


def test_skeleton_table_schema(shared, tmp_path):
    prepare("ntu-raw", shared / "datasets/ntu-samples/raw", tmp_path / "out", dataset="ntu60",
            protocols=[], workers=1)
    schema = pq.read_schema(tmp_path / "out/skeletons.parquet")
    expected = {
        "sample_id": "string", "label": "int16", "class_name": "string", "subject": "int16",
        "camera": "int16", "setup": "int16", "replication": "int16", "n_frames": "int32",
        "n_bodies": "int8", "n_joints": "int8", "joints": "list<element: float>",
        "source": "string",
    }
    assert {f.name: str(f.type) for f in schema} == expected
    assert schema.metadata[b"actionlm.dataset"] == b'"ntu60"'
    table = pd.read_parquet(tmp_path / "out/skeletons.parquet")
    assert list(table["sample_id"]) == ["S001C001P003R002A005", "S001C001P004R001A017"]
    assert list(table["class_name"]) == ["drop", "take off a shoe"]
    for _, row in table.iterrows():
        assert len(row["joints"]) == row["n_frames"] * row["n_bodies"] * row["n_joints"] * 3
    assert pq.read_table(tmp_path / "out/rejected.parquet").num_rows == 0
    assert not list(tmp_path.glob(".out.partial-*"))
