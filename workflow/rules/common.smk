# Adapters from Snakemake to actionlm.pipeline, where the workflow's logic lives (and is
# unit-tested): config checks, each stage's outputs, inputs, flags, logs and resources.

from actionlm.errors import ActionlmError
from actionlm.pipeline import Pipeline, paths, targets
from actionlm.pipeline.checks import check_config
from actionlm.pipeline.flags import file_flags

try:
    check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ActionlmError as err:
    raise WorkflowError(str(err)) from None
PIPE = Pipeline(config)


wildcard_constraints:
    **paths.WILDCARDS,


# Threads of every rule that runs a network or the LLM (torch threads, sbatch --cpus-per-task).
JOB_THREADS = config["compute"]["threads"]
# On one machine, a job that continues a chain already under way (tokens, features, LoRA,
# evaluation) starts before another long training, so that evaluations overlap training.
CHAIN_PRIORITY = 1


def adapted(function):
    """``function(PIPE, wildcards as a dict)`` as a Snakemake input/params/resources function;
    the package's errors become WorkflowErrors (one line, naming the key)."""

    def adapter(wildcards):
        try:
            return function(PIPE, dict(wildcards.items()))
        except ActionlmError as err:
            raise WorkflowError(str(err)) from None

    return adapter


def inputs(stage):
    return adapted(lambda pipe, wildcards: pipe.inputs(stage, wildcards))


def flags(stage):
    return adapted(lambda pipe, wildcards: pipe.flags(stage, wildcards))


def files(*skip):
    """Every named input as the command's option of the same name (`--skeletons PATH`)."""
    return lambda wildcards, input: file_flags(dict(input.items()), skip)


def outputs(stage, **reported):
    """The stage's outputs; `reported` wraps the named ones for `snakemake --report`."""
    files = {}
    for name, pattern in paths.OUTPUTS[stage].items():
        path = directory(pattern) if (stage, name) in paths.DIRECTORIES else pattern
        files[name] = report(path, **reported[name]) if name in reported else path
    return files


def log_of(stage, *keys, suffix=".log"):
    return paths.log(stage, keys, suffix)


def benchmark_of(stage, *keys):
    return paths.benchmark(stage, keys)


def network_resources(mem_mb, runtime):
    """Resources of the jobs that run a network (memory in MB, wall time in minutes): the
    `device` their command gets and `compute.gpus` GPUs, which the SLURM executor turns into
    `sbatch --gpus=[gpu_model:]n` in `compute.gpu_partition`. Resources, not params, so that
    moving a run onto GPUs reruns nothing."""
    compute = config["compute"]
    resources = {"mem_mb": mem_mb, "runtime": runtime, "device": compute["device"]}
    if compute["gpus"]:
        resources["gpu"] = compute["gpus"]
        if compute["gpu_model"]:
            resources["gpu_model"] = compute["gpu_model"]
        if compute["gpu_partition"]:
            resources["slurm_partition"] = compute["gpu_partition"]
    return resources


# Request plumbing of the model-calling rules: resources, so that changing them never reruns
# a stage (the answers are the same; the cache makes a rerun free anyway).
REQUESTS = {
    "llm_cache": config["knowledge"]["cache_dir"],
    "llm_concurrency": config["knowledge"]["concurrency"],
    "llm_retries": config["knowledge"]["max_retries"],
    "llm_timeout_s": config["knowledge"]["timeout_s"],
}


def launcher():
    """How a multi-GPU job starts `actionlm`: one process per GPU under torchrun (DDP) when
    compute.gpus > 1, else plainly. A resource: the result does not depend on it."""
    gpus = config["compute"]["gpus"]
    return f"torchrun --standalone --nproc-per-node {gpus} -m actionlm.cli" if gpus > 1 else "actionlm"
