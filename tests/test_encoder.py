"""Skeleton encoders: graphs, CTR-GCN / ST-GCN, batched clips (equal to CTR-GCN's per-sample
crop-and-resize), GAP's and SUGAR's losses, the train-encoder stage (three methods, resume
after kill -9, bad input), evaluate and extract-features, on a small synthetic dataset, CPU."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from actionlm.data.clips import load_sequences, make_clips
from actionlm.data.features import read_features
from actionlm.data.prepare import prepare
from actionlm.data.skeleton_layouts import BODY_PARTS, KINECT_V1_20, NTU25
from actionlm.data.split_files import SplitFiles
from actionlm.errors import ActionlmError
from actionlm.eval.evaluate import evaluate_encoder
from actionlm.eval.features import extract_features
from actionlm.io import with_metadata, write_parquet
from actionlm.models.encoder import (
    EncoderConfig,
    SkeletonEncoder,
    load_encoder,
    parameter_count,
    predict_logits,
)
from actionlm.models.encoder_losses import MultiPartContrastiveLoss, mil_nce_loss
from actionlm.models.graph import spatial_adjacency
from actionlm.text.class_texts import ClassTexts
from actionlm.text.encode import EMBEDDING_SCHEMA
from actionlm.train.common import epoch_order
from actionlm.train.encoder import EncoderTraining, TrainConfig
from resume import assert_same_run, kill_after_checkpoint

TEXT_WIDTH = 12
TINY = {"base_channels": 8, "window": 16, "bodies": 2}
FAST = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=1, schedule="cosine", seed=1)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The synthetic NTU-format dataset through the real prepare stage (19 classes, 114 samples),
    with a val split for checkpoint selection."""
    out = tmp_path_factory.mktemp("syn") / "data"
    prepare("synthetic", None, out, dataset=None, protocols=["xview"], workers=1,
            val_fraction=0.2, synthetic={"n_subjects": 2, "n_replications": 1})
    return out


# The rows of each kind per class: 3 synonyms, a paragraph, the six parts, a motion text.
TEXT_ROWS = {"synonym": [None] * 3, "paragraph": [None], "part": list(BODY_PARTS),
             "motion": [None], "name": [None]}


