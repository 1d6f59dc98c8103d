"""Machinery shared by the training stages (device and precision: actionlm.device): seeding,
the sample order of each epoch, step budgets, resumable checkpoints and per-epoch curves.

Resumption is exact (a killed run, restarted, ends with the same weights as an uninterrupted
one on CPU) because all randomness comes from torch's generators, whose states are saved, and
the sample order of each epoch is a function of (seed, epoch) rather than sampler state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from safetensors.torch import load_file, save_file

from actionlm.errors import ActionlmError
from actionlm.io import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

LATEST = "latest.json"


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed every generator; on CPU also ask for deterministic kernels (nearly free there;
    filling fresh memory with NaN, a debugging aid, is left off), so that equal seeds give
    equal runs. On CUDA, speed wins (cuDNN autotuning stays on)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False


def reproducible_execution(device: torch.device) -> AbstractContextManager:
    """On CPU, run TorchScript functions (geoopt's maps are some) without graph optimisation:
    the optimiser re-fuses them after their first calls and the fused kernels round
    differently, so a resumed process (first calls again) would drift from an uninterrupted
    one in the last bits."""
    return torch.jit.optimized_execution(device.type != "cpu")


def epoch_order(n: int, seed: int, epoch: int, repeat: int = 1) -> torch.Tensor:
    """The sample order of one epoch, a pure function of (seed, epoch): a permutation of the
    ``n`` samples listed ``repeat`` times, so that each comes ``repeat`` times per epoch (the
    ``repeat`` of GAP's NW-UCLA feeder, MartinXM/GAP feeders/feeder_ucla.py: its shuffled
    loader draws index % n from n x repeat indices). Repeat 1: a permutation of the n."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n * repeat, generator=generator) % n


def check_step_budget(epochs: int, max_steps: int, stage: str) -> None:
    """``--epochs 0`` (as many epochs as ``--max-steps`` needs) needs a step count."""
    if epochs == 0 and max_steps == 0:
        raise ActionlmError(f"{stage}: --epochs 0 (as many epochs as --max-steps needs) needs "
                            "--max-steps > 0")


def step_budget(epochs: int, max_steps: int, steps_per_epoch: int) -> int:
    """The optimiser steps of a run: every step of ``epochs`` epochs, capped at ``max_steps``
    (0 = no cap); ``epochs`` 0 = as many epochs as ``max_steps`` needs, the last one cut short
    (LLM-AR counts iterations, not epochs: 300k for the VQ-VAE, 75k for LoRA)."""
    if epochs == 0:
        return max_steps
    return min(epochs * steps_per_epoch, max_steps or epochs * steps_per_epoch)


def rng_state() -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict`` that keeps integer step counters integers: torch turns
    them into float32 tensors, which changes geoopt's Riemannian Adam bias correction
    (beta ** step) in the last bits, and a resumed run would drift from an uninterrupted one."""
    integer_steps = {
        pid for pid, s in state["state"].items() if isinstance(s.get("step"), int)
    }
    optimizer.load_state_dict(state)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for pid in integer_steps:
        slot = optimizer.state[params[pid]]
        slot["step"] = int(slot["step"])


@dataclass
class Checkpoint:
    step: int
    weights: dict[str, torch.Tensor]  # model state
    state: dict  # tensors-only: optimiser states, RNG states
    progress: dict  # JSON: epoch, position in the epoch, running sums, curves so far


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


class CheckpointStore:
    """A folder of ``step-N.safetensors`` (weights) + ``step-N.pt`` (optimiser/RNG tensors,
    loaded with weights_only) and ``latest.json`` naming the newest complete pair.

    The pair is written first and ``latest.json`` replaced last (each atomically), so a kill
    at any moment leaves the previous checkpoint intact. A checkpoint made with a different
    ``config``, or from input files of other content (``inputs``: sha256 of each file; a new
    VQ-VAE's sentences at the same path, a retrained encoder's features), is ignored (and
    deleted by the next save): a changed config or input trains afresh."""

    def __init__(self, folder: str | os.PathLike, config: dict,
                 inputs: Iterable[str | os.PathLike | None] = ()):
        self.folder = Path(folder)
        digests = {str(path): file_sha256(path) for path in inputs
                   if path is not None and Path(path).is_file()}
        # as it will read back from JSON
        self.config = json.loads(json.dumps({**config, "input_sha256": digests}))

    def load(self) -> Checkpoint | None:
        pointer = self.folder / LATEST
        if not pointer.is_file():
            return None
        info = json.loads(pointer.read_text())
        if info.get("config") != self.config:
            log.warning("%s was written with another config; training from scratch", pointer)
            return None
        try:
            weights = load_file(self.folder / info["weights"])
            state = torch.load(self.folder / info["state"], weights_only=True)
        except (OSError, RuntimeError) as err:
            raise ActionlmError(
                f"{pointer}: checkpoint files unreadable ({err}); delete {self.folder}"
            ) from None
        log.info("resuming from %s (step %d)", self.folder, info["step"])
        return Checkpoint(info["step"], weights, state, info["progress"])

    def save(self, checkpoint: Checkpoint) -> None:
        stem = f"step-{checkpoint.step:09d}"
        weights = {k: v.detach().cpu().contiguous() for k, v in checkpoint.weights.items()}
        with atomic_path(self.folder / f"{stem}.safetensors") as tmp:
            save_file(weights, tmp)
        with atomic_path(self.folder / f"{stem}.pt") as tmp:
            torch.save(checkpoint.state, tmp)
        write_json(
            {
                "step": checkpoint.step,
                "weights": f"{stem}.safetensors",
                "state": f"{stem}.pt",
                "config": self.config,
                "progress": checkpoint.progress,
            },
            self.folder / LATEST,
        )
        for old in self.folder.glob("step-*"):
            if not old.name.startswith(stem):
                old.unlink(missing_ok=True)


def write_curves(rows: list[dict], columns: list[str], path: str | os.PathLike) -> None:
    """Per-epoch training curves as Parquet: one row per epoch, ``columns`` in this order."""
    write_parquet(pa.table({c: [row[c] for row in rows] for c in columns}), path)
