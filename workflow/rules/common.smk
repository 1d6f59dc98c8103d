# Adapters from Snakemake to actionlm.pipeline, where the workflow's logic lives (and is
# unit-tested): config checks, each stage's outputs, inputs, flags, logs and resources.

from actionlm.errors import ActionlmError
from actionlm.pipeline import Pipeline, paths, targets
from actionlm.pipeline.checks import check_config
from actionlm.pipeline.flags import file_flags
from actionlm.pipeline.schedule import job_priority, job_threads

try:
    check_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ActionlmError as err:
    raise WorkflowError(str(err)) from None
PIPE = Pipeline(config)


wildcard_constraints:
    **paths.WILDCARDS,



def adapted(function):
    """``function(PIPE, wildcards as a dict)`` as a Snakemake input/params/resources function;
    the package's errors become WorkflowErrors (one line, naming the key)."""

    def adapter(wildcards):
        try:
            return function(PIPE, dict(wildcards.items()))
        except ActionlmError as err:
            raise WorkflowError(str(err)) from None

    return adapter


def threads_of(stage):
    """Torch threads (sbatch --cpus-per-task): compute.lora_threads for LoRA,
    compute.llm_threads for another job that runs the LLM, else compute.threads
    (actionlm.pipeline.schedule)."""
    return lambda wildcards: job_threads(config, stage, dict(wildcards.items()))


def priority_of(stage):
    """The job's place among the ready ones: the longest chain first (schedule)."""
    return lambda wildcards: job_priority(stage, dict(wildcards.items()))


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
