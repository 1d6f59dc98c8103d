# Helpers shared by every .smk file (config validation, target lists, argument builders).

from actionlm.config import fill_defaults, validate_config
from actionlm.errors import ActionlmError
import copy
import os
import re
import shlex
from types import SimpleNamespace

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


# Threads of every rule that runs a network or the LLM (torch threads, sbatch --cpus-per-task).
JOB_THREADS = config["compute"]["threads"]
# On one machine, a job that continues a chain already under way (tokens, features, LoRA, LLM
# evaluation) starts before another long training, so that the LLM evaluations overlap the
# encoders' training instead of running last. A cluster runs every ready job at once anyway.
CHAIN_PRIORITY = 1


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
    lists -> `--key v1 v2`, null -> left out (the command's default)."""
    flags = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, list):
            flags.append(" ".join([flag, *(shlex.quote(str(v)) for v in value)]))
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


def gpu_resources(mem_mb, runtime):
    """Resources of the jobs that train or run a network (memory in MB, wall time in minutes),
    the `device` their command gets (`--device {resources.device}`) and `compute.gpus` GPUs,
    which the SLURM executor turns into `sbatch --gpus=[gpu_model:]n` in
    `compute.gpu_partition` (else the profile's default partition). Resources, not params,
    so that moving a run onto GPUs reruns nothing."""
    compute = config["compute"]
    resources = {"mem_mb": mem_mb, "runtime": runtime, "device": compute["device"]}
    if compute["gpus"]:
        resources["gpu"] = compute["gpus"]
        if compute["gpu_model"]:
            resources["gpu_model"] = compute["gpu_model"]
        if compute["gpu_partition"]:
            resources["slurm_partition"] = compute["gpu_partition"]
    return resources


# Keys of encoders.network / encoders.train that only one method reads: the other methods'
# rules never see them, so editing them reruns only that method.
TEXT_TUNING_KEYS = {"text_tuning", "text_lr"}
ENCODER_METHOD_KEYS = {
    "gap": {"parts", "gap_weight", "global_text", *TEXT_TUNING_KEYS},
    "sugar": {"positives", "sugar_kinds", "temperature", *TEXT_TUNING_KEYS},
}


def encoder_protocols(dataset):
    chosen = config["encoders"]["protocols"]
    protocols = dataset_config(dataset)["protocols"]
    return protocols if chosen is None else [p for p in chosen if p in protocols]


def encoder_flags(method, cfg):
    """train-encoder flags from exactly the config this method reads (a fine-tuned text
    encoder is the one knowledge.text_encoder names); `cfg` is the config or an ablation's."""
    own = ENCODER_METHOD_KEYS.get(method, set())
    foreign = set().union(*ENCODER_METHOD_KEYS.values()) - own
    enc = cfg["encoders"]
    options = {k: v for k, v in {**enc["network"], **enc["train"]}.items() if k not in foreign}
    if options.get("text_tuning") == "finetune":
        text = cfg["knowledge"]["text_encoder"]
        options.update(text_backend=text["backend"], text_model=text["model"],
                       text_pretrained=text["pretrained"])
    return cli_flags(options)


def encoder_args(wildcards):
    return encoder_flags(wildcards.method, config)


def encoder_inputs(wildcards):
    inputs = {
        "skeletons": f"{data_dir(wildcards.dataset)}/skeletons.parquet",
        "split": f"{data_dir(wildcards.dataset)}/splits/{wildcards.protocol}.parquet",
    }
    if wildcards.method != "ce":
        inputs["texts"] = f"{knowledge_dir(wildcards.dataset)}/text_embeddings.parquet"
    return inputs


def lora_inputs(wildcards):
    """The LLM and class list, plus what the method reads: action sentences and their VQ-VAE
    (llm_ar), or encoder features and, when configured, the class descriptions (sugar)."""
    ds, protocol = wildcards.dataset, wildcards.protocol
    inputs = {"llm": llm_dir(), "classes": f"{data_dir(ds)}/classes.parquet"}
    if wildcards.method == "llm_ar":
        inputs["sentences"] = f"results/tokens/{ds}/{protocol}/action_sentences.parquet"
        inputs["vqvae"] = f"results/models/{ds}/{protocol}/vqvae/vqvae.safetensors"
    else:
        inputs["features"] = f"results/features/{ds}/{protocol}/sugar/features.parquet"
        if config["lora"]["sugar"]["descriptions"]:
            inputs["descriptions"] = f"{knowledge_dir(ds)}/descriptions.parquet"
    return inputs


