"""Score fusion (actionlm ensemble) and the full class scores it reads from predictions.parquet."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actionlm.cli import main
from actionlm.errors import ActionlmError
from actionlm.eval.ensemble import ensemble
from actionlm.eval.metrics import write_evaluation
from actionlm.io import table_metadata, write_parquet

CLASSES = ["wave", "sit", "jump"]
IDS = ["s0", "s1", "s2", "s3"]
LABELS = np.array([0, 1, 2, 2])
# Each member alone gets half right: A s0, s1 (s2, s3 -> sit), B s0, s2 (s1, s3 -> wave). On s3
# the raw sum ranks jump first (A's margin for sit is small in logits), softmax does not.
A = np.array([[5.0, 1.0, 0.0], [0.0, 4.0, 1.0], [0.0, 3.0, 2.0], [0.0, 9.0, 8.5]])
B = np.array([[2.0, 0.0, 1.0], [1.5, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.9]])
C = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-np.inf, 0.0, 1.0]])


def evaluation(folder, scores, ids=IDS, labels=LABELS, classes=CLASSES, method="gap", **meta):
    order = [IDS.index(s) for s in ids]
    write_evaluation(folder, np.asarray(scores)[order], np.asarray(labels)[order], ids, classes,
                     metadata={"method": method, **meta})
    return folder / "predictions.parquet"


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def members(tmp_path):
    return [evaluation(tmp_path / "a", A, protocol="xsub"), evaluation(tmp_path / "b", B),
            evaluation(tmp_path / "c", C, method="text_probe")]


def fused_predictions(out):
    return pq.read_table(out / "predictions.parquet").to_pandas().set_index("sample_id")


@pytest.mark.parametrize("weights, normalize, preds", [
    # s3 raw: [0, 9, 8.5] + [1, 0, 0.9] = [1, 9, 9.4] -> jump
    (None, "none", [0, 1, 1, 2]),
    ([1.0, 3.0], "none", [0, 1, 2, 2]),  # s2: [0, 3, 2] + 3 * [0, 0, 1] = [0, 3, 5] -> jump
    # s3 softmax: [.0001, .62, .38] + [.44, .16, .40] = [.44, .78, .78] -> sit (.784 > .776)
    (None, "softmax", [0, 1, 1, 1]),
    ([0.8, 0.2], "softmax", [0, 1, 1, 1]),
])
def test_fusion_is_the_weighted_sum_of_member_scores(members, tmp_path, weights, normalize,
                                                     preds):
    metrics = ensemble(members[:2], tmp_path / "out", weights, normalize)
    w = weights or [1.0, 1.0]
    norm = softmax if normalize == "softmax" else (lambda x: x)
    expected = w[0] * norm(A) + w[1] * norm(B)
    table = fused_predictions(tmp_path / "out")
    assert table.loc[IDS, "pred"].tolist() == preds == expected.argmax(1).tolist()
    np.testing.assert_allclose(np.stack(table.loc[IDS, "scores"]), expected, rtol=1e-6)
    assert metrics["top1"] == np.mean(np.array(preds) == LABELS)
    assert metrics["member_top1"] == [0.5, 0.5] and metrics["weights"] == w
    assert metrics["protocol"] == "xsub" and metrics["normalize"] == normalize


def test_softmax_gives_minus_infinity_no_probability(members, tmp_path):
    metrics = ensemble(members, tmp_path / "out", normalize="softmax")
    fused = np.stack(fused_predictions(tmp_path / "out").loc[IDS, "scores"])
    assert np.isfinite(fused).all()
    np.testing.assert_allclose(fused[3, 0], softmax(A)[3, 0] + softmax(B)[3, 0], rtol=1e-6)
    assert metrics["member_names"] == ["gap", "gap", "text_probe"]


def test_members_in_another_sample_order_are_aligned_by_sample_id(members, tmp_path):
    shuffled = evaluation(tmp_path / "b_shuffled", B, ids=["s3", "s1", "s0", "s2"])
    ensemble([members[0], shuffled], tmp_path / "out", names=["joint", "bone"])
    ensemble(members[:2], tmp_path / "reference")
    out, reference = fused_predictions(tmp_path / "out"), fused_predictions(tmp_path / "reference")
    assert out.index.tolist() == IDS  # the first member's order
    assert out["pred"].tolist() == reference["pred"].tolist()
    np.testing.assert_array_equal(np.stack(out["scores"]), np.stack(reference["scores"]))
    assert table_metadata(pq.read_schema(tmp_path / "out/predictions.parquet"),
                          "member_names") == ["joint", "bone"]


def test_a_different_sample_set_is_refused(members, tmp_path):
    fewer = evaluation(tmp_path / "fewer", B[:3], ids=IDS[:3], labels=LABELS[:3])
    with pytest.raises(ActionlmError, match=r"1 samples of \S+/a/predictions.parquet are not in "
                                            r"\S+/fewer/predictions.parquet: \['s3'\]"):
        ensemble([members[0], fewer], tmp_path / "out")
    with pytest.raises(ActionlmError, match=r"1 samples of \S+/a/\S+ are not in \S+/fewer/"):
        ensemble([fewer, members[0]], tmp_path / "out")


def test_a_different_class_order_is_refused(members, tmp_path):
    other = evaluation(tmp_path / "other", B, classes=["wave", "jump", "sit"])
    with pytest.raises(ActionlmError, match=r"/a/\S+ and \S+/other/\S+: class order differs at "
                                            r"position 1: 'sit' in \S+/a/\S+, 'jump' in \S+/other/"):
        ensemble([members[0], other], tmp_path / "out")


def test_a_different_label_is_refused(members, tmp_path):
    relabelled = evaluation(tmp_path / "relabelled", B, labels=[0, 1, 2, 0])
    with pytest.raises(ActionlmError, match=r"1 samples have another label in \S+/relabelled/\S+ "
                                            r"than in \S+/a/\S+, e.g. 's3': 'jump' in \S+/a/\S+, "
                                            r"'wave' in \S+/relabelled/"):
        ensemble([members[0], relabelled], tmp_path / "out")


def test_predictions_without_scores_are_refused(members, tmp_path):
    table = pq.read_table(members[1])
    old = tmp_path / "old.parquet"
    write_parquet(table.drop_columns(["scores"]), old)
    with pytest.raises(ActionlmError, match="old.parquet: no scores column .* again"):
        ensemble([members[0], old], tmp_path / "out")


def test_a_member_of_weight_zero_adds_nothing(members, tmp_path):
    ensemble([members[0], members[2]], tmp_path / "out", [1.0, 0.0])  # C has a -inf score
    fused = np.stack(fused_predictions(tmp_path / "out").loc[IDS, "scores"])
    np.testing.assert_array_equal(fused, A)


@pytest.mark.parametrize("count, options, message", [
    (2, {"weights": [1.0]}, "--weights: 1 weights for 2"),
    (2, {"weights": [0.0, 0.0]}, "one at least > 0"),
    (2, {"names": ["joint"]}, "--names: 1 names for 2"),
    (1, {}, "two predictions files at least, got 1"),
])
def test_bad_options_are_refused(members, tmp_path, count, options, message):
    with pytest.raises(ActionlmError, match=message):
        ensemble(members[:count], tmp_path / "out", **options)


def test_cli_writes_the_fused_evaluation(members, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["ensemble", "--predictions", *map(str, members[:2]), "--weights", "1", "3",
                 "--normalize", "none", "--names", "joint", "bone", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"predictions.parquet", "metrics.json",
                                               "confusion.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] == 1.0 and metrics["member_top1"] == [0.5, 0.5]
    assert metrics["members"] == list(map(str, members[:2])) and metrics["method"] == "ensemble"
    assert main(["ensemble", "--predictions", *map(str, members[:2]), "--weights", "1",
                 "--out", str(out)]) == 2
    assert "1 weights for 2 predictions files" in capsys.readouterr().err


def test_scores_column_round_trips_an_encoder_evaluation(tmp_path):
    logits = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    logits[2, 4] = -np.inf  # a class the method cannot predict
    ids = [f"s{i}" for i in range(7)]
    write_evaluation(tmp_path, logits, np.arange(7) % 5, ids, list("abcde"),
                     metadata={"method": "ce"})
    table = pq.read_table(tmp_path / "predictions.parquet")
    assert table.schema.field("scores").type == pa.list_(pa.float32())
    np.testing.assert_array_equal(np.stack(table["scores"].to_numpy(zero_copy_only=False)), logits)
