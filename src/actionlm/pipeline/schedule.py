"""How the jobs share one machine: each job's threads and its priority among the ready jobs.

Threads (``threads:``; on SLURM ``--cpus-per-task``): the jobs that run the language model
(its conversion, describe's local server, an LLM recognizer's evaluation) take
``compute.llm_threads``, LoRA ``compute.lora_threads`` (null: llm_threads), every other job
``compute.threads``. On the 2-core default an evaluation has both cores (scoring gains 1.7x
from the second), while LoRA and the small networks (encoders, VQ-VAE, feature extraction)
run two at a time on one thread each: a second thread gains LoRA only 1.4x (SmolLM2-135M,
170 steps: 175 s on two threads alone, 245 s on one beside another such job), so the two
recognizers' LoRA side by side end sooner than one after the other on both cores.

Priorities (``priority:``; Snakemake starts the ready jobs of highest priority first):

1. the knowledge chain, prepare-llm -> describe -> encode-text, which gates the GAP and SUGAR
   encoders: the head of the longest chain, started before anything long;
2. then the two chains that end in LoRA, the longest jobs: SUGAR's encoder and features, and
   LLM-AR's VQ-VAE and tokens, and the LoRA runs themselves (a tokenize of 5 s left behind the
   encoders delayed LLM-AR's LoRA by 275 s); then GAP's encoder, then the other small jobs;
3. the recognizers' evaluations last: they need both cores at once, so they run when the
   small jobs are done or waiting on them, and no small job is left alone on one core at the
   end.
"""

from __future__ import annotations

from actionlm.pipeline.paths import RECOGNIZERS

KNOWLEDGE_CHAIN = ("prepare_llm", "describe", "describe_visual", "encode_text")
# the LoRA runs and what leads to them; GAP's encoder and features lead to its evaluation
LORA_CHAIN_PRIORITY = 3
LORA_CHAIN = ("train_vqvae", "tokenize", "lora")
ENCODER_PRIORITY = {"sugar": LORA_CHAIN_PRIORITY, "gap": 2}
KNOWLEDGE_PRIORITY = 4
SMALL_JOB_PRIORITY = 1
EVALUATION_PRIORITY = 0


def runs_llm(stage: str, wc: dict) -> bool:
    """Whether the job runs the language model: its conversion, describe's local server,
    LoRA, or a recognizer's evaluation (not its text probe, nor an encoder's)."""
    if stage == "evaluate":
        return wc.get("method") in RECOGNIZERS.split("|")
    return stage in ("prepare_llm", "describe", "lora")


def job_threads(config: dict, stage: str, wc: dict) -> int:
    compute = config["compute"]
    if stage == "lora" and compute["lora_threads"]:
        return compute["lora_threads"]
    return compute["llm_threads"] if runs_llm(stage, wc) else compute["threads"]


def job_priority(stage: str, wc: dict) -> int:
    if stage in KNOWLEDGE_CHAIN:
        return KNOWLEDGE_PRIORITY
    if stage in LORA_CHAIN:
        return LORA_CHAIN_PRIORITY
    if runs_llm(stage, wc):
        return EVALUATION_PRIORITY
    if stage in ("train_encoder", "extract_features"):
        return ENCODER_PRIORITY.get(wc.get("method"), SMALL_JOB_PRIORITY)
    return SMALL_JOB_PRIORITY