def lora_flags(method, cfg):
    """CLI flags from exactly the config the run depends on: `lora.common` and the method's own
    keys (the method's value wins); `descriptions` is an input, not a flag. `cfg` is the config
    or an ablation's."""
    options = {**cfg["lora"]["common"], **cfg["lora"][method]}
    options.pop("descriptions", None)
    return cli_flags(options)


def lora_args(wildcards):
    return lora_flags(wildcards.method, config)


def distributed_launcher():
    """How a multi-GPU job starts `actionlm`: one process per GPU under torchrun (DDP) when
    compute.gpus > 1, else plainly. A resource: the result does not depend on it."""
    gpus = config["compute"]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc-per-node {gpus} -m actionlm.cli"
    return "actionlm"


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


UNSEEN_PROTOCOL = re.compile(r"unseen(\d+)_seed(\d+)")


def llm_eval_inputs(wildcards):
    """The recognizer (its spec marks it complete), the class table, and the inputs the method
    reads: action sentences (llm_ar) or SUGAR encoder features (sugar)."""
    ds, protocol = wildcards.dataset, wildcards.protocol
    method = wildcards.get("method", wildcards.get("source"))
    inputs = {"classes": f"{data_dir(ds)}/classes.parquet"}
    if method == "llm_ar":
        inputs["inputs"] = f"results/tokens/{ds}/{protocol}/action_sentences.parquet"
    else:
        inputs["inputs"] = f"results/features/{ds}/{protocol}/sugar/features.parquet"
    if "method" in wildcards.keys():
        inputs["spec"] = f"results/models/{ds}/{protocol}/{method}/recognizer.json"
        inputs["adapter"] = f"results/models/{ds}/{protocol}/{method}/adapter.safetensors"
    return inputs


def llm_eval_args(wildcards):
    """Flags from exactly the config the scores depend on (the description only for SUGAR)."""
    ev = config["llm_eval"]
    describe = ev["describe_tokens"] if wildcards.method == "sugar" else 0
    return f"--normalize {ev['normalize']} --describe-tokens {describe}"


def eval_outputs(folder, labels=None):
    return {
        "predictions": f"{folder}/predictions.parquet",
        "metrics": f"{folder}/metrics.json",
        "confusion": report(
            f"{folder}/confusion.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            labels=labels or {"dataset": "{dataset}", "protocol": "{protocol}", "method": folder.split("/")[-1]},
        ),
    }


def unseen_seed_metrics(wildcards):
    """metrics.json of every configured seed of unseen{k}."""
    protocols = [p for p in dataset_config(wildcards.dataset)["protocols"]
                 if (m := UNSEEN_PROTOCOL.fullmatch(p)) and m.group(1) == wildcards.k]
    if not protocols:
        raise WorkflowError(f"config: datasets.{wildcards.dataset}.protocols has no unseen{wildcards.k}_seed<S>")
    return [f"results/eval/{wildcards.dataset}/zeroshot/{p}/{wildcards.method}/metrics.json"
            for p in protocols]


def llm_eval_targets(dataset):
    """Closed-set evaluations of the recognizer protocols (encoders.protocols), and per
    unseen{K}: the seed average of each recognizer and of its linear probe."""
    ev = config["llm_eval"]
    protocols = dataset_config(dataset)["protocols"]
    targets = [f"results/eval/{dataset}/{p}/{m}/metrics.json" for p in encoder_protocols(dataset)
               if not UNSEEN_PROTOCOL.fullmatch(p) for m in ev["methods"]]
    ks = sorted({m.group(1) for p in protocols if (m := UNSEEN_PROTOCOL.fullmatch(p))})
    methods = ev["methods"] + ([f"{m}_linear" for m in ev["methods"]] if ev["linear_probe"] else [])
    targets += [f"results/eval/{dataset}/zeroshot/unseen{k}/{m}.json" for k in ks for m in methods]
    return targets


