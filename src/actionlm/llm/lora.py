"""Fine-tune a frozen LLM as an action recognizer with LoRA: LLM-AR on action sentences or SUGAR
on encoder features (through Temporal Query Projection) -> OUT/adapter.safetensors,
OUT/recognizer.json, OUT/curves.parquet.

Trains on the protocol's ``train`` split with cross-entropy on the answer tokens (the class
name; for SUGAR with --descriptions also a short motion description). ``--batch-size`` is the
global batch of one optimiser step, split into micro-batches (gradient accumulation) and, under
torchrun, across processes (DDP: gloo on CPU, nccl on CUDA); every step sees the same samples
whatever the number of processes. AdamW, linear warm-up then cosine decay. Length: --epochs
passes over the train split, capped at --max-steps steps (0 = no cap); --epochs 0 runs exactly
--max-steps steps, cycling through as many seeded epochs as they need (LLM-AR counts
iterations: 75k). The LLM runs under --precision (``actionlm.device.llm_precision``: auto is
bf16 on a CPU with AMX too) in the dtype prepare-llm recorded (its linear layers held in bf16
under bf16 autocast: ``recognizer.load_frozen_llm``); the trained weights (LoRA, action-token
embeddings or projector) are float32 whatever that dtype, and the loss is float32.

Zero-shot protocols hold classes out of ``train``: only the train rows are read, the training
prompt lists no classes, and the answers trained are the train labels', so the weights do not
depend on a held-out class's samples, name or description (tests/test_zero_shot_leak.py);
recognizer.json still records every class's answer, for evaluation.

Resumable: OUT/checkpoints/ holds the newest checkpoint (every --checkpoint-every steps and at
each epoch's end); rerunning the same command continues from it and, on CPU, ends with the same
weights as an uninterrupted run (the randomness of step s, LoRA dropout, is seeded from
(seed, s, rank), so a checkpoint needs no generator state). A checkpoint made with another
config is ignored.

``curves.parquet``: one row per --log-every steps and per epoch end: step, epoch (fractional),
samples, loss (mean cross-entropy per answer token since the previous row), token_accuracy,
lr, seconds (since the previous row). ``recognizer.json``: the RecognizerSpec (method, base
LLM and its fingerprint, LoRA settings, prompt, classes and their answers, codes or feature
shape and bridge) plus ``train`` (this run's settings) and ``inputs`` (the files read).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from actionlm.cli_args import (
    fields_from_args,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from actionlm.data.classes import read_class_names
from actionlm.data.features import read_features
from actionlm.device import (
    add_precision_argument,
    autocast,
    autocast_dtype,
    llm_precision,
    select_device,
    set_threads,
)
from actionlm.errors import ActionlmError
from actionlm.io import parquet_file, read_table, table_metadata
from actionlm.llm.recognizer import (
    METHODS,
    LoraSettings,
    Recognizer,
    RecognizerSpec,
    base_fingerprint,
)
from actionlm.llm.tqp import BRIDGES, BridgeConfig, bridge_tokens
from actionlm.train.common import (
    Checkpoint,
    CheckpointStore,
    check_step_budget,
    epoch_order,
    load_optimizer_state,
    seed_everything,
    step_budget,
    write_curves,
)

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["step", "epoch", "samples", "loss", "token_accuracy", "lr", "seconds"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; LLM-AR: lr 3e-3, batch 256 (micro 4); SUGAR: lr 2e-5, batch 128,
    one epoch."""

    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 1  # 0 = as many as max_steps needs
    max_steps: int = 0  # 0 = all steps of all epochs
    batch_size: int = 16
    warmup_steps: int = 0
    max_grad_norm: float = 1.0  # 0 = no clipping
    seed: int = 0

    def validate(self) -> TrainConfig:
        if (not self.lr > 0 or self.weight_decay < 0 or self.epochs < 0 or self.max_steps < 0
                or self.batch_size < 1 or self.warmup_steps < 0 or self.max_grad_norm < 0):
            raise ActionlmError(f"LoRA train config: out-of-range value in {asdict(self)}")
        check_step_budget(self.epochs, self.max_steps, "lora")
        return self

    def lr_at(self, step: int, total: int) -> float:
        """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at step ``total``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        done = (step - self.warmup_steps) / max(1, total - self.warmup_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


@dataclass
class TrainingData:
    """The train split: ``inputs`` (LongTensor [N, W] of tokens, or features [N, T, width]),
    ``labels`` [N], and the file they came from."""

    inputs: torch.Tensor
    labels: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------- inputs


def class_answers(classes: list[str], descriptions: str | os.PathLike | None,
                  words: int) -> list[str]:
    """Each class's trained answer: its name, and with ``descriptions`` (describe's table)
    "name: brief description", the class's ``brief`` text cut to ``words`` words (SUGAR: "the
    corresponding ground truth and a description of the action", a brief description GPT
    wrote from the motion knowledge)."""
    if descriptions is None:
        return list(classes)
    table = read_table(descriptions, columns=["class_id", "kind", "text"])
    briefs = {row["class_id"]: row["text"] for row in table.to_pylist() if row["kind"] == "brief"}
    if not briefs:
        raise ActionlmError(f"{descriptions}: no brief descriptions; they are made by describe "
                            "(SUGAR's question from each class's motion description; GAP's "
                            "imported files hold none): answer with class names instead "
                            "(lora.sugar.descriptions: false)")
    answers = []
    for label, name in enumerate(classes):
        brief = " ".join(briefs.get(label, "").split()[:words])
        answers.append(f"{name}: {brief}" if brief else name)
    return answers


def read_action_sentences(path: str | os.PathLike, codes: int, n_classes: int) -> TrainingData:
    """The train rows of action_sentences.parquet, checked against the codebook size U."""
    table = read_table(path, columns=["sample_id", "split", "label", "tokens"])
    rows = [r for r in table.to_pylist() if r["split"] == "train"]
    if not rows:
        raise ActionlmError(f"{path}: no rows in split 'train'")
    lengths = {len(r["tokens"]) for r in rows}
    if len(lengths) != 1:
        raise ActionlmError(f"{path}: action sentences of different lengths {sorted(lengths)}")
    for r in rows:
        bad = [t for t in r["tokens"] if not 0 <= t < codes]
        if bad:
            raise ActionlmError(
                f"{path}: sample {r['sample_id']} has action tokens {bad[:5]} outside the "
                f"codebook range [0, {codes}) (tokens: column)"
            )
    return TrainingData(torch.tensor([r["tokens"] for r in rows], dtype=torch.long),
                        checked_labels([r["label"] for r in rows], n_classes, path), str(path))


def read_train_features(path: str | os.PathLike, n_classes: int) -> TrainingData:
    data = read_features(path, ("train",))
    return TrainingData(data.features, checked_labels(data.labels.tolist(), n_classes, path),
                        str(path))


def checked_labels(labels: list[int], n_classes: int, path) -> torch.Tensor:
    bad = sorted({int(x) for x in labels if not 0 <= x < n_classes})
    if bad:
        raise ActionlmError(f"{path}: labels {bad[:5]} not in classes.parquet (0..{n_classes - 1})")
    return torch.tensor(labels, dtype=torch.long)


def vqvae_codebook(sentences: str | os.PathLike, vqvae: str | os.PathLike | None,
                   hidden: int) -> tuple[torch.Tensor, Path]:
    """The tangent-space codes [U, hidden] of the VQ-VAE that wrote ``sentences`` (its
    metadata names it unless ``vqvae`` is given); they must be LLM-width vectors."""
    from actionlm.models.vqvae import load_vqvae

    schema = parquet_file(sentences).schema_arrow
    path = Path(vqvae or table_metadata(schema, "vqvae") or "")
    if not path.is_file():
        raise ActionlmError(f"{sentences}: the VQ-VAE {str(path)!r} it names (actionlm.vqvae) "
                            "is missing; pass --vqvae")
    with torch.no_grad():
        codes = load_vqvae(path).codebook.tangent_codes().float()
    declared = table_metadata(schema, "codes")
    if declared not in (None, len(codes)):
        raise ActionlmError(f"{sentences}: actionlm.codes = {declared} but {path} has "
                            f"{len(codes)} codes")
    if codes.shape[1] != hidden:
        raise ActionlmError(f"{path}: codes of width {codes.shape[1]} cannot be tokens of an "
                            f"LLM of hidden size {hidden}")
    return codes, path


# ---------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Workers:
    """This process's place among the training processes (one unless launched by torchrun)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[self.rank::self.world]

    def total(self, values: list[float]) -> list[float]:
        """Sums over processes (for logging)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def start_workers(device_name: str) -> Workers:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_name)
    if world == 1:
        return Workers(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    log.info("process %d of %d on %s", dist.get_rank(), world, device)
    return Workers(dist.get_rank(), world, device)


# ---------------------------------------------------------------- training


@dataclass
class Progress:
    """Where a run stands: the checkpoint's JSON part."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # steps of the current epoch completed
    step: int = 0
    # since the last curve row: summed loss, right answer tokens, answer tokens, samples
    tally: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    tally_started: float = 0.0
    curves: list[dict] = field(default_factory=list)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 1009 + rank


