"""Every artifact path of the workflow, named once, and the reverse: what a result path is.

Dataset-level artifacts (data, knowledge) exist once per dataset. Everything trained or
evaluated belongs to a *run* and lives under ``results/{run}``: ``{run}`` is empty for the
main run (``results/models/...``) and ``streams/{modality}/``, ``ablations/{table}/{variant}/``
or ``cross/{source}/{source_protocol}/`` for the others (actionlm.pipeline.runs). Logs and
benchmark tables follow the same scheme: ``logs/{run}{stage}/...``.

Patterns use Snakemake's wildcard syntax; ``pattern.format(**wildcards)`` fills them.
"""

from __future__ import annotations

import re

DATA = "results/data/{dataset}"
KNOWLEDGE = "results/knowledge/{dataset}"
LLM = "resources/llm/{llm}"
SPLIT = DATA + "/splits/{protocol}.parquet"

# per run: {run} is "" (main), "streams/{modality}/", "ablations/{table}/{variant}/" or
# "cross/{source}/{protocol}/"
RUN = "results/{run}"
VQVAE = RUN + "models/{dataset}/{protocol}/vqvae"
TOKENS = RUN + "tokens/{dataset}/{protocol}"
ENCODER = RUN + "models/{dataset}/{protocol}/encoders/{method}"
FEATURES = RUN + "features/{dataset}/{protocol}/{method}/features.parquet"
RECOGNIZER = RUN + "models/{dataset}/{protocol}/{method}"
EVAL = RUN + "eval/{dataset}/{protocol}/{method}"
ENSEMBLE = RUN + "eval/{dataset}/{protocol}/{ensemble}"  # fused scores, evaluated like a method
ZEROSHOT_SUMMARY = "results/eval/{dataset}/zeroshot/{family}/{method}.json"  # a family's mean
REPORT = "results/report/{name}"  # summary, ablations/{table}
FIGURES = "results/report/{dataset}/{protocol}"

# Each stage's outputs by name (the rule's `output:`); DIRECTORIES are folders.
OUTPUTS: dict[str, dict[str, str]] = {
    "prepare": {"skeletons": DATA + "/skeletons.parquet", "classes": DATA + "/classes.parquet",
                "rejected": DATA + "/rejected.parquet",
                "embedded_splits": DATA + "/embedded_splits.parquet"},
    "split": {"split": SPLIT},
    "prepare_llm": {"llm": LLM},
    "describe": {"descriptions": KNOWLEDGE + "/descriptions.parquet"},
    "describe_visual": {"table": KNOWLEDGE + "/visual.parquet",
                        "frames": KNOWLEDGE + "/visual_frames"},
    "encode_text": {"embeddings": KNOWLEDGE + "/text_embeddings.parquet"},
    "train_vqvae": {"model": VQVAE + "/vqvae.safetensors", "curves": VQVAE + "/curves.parquet",
                    "config": VQVAE + "/config.json"},
    "tokenize": {"sentences": TOKENS + "/action_sentences.parquet",
                 "usage": TOKENS + "/codebook_usage.parquet", "summary": TOKENS + "/usage.json",
                 "plot": TOKENS + "/token_frequency.png"},
    "train_encoder": {"best": ENCODER + "/best.safetensors", "last": ENCODER + "/last.safetensors",
                      "curves": ENCODER + "/curves.parquet", "config": ENCODER + "/config.json"},
    "extract_features": {"features": FEATURES},
    "lora": {"adapter": RECOGNIZER + "/adapter.safetensors",
             "spec": RECOGNIZER + "/recognizer.json", "curves": RECOGNIZER + "/curves.parquet"},
    "evaluate": {"predictions": EVAL + "/predictions.parquet", "metrics": EVAL + "/metrics.json",
                 "confusion": EVAL + "/confusion.png"},
    "ensemble": {"predictions": ENSEMBLE + "/predictions.parquet",
                 "metrics": ENSEMBLE + "/metrics.json", "confusion": ENSEMBLE + "/confusion.png"},
    "zeroshot_summary": {"summary": ZEROSHOT_SUMMARY},
    "report": {"md": REPORT + ".md", "csv": REPORT + ".csv"},
    "plot_curves": {"figure": FIGURES + "/{kind}_curves.png"},
    "plot_embedding": {"figure": FIGURES + "/embedding_{method}.png"},
}
DIRECTORIES = {("prepare_llm", "llm"), ("describe_visual", "frames")}