def all_targets():
    targets = []
    for dataset in config["run_datasets"]:
        targets.append(f"{data_dir(dataset)}/skeletons.parquet")
        targets += [
            f"{data_dir(dataset)}/splits/{p}.parquet"
            for p in dataset_config(dataset)["protocols"]
        ]
        targets.append(f"{knowledge_dir(dataset)}/text_embeddings.parquet")
        targets += eval_targets(dataset)
        targets += [f"results/features/{dataset}/{protocol}/{m}/features.parquet"
                    for protocol in encoder_protocols(dataset) for m in config["encoders"]["methods"]]
    targets += cross_dataset_targets()
    targets.append("results/report/summary.md")
    return targets


def eval_targets(dataset):
    """The evaluations that `all` builds and the report tabulates: metrics.json of each
    encoder and recognizer, and the zero-shot seed averages."""
    encoders = [f"results/eval/{dataset}/{protocol}/{m}/metrics.json"
                for protocol in encoder_protocols(dataset)
                for m in config["encoders"]["methods"] if m in ("ce", "gap")]
    return encoders + llm_eval_targets(dataset)


# Cross-dataset zero-shot (cross_dataset.smk): the source's VQ-VAE / SUGAR encoder turn the
# target's skeletons into results/cross/{CROSS}/, which the source's recognizer evaluates.
CROSS = "{source}/{source_protocol}/{target}/{target_protocol}"
CROSS_WILDCARDS = {"source": "[a-z0-9_]+", "target": "[a-z0-9_]+",
                   "source_protocol": "[^/]+", "target_protocol": "[^/]+"}

for _i, _pair in enumerate(config["cross_dataset"]):
    for _key in ("source", "target"):
        if _pair[_key] not in config["datasets"]:
            raise WorkflowError(f"config: cross_dataset[{_i}].{_key} names {_pair[_key]!r}, "
                                "which is not under `datasets`")


def cross_eval_inputs(wildcards):
    """The source's recognizer, the target's class table, and the target's inputs made with the
    source's VQ-VAE (llm_ar) or SUGAR encoder (sugar)."""
    source, target = wildcards.source, wildcards.target
    model = f"results/models/{source}/{wildcards.source_protocol}/{wildcards.method}"
    table = "action_sentences" if wildcards.method == "llm_ar" else "features"
    return {"spec": f"{model}/recognizer.json", "adapter": f"{model}/adapter.safetensors",
            "classes": f"{data_dir(target)}/classes.parquet",
            "inputs": f"results/cross/{source}/{wildcards.source_protocol}/{target}/"
                      f"{wildcards.target_protocol}/{table}.parquet"}


def cross_dataset_targets():
    """metrics.json of each configured cross-dataset evaluation (methods: llm_eval.methods
    unless the entry lists its own); none when cross_dataset is empty."""
    return [f"results/eval/cross/{CROSS}/{method}/metrics.json".format(**pair)
            for pair in config["cross_dataset"]
            for method in pair.get("methods", config["llm_eval"]["methods"])]


# The report (report.smk): its inputs follow eval_targets, so the tables and `all` agree.
EVAL_METRICS = re.compile(r"results/eval/(?P<dataset>[^/]+)/(?P<protocol>[^/]+)/(?P<method>[^/]+)/metrics\.json")
LLM_METHODS = ("llm_ar", "sugar")


def report_metrics(wildcards=None):
    """Every dataset's evaluations, then the cross-dataset ones (the report's `cross` table)."""
    return [target for dataset in config["run_datasets"] for target in eval_targets(dataset)] + \
        cross_dataset_targets()


def llm_ar_protocols(dataset):
    """Protocols whose VQ-VAE `all` trains: those LLM-AR is evaluated on (closed set, unseen)."""
    if "llm_ar" not in config["llm_eval"]["methods"]:
        return []
    return [p for p in dataset_config(dataset)["protocols"]
            if p in encoder_protocols(dataset) or UNSEEN_PROTOCOL.fullmatch(p)]


