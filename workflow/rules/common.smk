# Helpers shared by every .smk file (config validation, target lists, argument builders).

from actionlm.config import fill_defaults, validate_config
from actionlm.errors import ActionlmError
import shlex

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"), "config")
except ActionlmError as err:
    raise WorkflowError(str(err)) from None
fill_defaults(config, workflow.source_path("../schemas/config.schema.yaml"))

if config["knowledge"]["visual"]["enabled"] and config["knowledge"]["provider"]["serve_local"]:
    raise WorkflowError(
        "config: knowledge.visual.enabled needs a vision model endpoint; "
        "set knowledge.provider.serve_local: false (and base_url/api_key_env)"
    )

_unknown = sorted(set(config["run_datasets"]) - set(config["datasets"]))
if _unknown:
    raise WorkflowError(f"config: run_datasets names {_unknown}, which are not under `datasets`")


def dataset_config(dataset):
    return config["datasets"][dataset]


def data_dir(dataset):
    return f"results/data/{dataset}"


def prepare_source(wildcards):
    """The input folder/file of a real dataset (tracked for reruns); nothing for synthetic."""
    ds = dataset_config(wildcards.dataset)
    if ds["format"] == "synthetic":
        return []
    if not ds.get("root"):
        raise WorkflowError(f"config: datasets.{wildcards.dataset}.root is not set")
    return [ds["root"]]


def prepare_args(wildcards):
    """CLI arguments from exactly the dataset config that prepare depends on (not protocols,
    which only the split rule reads), so that editing a protocol does not rerun prepare."""
    ds = dataset_config(wildcards.dataset)
    args = [f"--format {ds['format']}", f"--seed {ds['seed']}"]
    if ds.get("root"):
        args.append(f"--src {shlex.quote(ds['root'])}")
    if ds.get("classes"):
        args.append(f"--dataset {ds['classes']}")
    if ds.get("actions"):
        args.append(f"--actions {','.join(map(str, ds['actions']))}")
    if ds.get("trust_pickle"):
        args.append("--trust-pickle")
    if ds["format"] == "synthetic":
        syn = ds.get("synthetic", {})
        args += [f"--{key} {syn[key]}" for key in ("subjects", "replications", "setups") if key in syn]
    if config["prepare"]["strict"]:
        args.append("--strict")
    return " ".join(args)


def llm_dir():
    return f"resources/llm/{config['llm']['name']}"


def knowledge_dir(dataset):
    return f"results/knowledge/{dataset}"


def describe_inputs(wildcards):
    kn = config["knowledge"]
    inputs = {"classes": f"{data_dir(wildcards.dataset)}/classes.parquet"}
    if kn["import_gap"]:
        inputs["gap"] = kn["import_gap"]
        return inputs
    inputs["prompts"] = kn["prompts"]
    if kn["provider"]["serve_local"]:
        inputs["llm"] = llm_dir()
    return inputs


def describe_args(wildcards):
    """Exactly what the descriptions depend on: where they come from (GAP files, the served
    local model, or an endpoint and model name). Request plumbing (cache folder, concurrency,
    retries, timeout) is passed as resources, which never trigger a rerun."""
    kn, provider = config["knowledge"], config["knowledge"]["provider"]
    if kn["import_gap"]:
        missing = " --allow-missing" if kn["import_gap_allow_missing"] else ""
        return f"--import-gap {shlex.quote(kn['import_gap'])} --gap-match {kn['import_gap_match']}{missing}"
    prompts = f"--prompts {shlex.quote(kn['prompts'])}"
    if kn["allow_incomplete"]:
        prompts += " --allow-incomplete"
    if provider["serve_local"]:
        serve_log = f"logs/describe/{wildcards.dataset}.serve.log"
        return f"{prompts} --serve-model-dir {llm_dir()} --serve-log {serve_log}"
    args = [prompts, f"--model {shlex.quote(provider['model'])}",
            f"--api-key-env {provider['api_key_env']}"]
    if provider["base_url"]:
        args.append(f"--base-url {shlex.quote(provider['base_url'])}")
    return " ".join(args)


def endpoint_args(wildcards):
    """The endpoint of a non-local provider (describe-visual always asks an endpoint)."""
    provider = config["knowledge"]["provider"]
    args = [f"--api-key-env {provider['api_key_env']}"]
    if provider["base_url"]:
        args.append(f"--base-url {shlex.quote(provider['base_url'])}")
    return " ".join(args)


def cli_flags(options):
    """Config keys -> CLI flags: `key_name: v` -> `--key-name v`, booleans -> `--key`/`--no-key`,
    null -> left out (the command's default)."""
    flags = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is not None:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def visual_args(wildcards):
    options = {k: v for k, v in config["knowledge"]["visual"].items() if k != "enabled"}
    return f"{endpoint_args(wildcards)} {cli_flags(options)}"


# Request plumbing of the model-calling rules: resources, so that changing them never reruns
# a stage (the answers are the same; the cache makes a rerun free anyway).
request_resources = {
    "llm_cache": config["knowledge"]["cache_dir"],
    "llm_concurrency": config["knowledge"]["concurrency"],
    "llm_retries": config["knowledge"]["max_retries"],
    "llm_timeout_s": config["knowledge"]["timeout_s"],
}


def encode_text_inputs(wildcards):
    tables = [f"{knowledge_dir(wildcards.dataset)}/descriptions.parquet"]
    if config["knowledge"]["visual"]["enabled"]:
        tables.append(f"{knowledge_dir(wildcards.dataset)}/visual.parquet")
    return tables


def encode_text_args(wildcards):
    enc = config["knowledge"]["text_encoder"]
    args = [f"--backend {enc['backend']}", f"--pretrained {shlex.quote(enc['pretrained'])}",
            f"--batch-size {enc['batch_size']}", f"--seed {enc['seed']}"]
    if enc["model"]:
        args.append(f"--model {shlex.quote(enc['model'])}")
    return " ".join(args)


def all_targets():
    targets = []
    for dataset in config["run_datasets"]:
        targets.append(f"{data_dir(dataset)}/skeletons.parquet")
        targets += [
            f"{data_dir(dataset)}/splits/{p}.parquet"
            for p in dataset_config(dataset)["protocols"]
        ]
        targets.append(f"{knowledge_dir(dataset)}/text_embeddings.parquet")
        targets += [
            f"results/tokens/{dataset}/{p}/action_sentences.parquet"
            for p in dataset_config(dataset)["protocols"]
        ]
    return targets
