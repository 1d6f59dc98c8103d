"""What ``all``, the report and the ablation targets ask for.

``all`` builds, per dataset of ``run_datasets``: the data and splits, the text embeddings,
each encoder's evaluation and features on the encoder protocols, each LLM recognizer's
closed-set evaluation there (both on every stream the method lists: actionlm.pipeline.stages
``modalities``), the zero-shot averages per protocol family (actionlm.data.zero_shot) of each
recognizer, its text probe and each text-similarity encoder (zero_shot.text_similarity), each
ensemble of methods it evaluates on the closed-set protocols, the cross-dataset evaluations,
and the report. An ablation table asks for each variant's evaluation (or
fusion), resolved to the main run's or a stream's where the variant changes nothing.
"""

from __future__ import annotations

from actionlm.data.zero_shot import family_of, is_zero_shot
from actionlm.pipeline import paths
from actionlm.pipeline.checks import missing_knowledge
from actionlm.pipeline.flags import cli_flags
from actionlm.pipeline.runs import MAIN, Run, ablation_name, cross_name
from actionlm.pipeline.stages import (
    CLASSIFIERS,
    TEXT,
    TEXT_SIMILARITY,
    Pipeline,
    encoder_options,
    member_parts,
    modalities,
)

SUMMARY = "summary"


def metrics(run: str, dataset: str, protocol: str, method: str) -> str:
    return paths.output("evaluate", "metrics", run=run, dataset=dataset, protocol=protocol,
                        method=method)


def encoder_protocols(pipe: Pipeline, dataset: str) -> list[str]:
    """The dataset's closed-set protocols that encoders and recognizers are evaluated on."""
    chosen, protocols = pipe.config["encoders"]["protocols"], pipe.dataset(dataset)["protocols"]
    return [p for p in (protocols if chosen is None else chosen)
            if p in protocols and not is_zero_shot(p)]


def zero_shot_protocols(pipe: Pipeline, dataset: str, family: str | None = None) -> list[str]:
    """The dataset's zero-shot protocols (of one family: seeds, SMIE's splits)."""
    return [p for p in pipe.dataset(dataset)["protocols"]
            if is_zero_shot(p) and family in (None, family_of(p))]


def stream_runs(pipe: Pipeline, dataset: str, method: str) -> list[str]:
    """The runs that evaluate ``method`` on each of its streams (the main run's is "")."""
    return list(dict.fromkeys(pipe.stream_run(method, m, dataset)
                              for m in modalities(pipe.settings(MAIN, dataset), method)))


def fused_ensembles(pipe: Pipeline) -> list[str]:
    """The ensembles whose members' methods all are evaluated by `all` (a dataset config's
    GAP ensembles stay out of a run of the SUGAR paper's overlay)."""
    cfg = pipe.config
    evaluated = {*[m for m in cfg["encoders"]["methods"] if m in CLASSIFIERS],
                 *cfg["llm_eval"]["methods"]}
    return [name for name, spec in cfg["ensembles"].items()
            if {member_parts(m)[0] for m in spec["members"]} <= evaluated]


def eval_targets(pipe: Pipeline, dataset: str) -> list[str]:
    """metrics.json of each encoder and closed-set recognizer on each of its streams, of each
    ensemble, and each zero-shot average."""
    methods = [m for m in pipe.config["encoders"]["methods"] if m in CLASSIFIERS]
    llm = pipe.config["llm_eval"]
    closed = encoder_protocols(pipe, dataset)
    targets = [metrics(run, dataset, p, m) for m in methods for run in stream_runs(pipe, dataset, m)
               for p in closed]
    targets += [metrics(run, dataset, p, m) for m in llm["methods"]
                for run in stream_runs(pipe, dataset, m) for p in closed]
    targets += [paths.output("ensemble", "metrics", run=MAIN, dataset=dataset, protocol=p,
                             ensemble=name)
                for name in fused_ensembles(pipe) for p in closed]
    families = dict.fromkeys(family_of(p) for p in zero_shot_protocols(pipe, dataset))
    targets += [paths.output("zeroshot_summary", "summary", dataset=dataset, family=f, method=m)
                for f in families for m in zero_shot_methods(pipe)]
    return targets


def zero_shot_recognizers(config: dict) -> list[str]:
    """The LLM recognizers evaluated on the zero-shot protocols: zero_shot.recognizers of
    llm_eval.methods (null: all of them)."""
    chosen = config["zero_shot"]["recognizers"]
    return [m for m in config["llm_eval"]["methods"] if chosen is None or m in chosen]