def report_figures(wildcards=None):
    """Curves of every model `all` trains, the feature map of every encoder it runs, and the
    LoRA curves of the LLM recognizers it evaluates (read from eval_targets)."""
    figures = []
    for dataset in config["run_datasets"]:
        folder = f"results/report/{dataset}"
        figures += [f"{folder}/{p}/vqvae_curves.png" for p in llm_ar_protocols(dataset)]
        for protocol in encoder_protocols(dataset):
            figures.append(f"{folder}/{protocol}/encoder_curves.png")
            figures += [f"{folder}/{protocol}/embedding_{m}.png" for m in config["encoders"]["methods"]]
        llm_protocols = {m["protocol"] for t in eval_targets(dataset)
                         if (m := EVAL_METRICS.fullmatch(t)) and m["method"] in LLM_METHODS}
        figures += [f"{folder}/{p}/lora_curves.png" for p in sorted(llm_protocols)]
    return figures


def curve_tables(wildcards):
    """curves.parquet of each run one figure compares."""
    models = f"results/models/{wildcards.dataset}/{wildcards.protocol}"
    if wildcards.kind == "encoder":
        return [f"{models}/encoders/{m}/curves.parquet" for m in config["encoders"]["methods"]]
    if wildcards.kind == "vqvae":
        return [f"{models}/vqvae/curves.parquet"]
    return [f"{models}/{m}/curves.parquet" for m in config["llm_eval"]["methods"]]


# Ablations (ablations.smk): a variant is the config with its overlay merged in; each stage's
# output is the ablation's own only where the overlay changes that stage's flags.
ABLATION_KEY = "ablations/{table}/{dataset}/{protocol}/{variant}"
ABLATION = f"results/{ABLATION_KEY}"
ABLATION_WILDCARDS = {"table": "[a-z0-9_]+", "variant": "[a-z0-9_]+", "dataset": "[a-z0-9_]+",
                      "protocol": "[^/]+"}
OVERLAY_SECTIONS = ("encoders", "vqvae", "lora")
MAIN_OUTPUTS = {
    "encoder": "results/models/{dataset}/{protocol}/encoders/{encoder}/best.safetensors",
    "features": "results/features/{dataset}/{protocol}/sugar/features.parquet",
    "vqvae": "results/models/{dataset}/{protocol}/vqvae/vqvae.safetensors",
    "tokens": "results/tokens/{dataset}/{protocol}/action_sentences.parquet",
    "recognizer": "results/models/{dataset}/{protocol}/{method}/recognizer.json",
}
ABLATION_OUTPUTS = {
    "encoder": "encoder/best.safetensors",
    "features": "features.parquet",
    "vqvae": "vqvae/vqvae.safetensors",
    "tokens": "tokens/action_sentences.parquet",
    "recognizer": "recognizer/recognizer.json",
}

_unknown = sorted(set(config["ablations"]["datasets"] or []) - set(config["datasets"]))
if _unknown:
    raise WorkflowError(f"config: ablations.datasets names {_unknown}, which are not under `datasets`")


def deep_merge(base, overlay):
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def ablation_variant(wildcards):
    return config["ablations"]["tables"][wildcards.table]["variants"][wildcards.variant]


def ablation_method(wildcards):
    """The recognizer a variant evaluates: its own `method`, else its table's."""
    table = config["ablations"]["tables"][wildcards.table]
    return ablation_variant(wildcards).get("method", table["method"])


def encoder_method(method):
    """The encoder a recognizer sits on (SUGAR's LLM reads the SUGAR encoder's features)."""
    return method if method in ("ce", "gap") else "sugar"


def ablation_config(wildcards):
    variant = ablation_variant(wildcards)
    return deep_merge(config, {k: v for k, v in variant.items() if k in OVERLAY_SECTIONS})


def stage_signature(stage, method, cfg):
    """The flags a stage's output depends on, its upstream stages' included."""
    if stage == "encoder":
        return encoder_flags(encoder_method(method), cfg)
    if stage == "vqvae":
        return cli_flags(cfg["vqvae"]["train"])
    upstream = {"features": "encoder", "tokens": "vqvae",
                "recognizer": "encoder" if method == "sugar" else "vqvae"}[stage]
    own = (lora_flags(method, cfg), cfg["lora"][method].get("descriptions")) if stage == "recognizer" else ()
    return (stage_signature(upstream, method, cfg), own)