def text_table(path: Path, classes: range, seed: int = 0, kinds=tuple(TEXT_ROWS)) -> Path:
    """A text_embeddings.parquet with ``TEXT_ROWS`` of these kinds per class."""
    rng = np.random.default_rng(seed)
    rows = [(k, kind, part) for kind in kinds for k in classes for part in TEXT_ROWS[kind]]
    vectors = rng.normal(size=(len(rows), TEXT_WIDTH)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pa.table({
        "class_id": [r[0] for r in rows], "kind": [r[1] for r in rows],
        "part": [r[2] for r in rows], "text": [f"text {i}" for i in range(len(rows))],
        "encoder": ["test"] * len(rows), "embedding": list(vectors),
    }, schema=with_metadata(EMBEDDING_SCHEMA, width=TEXT_WIDTH, encoder="test"))
    write_parquet(table, path)
    return path


@pytest.fixture(scope="module")
def texts(data_dir, tmp_path_factory) -> Path:
    return text_table(tmp_path_factory.mktemp("texts") / "text_embeddings.parquet", range(19))


def xview(data_dir: Path) -> SplitFiles:
    return SplitFiles.prepared(data_dir, "xview")


def train(data_dir, out, method, texts=None, train_cfg=FAST, **options):
    training = EncoderTraining(xview(data_dir), data_dir / "classes.parquet", out,
                               {"method": method, **TINY, **options}, train_cfg, texts,
                               torch.device("cpu"))
    return training.run(checkpoint_every=0)


# --- graph and networks ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", [NTU25, KINECT_V1_20])
def test_adjacency_has_identity_and_degree_normalised_directed_edges(layout):
    a = spatial_adjacency(layout)
    v = layout.n_joints
    assert a.shape == (3, v, v) and torch.equal(a[0], torch.eye(v))
    assert int((a[1] > 0).sum()) == len(layout.bones) == int((a[2] > 0).sum())
    for subset in (a[1], a[2]):
        sums = subset.sum(dim=0)
        assert torch.allclose(sums[sums > 0], torch.ones(int((sums > 0).sum())))
    child, parent = layout.bones[0]
    assert a[1, parent, child] > 0 and a[2, child, parent] > 0  # inward: child sends to parent


def test_ctrgcn_has_the_published_size_and_both_backbones_share_the_interface():
    """CTR-GCN's paper reports 1.46 M parameters for NTU-60 (c = 64, 60 classes)."""
    ntu60 = SkeletonEncoder(EncoderConfig(method="ce", layout="ntu25", num_class=60))
    assert abs(parameter_count(ntu60) - 1.46e6) / 1.46e6 < 0.02
    x = torch.randn(2, 16, 2, 25, 3)
    for backbone in ("ctrgcn", "stgcn"):
        model = SkeletonEncoder(EncoderConfig(method="sugar", layout="ntu25", num_class=5,
                                              backbone=backbone, text_width=7, **TINY)).eval()
        assert model.backbone.features(x).shape == (2, 2, 32, 4, 25)
        assert model.step_features(x).shape == (2, 4, 32)
        assert model(x).shape == (2, 5)


def test_ctr_gc_refines_the_topology_from_temporal_means_of_phi_and_psi():
    """CTR-GC (Eqs. 3-6) as CTR-GCN's code writes it: phi(x) and psi(x) over every frame, then
    their temporal means; the layer takes phi and psi of the mean (they are pointwise linear)."""
    from actionlm.models.ctrgcn import ChannelTopologyGC

    torch.manual_seed(0)
    gc = ChannelTopologyGC(6, 12).eval()
    x, shared, alpha = torch.randn(3, 6, 10, 25), torch.randn(25, 25), torch.tensor([0.7])
    u, v = gc.phi(x).mean(dim=2), gc.psi(x).mean(dim=2)
    topology = gc.refine(torch.tanh(u.unsqueeze(-1) - v.unsqueeze(-2))) * alpha + shared
    expected = torch.einsum("ncuv,nctv->nctu", topology, gc.xi(x))
    assert torch.allclose(gc(x, shared, alpha, x.mean(dim=2, keepdim=True)), expected,
                          atol=1e-5)


def test_sugar_variant_drops_temporal_max_pooling():
    def pools(method):
        model = SkeletonEncoder(EncoderConfig(method=method, layout="ntu25", num_class=5,
                                              text_width=4, **TINY))
        return sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())

    assert pools("ce") == 10 and pools("sugar") == 0


def test_gap_part_embeddings_pool_exactly_their_joint_groups():
    model = SkeletonEncoder(EncoderConfig(method="gap", layout="ntu25", num_class=5, parts=4,
                                          text_width=6, **TINY))
    groups = model.cfg.part_groups
    assert list(groups) == ["global", "head", "hand+arm", "hip", "leg+foot"]
    features = torch.zeros(1, 32, 25)
    features[0, :, 20] = 1.0  # only joint 21 (spine at the shoulders, a head joint) is active
    out = model.part_embeddings(features)
    biases = torch.stack([h.bias for h in model.part_heads])
    moved = (out[0] - biases).abs().sum(-1) > 1e-6
    assert moved.tolist() == [True, True, False, False, False]


# --- batched clips -----------------------------------------------------------------------------


