"""Evaluate a trained recognizer on a test split -> OUT/predictions.parquet, OUT/metrics.json
(top-1, top-5, mean per-class accuracy, n, confusion matrix) and OUT/confusion.png.

``--method text_similarity``: zero-shot by a GAP or SUGAR encoder's language head (--model),
ranking the classes by cosine similarity to their texts (--texts, --class-texts;
actionlm.eval.zero_shot), ZSL on the test split and GZSL with ``test_seen``.
``--method ce|gap``: a skeleton encoder (--model: its best.safetensors) on the test split of
--split over --skeletons, clips centre-cropped as in training, in the encoder's stream (its
``modality``: joint, bone, joint_motion, bone_motion; recorded in metrics.json).
``--method llm_ar|sugar``: an LLM recognizer (--model: its folder or recognizer.json) on the
test rows of --inputs, scored by constrained log-likelihood of each class's answer
(actionlm.eval.llm); ``text_probe``: the baseline without an LLM, a projection of the same
inputs onto the classes' text vectors that can name classes never trained on.
Every method names its classes from --classes. Networks run under --precision
(actionlm.device: bf16 autocast on a GPU that supports it by default, and for the LLM
recognizers on a CPU with AMX too; bf16 on any CPU on request); scores are float32 either way.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from actionlm.cli_args import positive_int, share
from actionlm.data.classes import read_class_names
from actionlm.data.clips import load_sequences
from actionlm.data.skeleton_layouts import LAYOUTS
from actionlm.data.split_files import SplitFiles, add_split_arguments
from actionlm.device import add_precision_argument, autocast_dtype, select_device, set_threads
from actionlm.errors import ActionlmError
from actionlm.eval.llm import METHODS as LLM_METHODS
from actionlm.eval.llm import add_llm_arguments, evaluate_llm
from actionlm.eval.metrics import write_evaluation
from actionlm.eval.zero_shot import CLASS_TEXTS, evaluate_text_similarity
from actionlm.models.encoder import load_encoder, predict_logits

log = logging.getLogger(__name__)

ENCODER_METHODS = ("ce", "gap")
TEXT_SIMILARITY = "text_similarity"


def evaluate_encoder(model_path: Path, files: SplitFiles, classes: Path, out_dir: Path,
                     device: torch.device, test_interval: float, batch_size: int,
                     precision: str = "auto") -> dict:
    autocast_dtype(device, precision)
    model = load_encoder(model_path, device)
    names = read_class_names(classes)
    if model.cfg.num_class != len(names):
        raise ActionlmError(f"{model_path}: trained for {model.cfg.num_class} classes, "
                            f"{classes} has {len(names)}")
    test = load_sequences(files, ("test",), model.cfg.bodies, model.cfg.modality)
    if test.n_joints != LAYOUTS[model.cfg.layout].n_joints:
        raise ActionlmError(f"{model_path}: trained on another skeleton layout than "
                            f"{files.skeletons} ({test.n_joints} joints)")
    scores = predict_logits(model, test, model.cfg.window, (test_interval,), device, batch_size,
                            precision)
    protocol = files.protocol
    metrics = write_evaluation(
        out_dir, scores.numpy(), test.labels.numpy(), test.sample_ids, names,
        metadata={"method": model.cfg.method, "protocol": protocol, "model": str(model_path),
                  "backbone": model.cfg.backbone, "modality": model.cfg.modality},
    )
    log.info("%s (%s) on %s (%s): top-1 %.2f%%, top-5 %.2f%%, mean class %.2f%% (n=%d) -> %s",
             model.cfg.method, model.cfg.modality, files.split, protocol, 100 * metrics["top1"],
             100 * metrics["top5"], 100 * metrics["mean_class_accuracy"], metrics["n"], out_dir)
    return metrics


def add_encoder_run_arguments(p: argparse.ArgumentParser, out_help: str,
                              split_required: bool = True) -> None:
    """The options of every command that runs a trained encoder over a split's clips."""
    add_split_arguments(p, required=split_required)
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--test-interval", type=share, default=0.95,
                   help="centred crop share of each sequence")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda:N")
    add_precision_argument(p)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=(*ENCODER_METHODS, TEXT_SIMILARITY, *LLM_METHODS),
                   required=True,
                   help="ce, gap: a skeleton encoder; llm_ar, sugar: an LLM recognizer; "
                   "text_probe: the baseline without an LLM (--inputs projected onto --texts); "
                   "text_similarity: zero-shot by a GAP/SUGAR encoder's language head")
    p.add_argument("--model", type=Path, default=None,
                   help="the trained model: an encoder's best.safetensors, or a recognizer "
                   "folder or its recognizer.json (none for text_probe)")
    p.add_argument("--classes", type=Path, required=True, help="the dataset's classes.parquet")
    p.add_argument("--inputs", type=Path, default=None,
                   help="LLM methods: action_sentences.parquet (llm_ar) or features.parquet")
    add_encoder_run_arguments(p, "output folder (evaluates the test split)",
                              split_required=False)
    add_llm_arguments(p.add_argument_group("LLM recognizers"))
    group = p.add_argument_group("text similarity (zero-shot; --texts as above)")
    group.add_argument("--class-texts", choices=CLASS_TEXTS, default="names",
                       help="a class's texts: its name, the descriptions the encoder's head "
                       "learned from, or both (averaged)")
    group.add_argument("--calibrate-on", type=Path, default=None,
                       help="GZSL: the metrics.json of the validation protocol's evaluation "
                       "(P_val), whose chosen gamma calibrates the seen classes' scores")


def run(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if args.method not in (*ENCODER_METHODS, TEXT_SIMILARITY):
        evaluate_llm(args)
        return
    for option, value, what in (("--model", args.model, "its best.safetensors"),
                                ("--skeletons", args.skeletons, "skeletons.parquet"),
                                ("--split", args.split, "the split table")):
        if value is None:
            raise ActionlmError(f"--method {args.method} needs {option} ({what})")
    if args.method == TEXT_SIMILARITY:
        if args.texts is None:
            raise ActionlmError("--method text_similarity needs --texts (text_embeddings.parquet)")
        evaluate_text_similarity(
            args.model, SplitFiles.from_args(args), args.classes, args.texts, args.out,
            class_texts=args.class_texts, calibrate_on=args.calibrate_on,
            interval=args.test_interval, device=select_device(args.device),
            batch_size=args.batch_size, precision=args.precision)
        return
    evaluate_encoder(args.model, SplitFiles.from_args(args), args.classes, args.out,
                     select_device(args.device), args.test_interval, args.batch_size,
                     args.precision)
