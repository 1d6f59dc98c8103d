"""What makes LLM-AR learn at CPU scale: how much class information its action sentences carry
before any LLM, as the VQ-VAE changes, and what LoRA then reaches (README "LLM-AR study").

    python benchmarks/study_llm_ar.py --results /tmp/run/results           # tokenizer variants
    python benchmarks/study_llm_ar.py --results ... --lora "epochs=2 lr=0.003" --variants ep150

It reads a finished run of the embedded default (its skeletons, X-Sub split and prepared LLM)
and, per tokenizer variant, trains the VQ-VAE (`actionlm train-vqvae` with the variant's
flags over the default's), tokenizes (`actionlm tokenize`) and prints the bag-of-tokens probe
that tokenize writes to usage.json (test top-1 of a logistic regression on the train
sentences' code counts: a bound on what a recognizer reading the tokens' identities can
learn). With --lora, each variant's sentences also train LLM-AR's LoRA (`actionlm lora`, the
given flags over the default's) and are evaluated (`actionlm evaluate`, every test sample,
all 19 candidates). Each row prints its wall seconds; everything runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from pathlib import Path

# The embedded default's VQ-VAE before this study (config.yaml at 78b3777), and what changes.
BASE = ["--epochs", "20", "--batch-size", "64", "--reset-every", "10", "--lr", "0.001",
        "--curvature", "0.1", "--codes", "512", "--window", "64"]
VARIANTS = {
    "base": [],
    "codes64": ["--codes", "64"],
    "codes128": ["--codes", "128"],
    "no_bias_losses": ["--no-zipf", "--no-context", "--no-mmd"],
    "reset50": ["--reset-every", "50"],
    "ep60": ["--epochs", "60"],
    "ep60_reset50": ["--epochs", "60", "--reset-every", "50"],
    "ep150": ["--epochs", "150"],
}


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as stream:
        subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def tokenizer(results: Path, out: Path, flags: list[str]) -> tuple[float, dict]:
    """Train the variant's VQ-VAE and tokenize X-Sub: (seconds, usage.json)."""
    data = results / "data/synthetic"
    split = ["--skeletons", str(data / "skeletons.parquet"),
             "--split", str(data / "splits/xsub.parquet")]
    llm = results.parent / "resources/llm/smollm2-135m-instruct"
    seconds = run(["actionlm", "train-vqvae", *split, "--llm", str(llm), "--out", str(out / "vq"),
                   "--threads", "1", "--device", "cpu", *BASE, *flags], out / "train.log")
    seconds += run(["actionlm", "tokenize", *split, "--vqvae", str(out / "vq/vqvae.safetensors"),
                    "--out", str(out / "tok"), "--threads", "1", "--device", "cpu"],
                   out / "tokenize.log")
    return seconds, json.loads((out / "tok/usage.json").read_text())


def recognizer(results: Path, out: Path, flags: list[str]) -> tuple[float, float]:
    """LLM-AR's LoRA on the variant's sentences, then its X-Sub top-1: (seconds, top-1)."""
    classes = str(results / "data/synthetic/classes.parquet")
    llm = str(results.parent / "resources/llm/smollm2-135m-instruct")
    sentences = str(out / "tok/action_sentences.parquet")
    seconds = run(["actionlm", "lora", "--method", "llm_ar", "--classes", classes, "--llm", llm,
                   "--sentences", sentences, "--vqvae", str(out / "vq/vqvae.safetensors"),
                   "--out", str(out / "lora"), "--threads", "1", "--device", "cpu",
                   "--micro-batch-size", "8", "--lora-r", "8", "--warmup-steps", "2",
                   "--train-action-embeddings", *flags], out / "lora.log")
    seconds += run(["actionlm", "evaluate", "--method", "llm_ar", "--classes", classes,
                    "--llm", llm, "--inputs", sentences,
                    "--model", str(out / "lora/recognizer.json"), "--out", str(out / "eval"),
                    "--threads", "1", "--device", "cpu", "--no-zero-shot", "--no-gzsl"],
                   out / "evaluate.log")
    return seconds, json.loads((out / "eval/metrics.json").read_text())["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True,
                        help="results/ of a finished run of the embedded default")
    parser.add_argument("--out", type=Path, default=Path("study_llm_ar"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--lora", help='LoRA flags as "key=value ..." (e.g. "epochs=2 '
                        'lr=0.003"): also train and evaluate LLM-AR on each variant')
    args = parser.parse_args()
    lora = [f"--{k.replace('_', '-')}={v}" for k, v in
            (item.split("=", 1) for item in shlex.split(args.lora or ""))]
    print("variant | VQ-VAE flags | bag-of-tokens top-1 % (chance) | used codes | s"
          + (" | LLM-AR top-1 % | s" if args.lora else ""))
    for name in args.variants:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        seconds, usage = tokenizer(args.results, out, VARIANTS[name])
        probe = usage["token_probe"]
        row = (f"{name} | {' '.join(VARIANTS[name]) or '(default)'} | "
               f"{100 * probe['bag_of_tokens_top1']:.1f} ({100 * probe['chance']:.1f}) | "
               f"{usage['splits']['all']['used_codes']} | {seconds:.0f}")
        if args.lora:
            lora_seconds, top1 = recognizer(args.results, out, lora)
            row += f" | {100 * top1:.1f} | {lora_seconds:.0f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
