"""Turn every sample of one split table into its LLM-AR "action sentence" with a trained VQ-VAE
-> OUT/action_sentences.parquet, OUT/codebook_usage.parquet, OUT/usage.json and
OUT/token_frequency.png (rank-frequency against Zipf's law).

``action_sentences.parquet`` (one row per sample, skeletons.parquet order; what the LLM stage
reads):
    sample_id  string   as in skeletons.parquet
    split      string   train / val / test, as in the split table
    label      int16    0-based class
    tokens     list<int16>  code indices in [0, U), W = window / 4 of them
    n_tokens   int16    len(tokens)
    schema metadata: actionlm.codes (U), actionlm.tokens_per_sentence (W), actionlm.codebook
    (hyperbolic / euclidean), actionlm.vqvae (weights file), actionlm.protocol (the split
    table's), actionlm.modality (the skeleton stream the VQ-VAE reads, from its config).

``codebook_usage.parquet``: split (train / val / test / all), rank (1 = most used), code,
count, frequency (count / tokens of that split), zipf (Zipf(alpha, beta) probability of that
rank, alpha/beta from the config.json beside the weights, else 1 / 2.7). ``usage.json``: per
split n_sentences, n_tokens, used_codes, perplexity (exp of the code-frequency entropy), zipf_js (JS
divergence of the sorted frequencies from Zipf, Eq. 4), plus samples_per_second and
``token_probe``: the class information the sentences carry before any LLM, the test top-1 of a
bag-of-tokens classifier fitted on the train sentences (and chance, 1 / classes), a bound on
what LoRA can learn from the tokens' identities (null without train and test sentences, or on a
zero-shot split, whose test classes the train split lacks).

Samples stream from skeletons.parquet in batches (resized and turned into the VQ-VAE's
skeleton stream on the fly) to the device and the Parquet writer; only the W codes of each
sample stay in memory (code usage and the probe). The encoder runs under --precision
(actionlm.device); the nearest-code search is float32 whatever it is.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import matplotlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from actionlm.cli_args import positive_int
from actionlm.data.skeleton_layouts import require_same_layout
from actionlm.data.split_files import SplitFiles, add_split_arguments
from actionlm.data.tensors import iter_split_tensors
from actionlm.device import (
    add_precision_argument,
    autocast,
    autocast_dtype,
    select_device,
    set_threads,
)
from actionlm.io import atomic_path, with_metadata, write_json, write_parquet
from actionlm.models.vqvae import load_vqvae
from actionlm.models.vqvae_losses import LossConfig, js_divergence, perplexity, zipf_distribution

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

SENTENCE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.int16(), nullable=False),
        pa.field("tokens", pa.list_(pa.int16()), nullable=False),
        pa.field("n_tokens", pa.int16(), nullable=False),
    ]
)


def usage_summary(counts: torch.Tensor, zipf: torch.Tensor) -> dict:
    """Used codes, perplexity and distance from Zipf of one code histogram."""
    total = counts.sum().item()
    frequency = torch.sort(counts.double(), descending=True).values / max(total, 1)
    return {
        "n_tokens": int(total),
        "used_codes": int((counts > 0).sum()),
        "perplexity": perplexity(counts),
        "zipf_js": float(js_divergence(frequency.float(), zipf)),
    }


def usage_table(counts: dict[str, torch.Tensor], zipf: torch.Tensor) -> pa.Table:
    rows = {k: [] for k in ("split", "rank", "code", "count", "frequency", "zipf")}
    for split, hist in counts.items():
        order = torch.sort(hist, descending=True, stable=True)
        rows["split"] += [split] * len(hist)
        rows["rank"] += range(1, len(hist) + 1)
        rows["code"] += order.indices.tolist()
        rows["count"] += order.values.tolist()
        rows["frequency"] += (order.values.double() / max(hist.sum().item(), 1)).tolist()
        rows["zipf"] += zipf.tolist()
    types = {
        "split": pa.string(),
        "rank": pa.int32(),
        "code": pa.int16(),
        "count": pa.int64(),
        "frequency": pa.float64(),
        "zipf": pa.float64(),
    }
    return pa.table({k: pa.array(v, types[k]) for k, v in rows.items()})


def plot_rank_frequency(
    counts: dict[str, torch.Tensor], zipf: torch.Tensor, path: Path, title: str
) -> None:
    """Log-log rank-frequency of the codes per split, with the Zipf law they are trained towards."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ranks = np.arange(1, len(zipf) + 1)
    for split, hist in counts.items():
        frequency = np.sort(hist.numpy())[::-1] / max(hist.sum().item(), 1)
        used = frequency > 0
        ax.loglog(ranks[used], frequency[used], marker=".", linestyle="-", label=split)
    ax.loglog(ranks, zipf.numpy(), "k--", label="Zipf")
    ax.set(xlabel="rank", ylabel="token frequency", title=title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def tokenize_dataset(
    files: SplitFiles,
    vqvae_path: str | Path,
    out_dir: str | Path,
    batch_size: int = 256,
    device_name: str = "auto",
    precision: str = "auto",
) -> dict:
    """Write the four outputs and return the usage.json content."""
    out_dir = Path(out_dir)
    protocol = files.protocol
    device = select_device(device_name)
    autocast_dtype(device, precision)
    model = load_vqvae(vqvae_path, device)
    cfg = model.cfg
    train_config = Path(vqvae_path).with_name("config.json")
    loss = (
        LossConfig(**json.loads(train_config.read_text())["loss"])
        if train_config.is_file()
        else LossConfig()
    )
    zipf = zipf_distribution(cfg.codes, loss.zipf_alpha, loss.zipf_beta)
    schema = with_metadata(
        SENTENCE_SCHEMA,
        codes=cfg.codes,
        tokens_per_sentence=cfg.tokens,
        codebook=cfg.codebook,
        vqvae=str(vqvae_path),
        protocol=protocol,
        modality=cfg.modality,
    )
    all_codes, all_labels, all_splits = [], [], []  # W codes per sample: usage and probe
    started = time.perf_counter()
    with (
        atomic_path(out_dir / "action_sentences.parquet") as tmp,
        pq.ParquetWriter(tmp, schema) as writer,
    ):
        chunks = iter_split_tensors(files, cfg.window, None, cfg.bodies, batch_size, cfg.modality)
        for chunk in tqdm(chunks, desc="tokenize", unit="batch", delay=2):
            require_same_layout(chunk.joints.shape[3], cfg.joints, files.skeletons, vqvae_path)
            with autocast(device, precision):
                codes = model.tokenize(chunk.joints.to(device)).cpu()
            offsets = np.arange(0, codes.numel() + 1, cfg.tokens, dtype=np.int32)
            writer.write_batch(
                pa.RecordBatch.from_arrays(
                    [
                        pa.array(chunk.sample_ids),
                        pa.array(chunk.splits),
                        pa.array(chunk.labels.numpy(), pa.int16()),
                        pa.ListArray.from_arrays(
                            offsets, pa.array(codes.flatten().numpy().astype(np.int16))
                        ),
                        pa.array(np.full(len(chunk), cfg.tokens, np.int16)),
                    ],
                    schema=schema,
                )
            )
            all_codes.append(codes)
            all_labels.append(chunk.labels)
            all_splits += chunk.splits
    seconds = time.perf_counter() - started
    codes, labels, n_samples = torch.cat(all_codes), torch.cat(all_labels), len(all_splits)
    counts = {split: torch.bincount(codes[torch.tensor([s == split for s in all_splits])]
                                    .flatten(), minlength=cfg.codes)
              for split in dict.fromkeys(all_splits)}
    counts["all"] = sum(counts.values())
    summary = {
        "splits": {
            s: {"n_sentences": int(h.sum()) // cfg.tokens, **usage_summary(h, zipf)}
            for s, h in counts.items()
        },
        "codes": cfg.codes,
        "tokens_per_sentence": cfg.tokens,
        "samples_per_second": n_samples / seconds,
        "device": str(device),
        "token_probe": token_probe(codes, labels, all_splits, cfg.codes),
    }
    log.info(
        "tokenized %d samples in %.2f s (%.0f samples/s on %s)",
        n_samples,
        seconds,
        summary["samples_per_second"],
        device,
    )
    for split, stats in summary["splits"].items():
        log.info(
            "%s: %d codes used of %d, perplexity %.1f, JS to Zipf %.3f",
            split,
            stats["used_codes"],
            cfg.codes,
            stats["perplexity"],
            stats["zipf_js"],
        )
    write_parquet(usage_table(counts, zipf), out_dir / "codebook_usage.parquet")
    write_json(summary, out_dir / "usage.json")
    plot_rank_frequency(
        {s: h for s, h in counts.items() if s != "all"},
        zipf,
        out_dir / "token_frequency.png",
        f"{protocol}: {summary['splits']['all']['used_codes']} codes used, "
        f"perplexity {summary['splits']['all']['perplexity']:.1f}",
    )
    return summary


def token_probe(codes: torch.Tensor, labels: torch.Tensor, splits: list[str], n_codes: int,
                l2: float = 1e-3) -> dict | None:
    """Test top-1 of a multinomial logistic regression (L2 ``l2``, L-BFGS) on the train
    sentences. code counts [N, W] -> [N, U]: how much class information the tokens'
    identities carry before any LLM (the LLM-AR study in the README). None without train and
    test sentences, or when the test classes are not all among the train ones (zero-shot)."""
    train = torch.tensor([s == "train" for s in splits])
    test = torch.tensor([s == "test" for s in splits])
    labels = labels.long()
    if not train.any() or not test.any() or not set(labels[test].tolist()) <= set(
            labels[train].tolist()):
        return None
    x = torch.zeros(len(codes), n_codes).scatter_add_(
        1, codes.long(), torch.ones(codes.shape))
    classes = int(labels.max()) + 1
    weight = torch.zeros(n_codes + 1, classes, requires_grad=True)
    features = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    optimizer = torch.optim.LBFGS([weight], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = (torch.nn.functional.cross_entropy(features[train] @ weight, labels[train])
                 + l2 * weight[:-1].pow(2).sum())
        value.backward()
        return value

    optimizer.step(loss)
    predicted = (features[test] @ weight).argmax(1)
    return {"bag_of_tokens_top1": float((predicted == labels[test]).float().mean()),
            "chance": 1.0 / len(set(labels[train].tolist()))}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_split_arguments(p)
    p.add_argument("--vqvae", type=Path, required=True, help="vqvae.safetensors from train-vqvae")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--batch-size", type=positive_int, default=256, help="samples per batch")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    add_precision_argument(p)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's)")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    tokenize_dataset(SplitFiles.from_args(args), args.vqvae, args.out, args.batch_size,
                     args.device, args.precision)