# Wildcard values, anchored by Snakemake: the run's regex also matches "" (the main run).
WILDCARDS = {
    "run": r"(streams/[a-z_]+/|ablations/[a-z0-9_]+/[a-z0-9_]+/|cross/[a-z0-9_]+/[^/]+/)?",
    "dataset": r"[a-z0-9_]+",
    "protocol": r"[^/]+",
    "method": r"[a-z_]+",
    "ensemble": r"[a-z0-9_]+",
    "llm": r"[A-Za-z0-9._-]+",
    "family": r"[a-z0-9_]+",
    "name": r"summary|ablations/[a-z0-9_]+",
    "kind": r"encoder|vqvae|lora",
}

# The {method} values of each stage that has one (the rule's wildcard constraint).
ENCODERS, RECOGNIZERS = "ce|gap|sugar", "llm_ar|sugar"
TEXT_PROBES = "llm_ar_text|sugar_text"
TEXT_SIMILARITY = "gap_textsim|sugar_textsim"  # zero-shot by an encoder's language head
ZERO_SHOT = f"{RECOGNIZERS}|{TEXT_PROBES}|{TEXT_SIMILARITY}"
METHODS = {
    "train_encoder": ENCODERS, "extract_features": ENCODERS, "plot_embedding": ENCODERS,
    "lora": RECOGNIZERS, "evaluate": f"ce|gap|{ZERO_SHOT}", "zeroshot_summary": ZERO_SHOT,
}


def output(stage: str, name: str, /, **wildcards: str) -> str:
    """One output of ``stage`` with its wildcards filled."""
    return OUTPUTS[stage][name].format(**wildcards)


def _job(stage: str, keys: tuple[str, ...]) -> tuple[str, str]:
    run = "{run}" if "{run}" in "".join(OUTPUTS[stage].values()) else ""
    return run, f"{stage}/" + "/".join(f"{{{k}}}" for k in keys)


def log(stage: str, keys: tuple[str, ...], suffix: str = ".log") -> str:
    """A job's log file: logs/{run}{stage}/{key}/.../{last key}.log."""
    run, job = _job(stage, keys)
    return f"logs/{run}{job}{suffix}"


def benchmark(stage: str, keys: tuple[str, ...]) -> str:
    """A job's Snakemake benchmark table: results/{run}benchmarks/{stage}/.../{last key}.tsv."""
    run, job = _job(stage, keys)
    return f"results/{run}benchmarks/{job}.tsv"


_RESULT = re.compile(
    r"(?:.*?/)??(?:results/(?P<run>" + WILDCARDS["run"] + r"))?eval/(?P<dataset>[^/]+)/"
    r"(?:(?P<protocol>[^/]+)/(?P<method>[^/]+)/metrics|zeroshot/(?P<family>[^/]+)/"
    r"(?P<average>[^/]+))\.json")
_CROSS = re.compile(r"cross/(?P<source>[^/]+)/(?P<protocol>[^/]+)/")
_STREAM = re.compile(r"streams/(?P<modality>[^/]+)/")


def ensemble_names(names: list[str]) -> str:
    """The {ensemble} constraint: the configured ensembles' names, and ``ensemble`` (an ablation
    variant's own fusion); never a method's name (actionlm.pipeline.checks)."""
    return "|".join(map(re.escape, ["ensemble", *names]))


def result_key(path: str) -> dict[str, str] | None:
    """(dataset, protocol, method) of an evaluation's (or an ensemble's) metrics.json or of a
    zero-shot seed average, read from its path; a stream's method is named with its modality
    ("gap (bone)"); a cross-dataset result is dataset "cross" with protocol
    "{source}/{source_protocol}/{target}/{target_protocol}". None when it is neither."""
    found = _RESULT.fullmatch(str(path))
    if found is None:
        return None
    if found["family"]:
        return {"dataset": found["dataset"], "protocol": f"zeroshot/{found['family']}",
                "method": found["average"]}
    key = {"dataset": found["dataset"], "protocol": found["protocol"], "method": found["method"]}
    stream = _STREAM.fullmatch(found["run"] or "")
    if stream:
        key["method"] += f" ({stream['modality']})"
    cross = _CROSS.fullmatch(found["run"] or "")
    if cross:
        key.update(dataset="cross", protocol=f"{cross['source']}/{cross['protocol']}/"
                                             f"{found['dataset']}/{found['protocol']}")
    return key
