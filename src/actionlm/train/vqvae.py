"""Train LLM-AR's action VQ-VAE (hyperbolic codebook, human-inductive-bias losses) on the train
split of one split table -> OUT/vqvae.safetensors, OUT/config.json, OUT/curves.parquet.

Length: --epochs passes over the train split (the last batch of each may be short), capped at
--max-steps optimiser steps (0 = no cap); --epochs 0 runs exactly --max-steps steps, as many
epochs as they need, the last one cut short (LLM-AR counts iterations: 300k). Each epoch is a
seeded shuffle; a cut-short epoch still gets its curve row. The encoder and decoder run under
--precision (actionlm.device); the codebook distances and the losses are float32.

Resumable: OUT/checkpoints/ holds the newest checkpoint (every --checkpoint-every steps and at
each epoch's end); rerunning the same command continues from it and, on CPU, ends with the
same weights as an uninterrupted run. A checkpoint made with another config is ignored.

The network reads the --modality skeleton stream (joint, bone, joint_motion, bone_motion;
actionlm.data.streams); its input normalisation is that stream's.

Outputs: ``vqvae.safetensors`` (weights; the network's VQVAEConfig in its metadata, its stream
included, so the tokenizer needs nothing else), ``config.json`` (every setting of the run:
data, model, loss, train), ``curves.parquet`` (one row per epoch: epoch, step, loss, rec,
embed, commit, zipf, context, mmd (epoch means over samples), perplexity and used_codes of the
epoch's hard code assignments, dead_codes_reset, lr, seconds).

Optimisers: AdamW for the encoder/decoder (the paper's optimiser) and geoopt's Riemannian
Adam for the codebook, with the same learning rate; for the Euclidean ablation the same
Riemannian Adam acts as plain Adam. The learning rate is constant (the paper gives only its
initial value, 2e-4).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import geoopt
import torch
from tqdm import tqdm

from actionlm.cli_args import (
    Bounded,
    field_defaults,
    fields_from_args,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from actionlm.data.prepare_llm import llm_hidden_size, load_llm_embedding_matrix
from actionlm.data.split_files import (
    SplitFiles,
    add_split_arguments,
    check_window,
    longest_sequence,
)
from actionlm.data.streams import MODALITIES
from actionlm.data.tensors import load_split
from actionlm.device import (
    add_precision_argument,
    autocast,
    autocast_dtype,
    select_device,
    set_threads,
)
from actionlm.errors import ActionlmError
from actionlm.io import write_json
from actionlm.models.vqvae import CODEBOOKS, ActionVQVAE, VQVAEConfig, save_vqvae
from actionlm.models.vqvae_losses import LossConfig, VQVAELoss, perplexity
from actionlm.train.common import (
    Checkpoint,
    CheckpointStore,
    check_step_budget,
    epoch_order,
    load_optimizer_state,
    reproducible_execution,
    rng_state,
    seed_everything,
    set_rng_state,
    step_budget,
    write_curves,
)

log = logging.getLogger(__name__)

INIT_SAMPLES = 256  # training samples whose latents seed the codebook
METRICS = ("loss", "rec", "embed", "commit", "zipf", "context", "mmd")
CURVE_COLUMNS = ["epoch", "step", *METRICS, "perplexity", "used_codes", "dead_codes_reset", "lr",
                 "seconds"]


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 30  # 0 = as many as max_steps needs
    max_steps: int = 0  # cap on optimiser steps; 0 = none
    batch_size: int = 256
    seed: int = 0
    reset_every: int = 100  # dead-code reset interval in steps; 0 = never

    def validate(self) -> TrainConfig:
        if (not self.lr > 0 or self.weight_decay < 0 or self.epochs < 0 or self.max_steps < 0
                or self.batch_size < 1):
            raise ActionlmError(
                "VQ-VAE train config: need lr > 0, weight_decay >= 0, epochs >= 0, "
                f"max_steps >= 0, batch_size >= 1; got {asdict(self)}"
            )
        if self.reset_every < 0:
            raise ActionlmError(f"VQ-VAE train config: reset_every {self.reset_every} < 0")
        check_step_budget(self.epochs, self.max_steps, "train-vqvae")
        return self


@dataclass
class EpochTally:
    """Running sums of one epoch; kept in checkpoints so that a resumed epoch reports the same."""

    sums: dict[str, float]
    counts: list[int]  # hard code assignments per code
    n: int = 0
    resets: int = 0

    @classmethod
    def empty(cls, codes: int) -> EpochTally:
        return cls({k: 0.0 for k in METRICS}, [0] * codes)

    def add(self, values: dict[str, float], codes: torch.Tensor, n: int) -> None:
        for k in METRICS:
            self.sums[k] += values[k] * n
        self.n += n
        hist = torch.bincount(codes.flatten().cpu(), minlength=len(self.counts)).tolist()
        self.counts = [a + b for a, b in zip(self.counts, hist)]

    def row(self, epoch: int, step: int, lr: float, seconds: float) -> dict:
        hist = torch.tensor(self.counts)
        return {
            "epoch": epoch,
            "step": step,
            **{k: self.sums[k] / self.n for k in METRICS},
            "perplexity": perplexity(hist),
            "used_codes": int((hist > 0).sum()),
            "dead_codes_reset": self.resets,
            "lr": lr,
            "seconds": seconds,
        }


@dataclass
class Progress:
    """Where a run stands: the checkpoint's JSON part."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    step: int = 0
    tally: EpochTally | None = None
    curves: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> Progress:
        tally = data["tally"] and EpochTally(**data["tally"])
        return cls(data["epoch"], data["batch"], data["step"], tally, data["curves"])


