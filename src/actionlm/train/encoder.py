"""Train a skeleton encoder on the train split of one split table -> OUT/best.safetensors,
OUT/last.safetensors, OUT/config.json, OUT/curves.parquet.

Methods: ``ce`` (cross-entropy baseline), ``gap`` (CE + lambda x GAP's multi-part contrastive
loss against the class descriptions, Eq. 1 and 6) and ``sugar`` (SUGAR step 2: MIL-NCE
against several positive texts per skeleton, Eq. 3; CTR-GCN without temporal pooling).

Clips are cut and resized a batch at a time, in the --modality stream (joint, bone,
joint_motion, bone_motion; actionlm.data.clips, actionlm.data.streams); an epoch passes over
the training set --repeat times, in one seeded shuffle (GAP's NW-UCLA feeder: ``repeat: 5``).
SGD with Nesterov momentum, linear warm-up then step or cosine decay (per step), gradient-norm
clipping, bf16 autocast per --precision (actionlm.device; CE and the contrastive terms in
float32). A fine-tuned text encoder (--text-tuning finetune) learns with its own AdamW
(--text-optimizer adamw, --text-lr) or, as in GAP (main_multipart_ntu.py load_optimizer), in
the network's SGD at the schedule's learning rate (sgd). ``best.safetensors`` is the epoch
with the best top-1 on the split table's ``val`` split (split with --val-fraction); without a
val split it is the last epoch (the test split is never looked at). A NaN/inf loss stops the
run with the last good checkpoint kept.

Zero-shot protocols (unseen{K}_seed{S}) put the held-out classes in ``test`` only, so they
never reach training: the samples read are the ``train`` and ``val`` splits', the texts drawn
are those of the batch's labels, and SUGAR's class_text (the class prototypes saved with the
weights) holds the mean text of each class with training samples and zeros for the others;
its monitored top-1 (train and val) ranks only the classes that have one. The saved weights
are the same whatever the held-out classes' skeletons, names and texts
(tests/test_zero_shot_leak.py).

Resumable: OUT/checkpoints/ holds the newest checkpoint (every --checkpoint-every steps and at
each epoch's end); rerunning the same command continues from it and, on CPU, ends with the
same weights and curves as an uninterrupted run: every batch's clips come from a generator
seeded by (seed, epoch, batch), and the global RNG (dropout) is checkpointed.

curves.parquet: epoch, step, loss, ce, contrastive (GAP/SUGAR term, 0 for CE), train_top1,
val_top1 (NaN without a val split), lr (at the epoch's end), seconds.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from actionlm.cli_args import (
    Bounded,
    field_defaults,
    fields_from_args,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    share,
)
from actionlm.data.classes import read_class_names
from actionlm.data.clips import SequenceStore, load_sequences, make_clips
from actionlm.data.skeleton_layouts import layout_for_joints
from actionlm.data.split_files import SplitFiles, add_split_arguments, check_window
from actionlm.data.streams import MODALITIES
from actionlm.device import (
    add_precision_argument,
    autocast,
    autocast_dtype,
    select_device,
    set_threads,
)
from actionlm.errors import ActionlmError
from actionlm.io import atomic_path, write_json
from actionlm.models.encoder import (
    BACKBONES,
    METHODS,
    EncoderConfig,
    SkeletonEncoder,
    parameter_count,
    predict_logits,
    save_encoder,
)
from actionlm.models.encoder_losses import MultiPartContrastiveLoss, mil_nce_loss
from actionlm.text import BACKENDS, DEFAULT_CLIP_PRETRAINED
from actionlm.text.class_texts import ClassTexts, TextVectors
from actionlm.text.encoders import TextEncoder, build_text_encoder
from actionlm.train.common import (
    Checkpoint,
    CheckpointStore,
    epoch_order,
    rng_state,
    seed_everything,
    set_rng_state,
    write_curves,
)

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["epoch", "step", "loss", "ce", "contrastive", "train_top1", "val_top1", "lr",
                 "seconds"]
SUMS = ("loss", "ce", "contrastive", "correct")
TEXT_OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 65
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    schedule: str = "step"  # step (x gamma at each milestone epoch) or cosine
    milestones: tuple[int, ...] = (35, 55)
    gamma: float = 0.1
    clip_grad: float = 10.0  # max gradient norm; 0 = off
    train_interval: tuple[float, ...] = (0.5, 1.0)
    test_interval: tuple[float, ...] = (0.95,)
    rotate: float = 0.0  # max rotation angle (radians) per axis; 0 = off
    gap_weight: float = 0.8  # lambda of Eq. 1
    global_text: str = "synonym"  # GAP's global term: synonym or paragraph
    positives: int = 4  # SUGAR: positive texts per skeleton per step
    sugar_kinds: tuple[str, ...] = ("motion",)  # SUGAR Eq. 3's {m, v_i}: add visual
    temperature: float = 0.1  # SUGAR's tau
    text_tuning: str = "frozen"  # frozen (stored embeddings) or finetune (train the text encoder)
    text_lr: float = 1e-5  # AdamW learning rate of a fine-tuned text encoder
    text_optimizer: str = "adamw"  # adamw (own AdamW, text_lr) or sgd (GAP: in the network's SGD)
    repeat: int = 1  # passes over the training set per epoch (GAP's NW-UCLA feeder: 5)
    seed: int = 0

    def validate(self) -> TrainConfig:
        problems = []
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0 or self.repeat < 1:
            problems.append("need epochs >= 1, batch_size >= 2, lr > 0, repeat >= 1")
        if self.schedule not in ("step", "cosine"):
            problems.append(f"schedule {self.schedule!r} is not step or cosine")
        intervals = (self.train_interval, self.test_interval)
        if any(not 0 < p <= 1 for interval in intervals for p in interval) or len(
                self.train_interval) not in (1, 2) or len(self.test_interval) != 1:
            problems.append("train_interval is one or two shares in (0, 1], test_interval one")
        if self.positives < 1 or not self.temperature > 0 or self.gap_weight < 0:
            problems.append("need positives >= 1, temperature > 0, gap_weight >= 0")
        if self.text_tuning not in ("frozen", "finetune"):
            problems.append(f"text_tuning {self.text_tuning!r} is not frozen or finetune")
        if self.text_optimizer not in TEXT_OPTIMIZERS:
            problems.append(f"text_optimizer {self.text_optimizer!r} is not adamw or sgd")
        if self.global_text not in ("synonym", "paragraph"):
            problems.append(f"global_text {self.global_text!r} is not synonym or paragraph")
        if problems:
            raise ActionlmError("encoder training config: " + "; ".join(problems))
        return self

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """Linear warm-up over ``warmup_epochs``, then step decay or cosine to 0."""
        epoch = step / steps_per_epoch
        if epoch < self.warmup_epochs:
            return self.lr * (step + 1) / (self.warmup_epochs * steps_per_epoch)
        if self.schedule == "cosine":
            span = max(self.epochs - self.warmup_epochs, 1e-9)
            return 0.5 * self.lr * (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / span))
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    step: int = 0
    sums: dict = field(default_factory=lambda: dict.fromkeys(SUMS, 0.0))
    seen: int = 0
    best_val: float = -1.0
    curves: list[dict] = field(default_factory=list)


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 100_003 + batch)


class LanguageTargets(nn.Module):
    """What the contrastive term of a step compares against: per-sample texts of its class,
    as vectors from the frozen table or from the text encoder being fine-tuned."""

    def __init__(self, model: SkeletonEncoder, texts: ClassTexts, cfg: TrainConfig,
                 text_encoder: TextEncoder | None):
        super().__init__()
        self.method = model.cfg.method
        self.vectors = TextVectors(texts, text_encoder)
        if self.method == "gap":
            # GAP's synonym term draws from the label name and its synonyms (GAP:
            # Text_Prompt.py reads each line of text/*synonym*.txt, "name,synonym,...")
            kind = ("name", "synonym") if cfg.global_text == "synonym" else ("paragraph",)
            self.global_pool = texts.pool(kind)
            self.part_pools = [texts.part_pool(g) for g in model.cfg.part_groups
                               if g != "global"]
        else:
            self.pool = texts.pool(cfg.sugar_kinds)
        self.positives = cfg.positives

    def draw(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """GAP: [B, 1 + P, D] (a random global text, then the parts); SUGAR: [B, n, D]."""
        if self.method == "gap":
            chosen = self.vectors(self.global_pool.sample(labels, 1, generator))
            parts = [self.vectors.means(pool, labels)[:, None].to(chosen.device)
                     for pool in self.part_pools]  # none for partition 1 (global term alone)
            return torch.cat([chosen, *parts], 1)
        return self.vectors(self.pool.sample(labels, self.positives, generator))

    @torch.no_grad()
    def prototypes(self, trained: torch.Tensor) -> torch.Tensor:
        """SUGAR: [K, D], the mean positive text of each class in ``trained`` (the labels that
        have training samples; the encoder's class_text). The rows of the other classes stay
        zero: under a zero-shot protocol (unseen{K}_seed{S}) no text of a held-out class is
        written into the trained weights."""
        classes = torch.unique(trained.cpu())
        means = self.vectors.means(self.pool, classes)
        out = means.new_zeros(len(self.pool.counts), means.shape[1])
        out[classes.to(out.device)] = means
        return out


class EncoderTraining:
    def __init__(self, files: SplitFiles, classes: Path, out_dir: Path, model_options: dict,
                 train_cfg: TrainConfig, texts_path: Path | None, device: torch.device,
                 text_encoder: dict | None = None, precision: str = "auto"):
        """``text_encoder``: build_text_encoder's backend/model/pretrained, for
        ``text_tuning: finetune`` (the encoder that made the text table); ``precision``:
        actionlm.device's (a resource: not in config.json, a checkpoint resumes under any)."""
        autocast_dtype(device, precision)
        self.out_dir, self.device, self.precision = out_dir, device, precision
        self.cfg = train_cfg.validate()
        seed_everything(train_cfg.seed, device)
        names = read_class_names(classes)
        store = load_sequences(files, ("train", "val"), model_options.get("bodies", 2),
                               model_options.get("modality", "joint"))
        has_val = "val" in store.splits
        self.train = store.subset("train") if has_val else store
        self.val = store.subset("val") if has_val else None
        if len(self.train) < 2:
            raise ActionlmError(f"{files.split}: {len(self.train)} training samples; "
                                "need at least 2")
        texts = None
        if model_options["method"] != "ce":
            if texts_path is None:
                raise ActionlmError(f"method {model_options['method']} needs --texts "
                                    "(text_embeddings.parquet)")
            texts = ClassTexts(texts_path, len(names))
        self.model_cfg = self.encoder_config(model_options, store, names,
                                             texts.width if texts else 0, files, classes)
        self.model = SkeletonEncoder(self.model_cfg)
        log.info("%s encoder (%s, c=%d, %s stream): %d parameters, %d train (x%d per epoch) "
                 "/ %d val samples", self.model_cfg.method, self.model_cfg.backbone,
                 self.model_cfg.base_channels, self.model_cfg.modality,
                 parameter_count(self.model), len(self.train),
                 train_cfg.repeat, len(self.val or []))
        # trained besides the network: GAP's logit scales, a fine-tuned text encoder
        self.extras = nn.ModuleDict()
        self.targets = None
        self.untrained: torch.Tensor | None = None  # SUGAR: [K] classes without a class_text
        if self.model_cfg.method != "ce":
            tuned = None
            if train_cfg.text_tuning == "finetune":
                tuned = build_text_encoder(**(text_encoder or {}), device=device)
            self.targets = LanguageTargets(self.model, texts, train_cfg, tuned)
            if tuned is not None:
                self.extras["texts"] = self.targets.vectors
            if self.model_cfg.method == "sugar":
                self.model.class_text.copy_(self.targets.prototypes(self.train.labels))
                # classes never trained on (zero-shot held-out) are left out of top-1
                self.untrained = (self.model.class_text == 0).all(1).to(device)
        if self.model_cfg.method == "gap":
            self.extras["contrastive"] = MultiPartContrastiveLoss(len(self.model_cfg.part_groups))
        self.model.to(device)
        self.extras.to(device)
        self.optimizers = self.build_optimizers()
        self.config = {
            "data": {"skeletons": str(files.skeletons), "split": str(files.split),
                     "protocol": files.protocol, "classes": str(classes),
                     "texts": str(texts_path) if texts_path else None},
            "model": asdict(self.model_cfg), "train": asdict(train_cfg),
            "text_encoder": text_encoder if "texts" in self.extras else None,
            "parameters": parameter_count(self.model),
        }
        self.store = CheckpointStore(out_dir / "checkpoints", self.config,
                                     self.config["data"].values())

    def build_optimizers(self) -> list[torch.optim.Optimizer]:
        """SGD (Nesterov) for the network and GAP's logit scales; a fine-tuned text encoder
        joins it (``text_optimizer: sgd``, GAP's load_optimizer: its te_lr_ratio group is
        overwritten by adjust_learning_rate, which sets every group to the schedule's lr) or
        gets its own AdamW at ``text_lr`` (``adamw``: a pretrained transformer takes a small
        step, not SGD at lr 0.1)."""
        cfg = self.cfg
        text = [p for n, p in self.extras.named_parameters() if n.startswith("texts.")]
        other = [p for n, p in self.extras.named_parameters() if not n.startswith("texts.")]
        joined = text if cfg.text_optimizer == "sgd" else []
        optimizers: list[torch.optim.Optimizer] = [torch.optim.SGD(
            [*self.model.parameters(), *other, *joined], lr=cfg.lr, momentum=cfg.momentum,
            nesterov=True, weight_decay=cfg.weight_decay)]
        if text and not joined:
            optimizers.append(torch.optim.AdamW(text, lr=cfg.text_lr))
        return optimizers

    @staticmethod
    def encoder_config(options: dict, store: SequenceStore, names: list[str],
                       text_width: int, files: SplitFiles, classes: Path) -> EncoderConfig:
        """The network for this data; a requested num_class / layout / window must fit it."""
        layout = layout_for_joints(store.n_joints).name
        if options.get("layout") not in (None, layout):
            raise ActionlmError(f"{files.skeletons}: layout {options['layout']!r} does not fit "
                                f"the data's {store.n_joints} joints ({layout})")
        if options.get("num_class") not in (None, len(names)):
            raise ActionlmError(f"num_class {options['num_class']} does not fit "
                                f"{classes} ({len(names)} classes)")
        labels_seen = int(store.labels.max()) + 1
        if labels_seen > len(names):
            raise ActionlmError(f"{files.skeletons}: label {labels_seen - 1} has no class name "
                                f"in {classes}")
        check_window(options.get("window", 64), int(store.lengths.max()))
        keep = {k: v for k, v in options.items() if k not in ("layout", "num_class")}
        return EncoderConfig(**{**keep, "layout": layout, "num_class": len(names),
                                "text_width": text_width}).validate()

    def losses(self, clips: torch.Tensor, labels: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """Eq. 1 (GAP: CE + lambda L_con^multi), CE alone, or Eq. 3 (SUGAR)."""
        method = self.model_cfg.method
        zero = torch.zeros((), device=self.device)
        if method == "sugar":
            embedding = self.model.text_embedding(self.model.step_features(clips))
            texts = self.targets.draw(labels, generator).to(self.device)
            contrastive = mil_nce_loss(embedding, texts, labels, self.cfg.temperature)
            logits = self.ranked(self.model.text_similarity(embedding.detach()))  # top-1 only
            return contrastive, {"ce": zero, "contrastive": contrastive, "logits": logits}
        joints = self.model.joint_features(clips)
        logits = self.model.classify(joints)
        ce = F.cross_entropy(logits.float(), labels)
        if method == "ce":
            return ce, {"ce": ce, "contrastive": zero, "logits": logits}
        texts = self.targets.draw(labels, generator).to(self.device)
        contrastive = self.extras["contrastive"](self.model.part_embeddings(joints), texts,
                                                 labels)
        return ce + self.cfg.gap_weight * contrastive, {"ce": ce, "contrastive": contrastive,
                                                        "logits": logits}

    def step(self, index: torch.Tensor, progress: Progress, steps_per_epoch: int) -> float:
        generator = batch_generator(self.cfg.seed, progress.epoch, progress.batch)
        clips = make_clips(self.train, index, self.model_cfg.window, self.cfg.train_interval,
                           self.cfg.rotate, generator).to(self.device)
        labels = self.train.labels[index].to(self.device)
        lr = self.cfg.learning_rate(progress.step, steps_per_epoch)
        for group in self.optimizers[0].param_groups:
            group["lr"] = lr
        with autocast(self.device, self.precision):
            loss, parts = self.losses(clips, labels, generator)
        if not torch.isfinite(loss):
            raise ActionlmError(
                f"loss is {loss.item()} at epoch {progress.epoch + 1}, step {progress.step + 1} "
                f"(lr {lr:.3g}); the last good checkpoint is kept in {self.store.folder}: "
                "lower the learning rate or check the data"
            )
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        for optimizer in self.optimizers:
            optimizer.step()
        n = len(index)
        progress.sums["loss"] += loss.item() * n
        progress.sums["ce"] += parts["ce"].item() * n
        progress.sums["contrastive"] += parts["contrastive"].item() * n
        progress.sums["correct"] += (parts["logits"].argmax(1) == labels).sum().item()
        progress.seen += n
        return loss.item()

    @torch.no_grad()
    def validate(self) -> float:
        """Top-1 on the val split (test-time centred crop); NaN without a val split. SUGAR
        ranks only the classes with a class_text (those trained on: a zero-shot protocol's
        held-out classes have none)."""
        if self.val is None:
            return float("nan")
        logits = predict_logits(self.model, self.val, self.model_cfg.window,
                                self.cfg.test_interval, self.device, precision=self.precision)
        return (self.ranked(logits).argmax(1) == self.val.labels).float().mean().item()

    def ranked(self, logits: torch.Tensor) -> torch.Tensor:
        """The monitored class scores: SUGAR's classes without a class_text set to -inf
        (a zero prototype would score a cosine of 0 and could outrank every trained class)."""
        if self.untrained is None or not self.untrained.any():
            return logits
        return logits.masked_fill(self.untrained.to(logits.device), float("-inf"))

    def resume(self) -> Progress:
        checkpoint = self.store.load()
        if checkpoint is None:
            return Progress()
        self.model.load_state_dict(checkpoint.weights)
        self.extras.load_state_dict(checkpoint.state["extras"])
        for optimizer, state in zip(self.optimizers, checkpoint.state["optimizers"]):
            optimizer.load_state_dict(state)
        set_rng_state(checkpoint.state["rng"])
        return Progress(**checkpoint.progress)

    def save(self, progress: Progress) -> None:
        state = {"optimizers": [o.state_dict() for o in self.optimizers], "rng": rng_state(),
                 "extras": {k: v.detach().cpu() for k, v in self.extras.state_dict().items()}}
        self.store.save(Checkpoint(progress.step, self.model.state_dict(), state,
                                   asdict(progress)))

    def run(self, checkpoint_every: int) -> list[dict]:
        write_json(self.config, self.out_dir / "config.json")
        progress = self.resume()
        n, batch, repeat = len(self.train), self.cfg.batch_size, self.cfg.repeat
        steps_per_epoch = max(n * repeat // batch, 1)  # full batches only (BatchNorm, contrastive)
        for epoch in range(progress.epoch, self.cfg.epochs):
            started = time.perf_counter()
            self.model.train()
            order = epoch_order(n, self.cfg.seed, epoch, repeat)
            bar = tqdm(total=steps_per_epoch, initial=progress.batch, unit="step", leave=False,
                       desc=f"epoch {epoch + 1}/{self.cfg.epochs}")
            for b in range(progress.batch, steps_per_epoch):
                loss = self.step(order[b * batch: (b + 1) * batch], progress, steps_per_epoch)
                progress.step, progress.batch = progress.step + 1, b + 1
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}")
                if (checkpoint_every and progress.step % checkpoint_every == 0
                        and b + 1 < steps_per_epoch):
                    self.save(progress)
            bar.close()
            self.end_epoch(progress, epoch, steps_per_epoch, time.perf_counter() - started)
        # every output, also when a finished checkpoint resumed (a rerun of a killed job
        # removed them): the best epoch's weights wait in the checkpoint folder
        write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")
        save_encoder(self.model, self.out_dir / "last.safetensors")
        if self.val is None:
            save_encoder(self.model, self.out_dir / "best.safetensors")
        else:
            with atomic_path(self.out_dir / "best.safetensors") as tmp:
                shutil.copyfile(self.store.folder / "best.safetensors", tmp)
        return progress.curves

    def end_epoch(self, progress: Progress, epoch: int, steps_per_epoch: int,
                  seconds: float) -> None:
        val_top1 = self.validate()
        row = {"epoch": epoch + 1, "step": progress.step,
               **{k: progress.sums[k] / progress.seen for k in ("loss", "ce", "contrastive")},
               "train_top1": progress.sums["correct"] / progress.seen, "val_top1": val_top1,
               "lr": self.cfg.learning_rate(progress.step - 1, steps_per_epoch),
               "seconds": seconds}
        log.info("epoch %d: %s", epoch + 1, ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch", "step")))
        if val_top1 > progress.best_val:  # NaN (no val split) never counts as better
            progress.best_val = val_top1
            save_encoder(self.model, self.store.folder / "best.safetensors")
        progress.curves.append(row)
        progress.epoch, progress.batch = epoch + 1, 0
        progress.sums, progress.seen = dict.fromkeys(SUMS, 0.0), 0
        write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")
        self.save(progress)


# TrainConfig's scalar options and the values each takes
TRAIN_OPTION_TYPES = {
    "epochs": positive_int, "batch_size": Bounded(int, 2), "warmup_epochs": non_negative_int,
    "positives": positive_int, "seed": non_negative_int, "lr": positive_float,
    "momentum": Bounded(float, 0, 1), "weight_decay": non_negative_float, "gamma": positive_float,
    "clip_grad": non_negative_float, "rotate": non_negative_float,
    "gap_weight": non_negative_float, "temperature": positive_float,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=METHODS, required=True)
    add_split_arguments(p)
    p.add_argument("--classes", type=Path, required=True, help="the dataset's classes.parquet")
    p.add_argument("--texts", type=Path, default=None,
                   help="text_embeddings.parquet (gap, sugar)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    net = field_defaults(EncoderConfig)
    g = p.add_argument_group("network")
    g.add_argument("--backbone", choices=sorted(BACKBONES), default=net["backbone"])
    g.add_argument("--base-channels", type=Bounded(int, 4), default=net["base_channels"],
                   help="width c of the first blocks")
    g.add_argument("--window", type=positive_int, default=net["window"],
                   help="frames per clip (multiple of 4)")
    g.add_argument("--bodies", type=positive_int, default=net["bodies"])
    g.add_argument("--modality", choices=MODALITIES, default=net["modality"],
                   help="skeleton stream the network reads (bone: joint minus its parent; "
                   "motion: next frame minus this one), made from the clips as CTR-GCN's feeder")
    g.add_argument("--dropout", type=fraction, default=net["dropout"])
    g.add_argument("--parts", type=int, choices=(1, 2, 4, 6), default=net["parts"],
                   help="GAP partition: 1 = global term only, 2, 4 or 6 parts (+ global)")
    g.add_argument("--num-class", type=Bounded(int, 2), default=None,
                   help="expected number of classes (checked against --classes)")
    g.add_argument("--layout", default=None,
                   help="expected skeleton layout (checked against the data's joints)")
    defaults = TrainConfig()
    g = p.add_argument_group("training")
    for name, kind in TRAIN_OPTION_TYPES.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=kind, default=getattr(defaults, name))
    g.add_argument("--repeat", type=positive_int, default=defaults.repeat,
                   help="passes over the training set per epoch, in one shuffle (GAP's NW-UCLA "
                   "feeder: 5); steps per epoch = repeat x samples // batch size")
    g.add_argument("--schedule", choices=("step", "cosine"), default=defaults.schedule)
    g.add_argument("--milestones", type=positive_int, nargs="*", default=list(defaults.milestones))
    g.add_argument("--train-interval", type=share, nargs="+",
                   default=list(defaults.train_interval),
                   help="crop share: one value (fixed) or two (uniform range)")
    g.add_argument("--test-interval", type=share, nargs=1, default=list(defaults.test_interval))
    g.add_argument("--global-text", choices=("synonym", "paragraph"),
                   default=defaults.global_text)
    g.add_argument("--sugar-kinds", nargs="+", default=list(defaults.sugar_kinds),
                   choices=("motion", "visual", "part", "paragraph", "synonym"),
                   help="description kinds that are SUGAR's positive texts (Eq. 3: motion + "
                   "visual; part, paragraph: GAP's knowledge), drawn with replacement: a class "
                   "with fewer texts than --positives repeats them")
    g = p.add_argument_group("text encoder (GAP, SUGAR)")
    g.add_argument("--text-tuning", choices=("frozen", "finetune"), default=defaults.text_tuning,
                   help="frozen: the stored embeddings of --texts; finetune: train the text "
                   "encoder that made them (with --text-optimizer)")
    g.add_argument("--text-optimizer", choices=TEXT_OPTIMIZERS, default=defaults.text_optimizer,
                   help="finetune: adamw = its own AdamW at --text-lr; sgd = GAP's choice, the "
                   "network's SGD at the schedule's lr (--text-lr unused)")
    g.add_argument("--text-lr", type=positive_float, default=defaults.text_lr,
                   help="learning rate of --text-optimizer adamw (unused with sgd)")
    g.add_argument("--text-backend", choices=BACKENDS, default="sentence-transformers")
    g.add_argument("--text-model", default=None, help="as for encode-text (default: bundled)")
    g.add_argument("--text-pretrained", default=DEFAULT_CLIP_PRETRAINED,
                   help="open_clip weights, as for encode-text")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    add_precision_argument(g)
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's)")
    g.add_argument("--checkpoint-every", type=non_negative_int, default=200,
                   help="steps between mid-epoch checkpoints (0 = at epoch ends only)")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    model_options = fields_from_args(EncoderConfig, args, skip=("text_width",))
    train_cfg = TrainConfig(**fields_from_args(TrainConfig, args))
    text_encoder = {"backend": args.text_backend, "model": args.text_model,
                    "pretrained": args.text_pretrained}
    training = EncoderTraining(SplitFiles.from_args(args), args.classes, args.out, model_options,
                               train_cfg, args.texts, select_device(args.device), text_encoder,
                               args.precision)
    curves = training.run(args.checkpoint_every)
    last = curves[-1]
    log.info("trained %d epochs: loss %.4f, train top-1 %.3f, val top-1 %.3f -> %s",
             last["epoch"], last["loss"], last["train_top1"], last["val_top1"], args.out)
