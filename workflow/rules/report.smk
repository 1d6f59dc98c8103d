# The report: results tables (results/report/summary.md: every evaluation `all` builds, the
# papers' numbers beside them; results/report/ablations/{table}.md: one row per variant),
# training curves and encoder-feature maps, each captioned for `snakemake --report`.

localrules:
    report,
    plot_curves,
    plot_embedding,


rule report:
    input:
        unpack(adapted(targets.report_inputs)),
    output:
        **outputs("report", **{name: {"caption": "../report/summary.rst", "category": "Results",
                                      "labels": {"table": "{name}", "format": name}}
                               for name in ("md", "csv")}),
    params:
        figures=files("metrics"),
        flags=adapted(targets.report_flags),
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_of("report", "name"),
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm report {input.metrics} --out-md {output.md} --out-csv {output.csv} "
        "{params.figures} {params.flags} > {log} 2>&1"


rule plot_curves:
    input:
        adapted(targets.curve_tables),
    output:
        **outputs("plot_curves", figure={
            "caption": "../report/curves.rst", "category": "Training curves",
            "subcategory": "{dataset} / {protocol}",
            "labels": {"dataset": "{dataset}", "protocol": "{protocol}", "stage": "{kind}"}}),
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_of("plot_curves", "dataset", "protocol", "kind"),
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm plot-curves {input} --kind {wildcards.kind} --out {output.figure} "
        "--title '{wildcards.kind}: {wildcards.dataset} / {wildcards.protocol}' > {log} 2>&1"


rule plot_embedding:
    input:
        features=paths.output("extract_features", "features", run="", dataset="{dataset}",
                              protocol="{protocol}", method="{method}"),
        classes=paths.output("prepare", "classes", dataset="{dataset}"),
    output:
        **outputs("plot_embedding", figure={
            "caption": "../report/embedding.rst", "category": "Encoder features",
            "subcategory": "{dataset} / {protocol}",
            "labels": {"dataset": "{dataset}", "protocol": "{protocol}", "encoder": "{method}"}}),
    wildcard_constraints:
        method=paths.METHODS["plot_embedding"],
    resources:
        mem_mb=4000,
        runtime=10,
    log:
        log_of("plot_embedding", "dataset", "protocol", "method"),
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm plot-embedding --features {input.features} --classes {input.classes} "
        "--split test --out {output.figure} "
        "--title '{wildcards.method} encoder, {wildcards.dataset} / {wildcards.protocol}' "
        "> {log} 2>&1"


# The papers' ablation tables (config `ablations.tables`): `snakemake ablation_<table>`, or
# `snakemake ablations` for all. None is part of `all`.
for _table, _summary in targets.ablation_tables(PIPE).items():

    rule:
        name:
            f"ablation_{_table}"
        input:
            _summary,


rule ablations:
    input:
        list(targets.ablation_tables(PIPE).values()),