def test_test_clips_equal_ctrgcn_per_sample_crop_and_bilinear_resize(data_dir):
    store = load_sequences(xview(data_dir), ("test",))
    clips = make_clips(store, torch.arange(len(store)), 20, (0.95,))
    for i in range(len(store)):
        n = int(store.lengths[i])
        sample = store.frames[store.starts[i]: store.starts[i] + n]  # [T, M, V, C]
        bias = int((1 - 0.95) * n / 2)
        crop = sample[bias: n - bias].permute(1, 2, 3, 0).reshape(1, 1, -1, n - 2 * bias)
        resized = F.interpolate(crop, size=(crop.shape[2], 20), mode="bilinear",
                                align_corners=False)
        expected = resized.reshape(*sample.shape[1:], 20).permute(3, 0, 1, 2)
        assert torch.allclose(clips[i], expected, atol=1e-5)


def test_training_clips_are_reproducible_in_range_and_rotation_keeps_bone_lengths(data_dir):
    store = load_sequences(xview(data_dir), ("train",))
    index = torch.arange(len(store))

    def clips(seed, rotate=0.0):
        return make_clips(store, index, 16, (0.5, 1.0), rotate, torch.Generator().manual_seed(seed))

    assert torch.equal(clips(3), clips(3)) and not torch.equal(clips(3), clips(4))
    rotated = clips(3, rotate=0.5)
    assert not torch.allclose(rotated, clips(3))
    child, parent = zip(*NTU25.bones)
    bones = lambda x: (x[..., child, :] - x[..., parent, :]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(bones(rotated), bones(clips(3)), atol=1e-4)
    # crops stay inside each sample: no clip frame is an all-zero padding frame
    assert clips(5)[:, :, 0].abs().amax(dim=(2, 3)).gt(0).all()


# --- losses ------------------------------------------------------------------------------------


def test_multipart_loss_prefers_aligned_texts_and_is_symmetric_kl():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 2])
    skeleton = torch.randn(4, 3, 8)
    loss = MultiPartContrastiveLoss(3)
    aligned, shuffled = loss(skeleton, skeleton, labels), loss(skeleton, torch.randn(4, 3, 8), labels)
    assert aligned < shuffled
    # one term by hand: KL(y || softmax(scale * cos)) averaged over rows, both directions
    s, t = F.normalize(skeleton[:, 0], dim=-1), F.normalize(skeleton[:, 0] * 2, dim=-1)
    y = (labels[:, None] == labels[None]).float()
    y = y / y.sum(1, keepdim=True)
    logits = s @ t.T / 0.07

    def kl(lg):
        p = F.log_softmax(lg, 1)
        return (torch.where(y > 0, y * (y.clamp_min(1e-12).log() - p), 0)).sum(1).mean()

    single = MultiPartContrastiveLoss(1)
    assert torch.allclose(single(skeleton[:, :1], skeleton[:, :1] * 2, labels),
                          0.5 * (kl(logits) + kl(logits.T)), atol=1e-5)


def test_mil_nce_is_eq3():
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 0, 2])
    s, t = torch.randn(4, 6), torch.randn(4, 3, 6)
    sn, tn = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    total = 0.0
    for i in range(4):
        pos = sum(math.exp(sn[i] @ tn[j, n] / 0.1) for j in range(4) for n in range(3)
                  if labels[j] == labels[i])
        alls = sum(math.exp(sn[i] @ tn[k, n] / 0.1) for k in range(4) for n in range(3))
        total += -math.log(pos / alls)
    assert mil_nce_loss(s, t, labels, 0.1).item() == pytest.approx(total / 4, rel=1e-4)


# --- training, evaluation, features -----------------------------------------------------------


