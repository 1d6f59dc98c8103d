"""How the jobs share one machine: each job's threads and its priority among the ready jobs.

Threads (``threads:``; on SLURM ``--cpus-per-task``): the jobs that run the language model
(its conversion, describe's local server, LoRA, an LLM recognizer's evaluation) take
``compute.llm_threads``, every other job ``compute.threads``. On the 2-core default an LLM job
thus has both cores (a 135M model gains ~1.8x from the second), and the small networks
(encoders, VQ-VAE, feature extraction) run two at a time on one thread each, where a second
thread would gain them little.

Priorities (``priority:``; Snakemake starts the ready jobs of highest priority first):

1. the knowledge chain, prepare-llm -> describe -> encode-text, which gates the GAP and SUGAR
   encoders: the head of the longest chain, started before anything long;
2. then the small networks by the length of what waits on them: SUGAR's encoder and features
   (its LoRA and evaluation follow), GAP's encoder, then the others;
3. the LLM jobs after every small job that is ready: they need all their threads at once, so
   they run when the small jobs are done or waiting on them, and no small job is left to run
   alone on one core at the end.
"""

from __future__ import annotations

from actionlm.pipeline.paths import RECOGNIZERS

KNOWLEDGE_CHAIN = ("prepare_llm", "describe", "describe_visual", "encode_text")
# train_encoder / extract_features: SUGAR's lead to its LoRA; GAP's to its evaluation
ENCODER_PRIORITY = {"sugar": 3, "gap": 2}
KNOWLEDGE_PRIORITY = 4
SMALL_JOB_PRIORITY = 1
LLM_JOB_PRIORITY = 0


def runs_llm(stage: str, wc: dict) -> bool:
    """Whether the job runs the language model: its conversion, describe's local server,
    LoRA, or a recognizer's evaluation (not its text probe, nor an encoder's)."""
    if stage == "evaluate":
        return wc.get("method") in RECOGNIZERS.split("|")
    return stage in ("prepare_llm", "describe", "lora")


def job_threads(config: dict, stage: str, wc: dict) -> int:
    compute = config["compute"]
    return compute["llm_threads"] if runs_llm(stage, wc) else compute["threads"]


def job_priority(stage: str, wc: dict) -> int:
    if stage in KNOWLEDGE_CHAIN:
        return KNOWLEDGE_PRIORITY
    if runs_llm(stage, wc):
        return LLM_JOB_PRIORITY
    if stage in ("train_encoder", "extract_features"):
        return ENCODER_PRIORITY.get(wc.get("method"), SMALL_JOB_PRIORITY)
    return SMALL_JOB_PRIORITY