def zero_shot_methods(pipe: Pipeline) -> list[str]:
    """The evaluations of every zero-shot protocol: the recognizers, their text probes (with
    llm_eval.text_probe) and the text-similarity encoders."""
    recognizers = zero_shot_recognizers(pipe.config)
    probes = [m + TEXT for m in recognizers] if pipe.config["llm_eval"]["text_probe"] else []
    return (recognizers + probes +
            [m + TEXT_SIMILARITY for m in pipe.config["zero_shot"]["text_similarity"]])


def seed_metrics(pipe: Pipeline, wc: dict) -> list[str]:
    """metrics.json of every protocol of a zero-shot family (zeroshot_summary's inputs)."""
    return [metrics(MAIN, wc["dataset"], p, wc["method"])
            for p in zero_shot_protocols(pipe, wc["dataset"], wc["family"])]


def cross_targets(pipe: Pipeline) -> list[str]:
    return [metrics(cross_name(pair["source"], pair["source_protocol"]), pair["target"],
                    pair["target_protocol"], method)
            for pair in pipe.config["cross_dataset"]
            for method in pair.get("methods") or pipe.config["llm_eval"]["methods"]]


def report_metrics(pipe: Pipeline) -> list[str]:
    return [t for d in pipe.config["run_datasets"] for t in eval_targets(pipe, d)] + \
        cross_targets(pipe)


def report_figures(pipe: Pipeline) -> list[str]:
    """Curves of every model `all` trains (VQ-VAEs: the protocols LLM-AR is evaluated on),
    the feature map of each encoder it runs, and the LoRA curves of the closed-set recognizers."""
    figures, config = [], pipe.config
    llm_methods = config["llm_eval"]["methods"]
    for dataset in config["run_datasets"]:
        protocols = encoder_protocols(pipe, dataset)
        vqvae = [p for p in pipe.dataset(dataset)["protocols"] if "llm_ar" in llm_methods and (
            p in protocols or is_zero_shot(p) and "llm_ar" in zero_shot_recognizers(config))]
        lora = [p for p in protocols if llm_methods]
        figures += [figure("plot_curves", dataset, p, kind="vqvae") for p in vqvae]
        for protocol in protocols if config["encoders"]["methods"] else ():
            figures.append(figure("plot_curves", dataset, protocol, kind="encoder"))
            figures += [figure("plot_embedding", dataset, protocol, method=m)
                        for m in config["encoders"]["methods"]]
        figures += [figure("plot_curves", dataset, p, kind="lora") for p in lora]
    return figures


def figure(stage: str, dataset: str, protocol: str, **wildcards: str) -> str:
    return paths.output(stage, "figure", dataset=dataset, protocol=protocol, **wildcards)


def uses_texts(pipe: Pipeline) -> bool:
    """Whether a job `all` runs reads the text embeddings: GAP's and SUGAR's encoders do, and
    the zero-shot text probes and text similarity; CE and LLM-AR alone, without them, never ask
    for descriptions."""
    llm = pipe.config["llm_eval"]
    methods = {*pipe.config["encoders"]["methods"], *llm["methods"]}
    zero_shot = any(zero_shot_protocols(pipe, d) for d in pipe.config["run_datasets"])
    return bool(methods - {"ce", "llm_ar"} or
                zero_shot and {*zero_shot_methods(pipe)} - {*llm["methods"]})


def all_targets(pipe: Pipeline) -> list[str]:
    targets = []
    for dataset in pipe.config["run_datasets"]:
        targets.append(paths.output("prepare", "skeletons", dataset=dataset))
        targets += [paths.SPLIT.format(dataset=dataset, protocol=p)
                    for p in pipe.dataset(dataset)["protocols"]]
        if uses_texts(pipe):
            targets.append(paths.output("encode_text", "embeddings", dataset=dataset))
        targets += eval_targets(pipe, dataset)
        targets += [paths.output("extract_features", "features", run=run, dataset=dataset,
                                 protocol=p, method=m)
                    for m in pipe.config["encoders"]["methods"]
                    for run in stream_runs(pipe, dataset, m)
                    for p in encoder_protocols(pipe, dataset)]
    return targets + cross_targets(pipe) + [report(SUMMARY)]