@pytest.mark.parametrize("method", ["ce", "gap", "sugar"])
def test_each_method_trains_writes_its_outputs_and_evaluates(method, data_dir, texts, tmp_path):
    out = tmp_path / method
    curves = train(data_dir, out, method, None if method == "ce" else texts)
    assert len(curves) == 2 and all(math.isfinite(r["loss"]) for r in curves)
    table = pd.read_parquet(out / "curves.parquet")
    assert table.epoch.tolist() == [1, 2] and table.val_top1.notna().all()
    assert (table.contrastive > 0).all() == (method != "ce")
    model = load_encoder(out / "best.safetensors")
    assert model.cfg.method == method and model.cfg.num_class == 19
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["method"] == method and config["data"]["protocol"] == "xview"
    features = extract_features(out / "best.safetensors", xview(data_dir),
                                tmp_path / "features.parquet", torch.device("cpu"))
    table = read_features(tmp_path / "features.parquet")
    assert table.encoder["protocol"] == "xview"
    splits = pq.read_table(data_dir / "splits" / "xview.parquet").to_pandas()
    assert sorted(table.sample_ids) == sorted(splits.sample_id)
    assert features[1:] == ((TINY["window"] // 4, 32) if method == "sugar" else (1, 32))
    if method != "sugar":
        metrics = evaluate_encoder(out / "best.safetensors", xview(data_dir),
                                   data_dir / "classes.parquet", tmp_path / "eval",
                                   torch.device("cpu"), 0.95, 64)
        assert metrics["protocol"] == "xview" and metrics["method"] == method
        predictions = pd.read_parquet(tmp_path / "eval" / "predictions.parquet")
        assert len(predictions) == metrics["n"] == (splits.split == "test").sum()
        assert metrics["top1"] == pytest.approx(predictions.correct.mean())
        assert np.asarray(metrics["confusion"]).sum() == metrics["n"]
        assert (tmp_path / "eval" / "confusion.png").stat().st_size > 0


@pytest.mark.parametrize("parts", [1, 2, 6])
def test_gap_trains_with_every_partition_of_table_1a(parts, data_dir, texts, tmp_path):
    """1 = the global term alone (no part texts drawn), 2 / 6 = that many body-part groups."""
    curves = train(data_dir, tmp_path, "gap", texts, parts=parts)
    assert all(math.isfinite(r["loss"]) and r["contrastive"] > 0 for r in curves)
    model = load_encoder(tmp_path / "best.safetensors")
    assert len(model.part_heads) == 1 + (parts if parts > 1 else 0)


def test_repeat_shows_every_training_sample_repeat_times_per_epoch(data_dir, tmp_path,
                                                                   monkeypatch):
    """GAP's NW-UCLA ``repeat``: one shuffle of the training set listed N times per epoch."""
    order = epoch_order(50, seed=1, epoch=0, repeat=3)
    assert torch.equal(torch.bincount(order), torch.full((50,), 3))
    assert not torch.equal(order[:50].sort().values, torch.arange(50))  # copies interleave
    assert torch.equal(epoch_order(50, 1, 0), torch.randperm(  # repeat 1: the order as before
        50, generator=torch.Generator().manual_seed(100_003)))
    batches = []
    original = EncoderTraining.step

    def recording_step(self, index, progress, steps_per_epoch):
        batches.append(index)
        return original(self, index, progress, steps_per_epoch)

    monkeypatch.setattr(EncoderTraining, "step", recording_step)
    curves = train(data_dir, tmp_path, "ce", train_cfg=TrainConfig(
        epochs=1, batch_size=16, lr=0.05, warmup_epochs=0, repeat=3, seed=1))
    n = len(load_sequences(xview(data_dir), ("train",)))
    assert curves[0]["step"] == len(batches) == 3 * n // 16
    seen = torch.bincount(torch.cat(batches), minlength=n)
    assert seen.max() == 3 and seen.sum() == 3 * n - (3 * n) % 16  # only the last part dropped
    assert json.loads((tmp_path / "config.json").read_text())["train"]["repeat"] == 3


def test_best_checkpoint_is_the_best_val_epoch(data_dir, tmp_path):
    curves = train(data_dir, tmp_path, "ce", train_cfg=TrainConfig(
        epochs=4, batch_size=16, lr=0.05, warmup_epochs=0, seed=2))
    best_epoch = int(np.argmax([r["val_top1"] for r in curves]))
    model = load_encoder(tmp_path / "best.safetensors")
    store = load_sequences(xview(data_dir), ("val",))
    logits = predict_logits(model, store, 16, (0.95,), torch.device("cpu"))
    assert (logits.argmax(1) == store.labels).float().mean().item() == pytest.approx(
        curves[best_epoch]["val_top1"])


def _train_cli(data_dir, texts, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "actionlm.cli", "train-encoder", "--method", "gap",
         "--skeletons", str(data_dir / "skeletons.parquet"),
         "--split", str(data_dir / "splits" / "xview.parquet"),
         "--classes", str(data_dir / "classes.parquet"), "--texts", str(texts), "--out", str(out),
         "--base-channels", "8", "--window", "16", "--epochs", "3", "--batch-size", "16",
         "--warmup-epochs", "1", "--lr", "0.05", "--seed", "1", "--dropout", "0.3",
         "--rotate", "0.2", "--checkpoint-every", "1", "--threads", "1", "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_resume_after_kill_gives_the_uninterrupted_result(data_dir, texts, tmp_path):
    killed = _train_cli(data_dir, texts, tmp_path / "killed")
    kill_after_checkpoint(killed, tmp_path / "killed" / "checkpoints" / "latest.json", 5)
    assert not (tmp_path / "killed" / "last.safetensors").exists()
    assert _train_cli(data_dir, texts, tmp_path / "killed").wait(120) == 0
    assert _train_cli(data_dir, texts, tmp_path / "straight").wait(120) == 0
    assert_same_run(tmp_path / "straight", tmp_path / "killed", "last.safetensors")


def test_a_rerun_on_a_finished_checkpoint_writes_every_output_again(data_dir, tmp_path):
    """Killed after its last checkpoint, a job's outputs are removed by Snakemake's rerun
    (--rerun-incomplete); resuming from that checkpoint trains nothing and must still write
    them all, the curves included (tests/test_faults.py met it when a kill landed there)."""
    train(data_dir, tmp_path, "ce")
    curves = pd.read_parquet(tmp_path / "curves.parquet")
    for name in ("curves.parquet", "last.safetensors", "best.safetensors"):
        (tmp_path / name).unlink()
    assert train(data_dir, tmp_path, "ce") == curves.to_dict("records")
    assert pd.read_parquet(tmp_path / "curves.parquet").equals(curves)
    assert (tmp_path / "last.safetensors").is_file() and (tmp_path / "best.safetensors").is_file()


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"num_class": 60}, "num_class 60 does not fit"),
    ({"layout": "kinect_v1_20"}, "does not fit the data's 25 joints"),
    ({"window": 4096}, "longer than the longest training sequence"),
    ({"window": 18}, "not a positive multiple of 4"),
])
def test_config_that_does_not_fit_the_data_is_refused(options, message, data_dir, tmp_path):
    with pytest.raises(ActionlmError, match=message):
        train(data_dir, tmp_path, "ce", **options)


