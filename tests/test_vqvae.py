"""LLM-AR linguistic projection: the hyperbolic VQ-VAE (Eqs. 8-10), its losses (Eqs. 3-7, 11,
12), the training stage (resumable, switchable losses, config checks) and the tokenizer's
action-sentence table, on a small synthetic dataset and a tiny fake LLM, CPU only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import geoopt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from actionlm.cli import main
from actionlm.data.split_files import SplitFiles
from actionlm.data.tensors import load_split, resize_batch
from actionlm.errors import ActionlmError
from actionlm.io import table_metadata
from actionlm.models.vqvae import (
    ActionVQVAE,
    Codebook,
    VQVAEConfig,
    load_vqvae,
    pairwise_poincare_distance,
)
from actionlm.models.vqvae_losses import (
    LossConfig,
    VQVAELoss,
    context_loss,
    median_sq_distance,
    mmd2,
    token_usage,
    zipf_distribution,
    zipf_loss,
)
from actionlm.train.common import Checkpoint, CheckpointStore
from actionlm.train.tokenize import SENTENCE_SCHEMA, tokenize_dataset
from actionlm.train.vqvae import TrainConfig, train_vqvae
from resume import assert_same_run, kill_after_checkpoint

WIDTH = 16  # the fake_llm fixture's hidden size
TINY = {"window": 32, "codes": 32, "channels": 32, "depth": 1, "curvature": 0.5}
FAST = TrainConfig(lr=1e-2, epochs=2, batch_size=16, seed=3, reset_every=10)
SMALL_LOSS = LossConfig(mmd_rows=32)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(small_ntu_data, fake_llm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vq") / "model"
    train_vqvae(SplitFiles.prepared(small_ntu_data, "xview"), fake_llm, out, TINY, SMALL_LOSS, replace(FAST, epochs=8),
                "cpu", checkpoint_every=0)
    return out


# --- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize("curvature", [1.0, 0.3])
def test_exp_and_log_maps_are_inverse_and_codes_stay_in_the_ball(curvature):
    codebook = Codebook(64, 12, "hyperbolic", curvature)
    v = torch.randn(500, 12) * 0.5
    v = codebook.clip(v)
    assert torch.allclose(codebook.to_euclidean(codebook.to_space(v)), v, atol=1e-5)

    codebook.set_codes(torch.randn(64, 12) * 3)  # far out: exp map near the boundary
    opt = geoopt.optim.RiemannianAdam([codebook.weight], lr=0.5)
    for _ in range(20):  # large steps pushing every code outwards
        opt.zero_grad()
        (-codebook.weight.norm(dim=-1).sum()).backward()
        opt.step()
    assert (curvature * codebook.weight.detach().square().sum(-1)).max() < 1.0


def test_pairwise_distance_is_eq9():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1) * torch.rand(7, 1) * 0.95
    y = torch.nn.functional.normalize(torch.randn(9, 5), dim=-1) * torch.rand(9, 1) * 0.95
    direct = torch.empty(7, 9)
    for i in range(7):
        for j in range(9):
            num = 2 * (x[i] - y[j]).square().sum()
            den = (1 - x[i].square().sum()) * (1 - y[j].square().sum())
            direct[i, j] = math.acosh(1 + num / den)
    assert torch.allclose(pairwise_poincare_distance(x, y, 1.0), direct, atol=1e-4)

    ball = geoopt.PoincareBall(c=0.3)
    xs, ys = x / math.sqrt(0.3), y / math.sqrt(0.3)
    reference = ball.dist(xs[:, None], ys[None])
    assert torch.allclose(pairwise_poincare_distance(xs, ys, 0.3), reference, atol=1e-4)


# --- losses --------------------------------------------------------------------------------


def test_zipf_loss_is_zero_for_zipf_usage_and_positive_otherwise():
    zipf = zipf_distribution(16, 1.0, 2.7)
    ideal = (zipf * 1000)[torch.randperm(16)].reshape(1, 16)  # any code order: it is sorted
    assert zipf_loss(ideal, zipf).abs() < 1e-6
    assert zipf_loss(torch.ones(3, 16), zipf) > 1e-3  # uniform usage
    assert zipf_loss(torch.eye(16)[[0, 0, 0]] * 5, zipf) > zipf_loss(torch.ones(3, 16), zipf)


def test_context_loss_counts_paired_codes():
    paired = torch.tensor([[2.0, 1.0, 0.0, 2.0, 1.0, 0.0]])  # t_u == t_{u+U/2}
    assert context_loss(paired) == 0
    unpaired = torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0, 0.0]])
    assert context_loss(unpaired) == 1
    half = torch.tensor([[2.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # one pair of 3 tokens
    assert context_loss(half) == pytest.approx(1 - 2 / 3)


def test_mmd_is_zero_for_identical_sets_and_grows_with_a_shift():
    torch.manual_seed(0)
    y = torch.randn(40, 8)
    bandwidth = median_sq_distance(y)
    assert mmd2(y.clone(), y, bandwidth).abs() < 1e-6
    near, far = mmd2(y + 0.3, y, bandwidth), mmd2(y + 3.0, y, bandwidth)
    assert 0 < near < far


def test_token_usage_counts_tokens_and_follows_the_nearest_code_at_low_temperature():
    torch.manual_seed(0)
    neg_distances = -torch.rand(6, 5, 10) * 3
    nearest = torch.nn.functional.one_hot(neg_distances.argmax(-1), 10).sum(1).float()
    sharp, loose = token_usage(neg_distances, 1e-3), token_usage(neg_distances, 10.0)
    assert (sharp.sum(-1) == 5).all() and (loose.sum(-1) == 5).all()
    assert torch.equal(sharp, nearest)
    assert not torch.equal(loose, nearest)


def test_bias_losses_send_gradients_to_the_encoder_and_mmd_to_the_codebook():
    torch.manual_seed(0)
    model = ActionVQVAE(VQVAEConfig(width=WIDTH, joints=25, **TINY))
    joints = torch.randn(4, 32, 2, 25, 3)
    model.init_codebook(joints)
    criterion = VQVAELoss(SMALL_LOSS, TINY["codes"], torch.randn(32, WIDTH))
    for term in ("zipf", "context"):
        model.zero_grad()
        out = model(joints)
        usage = token_usage(out.neg_distances, 1.0)
        loss = zipf_loss(usage, criterion.zipf) if term == "zipf" else context_loss(usage)
        loss.backward()
        assert model.encoder[0].weight.grad.abs().sum() > 0, term
    model.zero_grad()
    criterion.alignment(model.codebook.tangent_codes()).backward()
    assert model.codebook.weight.grad.abs().sum() > 0


# --- data ----------------------------------------------------------------------------------


def test_resize_matches_per_sample_interpolation_and_pads_bodies():
    rng = np.random.default_rng(0)
    shapes = [(7, 1), (1, 2), (20, 3)]  # (frames, bodies): a 1-frame and a 3-body sample
    arrays = [rng.normal(size=(f, b, 4, 3)).astype(np.float32) for f, b in shapes]
    batch = pa.RecordBatch.from_pydict({
        "n_frames": [f for f, _ in shapes], "n_bodies": [b for _, b in shapes],
        "n_joints": [4] * 3, "joints": [a.reshape(-1) for a in arrays],
    })
    out = resize_batch(batch, 10, 2, "test")
    assert out.shape == (3, 10, 2, 4, 3)
    for k, a in enumerate(arrays):
        t = np.linspace(0, len(a) - 1, 10)
        kept = a[:, :2].reshape(len(a), -1)
        expected = np.stack([np.interp(t, np.arange(len(a)), kept[:, i]) for i in range(kept.shape[1])], 1)
        got = out[k, :, : a.shape[1]].reshape(10, -1)
        assert np.allclose(got, expected, atol=1e-5)
        assert (out[k, :, a.shape[1] :] == 0).all()


def test_load_split_returns_the_split(small_ntu_data):
    split = load_split(SplitFiles.prepared(small_ntu_data, "xview"), "test", 16)
    table = pq.read_table(small_ntu_data / "splits" / "xview.parquet").to_pandas()
    assert sorted(split.sample_ids) == sorted(table.sample_id[table.split == "test"])
    assert split.joints.shape == (len(split), 16, 2, 25, 3) and split.joints.dtype == torch.float32
    with pytest.raises(ActionlmError, match="no such split file"):
        load_split(SplitFiles.prepared(small_ntu_data, "xsub"), "train", 16)


# --- training ------------------------------------------------------------------------------


def test_reconstruction_falls_and_outputs_are_written(trained):
    curves = pd.read_parquet(trained / "curves.parquet")
    assert len(curves) == 8
    assert curves.rec.iloc[-1] < 0.9 * curves.rec.iloc[0]
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["width"] == WIDTH and config["model"]["joints"] == 25
    assert config["data"]["protocol"] == "xview"
    model = load_vqvae(trained / "vqvae.safetensors")
    assert model.cfg.codes == TINY["codes"] and (model.codebook.weight.norm(dim=-1) ** 2 * 0.5 < 1).all()


@pytest.mark.parametrize("switch", ["zipf", "context", "mmd"])
def test_switching_off_a_bias_loss_changes_training(switch, small_ntu_data, fake_llm, tmp_path):
    def weights(loss_cfg, name):
        train_vqvae(SplitFiles.prepared(small_ntu_data, "xview"), fake_llm, tmp_path / name, TINY, loss_cfg,
                    replace(FAST, epochs=1), "cpu", checkpoint_every=0)
        return load_file(tmp_path / name / "vqvae.safetensors")

    full = weights(SMALL_LOSS, "full")
    again = weights(SMALL_LOSS, "again")
    ablated = weights(replace(SMALL_LOSS, **{switch: False}), "ablated")
    assert all(torch.equal(full[k], again[k]) for k in full)  # the same run is reproducible
    assert any(not torch.equal(full[k], ablated[k]) for k in full)


@pytest.mark.parametrize(("epochs", "max_steps"), [(0, 7), (3, 7), (2, 0)])
def test_max_steps_caps_the_run_and_epochs_0_runs_as_many_epochs_as_it_needs(
        epochs, max_steps, small_ntu_data, fake_llm, tmp_path):
    """76 train samples in batches of 16: 5 steps per epoch, the last epoch cut short."""
    curves = train_vqvae(SplitFiles.prepared(small_ntu_data, "xview"), fake_llm, tmp_path, TINY,
                         SMALL_LOSS, replace(FAST, epochs=epochs, max_steps=max_steps), "cpu",
                         checkpoint_every=0)
    rows = [(row["epoch"], row["step"]) for row in curves]
    assert rows == ([(1, 5), (2, 10)] if max_steps == 0 else [(1, 5), (2, 7)])
    assert pd.read_parquet(tmp_path / "curves.parquet").step.tolist() == [s for _, s in rows]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["max_steps"] == max_steps


@pytest.mark.parametrize(
    ("options", "message"),
    [({"codes": 7}, "even"), ({"curvature": 0.0}, "curvature"), ({"curvature": -1.0}, "curvature"),
     ({"width": 32}, "width 32 differs"), ({"window": 18}, "multiple of 4"),
     ({"window": 96}, r"window 96 is longer than the longest training sequence \(80 frames\)")],
)
def test_malformed_config_is_a_clear_error(options, message, small_ntu_data, fake_llm, tmp_path):
    with pytest.raises(ActionlmError, match=message):
        train_vqvae(SplitFiles.prepared(small_ntu_data, "xview"), fake_llm, tmp_path, {**TINY, **options}, SMALL_LOSS, FAST, "cpu")
    assert not (tmp_path / "vqvae.safetensors").exists()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--codes", "9", "codes (U) must be an even number"),
    ("--epochs", "0", "train-vqvae: --epochs 0 (as many epochs as --max-steps needs) needs "
     "--max-steps > 0"),
    # refused before any sequence is resized to it (which would exhaust memory)
    ("--window", "1000000000", "window 1000000000 is longer than the longest training "
     "sequence (80 frames)"),
])
def test_cli_reports_a_bad_config_in_one_line(option, value, message, small_ntu_data, fake_llm,
                                              tmp_path, capsys):
    code = main(["train-vqvae", *split_args(small_ntu_data), "--llm", str(fake_llm),
                 "--out", str(tmp_path), option, value, "--device", "cpu"])
    assert code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("actionlm: error: ") and message in line


RESUME_RUN = replace(FAST, epochs=0, max_steps=17, seed=5, reset_every=3)  # 4th epoch: 2 steps


def split_args(data: Path) -> list[str]:
    return ["--skeletons", str(data / "skeletons.parquet"), "--split",
            str(data / "splits" / "xview.parquet")]


def _train_cli(small_ntu_data, llm, out):
    """The training command as a separate process, configured like TINY / RESUME_RUN."""
    args = [sys.executable, "-m", "actionlm.cli", "train-vqvae", *split_args(small_ntu_data),
            "--llm", str(llm), "--out", str(out), "--device", "cpu",
            "--threads", "1", "--checkpoint-every", "2", "--mmd-rows", "32"]
    for key, value in {**TINY, **asdict(RESUME_RUN)}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TQDM_DISABLE": "1"})


@pytest.mark.slow  # two training processes, each importing transformers (~20 s in all)
def test_resume_after_kill_gives_the_uninterrupted_result(small_ntu_data, fake_llm, tmp_path):
    killed = _train_cli(small_ntu_data, fake_llm, tmp_path / "killed")
    kill_after_checkpoint(killed, tmp_path / "killed" / "checkpoints" / "latest.json", 7)
    assert not (tmp_path / "killed" / "vqvae.safetensors").exists()
    assert _train_cli(small_ntu_data, fake_llm, tmp_path / "killed").wait(120) == 0

    train_vqvae(SplitFiles.prepared(small_ntu_data, "xview"), fake_llm, tmp_path / "straight", TINY, SMALL_LOSS, RESUME_RUN,
                "cpu", checkpoint_every=0)
    assert_same_run(tmp_path / "straight", tmp_path / "killed", "vqvae.safetensors")


def test_checkpoint_of_another_config_is_ignored(tmp_path):
    store = CheckpointStore(tmp_path, {"lr": 1})
    store.save(Checkpoint(3, {"w": torch.ones(2)}, {"rng": {}}, {"epoch": 1}))
    assert store.load().step == 3
    assert CheckpointStore(tmp_path, {"lr": 2}).load() is None


def test_checkpoint_of_inputs_rebuilt_since_is_ignored(tmp_path):
    """An upstream stage rewrote an input at the same path (a new VQ-VAE's sentences): the
    rerun trains afresh instead of resuming weights fitted to the old content."""
    sentences = tmp_path / "action_sentences.parquet"
    sentences.write_bytes(b"old tokens")
    store = CheckpointStore(tmp_path / "checkpoints", {"lr": 1}, [sentences, None])
    store.save(Checkpoint(3, {"w": torch.ones(2)}, {"rng": {}}, {"epoch": 1}))
    assert CheckpointStore(tmp_path / "checkpoints", {"lr": 1}, [sentences]).load().step == 3
    sentences.write_bytes(b"new tokens")
    assert CheckpointStore(tmp_path / "checkpoints", {"lr": 1}, [sentences]).load() is None


# --- tokenize ------------------------------------------------------------------------------


def test_tokenize_round_trips_through_parquet(trained, small_ntu_data, tmp_path):
    summary = tokenize_dataset(SplitFiles.prepared(small_ntu_data, "xview"), trained / "vqvae.safetensors", tmp_path,
                               batch_size=20, device_name="cpu")
    table = pq.read_table(tmp_path / "action_sentences.parquet")
    assert table.schema.remove_metadata() == SENTENCE_SCHEMA
    assert table_metadata(table, "tokens_per_sentence") == 8
    assert table_metadata(table, "protocol") == "xview"
    frame = table.to_pandas()
    model = load_vqvae(trained / "vqvae.safetensors")
    splits = pq.read_table(small_ntu_data / "splits" / "xview.parquet").to_pandas()
    assert sorted(frame.sample_id) == sorted(splits.sample_id)
    for name in ("train", "test"):
        split = load_split(SplitFiles.prepared(small_ntu_data, "xview"), name, 32)
        rows = frame.set_index("sample_id").loc[split.sample_ids]
        assert (rows.split == name).all() and (rows.label.to_numpy() == split.labels.numpy()).all()
        assert np.array_equal(np.stack(rows.tokens.to_numpy()), model.tokenize(split.joints).numpy())
    assert (frame.n_tokens == 8).all()

    all_tokens = np.concatenate(frame.tokens.to_numpy())
    assert summary["splits"]["all"]["used_codes"] == len(np.unique(all_tokens))
    usage = pd.read_parquet(tmp_path / "codebook_usage.parquet")
    counts = usage[usage.split == "all"].set_index("code")["count"]
    assert counts.sum() == len(all_tokens)
    assert counts.loc[np.bincount(all_tokens).argmax()] == np.bincount(all_tokens).max()
    assert (tmp_path / "token_frequency.png").read_bytes()[:4] == b"\x89PNG"


def test_token_probe_reads_class_information_off_the_sentences_and_only_that():
    """Sentences whose codes depend on the class: the bag-of-tokens probe names the test
    classes; the same codes with shuffled labels: near chance; a zero-shot split: no probe."""
    from actionlm.train.tokenize import token_probe

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(8).repeat(40)
    own = labels[:, None] * 8 + torch.randint(0, 8, (len(labels), 16), generator=generator)
    noise = torch.randint(0, 64, (len(labels), 16), generator=generator)
    codes = torch.where(torch.rand(len(labels), 16, generator=generator) < 0.5, own, noise)
    splits = ["train" if i // 8 % 2 else "test" for i in range(len(labels))]
    informed = token_probe(codes, labels, splits, 64)
    assert informed["bag_of_tokens_top1"] >= 0.9 and informed["chance"] == 1 / 8
    shuffled = labels[torch.randperm(len(labels), generator=generator)]
    assert token_probe(codes, shuffled, splits, 64)["bag_of_tokens_top1"] <= 0.3
    unseen = ["train" if label < 6 else "test" for label in labels.tolist()]
    assert token_probe(codes, labels, unseen, 64) is None
