"""The workflow config checked at start: the schema (types, bounds, unknown keys: actionlm.config)
and what a schema cannot say, each problem one line naming the key. A name that matches
nothing (a dataset, a protocol) is an error, not a silently smaller plan, and so is a protocol
a dataset cannot form (actionlm.data.prepare knows each format's classes and metadata)."""

from __future__ import annotations

from pathlib import Path

from actionlm.config import validate_config
from actionlm.data.prepare import class_list, protocol_problem
from actionlm.data.zero_shot import is_zero_shot
from actionlm.errors import ActionlmError
from actionlm.pipeline import paths
from actionlm.pipeline.runs import MAIN, Run, deep_merge, run_settings
from actionlm.pipeline.stages import encoder_of, encoder_options


def names_problems(config: dict) -> list[str]:
    datasets = set(config["datasets"])
    problems = []

    def unknown(key: str, names: list[str] | None, known: set[str], what: str) -> None:
        missing = sorted(set(names or []) - known)
        if missing:
            problems.append(f"{key} names {missing}, which {what}")

    unknown("run_datasets", config["run_datasets"], datasets, "are not under `datasets`")
    unknown("ablations.datasets", config["ablations"]["datasets"], datasets,
            "are not under `datasets`")
    for i, pair in enumerate(config["cross_dataset"]):
        for key in ("source", "target"):
            if pair[key] not in datasets:
                problems.append(f"cross_dataset[{i}].{key} names {pair[key]!r}, which is not "
                                "under `datasets`")
    protocols = {p for name in config["run_datasets"] if name in datasets
                 for p in config["datasets"][name]["protocols"]}
    for key in ("encoders", "ablations"):
        unknown(f"{key}.protocols", config[key]["protocols"], protocols,
                "no dataset of run_datasets lists under `protocols`")
    if config["knowledge"]["visual"]["enabled"] and config["knowledge"]["provider"]["serve_local"]:
        problems.append("knowledge.visual.enabled needs a vision model endpoint; set "
                        "knowledge.provider.serve_local: false (and base_url/api_key_env)")
    return problems


def shadowed_variant_keys(config: dict) -> list[str]:
    """An ablation variant that sets a common encoders key which its method's own block
    (encoders.{method}, in the main config or a per_dataset block) overrides would train the
    main run's encoder again under another name: an error naming both keys."""
    blocks = [("encoders", config["encoders"])] + [
        (f"per_dataset.{name}.encoders", overlay["encoders"])
        for name, overlay in config["per_dataset"].items() if "encoders" in overlay]
    problems = []
    for table, spec in config["ablations"]["tables"].items():
        for variant, overlay in spec["variants"].items():
            method = overlay.get("method", spec["method"])
            if method == "llm_ar":
                continue
            encoder = encoder_of(method)
            for section, values in overlay.get("encoders", {}).items():
                for key in values if section in ("network", "train") else ():
                    problems += [
                        f"ablations.tables.{table}.variants.{variant}.encoders.{section}.{key}: "
                        f"{where}.{encoder}.{section}.{key} overrides it for {encoder}; set "
                        f"encoders.{encoder}.{section}.{key} in the variant instead"
                        for where, encoders in blocks
                        if key in encoders.get(encoder, {}).get(section, {})]
    return problems


def modality_problems(config: dict) -> list[str]:
    """A method block's network.modality would win over every stream run's (all of the
    method's streams would train one stream): its streams are encoders.{method}.modalities."""
    return [f"encoders.{method}.network.modality: it would override the stream of every run "
            f"streams/{{m}}/; list {method}'s streams in encoders.{method}.modalities"
            for method in ("ce", "gap", "sugar")
            if "modality" in config["encoders"][method].get("network", {})]


def missing_knowledge(config: dict, kinds: list[str]) -> str | None:
    """Why no stage of this config makes one of the text ``kinds``, or None."""
    if "visual" in kinds and not config["knowledge"]["visual"]["enabled"]:
        return ("visual texts need knowledge.visual.enabled (describe-visual, a vision-model "
                "endpoint)")
    if "motion" in kinds and config["knowledge"]["import_gap"]:
        return ("motion texts come from SUGAR's question to a model; GAP's imported files "
                "(knowledge.import_gap) hold none")
    return None


def knowledge_problems(config: dict) -> list[str]:
    """A SUGAR encoder of `all` that asks for texts no stage makes (its rows would fail late)."""
    methods = {*config["encoders"]["methods"], *config["llm_eval"]["methods"]}
    if any(is_zero_shot(p) for d in config["run_datasets"]
           for p in config["datasets"].get(d, {}).get("protocols", [])):
        methods |= set(config["zero_shot"]["text_similarity"])
    if "sugar" not in methods:
        return []
    problems = []
    for dataset in config["run_datasets"]:
        cfg = run_settings(config, Run(MAIN), dataset)
        why = missing_knowledge(config, encoder_options(cfg, "sugar")["sugar_kinds"])
        if why:
            problems.append(f"encoders.train.sugar_kinds (SUGAR on {dataset}): {why}")
        if ("sugar" in config["llm_eval"]["methods"] and cfg["lora"]["sugar"]["descriptions"]
                and config["knowledge"]["import_gap"]):
            problems.append(f"lora.sugar.descriptions (SUGAR on {dataset}): its brief "
                            "descriptions come from SUGAR's question to a model; GAP's "
                            "imported files (knowledge.import_gap) hold none")
    return problems


def ensemble_problems(config: dict) -> list[str]:
    """An ensemble named as a method (both would write eval/.../{name}/), and weights that do
    not pair with the members, in `ensembles` and in fusion variants."""
    methods = paths.METHODS["evaluate"].split("|")
    problems = [f"ensembles.{name}: the name of a method's evaluation; name the ensemble "
                "otherwise" for name in config["ensembles"] if name in methods]
    specs = [(f"ensembles.{name}", spec) for name, spec in config["ensembles"].items()]
    specs += [(f"ablations.tables.{table}.variants.{variant}.ensemble", overlay["ensemble"])
              for table, t in config["ablations"]["tables"].items()
              for variant, overlay in t["variants"].items() if "ensemble" in overlay]
    return problems + [
        f"{key}.weights: {len(spec['weights'])} weights for {len(spec['members'])} members"
        for key, spec in specs
        if spec.get("weights") and len(spec["weights"]) != len(spec["members"])]


def dataset_problems(config: dict) -> list[str]:
    """What each dataset entry cannot do, known before any file is read: a class list its
    format cannot resolve, an unseen{K} with K not below its class count, a standard protocol
    whose metadata its format does not record."""
    problems = []
    for name, entry in config["datasets"].items():
        ds = deep_merge(config["dataset_defaults"], entry)
        try:
            classes = class_list(ds["format"], ds["classes"], ds["actions"])
        except ActionlmError as err:
            problems.append(f"datasets.{name}.classes: {err}")
            continue
        problems += [f"datasets.{name}.protocols.{i}: {why}"
                     for i, protocol in enumerate(ds["protocols"])
                     if (why := protocol_problem(ds["format"], classes, protocol))]
    return problems


def check_config(config: dict, schema: str | Path, source: str = "config") -> None:
    """Raise ActionlmError listing every problem of ``config``."""
    validate_config(config, schema, source)
    problems = (names_problems(config) + dataset_problems(config) +
                shadowed_variant_keys(config) + ensemble_problems(config) +
                modality_problems(config) + knowledge_problems(config))
    if problems:
        raise ActionlmError(f"{source} is invalid:\n" + "\n".join(f"  {p}" for p in problems))