def warn_if_ball_saturates(llm: torch.Tensor, cfg: VQVAEConfig) -> None:
    """The MMD term pulls the codes towards the LLM rows; if those lie near the ball's edge
    (sqrt(c) x median row norm >> 1), quantization degenerates: say which c would fit."""
    rho = llm.norm(dim=1).median().item()
    if cfg.codebook == "hyperbolic" and math.sqrt(cfg.curvature) * rho > 2.0:
        log.warning(
            "the LLM's embedding rows have median norm %.2f: with curvature %g their exp maps "
            "sit at the edge of the Poincare ball; a curvature near %.2g fits better",
            rho, cfg.curvature, 1.0 / rho**2,
        )


def llm_embedding_rows(llm_dir: str | Path, width: int | None) -> torch.Tensor:
    """The LLM's input-embedding matrix, after checking that a requested ``width`` is its."""
    llm_width = llm_hidden_size(llm_dir)
    if width not in (None, llm_width):
        raise ActionlmError(
            f"VQ-VAE width {width} differs from the LLM's input-embedding width {llm_width} "
            f"({llm_dir}); the codes must be LLM-sized tokens"
        )
    return load_llm_embedding_matrix(llm_dir)


class VQVAETraining:
    """One training run: data, model, loss, optimisers, and its checkpoint store."""

    def __init__(self, files: SplitFiles, llm_dir, out_dir, model_options: dict,
                 loss_cfg: LossConfig, train_cfg: TrainConfig, device: torch.device,
                 precision: str = "auto"):
        autocast_dtype(device, precision)
        self.out_dir, self.precision = Path(out_dir), precision
        self.train_cfg = train_cfg.validate()
        loss_cfg.validate()
        llm = llm_embedding_rows(llm_dir, model_options.get("width"))
        probe = VQVAEConfig(**{**model_options, "width": llm.shape[1]}).validate()
        self.device = device
        seed_everything(train_cfg.seed, device)
        check_window(probe.window, longest_sequence(files, ("train",)))
        self.data = load_split(files, "train", probe.window, probe.bodies, probe.modality)
        self.steps_per_epoch = math.ceil(len(self.data) / train_cfg.batch_size)
        self.total_steps = step_budget(train_cfg.epochs, train_cfg.max_steps,
                                       self.steps_per_epoch)
        self.cfg = VQVAEConfig(**{**asdict(probe), "joints": self.data.joints.shape[3]})
        self.config = {
            "data": {"skeletons": str(files.skeletons), "split": str(files.split),
                     "protocol": files.protocol, "llm": str(llm_dir)},
            "model": asdict(self.cfg), "loss": asdict(loss_cfg), "train": asdict(train_cfg),
        }
        warn_if_ball_saturates(llm, self.cfg)
        self.model = ActionVQVAE(self.cfg)
        self.model.set_normalization(self.data.joints)
        self.model.init_codebook(self.data.joints[torch.randperm(len(self.data))[:INIT_SAMPLES]])
        self.model.to(device)
        mmd_rows = llm[torch.randint(len(llm), (loss_cfg.mmd_rows,))]
        self.criterion = VQVAELoss(loss_cfg, self.cfg.codes, mmd_rows).to(device)
        network = [p for n, p in self.model.named_parameters() if not n.startswith("codebook.")]
        self.optimizers = [
            torch.optim.AdamW(network, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay),
            geoopt.optim.RiemannianAdam([self.model.codebook.weight], lr=train_cfg.lr),
        ]
        self.store = CheckpointStore(self.out_dir / "checkpoints", self.config,
                                     self.config["data"].values())

    def resume(self) -> Progress:
        checkpoint = self.store.load()
        if checkpoint is None:
            return Progress()
        self.model.load_state_dict(checkpoint.weights)
        for opt, state in zip(self.optimizers, checkpoint.state["optimizers"]):
            load_optimizer_state(opt, state)
        set_rng_state(checkpoint.state["rng"])
        return Progress.from_json(checkpoint.progress)

    def save(self, progress: Progress) -> None:
        state = {"optimizers": [o.state_dict() for o in self.optimizers], "rng": rng_state()}
        self.store.save(Checkpoint(progress.step, self.model.state_dict(), state, asdict(progress)))

    def step(self, joints: torch.Tensor, step: int, tally: EpochTally) -> dict[str, float]:
        """One optimisation step (Eq. 12) on a batch of raw joints."""
        with autocast(self.device, self.precision):
            out = self.model(joints.to(self.device))
            total, parts = self.criterion(out, self.model.codebook)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self.optimizers:
            opt.step()
        every = self.train_cfg.reset_every
        if every and step % every == 0:
            tally.resets += self.model.codebook.reset_dead_codes(out.points.detach().flatten(0, 1))
        values = {"loss": total.item(), **{k: v.item() for k, v in parts.items()}}
        tally.add(values, out.codes, len(joints))
        return values

    def run(self, checkpoint_every: int) -> list[dict]:
        """Train from the last checkpoint to the last epoch; write the outputs."""
        with reproducible_execution(self.device):
            return self._run(checkpoint_every)

    def _run(self, checkpoint_every: int) -> list[dict]:
        write_json(self.config, self.out_dir / "config.json")
        progress = self.resume()
        n, batch = len(self.data), self.train_cfg.batch_size
        epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.model.train()
        for epoch in range(progress.epoch, epochs):
            started = time.perf_counter()
            order = epoch_order(n, self.train_cfg.seed, epoch)
            progress.tally = progress.tally or EpochTally.empty(self.cfg.codes)
            steps = min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)
            bar = tqdm(total=steps, initial=progress.batch, unit="step", leave=False,
                       desc=f"epoch {epoch + 1}/{epochs}")
            for b in range(progress.batch, steps):
                progress.step += 1
                values = self.step(self.data.joints[order[b * batch : (b + 1) * batch]],
                                   progress.step, progress.tally)
                progress.batch = b + 1
                bar.update()
                bar.set_postfix(loss=f"{values['loss']:.4f}", rec=f"{values['rec']:.4f}")
                mid_epoch = b + 1 < steps
                if checkpoint_every and progress.step % checkpoint_every == 0 and mid_epoch:
                    self.save(progress)
            bar.close()
            row = progress.tally.row(epoch + 1, progress.step, self.train_cfg.lr,
                                     time.perf_counter() - started)
            log.info("epoch %d: %s", epoch + 1, ", ".join(
                f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "lr")))
            progress.curves.append(row)
            progress.epoch, progress.batch, progress.tally = epoch + 1, 0, None
            write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")
            self.save(progress)
        # also when a finished checkpoint resumed: a rerun of a killed job removed its outputs
        write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")
        save_vqvae(self.model, self.out_dir / "vqvae.safetensors")
        return progress.curves


