"""Protocols mean what they mean on NTU / NW-UCLA; unseen-class draws are seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from actionlm.data.splits import NTU60_XSUB_TRAIN, NTU120_XSUB_TRAIN, make_split
from actionlm.data.zero_shot import zero_shot_protocol
from actionlm.errors import ActionlmError


@pytest.fixture
def meta() -> pd.DataFrame:
    rows = [
        dict(sample_id=f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}", label=a - 1, subject=p, camera=c,
             setup=s, replication=1)
        for s in (1, 2, 3) for c in (1, 2, 3) for p in (1, 3, 45, 44) for a in range(1, 9)
    ]
    return pd.DataFrame(rows)


def joined(meta, protocol, **kw):
    split, info = make_split(meta, protocol, n_classes=8, **kw)
    return split.merge(meta, on="sample_id"), info


def test_xsub_uses_the_ntu_training_subjects(meta):
    out, info = joined(meta, "xsub")
    assert set(out.loc[out.split == "train", "subject"]) == {1, 45}
    assert set(out.loc[out.split == "test", "subject"]) == {3, 44}
    assert {1, 2, 4, 5}.issubset(NTU60_XSUB_TRAIN) and 3 not in NTU60_XSUB_TRAIN
    assert NTU60_XSUB_TRAIN < NTU120_XSUB_TRAIN and len(NTU120_XSUB_TRAIN) == 53
    assert info["counts"] == {"train": 144, "test": 144}


def test_xview_trains_on_cameras_2_3(meta):
    out, _ = joined(meta, "xview")
    assert set(out.loc[out.split == "train", "camera"]) == {2, 3}
    assert set(out.loc[out.split == "test", "camera"]) == {1}


def test_xset_even_setups_train(meta):
    out, _ = joined(meta, "xset")
    assert set(out.loc[out.split == "train", "setup"]) == {2}
    assert set(out.loc[out.split == "test", "setup"]) == {1, 3}


def test_unseen_classes_are_seeded_and_disjoint(meta):
    out, info = joined(meta, "unseen3_seed7")
    held = info["unseen_labels"]
    # the draw LLM-AR's protocol has always made: a seeded choice of K of the N classes
    assert held == sorted(np.random.default_rng(7).choice(8, 3, replace=False).tolist())
    assert len(held) == 3
    assert set(out.loc[out.split == "test", "label"]) == set(held)
    assert not set(out.loc[out.split == "train", "label"]) & set(held)
    draws = {tuple(zero_shot_protocol(f"unseen5_seed{s}").unseen_classes(60)) for s in range(5)}
    assert len(draws) == 5  # different seeds hold out different classes


def test_val_fraction_is_stratified_and_reproducible(meta):
    a, _ = joined(meta, "xview", val_fraction=0.25, seed=3)
    b, _ = joined(meta, "xview", val_fraction=0.25, seed=3)
    pd.testing.assert_frame_equal(a, b)
    val = a[a.split == "val"]
    assert set(val["camera"]) <= {2, 3}
    assert (val.groupby("label").size() == 6).all()  # 25 % of 24 train samples per class


@pytest.mark.parametrize("val_fraction", [1.5, 1.0, -0.5, float("nan")])
def test_val_fraction_out_of_range_is_refused(meta, val_fraction):
    with pytest.raises(ActionlmError, match=r"val_fraction .*: expected a number in \[0, 1\)"):
        make_split(meta, "xview", 8, val_fraction=val_fraction)


def test_protocol_errors(meta):
    with pytest.raises(ActionlmError, match="test split empty"):
        make_split(meta[meta.camera > 1], "xview", 8)
    with pytest.raises(ActionlmError, match="unknown protocol 'xsubject'"):
        make_split(meta, "xsubject", 8)
    with pytest.raises(ActionlmError, match="needs the 'subject'"):
        make_split(meta.assign(subject=np.nan), "xsub", 8)
    with pytest.raises(ActionlmError, match=r"unseen8_seed0 holds out 8 of 8 classes \(K: 1..7\)"):
        make_split(meta, "unseen8_seed0", 8)


def test_split_of_an_unprepared_folder_names_the_missing_file(tmp_path):
    from actionlm.data.splits import write_split

    with pytest.raises(ActionlmError, match=r"skeletons\.parquet: no such file .*actionlm prepare"):
        write_split(tmp_path / "skeletons.parquet", tmp_path / "classes.parquet",
                    tmp_path / "embedded_splits.parquet", "xsub", tmp_path / "splits/xsub.parquet")
    assert not (tmp_path / "splits").exists()
