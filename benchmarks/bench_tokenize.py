"""Throughput of `actionlm tokenize` (skeletons -> LLM-AR action sentences).

Prints samples/s of the streaming, batched tokenizer (Parquet record batches resized in one
vectorised gather, one VQ-VAE call per batch, rows streamed to the output) and of a baseline
run in this same process on the same samples and model: one sample at a time, resized with
torch's interpolate and tokenized alone. Both are checked to give the same tokens.

    python benchmarks/bench_tokenize.py                       # synthetic data, random VQ-VAE
    python benchmarks/bench_tokenize.py --data DIR --protocol xsub --vqvae MODEL.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from actionlm.data.prepare import prepare
from actionlm.data.split_files import SplitFiles
from actionlm.data.table import sample_joints
from actionlm.data.tensors import load_split
from actionlm.device import select_device
from actionlm.models.vqvae import ActionVQVAE, VQVAEConfig, load_vqvae, save_vqvae
from actionlm.train.tokenize import tokenize_dataset


def random_vqvae(files: SplitFiles, path: Path) -> Path:
    """An untrained VQ-VAE of the embedded default's size (SmolLM2 width, U = 512)."""
    torch.manual_seed(0)
    model = ActionVQVAE(VQVAEConfig(width=576, curvature=0.1))
    joints = load_split(files, "train", model.cfg.window).joints
    model.set_normalization(joints)
    model.init_codebook(joints[:256])
    save_vqvae(model, path)
    return path


def baseline(files: SplitFiles, model: ActionVQVAE, device: torch.device) -> dict:
    """One sample at a time: decode the row, resize with interpolate, tokenize alone."""
    assignment = files.assignment()
    tokens = {}
    for row in pq.read_table(files.skeletons).to_pylist():
        if row["sample_id"] not in assignment:
            continue
        joints = torch.from_numpy(sample_joints(row))[:, : model.cfg.bodies]
        padded = torch.zeros(joints.shape[0], model.cfg.bodies, *joints.shape[2:])
        padded[:, : joints.shape[1]] = joints
        flat = padded.reshape(1, padded.shape[0], -1).transpose(1, 2)
        resized = F.interpolate(flat, size=model.cfg.window, mode="linear", align_corners=True)
        window = resized.transpose(1, 2).reshape(1, model.cfg.window, *padded.shape[1:])
        tokens[row["sample_id"]] = model.tokenize(window.to(device))[0].cpu().tolist()
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared dataset (default: synthetic)")
    parser.add_argument("--protocol", default="xsub")
    parser.add_argument("--vqvae", type=Path, help="trained weights (default: random init)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = select_device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "data"
            prepare("synthetic", None, data, dataset=None, protocols=[args.protocol])
        files = SplitFiles.prepared(data, args.protocol)
        weights = args.vqvae or random_vqvae(files, tmp / "vqvae.safetensors")
        model = load_vqvae(weights, device)
        n = len(files.assignment())
        print(f"device: {device}, threads: {torch.get_num_threads()}, samples: {n}, "
              f"window {model.cfg.window}, U {model.cfg.codes}, width {model.cfg.width}")

        started = time.perf_counter()
        tokenize_dataset(files, weights, tmp / "out", args.batch_size, str(device))
        streaming = time.perf_counter() - started
        started = time.perf_counter()
        reference = baseline(files, model, device)
        one_by_one = time.perf_counter() - started

        table = pq.read_table(tmp / "out" / "action_sentences.parquet").to_pylist()
        mismatched = sum(reference[r["sample_id"]] != r["tokens"] for r in table)
    print(f"baseline (one sample at a time, in this process): {n / one_by_one:.0f} samples/s "
          f"({one_by_one:.2f} s)")
    print(f"actionlm tokenize (batches of {args.batch_size}, streaming, incl. Parquet/stats/plot): "
          f"{n / streaming:.0f} samples/s ({streaming:.2f} s)")
    print(f"speed-up: {one_by_one / streaming:.1f}x; samples whose tokens differ: {mismatched}")


if __name__ == "__main__":
    main()