def train_vqvae(
    files: SplitFiles,
    llm_dir: str | Path,
    out_dir: str | Path,
    model_options: dict,
    loss_cfg: LossConfig,
    train_cfg: TrainConfig,
    device_name: str = "auto",
    checkpoint_every: int = 500,
    precision: str = "auto",
) -> list[dict]:
    """Train (or resume) and write the three outputs; return the curve rows.

    ``model_options``: VQVAEConfig fields except ``joints`` (taken from the data) and
    ``width`` (the LLM's hidden size; when given it must equal it). ``precision``:
    actionlm.device's (a resource: not in config.json, a checkpoint resumes under any)."""
    training = VQVAETraining(files, llm_dir, out_dir, model_options, loss_cfg,
                             train_cfg, select_device(device_name), precision)
    return training.run(checkpoint_every)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_split_arguments(p)
    p.add_argument("--llm", type=Path, required=True,
                   help="target LLM: a prepare-llm folder or a Hugging Face model folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    net = field_defaults(VQVAEConfig)
    g = p.add_argument_group("VQ-VAE network (Sec. 3.1)")
    g.add_argument("--width", type=positive_int, default=None,
                   help="code width d_u; default and only valid value: the LLM's hidden size")
    g.add_argument("--window", type=positive_int, default=net["window"],
                   help="frames V per sequence (W = V/4 tokens)")
    g.add_argument("--bodies", type=positive_int, default=net["bodies"],
                   help="bodies kept per frame (zero-padded)")
    g.add_argument("--modality", choices=MODALITIES, default=net["modality"],
                   help="skeleton stream the VQ-VAE reads and tokenize feeds it (bone: joint "
                   "minus its parent; motion: next frame minus this one)")
    g.add_argument("--codes", type=positive_int, default=net["codes"],
                   help="codebook size U (even)")
    g.add_argument("--codebook", choices=CODEBOOKS, default=net["codebook"],
                   help="Poincaré-ball codebook or the Euclidean ablation (Table 6)")
    g.add_argument("--curvature", type=positive_float, default=net["curvature"],
                   help="Poincaré ball curvature c > 0")
    g.add_argument("--channels", type=positive_int, default=net["channels"],
                   help="conv channels of encoder/decoder")
    g.add_argument("--depth", type=non_negative_int, default=net["depth"],
                   help="residual blocks per resolution")
    loss = LossConfig()
    g = p.add_argument_group("losses (Eqs. 3-12; --no-X for the Table 4 ablations)")
    flag = argparse.BooleanOptionalAction
    g.add_argument("--zipf", action=flag, default=loss.zipf, help="Zipf loss (Eq. 4)")
    g.add_argument("--context", action=flag, default=loss.context, help="context loss (Eq. 5)")
    g.add_argument("--mmd", action=flag, default=loss.mmd,
                   help="MMD to the LLM's embeddings (Eq. 7)")
    g.add_argument("--zipf-alpha", type=positive_float, default=loss.zipf_alpha)
    g.add_argument("--zipf-beta", type=non_negative_float, default=loss.zipf_beta)
    g.add_argument("--omega1", type=non_negative_float, default=loss.omega1,
                   help="commitment weight")
    g.add_argument("--omega2", type=non_negative_float, default=loss.omega2,
                   help="human-bias weight")
    g.add_argument("--gumbel-tau", type=positive_float, default=loss.gumbel_tau,
                   help="temperature dividing -dist before Gumbel sampling (Eq. 3)")
    g.add_argument("--mmd-rows", type=Bounded(int, 2), default=loss.mmd_rows,
                   help="LLM rows sampled for the MMD")
    train = TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=positive_float, default=train.lr)
    g.add_argument("--weight-decay", type=non_negative_float, default=train.weight_decay)
    g.add_argument("--epochs", type=non_negative_int, default=train.epochs,
                   help="passes over the train split; 0 = as many as --max-steps needs")
    g.add_argument("--max-steps", type=non_negative_int, default=train.max_steps,
                   help="stop after this many optimiser steps (0: no cap)")
    g.add_argument("--batch-size", type=positive_int, default=train.batch_size)
    g.add_argument("--seed", type=non_negative_int, default=train.seed)
    g.add_argument("--reset-every", type=non_negative_int, default=train.reset_every,
                   help="steps between dead-code resets (0 = never)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    add_precision_argument(g)
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's)")
    g.add_argument("--checkpoint-every", type=non_negative_int, default=500,
                   help="steps between mid-epoch checkpoints (0 = at epoch ends only)")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    curves = train_vqvae(
        SplitFiles.from_args(args), args.llm, args.out,
        model_options=fields_from_args(VQVAEConfig, args, skip=("joints",)),
        loss_cfg=LossConfig(**fields_from_args(LossConfig, args)),
        train_cfg=TrainConfig(**fields_from_args(TrainConfig, args)),
        device_name=args.device,
        checkpoint_every=args.checkpoint_every,
        precision=args.precision,
    )
    last = curves[-1]
    log.info("trained %d epochs (%d steps): rec %.4f, perplexity %.1f, %d codes used -> %s",
             last["epoch"], last["step"], last["rec"], last["perplexity"], last["used_codes"],
             args.out)
