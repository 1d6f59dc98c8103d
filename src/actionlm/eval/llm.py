"""Evaluation of the LLM recognizers (LLM-AR, SUGAR) on the test split of an inputs table
(action sentences or encoder features), closed-set or zero-shot, and the text probe that
zero-shot recognition is compared with. Class names come from --classes; the protocol named in
metrics.json is the one the inputs table records (left out when it records none).

Every test sample is scored against every candidate class at once (actionlm.llm.scoring):
top-1 and top-5 come from one ranking, never from an unmatched free-form answer. With
``--generate-tokens N`` the recognizer also answers as in the papers, by greedy generation
(closed set: the trained prompt; zero-shot: SUGAR's request for the top five candidates), and
the class is read off the text (actionlm.llm.scoring.match_answer / match_ranking: exact name,
contained name, then a fuzzy match); an answer that names no class counts as wrong and its
sample is listed. metrics.json's ``generation`` holds top1 (zero-shot: top5 too), no_class
(the share of such answers) and no_class_samples; predictions.parquet the ``generated`` text
and ``generated_ranking`` (the classes it names, best first; empty for none).

- Closed set: the candidates are all classes of the dataset, the prompt is the trained one.
- Zero-shot (``--zero-shot``; LLM-AR Sec. 4.4 "unseen activity classes", SUGAR "Zero-shot"):
  the candidates are the classes of the test split, listed in the instruction. Under
  ``unseen{K}_seed{S}`` these are the K classes held out of training; evaluating a recognizer
  on another prepared dataset (its inputs made with this recognizer's VQ-VAE or encoder) is
  the cross-dataset protocol.
- ``text_probe``: the baseline without an LLM that can name a class it never saw: the same
  inputs (mean encoder feature, or action-token histogram) projected by ridge regression onto
  their class's text vector (the mean of its description embeddings, text_embeddings.parquet),
  trained on the training split; every candidate is ranked by cosine similarity to its text
  vector (DeViSE-style; a linear classifier would score 0 on unseen classes by construction,
  the limitation SUGAR's Table 2 shows).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from tqdm import tqdm

from actionlm.cli_args import non_negative_int
from actionlm.data.classes import read_class_names
from actionlm.data.features import read_features
from actionlm.device import autocast, autocast_dtype, llm_precision, select_device
from actionlm.errors import ActionlmError
from actionlm.eval.metrics import write_evaluation
from actionlm.eval.zero_shot import class_vectors, gzsl_metrics
from actionlm.io import parquet_file, read_table, table_metadata
from actionlm.llm.scoring import (
    NORMALIZATIONS,
    generate_answers,
    match_answer,
    match_ranking,
    score_answers,
    tokenize_answers,
)

log = logging.getLogger(__name__)

LLM_METHODS = ("llm_ar", "sugar")
TEXT_PROBE = "text_probe"
METHODS = (*LLM_METHODS, TEXT_PROBE)


@dataclass
class TestInputs:
    """One split of an inputs table: action sentences (``tokens``: lists of code ids, ``codes``
    = U) or encoder features (``features`` [N, n_steps, width])."""

    sample_ids: list[str]
    labels: np.ndarray
    protocol: str | None
    tokens: list[list[int]] | None = None
    codes: int | None = None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def rows(self, start: int, stop: int):
        """What Recognizer.prompt_embeddings takes for samples start..stop."""
        return self.tokens[start:stop] if self.tokens is not None else self.features[start:stop]


def read_inputs(path: Path, *splits: str) -> TestInputs:
    """The rows of ``splits`` of action_sentences.parquet (LLM-AR) or features.parquet
    (SUGAR)."""
    if not path.is_file():
        raise ActionlmError(f"{path}: no such inputs table")
    names = parquet_file(path).schema_arrow.names
    if "features" in names:
        data = read_features(path, splits)
        return TestInputs(data.sample_ids, data.labels.numpy(), data.encoder.get("protocol"),
                          features=data.features)
    if "tokens" not in names:
        raise ActionlmError(f"{path}: neither action sentences (tokens) nor features")
    table = read_table(path, columns=["sample_id", "split", "label", "tokens"])
    table = table.filter(pc.is_in(table["split"], pa.array(splits)))
    if table.num_rows == 0:
        raise ActionlmError(f"{path}: no rows in split {'/'.join(splits)!r}")
    return TestInputs(table["sample_id"].to_pylist(),
                      table["label"].to_numpy().astype(np.int64),
                      table_metadata(table, "protocol"), tokens=table["tokens"].to_pylist(),
                      codes=table_metadata(table, "codes"))


def candidate_classes(labels: np.ndarray, names: list[str], zero_shot: bool
                      ) -> tuple[list[int], np.ndarray]:
    """(dataset labels of the candidate classes, each sample's index in that list): all
    classes, or for zero-shot those the test split holds (the unseen ones)."""
    bad = sorted({int(x) for x in labels if not 0 <= x < len(names)})
    if bad:
        raise ActionlmError(f"labels {bad[:5]} are not in the class table (0..{len(names) - 1})")
    chosen = sorted({int(x) for x in labels}) if zero_shot else list(range(len(names)))
    position = {label: i for i, label in enumerate(chosen)}
    return chosen, np.array([position[int(x)] for x in labels], dtype=np.int64)


def evaluate_recognizer(args: argparse.Namespace) -> dict:
    """Score every test sample against every candidate with a trained recognizer; optionally
    let it generate its answer too (its class, SUGAR's description) and read the class off."""
    from actionlm.llm.recognizer import load_recognizer

    device = select_device(args.device)
    args.precision = llm_precision(device, args.precision)  # what every scoring pass runs in
    recognizer = load_recognizer(args.model, device, llm_dir=args.llm,
                                 compute_dtype=autocast_dtype(device, args.precision))
    if recognizer.spec.method != args.method:
        raise ActionlmError(
            f"{args.model}: a {recognizer.spec.method} recognizer, not {args.method}")
    test = read_inputs(args.inputs, "test")
    names = read_class_names(args.classes)
    chosen, labels = candidate_classes(test.labels, names, args.zero_shot)
    candidates = [names[c] for c in chosen]
    untrained = sorted(set(candidates) - set(recognizer.spec.classes))
    if untrained and not args.zero_shot:
        raise ActionlmError(f"{args.model}: never trained on {untrained[:3]} of "
                            f"{args.classes}; evaluate unseen classes with --zero-shot")
    scores, generated = score_inputs(recognizer, test, candidates, args, device,
                                     args.generate_tokens)
    metadata = {"method": args.method, **protocol_of(test), "model": str(args.model),
                "inputs": str(args.inputs), "zero_shot": args.zero_shot,
                "normalize": args.normalize}
    if args.gzsl:
        metadata["gzsl"] = gzsl_of_recognizer(recognizer, args, chosen, names, device)
    extra = None
    if args.generate_tokens:
        ranked = [match_ranking(text, candidates) if args.zero_shot else
                  [i for i in [match_answer(text, candidates)] if i >= 0] for text in generated]
        extra = {"generated": generated,
                 "generated_ranking": pa.array(ranked, pa.list_(pa.int32()))}
        metadata["generation"] = generation_metrics(ranked, labels, test.sample_ids,
                                                    args.zero_shot, args.generate_tokens)
    return _write(args, scores, labels, test.sample_ids, candidates, extra, metadata)


def score_inputs(recognizer, data: TestInputs, candidates: list[str], args: argparse.Namespace,
                 device: torch.device, generate_tokens: int) -> tuple[np.ndarray, list[str]]:
    """([N, K] scores of every candidate's answer for each sample, the answers generated in
    up to ``generate_tokens`` tokens); zero-shot prompts list the candidates."""
    answers = tokenize_answers(recognizer.tokenizer,
                               [recognizer.answer_text(c) for c in candidates])
    listed = candidates if args.zero_shot else None
    scores, generated = [], []
    with torch.inference_mode(), autocast(device, args.precision):
        for start in tqdm(range(0, len(data), args.batch_size), desc="evaluate", unit="batch"):
            stop = min(start + args.batch_size, len(data))
            embeds, mask = recognizer.prompt_embeddings(data.rows(start, stop), listed)
            scores.append(score_answers(recognizer.model, embeds, mask, answers,
                                        normalize=args.normalize,
                                        row_names=data.sample_ids[start:stop]).cpu())
            if generate_tokens:
                if args.zero_shot:  # SUGAR's question: the top five of the listed classes
                    embeds, mask = recognizer.prompt_embeddings(data.rows(start, stop), listed,
                                                                ranking=True)
                generated += generate_answers(recognizer.model, recognizer.tokenizer, embeds,
                                              mask, generate_tokens)
    return torch.cat(scores).float().numpy(), generated


def gzsl_of_recognizer(recognizer, args: argparse.Namespace, unseen: list[int],
                       names: list[str], device: torch.device) -> dict:
    """GZSL (actionlm.eval.zero_shot.gzsl_accuracy): every class listed and scored for the
    samples of ``test`` and ``test_seen``; uncalibrated (a calibration would need a
    recognizer trained on the validation protocol)."""
    if not args.zero_shot:
        raise ActionlmError("--gzsl is a zero-shot evaluation: add --zero-shot")
    data = read_inputs(args.inputs, "test", "test_seen")
    if set(data.labels.tolist()) <= set(unseen):
        raise ActionlmError(f"{args.inputs}: no test_seen rows (GZSL needs a protocol with a "
                            "base, e.g. xsub_unseen5_seed0 or synse55_5)")
    scores, _ = score_inputs(recognizer, data, names, args, device, 0)
    return gzsl_metrics(scores, data.labels, unseen, protocol_of(data).get("protocol", ""),
                        None)


def generation_metrics(ranked: list[list[int]], labels: np.ndarray, sample_ids: list[str],
                       zero_shot: bool, tokens: int) -> dict:
    """Accuracy of the generated answers (the classes they name, best first): top-1, top-5
    when five were asked for, and the answers that name no class (wrong, and listed)."""
    first = np.array([r[0] if r else -1 for r in ranked])
    none = [s for s, r in zip(sample_ids, ranked) if not r]
    out = {"top1": float((first == labels).mean()), "no_class": len(none) / len(ranked),
           "no_class_samples": none, "tokens": tokens,
           "prompt": "top five of the candidates" if zero_shot else "trained"}
    if zero_shot:
        out["top5"] = float(np.mean([int(y) in r for y, r in zip(labels, ranked)]))
    return out


def protocol_of(inputs: TestInputs) -> dict:
    """metrics.json's ``protocol``: the inputs table's, when it records one."""
    return {} if inputs.protocol is None else {"protocol": inputs.protocol}


def probe_inputs(data: TestInputs, codes: int | None) -> torch.Tensor:
    """[N, D] probe features: the time-averaged encoder feature, or the action sentence's
    histogram over the U codes (an order-free bag of tokens)."""
    if data.features is not None:
        return data.features.mean(1)
    hist = torch.zeros(len(data), codes)
    for i, tokens in enumerate(data.tokens):
        row = torch.as_tensor(tokens, dtype=torch.long)
        hist[i].index_add_(0, row, torch.full((len(row),), 1.0 / max(1, len(row))))
    return hist


def fit_text_projection(x: torch.Tensor, targets: torch.Tensor,
                        ridge: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, W): ridge regression of the standardised inputs onto their class's text
    vector, W = (Z^T Z + ridge * N * I)^-1 Z^T T, the closed-form optimum (deterministic)."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = ((x - mean) / std).double()
    gram = z.T @ z + ridge * len(z) * torch.eye(z.shape[1], dtype=z.dtype)
    return mean, std, torch.linalg.solve(gram, z.T @ targets.double()).float()


def evaluate_text_probe(args: argparse.Namespace) -> dict:
    """Project the inputs (mean encoder feature, action-token histogram) into the text
    encoder's space, trained on the training split of ``--train-inputs`` (default
    ``--inputs``), and rank the candidates of ``--inputs``' test split by cosine similarity
    to their class text vectors (``--texts``): a class never trained on can be named."""
    if args.texts is None:
        raise ActionlmError("--method text_probe needs --texts (text_embeddings.parquet)")
    train = read_inputs(args.train_inputs or args.inputs, "train")
    test = read_inputs(args.inputs, "test")
    names = read_class_names(args.classes)
    chosen, labels = candidate_classes(test.labels, names, args.zero_shot)
    if (train.tokens is None) != (test.tokens is None):
        raise ActionlmError(f"{args.inputs}: not the same kind of inputs as the training table")
    codes = train.codes or test.codes
    if train.tokens is not None and not codes:
        raise ActionlmError(f"{args.inputs}: action sentences without actionlm.codes metadata")
    x_train, x_test = probe_inputs(train, codes), probe_inputs(test, codes)
    if x_test.shape[1] != x_train.shape[1]:
        raise ActionlmError(f"{args.inputs}: inputs of width {x_test.shape[1]}, the training "
                            f"inputs have {x_train.shape[1]}")
    texts = class_vectors(args.texts, len(names))
    mean, std, weight = fit_text_projection(x_train, texts[torch.as_tensor(train.labels)])
    projected = F.normalize((x_test - mean) / std @ weight, dim=1)
    scores = (projected @ texts[chosen].T).numpy()
    metadata = {"method": TEXT_PROBE, **protocol_of(test), "inputs": str(args.inputs),
                "train_inputs": str(args.train_inputs or args.inputs), "texts": str(args.texts),
                "zero_shot": args.zero_shot,
                "trained_classes": [names[c] for c in sorted({int(y) for y in train.labels})]}
    return _write(args, scores, labels, test.sample_ids, [names[c] for c in chosen], None,
                  metadata)


def _write(args, scores, labels, sample_ids, class_names, extra, metadata) -> dict:
    metrics = write_evaluation(args.out, scores, labels, sample_ids, class_names, extra, metadata)
    log.info("%s on %s%s: top-1 %.2f%%, top-5 %.2f%% (n=%d) -> %s", metadata["method"],
             metadata.get("protocol", args.inputs), " zero-shot" if args.zero_shot else "",
             100 * metrics["top1"],
             100 * metrics["top5"], metrics["n"], args.out)
    return metrics


def add_llm_arguments(group) -> None:
    """Options of ``actionlm evaluate`` for --method llm_ar / sugar / text_probe."""
    group.add_argument("--zero-shot", action=argparse.BooleanOptionalAction, default=False,
                       help="rank only the test split's classes (unseen{K} protocols, another "
                       "dataset), listed in the instruction")
    group.add_argument("--normalize", choices=NORMALIZATIONS, default="sum",
                       help="candidate score: summed answer log-likelihood (default: the "
                       "trained objective) or its mean per token (untrained zero-shot prompts)")
    group.add_argument("--generate-tokens", type=non_negative_int, default=0,
                       help="also let the recognizer generate its answer (up to N tokens, "
                       "greedy; zero-shot: the top five, as SUGAR asks), read the class off it "
                       "and report generation accuracy beside scoring's; 0: off")
    group.add_argument("--gzsl", action=argparse.BooleanOptionalAction, default=False,
                       help="zero-shot: also rank every class for the unseen and the test_seen "
                       "samples (generalized zero-shot: seen, unseen, harmonic mean)")
    group.add_argument("--llm", type=Path, default=None,
                       help="base LLM folder, if not where recognizer.json says (same model)")
    group.add_argument("--texts", type=Path, default=None,
                       help="text_probe: the dataset's text_embeddings.parquet")
    group.add_argument("--train-inputs", type=Path, default=None,
                       help="text_probe: table whose training split it learns from "
                       "(default: --inputs)")


def evaluate_llm(args: argparse.Namespace) -> dict:
    """Entry point of ``actionlm evaluate --method llm_ar|sugar|text_probe``."""
    if args.method not in METHODS:
        raise ActionlmError(f"--method {args.method}: expected one of {METHODS}")
    if args.inputs is None:
        raise ActionlmError(f"--method {args.method} needs --inputs (action_sentences.parquet "
                            "or features.parquet)")
    if args.model is None and args.method != TEXT_PROBE:
        raise ActionlmError(f"--method {args.method} needs --model (its recognizer folder or "
                            "recognizer.json)")
    if args.method == TEXT_PROBE:
        return evaluate_text_probe(args)
    return evaluate_recognizer(args)