class LoraTraining:
    """One run: data, recognizer, optimiser, checkpoint store."""

    def __init__(self, recognizer: Recognizer, data: TrainingData, train_cfg: TrainConfig,
                 micro_batch: int, out_dir: Path, config: dict, workers: Workers,
                 precision: str = "auto"):
        self.recognizer, self.data, self.cfg = recognizer, data, train_cfg
        self.precision = precision
        self.micro_batch, self.out_dir, self.workers = micro_batch, out_dir, workers
        if len(data) < train_cfg.batch_size or train_cfg.batch_size < workers.world:
            raise ActionlmError(
                f"{data.source}: batch size {train_cfg.batch_size} needs at least that many train "
                f"samples (found {len(data)}) and at least one per process ({workers.world})"
            )
        # the last partial batch is dropped: every process gets a share of every step
        self.steps_per_epoch = len(data) // train_cfg.batch_size
        self.total_steps = step_budget(train_cfg.epochs, train_cfg.max_steps,
                                       self.steps_per_epoch)
        self.params = [p for p in recognizer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=train_cfg.lr,
                                           weight_decay=train_cfg.weight_decay)
        self.network = recognizer
        if workers.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [workers.device.index] if workers.device.type == "cuda" else None
            self.network = DistributedDataParallel(recognizer, device_ids=ids)
        self.store = CheckpointStore(out_dir / "checkpoints", config, config["inputs"].values())
        self.answer_lengths = torch.tensor(
            [len(recognizer.answer_ids(c)) for c in recognizer.spec.classes])

    def resume(self) -> Progress:
        checkpoint = self.store.load()
        if checkpoint is None:
            return Progress()
        self.recognizer.load_adapter_state(checkpoint.weights, str(self.store.folder))
        load_optimizer_state(self.optimizer, checkpoint.state["optimizer"])
        return Progress(**checkpoint.progress)

    def save(self, progress: Progress) -> None:
        if self.workers.main:
            state = {"optimizer": self.optimizer.state_dict()}
            self.store.save(Checkpoint(progress.step, self.recognizer.adapter_state(), state,
                                       asdict(progress)))

    def step(self, batch: torch.Tensor, step: int) -> list[float]:
        """One optimiser step on the global ``batch`` (sample indices): this process's share,
        in micro-batches; the loss is normalised by the global number of answer tokens so that
        the summed gradient is that of the global mean, whatever the split."""
        torch.manual_seed(step_seed(self.cfg.seed, step, self.workers.rank))
        tokens = int(self.answer_lengths[self.data.labels[batch]].sum())
        lr = self.cfg.lr_at(step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        mine = self.workers.shard(batch)
        micro = list(torch.split(mine, self.micro_batch))
        tally = [0.0, 0.0, 0.0, float(len(mine))]
        for i, idx in enumerate(micro):
            last = i == len(micro) - 1
            sync = nullcontext() if last or self.workers.world == 1 else self.network.no_sync()
            with sync:
                with autocast(self.workers.device, self.precision):
                    loss, correct, n = self.network(self.data.inputs[idx],
                                                    self.data.labels[idx].tolist())
                (loss * (self.workers.world / tokens)).backward()
            tally[0] += loss.item()
            tally[1] += correct.item()
            tally[2] += n
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return tally

    def curve_row(self, progress: Progress) -> dict:
        loss, right, tokens, samples = progress.tally
        return {
            "step": progress.step,
            "epoch": progress.step / self.steps_per_epoch,
            "samples": int(samples),
            "loss": loss / max(tokens, 1.0),
            "token_accuracy": right / max(tokens, 1.0),
            "lr": self.cfg.lr_at(progress.step - 1, self.total_steps),
            "seconds": time.perf_counter() - progress.tally_started,
        }

    def record(self, progress: Progress) -> None:
        """Close the current curve row (all processes' tallies summed)."""
        progress.tally = self.workers.total(progress.tally)
        if progress.tally[3]:
            row = self.curve_row(progress)
            progress.curves.append(row)
            log.info("step %d: loss %.4f, token accuracy %.3f", row["step"], row["loss"],
                     row["token_accuracy"])
        progress.tally = [0.0, 0.0, 0.0, 0.0]
        progress.tally_started = time.perf_counter()
        if self.workers.main:
            write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")

    def run(self, checkpoint_every: int, log_every: int) -> list[dict]:
        progress = self.resume()
        progress.tally_started = time.perf_counter()  # a resumed row times only this process
        self.recognizer.train()
        bar = tqdm(total=self.total_steps, initial=progress.step, unit="step",
                   disable=not self.workers.main)
        batch_size = self.cfg.batch_size
        while progress.step < self.total_steps:
            order = epoch_order(len(self.data), self.cfg.seed, progress.epoch)
            while progress.batch < self.steps_per_epoch and progress.step < self.total_steps:
                b = progress.batch
                tally = self.step(order[b * batch_size:(b + 1) * batch_size], progress.step)
                progress.tally = [a + t for a, t in zip(progress.tally, tally)]
                progress.step, progress.batch = progress.step + 1, b + 1
                bar.update()
                bar.set_postfix(loss=f"{tally[0] / max(tally[2], 1):.4f}")
                done = progress.step == self.total_steps
                if log_every and progress.step % log_every == 0 and not done:
                    self.record(progress)
                if checkpoint_every and progress.step % checkpoint_every == 0 and not done:
                    self.save(progress)
            if progress.batch == self.steps_per_epoch:
                progress.epoch, progress.batch = progress.epoch + 1, 0
            self.record(progress)
            self.save(progress)
        bar.close()
        if self.workers.main:  # also when a finished checkpoint resumed: the rule removed them
            write_curves(progress.curves, CURVE_COLUMNS, self.out_dir / "curves.parquet")
        return progress.curves


# ---------------------------------------------------------------- the stage


def train_lora(args: argparse.Namespace) -> tuple[Recognizer, list[dict]]:
    """Build the recognizer from the stage's arguments, train or resume it, write the outputs;
    return the trained recognizer and the curve rows."""
    workers = start_workers(args.device)
    precision = llm_precision(workers.device, args.precision)
    train_cfg = TrainConfig(**fields_from_args(TrainConfig, args)).validate()
    seed_everything(train_cfg.seed, workers.device)
    classes = read_class_names(args.classes)
    answers = class_answers(classes, args.descriptions, args.description_words)
    base = {"llm": str(args.llm), **base_fingerprint(args.llm)}
    lora = LoraSettings(args.lora_r, args.lora_alpha, args.lora_dropout,
                        tuple(t for t in re.split(r"[,\s]+", args.lora_targets) if t))
    inputs: dict[str, str | None] = {"classes": str(args.classes),
                                     "descriptions": args.descriptions and str(args.descriptions)}
    if args.method == "llm_ar":
        if args.sentences is None:
            raise ActionlmError("--method llm_ar needs --sentences (action_sentences.parquet)")
        codebook, vqvae = vqvae_codebook(args.sentences, args.vqvae, base["hidden_size"])
        data = read_action_sentences(args.sentences, len(codebook), len(classes))
        spec = RecognizerSpec(args.method, classes, answers, lora, base, codes=len(codebook),
                              train_action_embeddings=args.train_action_embeddings)
        inputs.update(sentences=str(args.sentences), vqvae=str(vqvae))
        n_tokens = data.inputs.shape[1]
    else:
        if args.features is None:
            raise ActionlmError("--method sugar needs --features (features.parquet)")
        codebook = None
        data = read_train_features(args.features, len(classes))
        _, n_steps, width = data.inputs.shape
        bridge = BridgeConfig(args.bridge, args.queries, args.segments, args.depth, args.heads,
                              args.bridge_dropout).validate(width, n_steps, f"{args.features}")
        spec = RecognizerSpec(args.method, classes, answers, lora, base,
                              features={"n_steps": n_steps, "width": width}, bridge=bridge)
        inputs.update(features=str(args.features))
        n_tokens = bridge_tokens(bridge, n_steps)
    recognizer = Recognizer(spec, args.llm, workers.device, codebook,
                            autocast_dtype(workers.device, precision))
    recognizer.check_context(n_tokens, data.source)
    if args.gradient_checkpointing:
        recognizer.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    config = {"spec": spec.to_json(), "train": asdict(train_cfg), "inputs": inputs}
    training = LoraTraining(recognizer, data, train_cfg, args.micro_batch_size, Path(args.out),
                            config, workers, precision)
    log.info("%s: %d train samples, %d steps of %d, %.2fM trainable parameters", args.method,
             len(data), training.total_steps, train_cfg.batch_size,
             sum(p.numel() for p in training.params) / 1e6)
    curves = training.run(args.checkpoint_every, args.log_every)
    if workers.main:
        recognizer.save(args.out, {"train": asdict(train_cfg), "inputs": inputs})
    if workers.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return recognizer, curves


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--llm", type=Path, required=True, help="a prepare-llm folder (the frozen LLM)")
    p.add_argument("--sentences", type=Path, help="llm_ar: action_sentences.parquet")
    p.add_argument("--vqvae", type=Path,
                   help="llm_ar: the VQ-VAE weights (default: the file the sentences name)")
    p.add_argument("--features", type=Path, help="sugar: features.parquet of the frozen encoder")
    p.add_argument("--classes", type=Path, required=True, help="the dataset's classes.parquet")
    p.add_argument("--descriptions", type=Path,
                   help="descriptions.parquet: SUGAR answers 'name: brief description'")
    p.add_argument("--description-words", type=positive_int, default=12,
                   help="longest description in words (the brief description is cut there)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    lora = LoraSettings()
    g = p.add_argument_group("LoRA (both papers: r 64, alpha 16)")
    g.add_argument("--lora-r", type=positive_int, default=lora.r)
    g.add_argument("--lora-alpha", type=positive_float, default=lora.alpha)
    g.add_argument("--lora-dropout", type=fraction, default=lora.dropout)
    g.add_argument("--lora-targets", default=",".join(lora.target_modules),
                   help="comma-separated module names that get adapters")
    g.add_argument("--train-action-embeddings", action=argparse.BooleanOptionalAction,
                   default=True, help="llm_ar: train the U new token embeddings")
    bridge = BridgeConfig()
    g = p.add_argument_group("SUGAR bridge (Table 4)")
    g.add_argument("--bridge", choices=BRIDGES, default=bridge.kind)
    g.add_argument("--queries", type=positive_int, default=bridge.queries,
                   help="query length L (LLM tokens)")
    g.add_argument("--segments", type=positive_int, default=bridge.segments,
                   help="TQP temporal segments")
    g.add_argument("--depth", type=positive_int, default=bridge.depth, help="Q-Former blocks")
    g.add_argument("--heads", type=positive_int, default=bridge.heads,
                   help="Q-Former attention heads")
    g.add_argument("--bridge-dropout", type=fraction, default=bridge.dropout)
    train = TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=positive_float, default=train.lr)
    g.add_argument("--weight-decay", type=non_negative_float, default=train.weight_decay)
    g.add_argument("--epochs", type=non_negative_int, default=train.epochs,
                   help="passes over the train split; 0 = as many as --max-steps needs")
    g.add_argument("--max-steps", type=non_negative_int, default=train.max_steps,
                   help="stop after this many steps (0: no cap)")
    g.add_argument("--batch-size", type=positive_int, default=train.batch_size,
                   help="samples per optimiser step, all processes together")
    g.add_argument("--micro-batch-size", type=positive_int, default=4,
                   help="samples per forward pass")
    g.add_argument("--warmup-steps", type=non_negative_int, default=train.warmup_steps)
    g.add_argument("--max-grad-norm", type=non_negative_float, default=train.max_grad_norm,
                   help="0: no clipping")
    g.add_argument("--seed", type=non_negative_int, default=train.seed)
    g.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                   default=False, help="recompute activations in backward (large models)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    add_precision_argument(g)
    g.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's)")
    g.add_argument("--checkpoint-every", type=non_negative_int, default=50,
                   help="steps between checkpoints (0: at epoch ends only)")
    g.add_argument("--log-every", type=positive_int, default=10, help="steps between curve rows")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    _, curves = train_lora(args)
    if curves:
        log.info("trained %d steps: loss %.4f, token accuracy %.3f -> %s", curves[-1]["step"],
                 curves[-1]["loss"], curves[-1]["token_accuracy"], args.out)
