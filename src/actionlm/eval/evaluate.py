"""Evaluate a trained recognizer on its protocol's test split -> OUT/predictions.parquet,
OUT/metrics.json (top-1, top-5, mean per-class accuracy, n, confusion matrix) and
OUT/confusion.png.

``--method ce|gap``: a skeleton encoder (--model: its best.safetensors), test clips
centre-cropped as in training.
``--method llm_ar|sugar``: an LLM recognizer (--model: its folder) on --inputs, scored by
constrained log-likelihood of each class's answer (actionlm.llm.evaluate); ``linear_probe``:
the zero-shot baseline that cannot name unseen classes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from actionlm.data.clips import load_sequences
from actionlm.data.skeleton_layouts import LAYOUTS
from actionlm.device import select_device
from actionlm.errors import ActionlmError
from actionlm.eval.metrics import write_evaluation
from actionlm.llm.evaluate import METHODS as LLM_METHODS
from actionlm.llm.evaluate import add_llm_arguments, evaluate_llm
from actionlm.models.encoder import load_encoder
from actionlm.train.common import set_threads
from actionlm.train.encoder import class_names, predict_logits

log = logging.getLogger(__name__)

ENCODER_METHODS = ("ce", "gap")


def evaluate_encoder(model_path: Path, data_dir: Path, protocol: str, out_dir: Path,
                     device: torch.device, test_interval: float, batch_size: int) -> dict:
    model = load_encoder(model_path, device)
    names = class_names(data_dir)
    if model.cfg.num_class != len(names):
        raise ActionlmError(f"{model_path}: trained for {model.cfg.num_class} classes, "
                            f"{data_dir / 'classes.parquet'} has {len(names)}")
    test = load_sequences(data_dir, protocol, ("test",), model.cfg.bodies)
    if test.n_joints != LAYOUTS[model.cfg.layout].n_joints:
        raise ActionlmError(f"{model_path}: trained on another skeleton layout than "
                            f"{data_dir} ({test.n_joints} joints)")
    scores = predict_logits(model, test, model.cfg.window, (test_interval,), device, batch_size)
    metrics = write_evaluation(
        out_dir, scores.numpy(), test.labels.numpy(), test.sample_ids, names,
        metadata={"method": model.cfg.method, "protocol": protocol, "model": str(model_path),
                  "backbone": model.cfg.backbone},
    )
    log.info("%s on %s/%s: top-1 %.2f%%, top-5 %.2f%%, mean class %.2f%% (n=%d) -> %s",
             model.cfg.method, data_dir.name, protocol, 100 * metrics["top1"],
             100 * metrics["top5"], 100 * metrics["mean_class_accuracy"], metrics["n"], out_dir)
    return metrics


def add_encoder_run_arguments(p: argparse.ArgumentParser, out_help: str) -> None:
    """The options of every command that runs a trained encoder over a protocol's clips."""
    p.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    p.add_argument("--protocol", required=True, help="split protocol")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--test-interval", type=float, default=0.95,
                   help="centred crop share of each sequence")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=(*ENCODER_METHODS, *LLM_METHODS), required=True,
                   help="ce, gap: a skeleton encoder; llm_ar, sugar: an LLM recognizer; "
                   "linear_probe: the zero-shot baseline (logistic regression on --inputs)")
    p.add_argument("--model", type=Path, default=None,
                   help="the trained model: an encoder's best.safetensors or a recognizer "
                   "folder (none for linear_probe)")
    p.add_argument("--inputs", type=Path, default=None,
                   help="LLM methods: action_sentences.parquet (llm_ar) or features.parquet")
    add_encoder_run_arguments(p, "output folder (evaluates the protocol's test split)")
    add_llm_arguments(p.add_argument_group("LLM recognizers"))


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if args.method not in ENCODER_METHODS:
        evaluate_llm(args)
        return
    if args.model is None:
        raise ActionlmError(f"--method {args.method} needs --model (its best.safetensors)")
    evaluate_encoder(args.model, args.data, args.protocol, args.out, select_device(args.device),
                     args.test_interval, args.batch_size)
