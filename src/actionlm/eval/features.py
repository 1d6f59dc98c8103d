"""Run a frozen skeleton encoder over every sample of a split table -> features.parquet
(actionlm.data.features): SUGAR's per-step features [window / 4, C] for the LLM projector, or
one pooled feature per sample (CE, GAP) for the report's embedding map.

Clips are the centred test-time crops for every split, in the encoder's stream (its
``modality``), so the LLM stage trains and is evaluated on the same deterministic features;
they are computed once here, not per epoch. The encoder runs under --precision
(actionlm.device); the table stores float32 whatever it is.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from actionlm.data.clips import load_sequences, make_clips
from actionlm.data.features import write_features
from actionlm.data.skeleton_layouts import LAYOUTS, require_same_layout
from actionlm.data.split_files import SplitFiles
from actionlm.device import autocast, autocast_dtype, select_device, set_threads
from actionlm.eval.evaluate import add_encoder_run_arguments
from actionlm.models.encoder import load_encoder

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(model_path: Path, files: SplitFiles, out: Path,
                     device: torch.device, interval: float = 0.95,
                     batch_size: int = 256, precision: str = "auto") -> tuple[int, int, int]:
    """Write the table; return its (samples, steps, width)."""
    autocast_dtype(device, precision)
    model = load_encoder(model_path, device)
    store = load_sequences(files, ("train", "val", "test", "test_seen"), model.cfg.bodies,
                           model.cfg.modality)
    require_same_layout(store.n_joints, LAYOUTS[model.cfg.layout].n_joints, files.skeletons,
                        model_path)
    chunks = []
    with autocast(device, precision):
        for start in tqdm(range(0, len(store), batch_size), unit="batch", desc="features"):
            index = torch.arange(start, min(start + batch_size, len(store)))
            clips = make_clips(store, index, model.cfg.window, (interval,)).to(device)
            if model.cfg.method == "sugar":
                features = model.step_features(clips)
            else:
                features = model.joint_features(clips).mean(dim=-1, keepdim=True).transpose(1, 2)
            chunks.append(features.float().cpu().numpy())
    features = np.concatenate(chunks)
    encoder = {**asdict(model.cfg), "weights": str(model_path), "protocol": files.protocol,
               "interval": interval}
    write_features(out, features, store.labels.numpy(), store.sample_ids, store.splits, encoder)
    log.info("wrote %s: %d samples x %d steps x %d", out, *features.shape)
    return features.shape


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="an encoder's best.safetensors")
    add_encoder_run_arguments(p, "features.parquet to write (every split of the table)")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    extract_features(args.model, SplitFiles.from_args(args), args.out,
                     select_device(args.device), args.test_interval, args.batch_size,
                     args.precision)