def curve_tables(pipe: Pipeline, wc: dict) -> list[str]:
    """curves.parquet of each main-run model one curves figure compares."""
    where = {"run": MAIN, "dataset": wc["dataset"], "protocol": wc["protocol"]}
    if wc["kind"] == "encoder":
        return [paths.output("train_encoder", "curves", **where, method=m)
                for m in pipe.config["encoders"]["methods"]]
    if wc["kind"] == "vqvae":
        return [paths.output("train_vqvae", "curves", **where)]
    return [paths.output("lora", "curves", **where, method=m)
            for m in pipe.config["llm_eval"]["methods"]]


# ---------------------------------------------------------------- ablation tables

def ablation_protocols(pipe: Pipeline, dataset: str) -> list[str]:
    chosen = pipe.config["ablations"]["protocols"]
    if chosen is None:
        return encoder_protocols(pipe, dataset)
    return [p for p in chosen if p in pipe.dataset(dataset)["protocols"]]


def refusal(pipe: Pipeline, run: Run, dataset: str) -> str | None:
    """Why a variant cannot run here: its SUGAR encoder asks for texts no stage makes (the
    visual rows of SUGAR Table 3 without a vision endpoint)."""
    if run.method != "sugar" or run.ensemble:
        return None
    kinds = encoder_options(pipe.settings(run.name, dataset), "sugar")["sugar_kinds"]
    return missing_knowledge(pipe.config, kinds)


def refused_variants(pipe: Pipeline, table: str) -> dict[str, str]:
    """variant -> the reason it is not run, for the variants refused on some dataset."""
    refused = {}
    for variant in pipe.config["ablations"]["tables"][table]["variants"]:
        run = pipe.run(ablation_name(table, variant))
        for dataset in ablation_datasets(pipe):
            why = refusal(pipe, run, dataset)
            if why:
                refused[variant] = why
    return refused


def ablation_datasets(pipe: Pipeline) -> list[str]:
    return pipe.config["ablations"]["datasets"] or pipe.config["run_datasets"]


def ablation_rows(pipe: Pipeline, table: str) -> list[tuple[str, str]]:
    """(variant, metrics.json) of every variant on every ablation dataset and protocol, but
    the refused ones; the path is the main run's (or a stream's) where the variant's
    evaluation signature equals it; a fusion variant's is its own ensemble's."""
    rows = []
    for variant in pipe.config["ablations"]["tables"][table]["variants"]:
        run = pipe.run(ablation_name(table, variant))
        for dataset in ablation_datasets(pipe):
            if refusal(pipe, run, dataset):
                continue
            for protocol in ablation_protocols(pipe, dataset):
                if run.ensemble:
                    path = paths.output("ensemble", "metrics", run=run.name, dataset=dataset,
                                        protocol=protocol, ensemble="ensemble")
                else:
                    owner = pipe.owner(run, "evaluate", run.method, dataset)
                    path = metrics(owner, dataset, protocol, run.method)
                rows.append((variant, path))
    return rows


def report(name: str) -> str:
    return paths.output("report", "md", name=name)


def report_inputs(pipe: Pipeline, wc: dict) -> dict[str, list[str]]:
    if wc["name"] == SUMMARY:
        return {"metrics": report_metrics(pipe), "figures": report_figures(pipe)}
    table = wc["name"].removeprefix("ablations/")
    return {"metrics": [path for _, path in ablation_rows(pipe, table)]}


def report_options(pipe: Pipeline, wc: dict) -> dict:
    """The summary: titled, with the papers' rows. An ablation table: a row per variant (the
    row names follow the metrics files), the paper's number of each variant beside it."""
    if wc["name"] == SUMMARY:
        return {"title": "actionlm results", "papers": True}
    table = wc["name"].removeprefix("ablations/")
    spec = pipe.config["ablations"]["tables"][table]
    published = [f"{name}={v['published']}" for name, v in spec["variants"].items()
                 if v.get("published") is not None]
    refused = [f"{variant}={why}" for variant, why in refused_variants(pipe, table).items()]
    return {"title": f"Ablation {table}", "row_name": "variant",
            "row_labels": [variant for variant, _ in ablation_rows(pipe, table)],
            "published": published or None, "published_label": spec.get("paper"),
            "refused": refused or None}


def report_flags(pipe: Pipeline, wc: dict) -> str:
    return cli_flags(report_options(pipe, wc))


def ablation_tables(pipe: Pipeline) -> dict[str, str]:
    """Each table's target (`snakemake ablation_{table}`): its summary markdown."""
    return {table: report(f"ablations/{table}") for table in pipe.config["ablations"]["tables"]}

