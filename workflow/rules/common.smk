# Helpers shared by every .smk file (config validation, target lists, argument builders).

from actionlm.config import fill_defaults, validate_config
from actionlm.errors import ActionlmError
import shlex

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"), "config")
except ActionlmError as err:
    raise WorkflowError(str(err)) from None
fill_defaults(config, workflow.source_path("../schemas/config.schema.yaml"))

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
        args.append("--actions " + ",".join(map(str, ds["actions"])))
    if ds.get("trust_pickle"):
        args.append("--trust-pickle")
    if ds["format"] == "synthetic":
        syn = ds.get("synthetic", {})
        args += [f"--{key} {syn[key]}" for key in ("subjects", "replications", "setups") if key in syn]
    if config["prepare"]["strict"]:
        args.append("--strict")
    return " ".join(args)


def all_targets():
    targets = []
    for dataset in config["run_datasets"]:
        targets.append(f"{data_dir(dataset)}/skeletons.parquet")
        targets += [
            f"{data_dir(dataset)}/splits/{p}.parquet"
            for p in dataset_config(dataset)["protocols"]
        ]
    return targets