def ablation_input(wildcards, stage):
    """A stage's output for this variant: the ablation's own when the overlay changes what the
    stage depends on, else the main run's (built by the main rules)."""
    method = ablation_method(wildcards)
    where = {"dataset": wildcards.dataset, "protocol": wildcards.protocol}
    if stage_signature(stage, method, ablation_config(wildcards)) != stage_signature(stage, method, config):
        return f"{ABLATION}/{ABLATION_OUTPUTS[stage]}".format(
            table=wildcards.table, variant=wildcards.variant, **where)
    return MAIN_OUTPUTS[stage].format(encoder=encoder_method(method), method=method, **where)


def ablation_encoder_inputs(wildcards):
    return encoder_inputs(SimpleNamespace(dataset=wildcards.dataset, protocol=wildcards.protocol,
                                          method=encoder_method(ablation_method(wildcards))))


def ablation_lora_inputs(wildcards):
    inputs = {"llm": llm_dir(), "classes": f"{data_dir(wildcards.dataset)}/classes.parquet"}
    if ablation_method(wildcards) == "llm_ar":
        inputs["sentences"] = ablation_input(wildcards, "tokens")
        inputs["vqvae"] = ablation_input(wildcards, "vqvae")
    else:
        inputs["features"] = ablation_input(wildcards, "features")
        if ablation_config(wildcards)["lora"]["sugar"]["descriptions"]:
            inputs["descriptions"] = f"{knowledge_dir(wildcards.dataset)}/descriptions.parquet"
    return inputs


def ablation_eval_inputs(wildcards):
    """An encoder's weights (ce, gap), or an LLM recognizer and the inputs it reads."""
    method = ablation_method(wildcards)
    inputs = {"skeletons": f"{data_dir(wildcards.dataset)}/skeletons.parquet",
              "split": f"{data_dir(wildcards.dataset)}/splits/{wildcards.protocol}.parquet"}
    if method in ("ce", "gap"):
        inputs["model"] = ablation_input(wildcards, "encoder")
        return inputs
    spec = ablation_input(wildcards, "recognizer")
    inputs.update(spec=spec, adapter=spec.replace("recognizer.json", "adapter.safetensors"),
                  classes=f"{data_dir(wildcards.dataset)}/classes.parquet",
                  inputs=ablation_input(wildcards, "tokens" if method == "llm_ar" else "features"))
    return inputs


def ablation_eval_args(wildcards, input):
    """`actionlm evaluate` flags of an encoder (its weights, test crop) or of an LLM recognizer
    (its folder, inputs and scoring flags, as rule evaluate_llm passes them)."""
    method = ablation_method(wildcards)
    if method in ("ce", "gap"):
        interval = ablation_config(wildcards)["encoders"]["train"]["test_interval"][0]
        return f"--model {input.model} --test-interval {interval}"
    return (f"--model {os.path.dirname(input.spec)} --inputs {input.inputs} "
            f"--batch-size {config['llm_eval']['batch_size']} "
            f"{llm_eval_args(SimpleNamespace(method=method))}")


def ablation_protocols(dataset):
    chosen = config["ablations"]["protocols"]
    protocols = dataset_config(dataset)["protocols"]
    return encoder_protocols(dataset) if chosen is None else [p for p in chosen if p in protocols]


def ablation_metrics(table):
    """metrics.json of every variant of a table, on every configured dataset and protocol."""
    datasets = config["ablations"]["datasets"] or config["run_datasets"]
    variants = config["ablations"]["tables"][table]["variants"]
    return [f"{ABLATION}/metrics.json".format(table=table, dataset=d, protocol=p, variant=v)
            for d in datasets for p in ablation_protocols(d) for v in variants]


def ablation_published(wildcards):
    """The paper's number of each variant (--published variant=top1), where the config has it."""
    variants = config["ablations"]["tables"][wildcards.table]["variants"]
    values = [f"{name}={v['published']}" for name, v in variants.items() if v.get("published") is not None]
    return f"--published {' '.join(values)}" if values else ""
