"""The ``actionlm`` command: one subcommand per pipeline stage (Snakemake rules call these).

Each stage module defines ``add_arguments(parser)`` and ``run(args)``; this file only lists
them, so a stage is found in one module and its CLI beside its logic.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import NoReturn

from actionlm import __version__
from actionlm.errors import ActionlmError

# (subcommand, module, one-line help)
STAGES: list[tuple[str, str, str]] = [
    ("prepare", "actionlm.data.prepare",
     "skeleton files -> skeletons.parquet, classes, rejected, splits"),
    ("split", "actionlm.data.splits", "skeletons + one evaluation protocol -> a split table"),
    ("describe", "actionlm.knowledge.describe",
     "class list -> LLM body-part/synonym/paragraph descriptions (cached)"),
    ("describe-visual", "actionlm.knowledge.visual",
     "most dissimilar frames per class -> VLM descriptions (visual.parquet)"),
    ("encode-text", "actionlm.text.encode", "description tables -> text_embeddings.parquet"),
    ("prepare-llm", "actionlm.data.prepare_llm", "configured LLM -> local HF folder + manifest"),
    ("train-vqvae", "actionlm.train.vqvae",
     "LLM-AR VQ-VAE (hyperbolic codebook, human-bias losses) -> vqvae.safetensors"),
    ("tokenize", "actionlm.train.tokenize",
     "skeletons + VQ-VAE -> action_sentences.parquet, code usage, Zipf plot"),
    ("train-encoder", "actionlm.train.encoder",
     "GCN skeleton encoder (CE / GAP / SUGAR step 2) -> best.safetensors"),
    ("extract-features", "actionlm.eval.features", "frozen encoder -> per-sample features.parquet"),
    ("lora", "actionlm.llm.lora",
     "LoRA-tune the frozen LLM as a recognizer (llm_ar: action sentences, sugar: features + TQP)"),
    ("evaluate", "actionlm.eval.evaluate",
     "trained recognizer + test split -> predictions.parquet, metrics.json"),
    ("ensemble", "actionlm.eval.ensemble",
     "predictions.parquet of several evaluations -> fused scores, evaluated like a method"),
    ("zeroshot-summary", "actionlm.llm.zeroshot",
     "metrics.json of each protocol of a zero-shot family -> mean/std (ZSL, GZSL)"),
    ("plot-curves", "actionlm.report.curves", "training curves.parquet of runs -> one figure"),
    ("plot-embedding", "actionlm.report.embedding",
     "encoder features.parquet -> 2-D PCA map coloured by class"),
    ("report", "actionlm.report.summary",
     "metrics.json files -> results tables summary.md/.csv (with the papers' numbers)"),
]


class OneLineParser(argparse.ArgumentParser):
    """Usage errors (a missing option, a value out of its range) as one line, exit code 2:
    the usage itself is in ``--help``, not in front of the error in a rule's log."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``stage``'s module is imported (the others may import torch, which
    would make every command and ``--help`` slow)."""
    parser = OneLineParser(
        prog="actionlm",
        description="Skeleton action recognition with language models (GAP, LLM-AR, SUGAR). "
        "Each subcommand is one pipeline stage; the Snakemake workflow calls them in order.",
    )
    parser.add_argument("--version", action="version", version=f"actionlm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="stages", metavar="STAGE", required=True)
    for name, module_name, help_text in STAGES:
        stage_parser = sub.add_parser(name, help=help_text)
        if name == stage:
            module = importlib.import_module(module_name)
            stage_parser.description = module.__doc__.split("\n\n")[0]
            module.add_arguments(stage_parser)
            stage_parser.set_defaults(run=module.run)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (scancel, Snakemake stopping a job) unwinds like Ctrl-C, so context managers
    run: a served model is stopped and temp files are removed."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not sys.stderr.isatty():  # a rule's log file: a progress line every 30 s, not per step
        os.environ.setdefault("TQDM_MININTERVAL", "30")  # read when tqdm is imported
    names = {name for name, _, _ in STAGES}
    args = build_parser(next((a for a in argv if a in names), None)).parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # one INFO line per HTTP request would drown the rule logs
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        args.run(args)
    except ActionlmError as err:
        print(f"actionlm: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
