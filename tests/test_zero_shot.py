"""Zero-shot protocols and metrics: the benchmarks' unseen-class lists pinned to their sources,
the samples each side of a split holds (no unseen-class sample trains), the validation
protocol, text-similarity scores against a hand computation, GZSL's harmonic mean and the
calibration chosen on validation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from actionlm.cli import main
from actionlm.data.clips import load_sequences, make_clips
from actionlm.data.split_files import SplitFiles
from actionlm.data.splits import NTU120_XSUB_TRAIN, make_split, write_split
from actionlm.data.zero_shot import BENCHMARKS, family_of, zero_shot_protocol
from actionlm.errors import ActionlmError
from actionlm.eval.zero_shot import choose_calibration, class_vectors, gzsl_accuracy
from actionlm.io import read_table, table_metadata, with_metadata, write_parquet
from actionlm.models.encoder import EncoderConfig, SkeletonEncoder, save_encoder
from actionlm.text.encode import EMBEDDING_SCHEMA

# NTU action ids (1-based), as the sources print them
PINNED = {
    # skelemoa/synse-zsl README, "Unseen Classes"; YujieOuO/SMIE config.py unseen_label_5/12/10/24
    "synse55_5": [11, 12, 20, 27, 57],
    "synse48_12": [4, 6, 10, 13, 16, 41, 43, 48, 52, 57, 59, 60],
    "synse110_10": [5, 14, 38, 44, 50, 66, 89, 96, 100, 107],
    "synse96_24": [6, 10, 12, 17, 19, 21, 23, 30, 36, 40, 46, 50, 60, 69, 71, 82, 85, 88, 94, 95,
                   105, 114, 115, 120],
    # YujieOuO/SMIE split.py split_1 .. split_6 (0-based there: +1 here)
    "smie55_5_split1": [5, 20, 32, 48, 52],
    "smie55_5_split2": [13, 30, 33, 45, 60],
    "smie55_5_split3": [8, 21, 29, 40, 59],
    "smie110_10_split1": [4, 19, 27, 39, 42, 61, 88, 100, 103, 111],
    "smie110_10_split2": [6, 13, 15, 16, 18, 43, 68, 83, 101, 120],
    "smie110_10_split3": [7, 21, 28, 34, 43, 56, 72, 98, 105, 119],
}


def test_the_benchmarks_unseen_classes_are_the_published_lists():
    assert {name: list(b.actions) for name, b in BENCHMARKS.items()} == PINNED
    for name, bench in BENCHMARKS.items():
        seen, unseen = map(int, re.match(r"[a-z]+(\d+)_(\d+)", name).groups())
        assert (bench.n_classes, len(set(bench.actions))) == (seen + unseen, unseen)
        assert bench.dataset == f"ntu{seen + unseen}"
        protocol = zero_shot_protocol(name)
        assert protocol.base == "xsub" and protocol.unseen_classes(seen + unseen) == \
            [a - 1 for a in PINNED[name]]


@pytest.mark.parametrize("name, family, base, k", [
    ("unseen3_seed4", "unseen3", None, 3),
    ("xsub_unseen5_seed0", "xsub_unseen5", "xsub", 5),
    ("view2_unseen3_seed1", "view2_unseen3", "view2", 3),
    ("synse48_12", "synse48_12", "xsub", 12),
    ("smie110_10_split2", "smie110_10", "xsub", 10),
])
def test_protocol_names_parse_to_family_base_and_size(name, family, base, k):
    protocol = zero_shot_protocol(name)
    assert (protocol.family, protocol.base, protocol.k) == (family, base, k)
    assert family_of(name) == family
    assert zero_shot_protocol(name + "_val").parent == protocol if base else \
        zero_shot_protocol(name + "_val") is None
    assert zero_shot_protocol("xsub") is None and zero_shot_protocol("synse55_6") is None


def ntu_meta(n_classes: int = 60, subjects=(1, 2, 3, 4), per_class: int = 2) -> pd.DataFrame:
    """Samples of every class by subjects on both sides of X-Sub (1, 2, 4 train; 3 test)."""
    rows = [(f"S{s}A{c}R{r}", c, s) for c in range(n_classes) for s in subjects
            for r in range(per_class)]
    meta = pd.DataFrame(rows, columns=["sample_id", "label", "subject"])
    return meta.assign(camera=1, setup=1, replication=1)


def sides(meta: pd.DataFrame, protocol: str, **kw) -> dict[str, pd.DataFrame]:
    frame, info = make_split(meta, protocol, meta["label"].nunique(), **kw)
    merged = frame.merge(meta, on="sample_id")
    return {name: part for name, part in merged.groupby("split")} | {"info": info}


def test_a_benchmark_split_keeps_unseen_classes_out_of_training_and_subjects_apart():
    meta = ntu_meta()
    parts = sides(meta, "synse55_5", val_fraction=0.25)
    unseen = {a - 1 for a in PINNED["synse55_5"]}
    train_subjects = NTU120_XSUB_TRAIN
    for name in ("train", "val"):
        assert not set(parts[name]["label"]) & unseen
        assert set(parts[name]["subject"]) <= train_subjects
    assert set(parts["test"]["label"]) == unseen and set(parts["test"]["subject"]) == {3}
    assert set(parts["test_seen"]["label"]) == set(range(60)) - unseen
    assert set(parts["test_seen"]["subject"]) == {3}
    assert parts["info"]["unseen_labels"] == sorted(unseen)
    # unseen classes' samples of training subjects take no part at all
    used = pd.concat([parts[n] for n in ("train", "val", "test", "test_seen")])
    dropped = meta[~meta["sample_id"].isin(used["sample_id"])]
    assert set(dropped["label"]) == unseen and set(dropped["subject"]) <= train_subjects
    # LLM-AR's protocol uses every sample: seen classes train, unseen test, nothing else
    drawn = sides(meta, "unseen5_seed0")
    assert set(drawn) == {"train", "test", "info"}
    assert len(drawn["train"]) + len(drawn["test"]) == len(meta)


def test_the_validation_protocol_only_reads_the_training_samples_of_seen_classes():
    meta = ntu_meta()
    parent, parts = sides(meta, "synse55_5"), sides(meta, "synse55_5_val")
    held_out = set(parts["info"]["unseen_labels"])
    assert len(held_out) == 5 and not held_out & set(parent["info"]["unseen_labels"])
    used = pd.concat([parts[n] for n in ("train", "test", "test_seen")])
    assert set(used["sample_id"]) <= set(parent["train"]["sample_id"])  # never a test subject
    assert set(parts["test"]["label"]) == held_out
    assert not set(parts["train"]["label"]) & held_out
    assert set(parts["test_seen"]["label"]) == set(parts["train"]["label"])
    assert not set(parts["test_seen"]["sample_id"]) & set(parts["train"]["sample_id"])
    with pytest.raises(ActionlmError, match="synse55_5 is a benchmark of ntu60's 60 classes"):
        make_split(ntu_meta(19), "synse55_5", 19)


def test_gzsl_harmonic_mean_and_the_calibration_chosen_on_validation():
    # classes 0, 1 seen; 2 unseen. Seen scores run 0.3 above where they should be.
    scores = np.array([[0.9, 0.1, 0.7],    # seen 0: right while gamma < 0.2
                       [0.2, 0.8, 0.6],    # seen 1: right while gamma < 0.2
                       [0.65, 0.1, 0.6],   # unseen 2: wrong until gamma > 0.05
                       [0.5, 0.2, 0.4]])   # unseen 2: wrong until gamma > 0.1
    labels = np.array([0, 1, 2, 2])
    plain = gzsl_accuracy(scores, labels, [2])
    assert (plain["seen"], plain["unseen"], plain["harmonic"]) == (1.0, 0.0, 0.0)
    half = gzsl_accuracy(scores, labels, [2], gamma=0.075)
    assert (half["seen"], half["unseen"]) == (1.0, 0.5)
    assert half["harmonic"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert choose_calibration(scores, labels, [2]) == pytest.approx(0.15)  # between 0.1 and 0.2
    assert gzsl_accuracy(scores, labels, [2], 0.15)["harmonic"] == 1.0
    too_far = gzsl_accuracy(scores, labels, [2], 0.25)
    assert (too_far["seen"], too_far["harmonic"]) == (0.0, 0.0)
    with pytest.raises(ActionlmError, match="seen and of unseen"):
        gzsl_accuracy(scores[2:], labels[2:], [2])


def text_table(path, class_vectors_by_kind: dict[str, np.ndarray]):
    rows = [{"class_id": c, "kind": kind, "part": None, "text": f"{kind} {c}", "encoder": "test",
             "embedding": v.astype(np.float32).tolist()}
            for kind, vectors in class_vectors_by_kind.items() for c, v in enumerate(vectors)]
    width = next(iter(class_vectors_by_kind.values())).shape[1]
    write_parquet(pa.Table.from_pylist(rows, schema=with_metadata(
        EMBEDDING_SCHEMA, encoder="test", width=width)), path)
    return path


def test_class_vectors_average_the_chosen_kinds_of_normalised_texts(tmp_path):
    names = np.array([[3.0, 0.0], [0.0, 1.0]])
    motion = np.array([[0.0, 2.0], [0.0, 5.0]])
    path = text_table(tmp_path / "t.parquet", {"name": names, "motion": motion})
    both = class_vectors(path, 2, ("name", "motion")).numpy()
    np.testing.assert_allclose(both[0], [2 ** -0.5, 2 ** -0.5], atol=1e-6)  # (1,0)+(0,1)
    np.testing.assert_allclose(both[1], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(class_vectors(path, 2, ("name",)).numpy(), [[1, 0], [0, 1]])
    with pytest.raises(ActionlmError, match="no visual text for class"):
        class_vectors(path, 2, ("visual",))


def random_text_encoder(data, tmp_path, method: str):
    """A random encoder with a 6-wide language head on ``xview_unseen4_seed0`` of ``data`` and
    random class texts: (model, its weights file, the split, the texts by kind, their table)."""
    split = tmp_path / "split.parquet"
    write_split(data / "skeletons.parquet", data / "classes.parquet",
                data / "embedded_splits.parquet", "xview_unseen4_seed0", split)
    torch.manual_seed(0)
    model = SkeletonEncoder(EncoderConfig(method=method, layout="ntu25", num_class=19,
                                          base_channels=8, window=16, text_width=6)).eval()
    weights = tmp_path / "enc/best.safetensors"
    weights.parent.mkdir()
    save_encoder(model, weights)
    (weights.parent / "config.json").write_text(json.dumps({
        "model": {"method": method}, "train": {"global_text": "synonym",
                                               "sugar_kinds": ["motion"]}}))
    gen = np.random.default_rng(0)
    kinds = {kind: gen.normal(size=(19, 6)) for kind in ("name", "synonym", "motion")}
    return model, weights, split, kinds, text_table(tmp_path / "texts.parquet", kinds)


def text_similarity(data, weights, split, texts, out, precision: str) -> np.ndarray:
    """``actionlm evaluate --method text_similarity`` on the CPU; the scores it wrote."""
    assert main(["evaluate", "--method", "text_similarity", "--model", str(weights),
                 "--skeletons", str(data / "skeletons.parquet"), "--split", str(split),
                 "--classes", str(data / "classes.parquet"), "--texts", str(texts),
                 "--out", str(out), "--device", "cpu", "--precision", precision,
                 "--class-texts", "both"]) == 0
    return np.stack(pq.read_table(out / "predictions.parquet")["scores"].to_pylist())


@pytest.mark.parametrize("method", ["gap", "sugar"])
def test_text_similarity_ranks_by_cosine_as_computed_by_hand(small_ntu_data, tmp_path, method,
                                                            torch_one_thread):
    """A random encoder and random class texts: ZSL scores and GZSL numbers equal the cosine
    of the language head's embedding to each class's mean text, computed here."""
    data = small_ntu_data
    model, weights, split, kinds, texts = random_text_encoder(data, tmp_path, method)
    out = tmp_path / "eval"
    scores = text_similarity(data, weights, split, texts, out, "fp32")

    trained = "synonym" if method == "gap" else "motion"
    class_vec = F.normalize(sum(F.normalize(torch.tensor(kinds[k], dtype=torch.float32), dim=1)
                                for k in ("name", trained)), dim=1)
    store = load_sequences(SplitFiles(data / "skeletons.parquet", split), ("test", "test_seen"),
                           model.cfg.bodies)
    with torch.no_grad():
        clips = make_clips(store, torch.arange(len(store)), 16, (0.95,))
        by_hand = (F.normalize(model.language_embedding(clips), dim=1) @ class_vec.T).numpy()
    unseen = table_metadata(read_table(split, columns=["sample_id"]), "unseen_labels")
    labels = store.labels.numpy()
    zsl = np.isin(labels, unseen)
    predictions = pq.read_table(out / "predictions.parquet").to_pandas()
    assert list(predictions["sample_id"]) == [s for s, z in zip(store.sample_ids, zsl) if z]
    np.testing.assert_allclose(scores, by_hand[zsl][:, unseen], atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == f"{method}_textsim" and metrics["unseen_labels"] == unseen
    expected = gzsl_accuracy(by_hand, labels, unseen)
    assert metrics["gzsl"]["harmonic"] == pytest.approx(expected["harmonic"])
    assert metrics["gzsl"]["seen"] == pytest.approx(expected["seen"])
    assert "validation_gamma" not in metrics["gzsl"]  # only a validation protocol chooses one


def test_text_similarity_under_bf16_autocast_writes_the_float32_cosines_closely(
        small_ntu_data, tmp_path, torch_one_thread):
    """The encoder in bf16, as ``--precision auto`` runs it on a CPU with AMX: the cosines are
    taken in float32 after it (bf16 scores once failed to become numpy)."""
    _, weights, split, _, texts = random_text_encoder(small_ntu_data, tmp_path, "gap")
    fp32, bf16 = (text_similarity(small_ntu_data, weights, split, texts, tmp_path / p, p)
                  for p in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16)  # the encoder did run in bf16
    np.testing.assert_allclose(bf16, fp32, atol=3e-2)


def test_text_similarity_refuses_an_encoder_without_a_language_head(small_ntu_data, tmp_path,
                                                                    capsys):
    weights = tmp_path / "best.safetensors"
    save_encoder(SkeletonEncoder(EncoderConfig(method="ce", layout="ntu25", num_class=19,
                                               base_channels=8, window=16)), weights)
    data = small_ntu_data
    assert main(["evaluate", "--method", "text_similarity", "--model", str(weights),
                 "--skeletons", str(data / "skeletons.parquet"),
                 "--split", str(data / "splits/xview.parquet"),
                 "--classes", str(data / "classes.parquet"), "--texts", str(weights),
                 "--out", str(tmp_path / "o"), "--device", "cpu"]) != 0
    assert "a ce encoder has no language head" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