def test_empty_split_is_refused(data_dir, tmp_path):
    splits = pq.read_table(data_dir / "splits" / "xview.parquet").to_pandas()
    splits["split"] = "test"
    splits.to_parquet(tmp_path / "all_test.parquet")
    files = SplitFiles(data_dir / "skeletons.parquet", tmp_path / "all_test.parquet")
    with pytest.raises(ActionlmError, match=r"all_test\.parquet: no samples in split"):
        EncoderTraining(files, data_dir / "classes.parquet", tmp_path / "out",
                        {"method": "ce", **TINY}, FAST, None, torch.device("cpu"))


def test_text_table_missing_classes_is_refused(data_dir, tmp_path):
    partial = text_table(tmp_path / "partial.parquet", range(17))
    with pytest.raises(ActionlmError, match=r"no name/synonym text for class\(es\) \[17, 18\]"):
        train(data_dir, tmp_path / "out", "gap", partial)


def test_gaps_global_term_draws_the_class_name_and_its_synonyms(data_dir, texts, tmp_path):
    """GAP: Text_Prompt.py's synonym prompts are each line of its synonym file, the label name
    first; the paragraph option draws only the paragraph."""
    kinds = pd.read_parquet(texts, columns=["kind"])["kind"].to_numpy()
    for global_text, expected in (("synonym", {"name", "synonym"}), ("paragraph", {"paragraph"})):
        training = EncoderTraining(xview(data_dir), data_dir / "classes.parquet", tmp_path,
                                   {"method": "gap", **TINY}, TrainConfig(
                                       epochs=1, global_text=global_text), texts,
                                   torch.device("cpu"))
        pool = training.targets.global_pool
        assert set(kinds[pool.rows[0, :pool.counts[0]].numpy()]) == expected
        assert int(pool.counts[0]) == (3 + 1 if global_text == "synonym" else 1)


