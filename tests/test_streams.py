"""Skeleton streams (joint, bone, joint_motion, bone_motion) on real NTU and NW-UCLA samples:
the layouts' bones are CTR-GCN's bone pairs; the batched streams of the encoders' clips and of
the VQ-VAE's fixed-size loader equal CTR-GCN's per-sample feeder code; an unknown stream is
refused; a trained encoder and VQ-VAE record their stream and every later stage reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from actionlm.cli import main
from actionlm.data.clips import load_sequences, make_clips
from actionlm.data.features import read_features
from actionlm.data.prepare import prepare
from actionlm.data.skeleton_layouts import KINECT_V1_20, NTU25
from actionlm.data.split_files import SplitFiles
from actionlm.data.streams import MODALITIES, parent_index, skeleton_stream
from actionlm.data.tensors import load_split
from actionlm.errors import ActionlmError
from actionlm.io import table_metadata
from actionlm.models.encoder import (
    EncoderConfig,
    SkeletonEncoder,
    load_encoder,
    predict_logits,
    save_encoder,
)
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, load_vqvae, save_vqvae

pytestmark = pytest.mark.usefixtures("torch_one_thread")
CPU = torch.device("cpu")

# CTR-GCN's bone pairs (v1, v2), 1-based: bone of v1 = joint v1 - joint v2, (j, j) a zero bone.
# Uason-Chen/CTR-GCN feeders/feeder_ntu.py (bone_pairs.ntu_pairs)
CTRGCN_NTU_PAIRS = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (21, 21), (23, 8), (24, 25), (25, 12),
)
# Uason-Chen/CTR-GCN feeders/feeder_ucla.py (bone pairs of the NW-UCLA feeder)
CTRGCN_UCLA_PAIRS = (
    (1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
)
PAIRS = {25: CTRGCN_NTU_PAIRS, 20: CTRGCN_UCLA_PAIRS}
STREAMS = ("bone", "joint_motion", "bone_motion")


def ctrgcn_stream(clip: np.ndarray, modality: str) -> np.ndarray:
    """CTR-GCN's feeder __getitem__ after crop-resize and rotation, on one joint clip
    [T, M, V, C]: bone over the pairs, then motion, in its [C, T, V, M] layout; returned as
    [T, M, V, C]."""
    data = clip.transpose(3, 0, 2, 1).copy()
    if "bone" in modality:
        bone = np.zeros_like(data)
        for v1, v2 in PAIRS[data.shape[2]]:
            bone[:, :, v1 - 1] = data[:, :, v1 - 1] - data[:, :, v2 - 1]
        data = bone
    if "motion" in modality:
        data[:, :-1] = data[:, 1:] - data[:, :-1]
        data[:, -1] = 0
    return data.transpose(1, 3, 2, 0)


@pytest.fixture(scope="module")
def datasets(shared, tmp_path_factory) -> dict[str, SplitFiles]:
    """Real samples through the prepare stage: the two NTU raw files (xsub: one train, one
    test), the CTR-GCN npz (11 two-person test samples) and NW-UCLA (view2)."""
    root = tmp_path_factory.mktemp("streams")
    ntu = shared / "datasets/ntu-samples"
    sources = {"ntu-raw": (ntu / "raw", "ntu60", "xsub"),
               "ctrgcn-npz": (ntu / "ctrgcn-npz/NTU60_CS.npz", "ntu60", "xsub"),
               "nw-ucla": (shared / "datasets/nw-ucla/all_sqe", None, "view2")}
    out = {}
    for fmt, (src, dataset, protocol) in sources.items():
        prepare(fmt, src, root / fmt, dataset=dataset, protocols=[protocol], workers=1)
        out[fmt] = SplitFiles.prepared(root / fmt, protocol)
    return out


def test_layout_bones_are_ctrgcn_bone_pairs():
    for layout, pairs in ((NTU25, CTRGCN_NTU_PAIRS), (KINECT_V1_20, CTRGCN_UCLA_PAIRS)):
        assert sorted(v1 for v1, _ in pairs) == list(range(1, layout.n_joints + 1))
        assert parent_index(layout).tolist() == [v2 - 1 for _, v2 in sorted(pairs)]
        clip = torch.randn(2, 5, 2, layout.n_joints, 3)
        expected = np.stack([ctrgcn_stream(c, "bone") for c in clip.numpy()])
        assert np.array_equal(skeleton_stream(clip, "bone", layout).numpy(), expected)


@pytest.mark.parametrize("interval, rotate", [((0.95,), 0.0), ((0.5, 1.0), 0.3)],
                         ids=["test-clips", "training-clips"])
@pytest.mark.parametrize("fmt", ["ntu-raw", "ctrgcn-npz", "nw-ucla"])
def test_clip_streams_equal_ctrgcn_per_sample_feeder(fmt, interval, rotate, datasets):
    """Bones taken at load, before the crop, resize and rotation, equal CTR-GCN's bones of
    the rotated clip (to float rounding); motion follows all of it."""
    def clips(modality):  # the same crops and rotations for every stream
        store = load_sequences(datasets[fmt], ("train", "test"), modality=modality)
        index = torch.arange(0, len(store), 16 if len(store) > 100 else 1)
        generator = torch.Generator().manual_seed(7)
        return make_clips(store, index, 32, interval, rotate, generator).numpy()

    joint = clips("joint")
    assert fmt != "ctrgcn-npz" or np.abs(joint[:, :, 1]).max() > 0  # two-person actions
    for modality in STREAMS:
        expected = np.stack([ctrgcn_stream(c, modality) for c in joint])
        np.testing.assert_allclose(clips(modality), expected, atol=1e-5, err_msg=modality)
        assert np.abs(expected).max() > 0.01, modality


@pytest.mark.parametrize("fmt", ["ntu-raw", "nw-ucla"])
def test_vqvae_loader_streams_equal_ctrgcn_per_sample_feeder(fmt, datasets):
    joint = load_split(datasets[fmt], "test", 32, 2)
    for modality in STREAMS:
        split = load_split(datasets[fmt], "test", 32, 2, modality)
        assert split.sample_ids == joint.sample_ids
        expected = np.stack([ctrgcn_stream(c, modality) for c in joint.joints.numpy()])
        assert np.array_equal(split.joints.numpy(), expected), (fmt, modality)


def test_unknown_stream_is_refused(datasets):
    valid = "joint, bone, joint_motion, bone_motion"
    assert MODALITIES == tuple(valid.split(", "))
    with pytest.raises(ActionlmError, match=valid):
        skeleton_stream(torch.zeros(1, 4, 1, 20, 3), "velocity")
    with pytest.raises(ActionlmError, match=valid):
        load_sequences(datasets["nw-ucla"], ("test",), modality="bones")
    with pytest.raises(ActionlmError, match=valid):
        load_split(datasets["nw-ucla"], "test", 16, modality="motion")
    with pytest.raises(ActionlmError, match="modality 'motion' is not one of"):
        EncoderConfig(method="ce", layout="ntu25", num_class=5, modality="motion").validate()
    with pytest.raises(ActionlmError, match="modality must be one of"):
        VQVAEConfig(width=8, modality="motion").validate()


def drop_modality(path: Path, key: str) -> None:
    """Rewrite a weights file as one saved before streams existed: no modality in its config."""
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    config = json.loads(metadata[key])
    del config["modality"]
    save_file(load_file(str(path)), str(path), metadata={**metadata, key: json.dumps(config)})


def test_models_saved_without_a_stream_read_joints(tmp_path):
    encoder = tmp_path / "encoder.safetensors"
    save_encoder(SkeletonEncoder(EncoderConfig(method="ce", layout="kinect_v1_20", num_class=10,
                                               base_channels=4, window=16, bodies=1,
                                               modality="bone")), encoder)
    drop_modality(encoder, "actionlm.encoder")
    assert load_encoder(encoder).cfg.modality == "joint"
    vqvae = tmp_path / "vqvae.safetensors"
    save_vqvae(ActionVQVAE(VQVAEConfig(width=8, joints=20, window=8, codes=4, channels=8,
                                       depth=0, modality="bone_motion")), vqvae)
    drop_modality(vqvae, "vqvae_config")
    assert load_vqvae(vqvae).cfg.modality == "joint"


def split_args(files: SplitFiles) -> list[str]:
    return ["--skeletons", str(files.skeletons), "--split", str(files.split)]


def test_bone_encoder_records_its_stream_and_evaluate_and_features_read_it(datasets, tmp_path):
    files = datasets["nw-ucla"]
    classes = str(files.skeletons.with_name("classes.parquet"))
    run = ["--device", "cpu", "--threads", "1"]
    train = ["train-encoder", "--method", "ce", *split_args(files), "--classes", classes,
             "--epochs", "1", "--base-channels", "4", "--window", "16", "--bodies", "1",
             "--batch-size", "128", "--warmup-epochs", "0", *run]
    assert main([*train, "--out", str(tmp_path / "enc"), "--modality", "bone"]) == 0
    weights = tmp_path / "enc" / "best.safetensors"
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["model"]["modality"] == "bone"
    model = load_encoder(weights)
    assert model.cfg.modality == "bone"
    # the same run on joints (same seed: same initial weights and batches) ends elsewhere
    assert main([*train, "--out", str(tmp_path / "joint"), "--modality", "joint"]) == 0
    joint_weights = load_file(tmp_path / "joint" / "best.safetensors")
    assert not torch.equal(load_file(weights)["fc.weight"], joint_weights["fc.weight"])

    assert main(["evaluate", "--method", "ce", "--model", str(weights), *split_args(files),
                 "--classes", classes, "--out", str(tmp_path / "eval"), *run]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["modality"] == "bone"
    with torch.no_grad():
        def logits(modality):
            test = load_sequences(files, ("test",), 1, modality)
            return model(make_clips(test, torch.arange(len(test)), 16, (0.95,)))
        bone, joint = logits("bone"), logits("joint")
    with pytest.raises(ActionlmError, match="reads the bone stream; the sequences were loaded"):
        predict_logits(model, load_sequences(files, ("test",), 1), 16, (0.95,), CPU)
    scores = torch.tensor(np.stack(pd.read_parquet(tmp_path / "eval/predictions.parquet").scores))
    assert torch.allclose(scores, bone, atol=1e-4) and not torch.allclose(scores, joint, atol=1e-2)

    assert main(["extract-features", "--model", str(weights), *split_args(files),
                 "--out", str(tmp_path / "features.parquet"), *run]) == 0
    features = read_features(tmp_path / "features.parquet")
    assert features.encoder["modality"] == "bone"
    store = load_sequences(files, ("train", "val", "test"), 1, "bone")
    first = torch.arange(64)
    with torch.no_grad():
        expected = model.joint_features(make_clips(store, first, 16, (0.95,)))
    assert torch.allclose(features.features[:64, 0], expected.mean(-1), atol=1e-5)


def test_joint_motion_vqvae_normalises_and_tokenizes_its_stream(datasets, fake_llm, tmp_path):
    files = datasets["nw-ucla"]
    options = {"window": 32, "bodies": 1, "codes": 32, "channels": 16, "depth": 1,
               "curvature": 0.5, "epochs": 1, "batch-size": 128, "mmd-rows": 32}
    flags = [f"--{k}={v}" for k, v in options.items()]
    run = ["--device", "cpu", "--threads", "1"]
    assert main(["train-vqvae", *split_args(files), "--llm", str(fake_llm), "--out",
                 str(tmp_path / "vq"), "--modality", "joint_motion", *flags, *run]) == 0
    config = json.loads((tmp_path / "vq" / "config.json").read_text())
    assert config["model"]["modality"] == "joint_motion"
    model = load_vqvae(tmp_path / "vq" / "vqvae.safetensors")
    assert model.cfg.modality == "joint_motion"
    train = load_split(files, "train", 32, 1, "joint_motion").joints.reshape(-1, 60)
    assert torch.allclose(model.mean, train.mean(0), atol=1e-6)  # the stream's statistics
    assert model.scale == pytest.approx((train - train.mean(0)).std().item(), rel=1e-4)

    assert main(["tokenize", *split_args(files), "--vqvae", str(tmp_path / "vq/vqvae.safetensors"),
                 "--out", str(tmp_path / "tokens"), *run]) == 0
    table = pq.read_table(tmp_path / "tokens" / "action_sentences.parquet")
    assert table_metadata(table, "modality") == "joint_motion"
    frame = table.to_pandas().set_index("sample_id")
    test = load_split(files, "test", 32, 1, "joint_motion")
    tokens = np.stack(frame.loc[test.sample_ids].tokens.to_numpy())
    assert np.array_equal(tokens, model.tokenize(test.joints).numpy())
    assert not np.array_equal(tokens, model.tokenize(load_split(files, "test", 32, 1).joints))