@pytest.mark.parametrize("held, asked, message", [
    (("synonym", "paragraph", "part"), ("motion",),
     "no 'motion' texts; they are made by describe (SUGAR's question; GAP's imported files"),
    (tuple(TEXT_ROWS), ("motion", "visual"),
     "no 'visual' texts; they are made by describe-visual (knowledge.visual.enabled"),
])
def test_a_kind_the_text_table_lacks_names_the_stage_that_makes_it(held, asked, message,
                                                                    tmp_path):
    texts = text_table(tmp_path / "texts.parquet", range(3), kinds=held)
    with pytest.raises(ActionlmError, match=re.escape(message)):
        ClassTexts(texts, 3).pool(asked)


def test_checkpoint_of_another_architecture_is_refused(data_dir, tmp_path):
    train(data_dir, tmp_path / "ce", "ce", train_cfg=TrainConfig(epochs=1, batch_size=16))
    weights = tmp_path / "ce" / "best.safetensors"
    other = SkeletonEncoder(EncoderConfig(method="ce", layout="ntu25", num_class=19,
                                          **{**TINY, "base_channels": 12}))
    from actionlm.models.encoder import load_weights

    with pytest.raises(ActionlmError, match="another architecture.*shape differs"):
        load_weights(other, load_file(weights), str(weights))
    save_file({"codebook.weight": torch.zeros(4, 4)}, tmp_path / "vqvae.safetensors")
    with pytest.raises(ActionlmError, match="no encoder config"):
        load_encoder(tmp_path / "vqvae.safetensors")
    with pytest.raises(ActionlmError, match="not a readable safetensors file"):
        load_encoder(data_dir / "skeletons.parquet")


def test_nan_loss_stops_with_the_last_good_checkpoint_kept(data_dir, tmp_path):
    train(data_dir, tmp_path, "ce", train_cfg=TrainConfig(epochs=1, batch_size=16, seed=1))
    before = (tmp_path / "checkpoints" / "latest.json").read_text()
    exploding = TrainConfig(epochs=3, batch_size=16, lr=1e30, warmup_epochs=0, clip_grad=0,
                            seed=1)
    with pytest.raises(ActionlmError, match="loss is (nan|inf).*last good checkpoint is kept"):
        train(data_dir, tmp_path, "ce", train_cfg=exploding)
    latest = json.loads((tmp_path / "checkpoints" / "latest.json").read_text())
    assert latest["config"]["train"]["lr"] == 1e30 or latest == json.loads(before)
    assert all(torch.isfinite(v).all() for v in load_file(
        tmp_path / "checkpoints" / latest["weights"]).values() if v.is_floating_point())


# --- text encoder fine-tuning --------------------------------------------------------------


MINILM = {"backend": "sentence-transformers", "model": "bundled", "pretrained": "none"}


@pytest.fixture(scope="module")
def minilm_texts(texts, tmp_path_factory) -> Path:
    """The text table's descriptions embedded by the bundled MiniLM (the encoder fine-tuned)."""
    from actionlm.text.encode import encode_tables

    folder = tmp_path_factory.mktemp("minilm")
    frame = pd.read_parquet(texts).drop(columns=["encoder", "embedding"])
    frame["text"] = [f"{kind} {part or ''} of action {k}" for k, kind, part in
                     zip(frame.class_id, frame.kind, frame.part)]
    frame.to_parquet(folder / "descriptions.parquet")
    encode_tables([folder / "descriptions.parquet"], folder / "minilm.parquet", device="cpu")
    return folder / "minilm.parquet"


def fine_tuning(data_dir, texts, out, **train_options) -> EncoderTraining:
    tuned = TrainConfig(epochs=1, batch_size=16, lr=0.05, seed=1, text_tuning="finetune",
                        text_lr=1e-3, **{"warmup_epochs": 0, **train_options})
    return EncoderTraining(xview(data_dir), data_dir / "classes.parquet", out,
                           {"method": "gap", **TINY}, tuned, texts, torch.device("cpu"), MINILM)


def test_gap_fine_tunes_the_bundled_text_encoder_that_made_the_table(data_dir, texts,
                                                                      minilm_texts, tmp_path):
    """``text_tuning: finetune`` trains the text encoder (MiniLM here) with the GCN, by default
    with its own AdamW at text_lr; the text table must come from that same encoder."""
    training = fine_tuning(data_dir, minilm_texts, tmp_path / "out")
    sgd, adamw = training.optimizers
    text = list(training.extras["texts"].parameters())
    assert [p for g in adamw.param_groups for p in g["params"]] == text
    assert adamw.param_groups[0]["lr"] == 1e-3
    before = {k: v.clone() for k, v in training.extras["texts"].state_dict().items()}
    curves = training.run(checkpoint_every=0)
    assert math.isfinite(curves[0]["contrastive"])
    after = training.extras["texts"].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ActionlmError, match="embedded with 'test'"):
        fine_tuning(data_dir, texts, tmp_path / "other")


def test_text_optimizer_sgd_trains_the_text_encoder_in_the_network_sgd_at_its_lr(
        data_dir, minilm_texts, tmp_path):
    """GAP (main_multipart_ntu.py): the text encoder is a group of the network's Nesterov SGD,
    and adjust_learning_rate gives every group the schedule's lr (text_lr unused)."""
    training = fine_tuning(data_dir, minilm_texts, tmp_path, text_optimizer="sgd",
                           warmup_epochs=1)
    [sgd] = training.optimizers
    text = list(training.extras["texts"].parameters())
    in_sgd = {id(p) for g in sgd.param_groups for p in g["params"]}
    assert isinstance(sgd, torch.optim.SGD) and all(id(p) in in_sgd for p in text)
    assert all(g["nesterov"] and g["weight_decay"] == 5e-4 for g in sgd.param_groups)
    curves = training.run(checkpoint_every=0)
    steps = curves[0]["step"]
    schedule_lr = training.cfg.learning_rate(steps - 1, steps)  # warm-up: not lr, not text_lr
    assert schedule_lr not in (0.05, 1e-3)
    assert all(g["lr"] == schedule_lr for g in sgd.param_groups)
    assert all("momentum_buffer" in sgd.state[p] for p in text if p.grad is not None)
    assert any(p.grad is not None for p in text)


def test_evaluating_an_encoder_needs_its_skeletons_and_split(data_dir, tmp_path, capsys):
    from actionlm.cli import main

    assert main(["evaluate", "--method", "gap", "--model", str(tmp_path / "best.safetensors"),
                 "--classes", str(data_dir / "classes.parquet"), "--out", str(tmp_path),
                 "--split", str(data_dir / "splits" / "xview.parquet")]) == 2
    assert "--method gap needs --skeletons (skeletons.parquet)" in capsys.readouterr().err
