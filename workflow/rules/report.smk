# The report: results tables of every evaluation `all` builds (with the papers' numbers beside
# them), training curves and encoder-feature maps, each captioned for
# `snakemake --report report.html`. All under results/report/.

localrules:
    report,
    plot_curves,
    plot_embedding,


rule report:
    input:
        metrics=report_metrics,
        figures=report_figures,
    output:
        md=report("results/report/summary.md", caption="../report/summary.rst", category="Results"),
        csv=report("results/report/summary.csv", caption="../report/summary.rst", category="Results"),
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report/summary.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm report {input.metrics} --root results/eval --papers "
        "--figures {input.figures} --title 'actionlm results' "
        "--out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


rule plot_curves:
    input:
        curve_tables,
    output:
        report(
            "results/report/{dataset}/{protocol}/{kind}_curves.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{dataset} / {protocol}",
            labels={"dataset": "{dataset}", "protocol": "{protocol}", "stage": "{kind}"},
        ),
    wildcard_constraints:
        kind="encoder|vqvae|lora",
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report/{dataset}/{protocol}/{kind}_curves.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm plot-curves {input} --kind {wildcards.kind} --out {output} "
        "--title '{wildcards.kind}: {wildcards.dataset} / {wildcards.protocol}' > {log} 2>&1"


rule plot_embedding:
    input:
        features="results/features/{dataset}/{protocol}/{method}/features.parquet",
        classes="results/data/{dataset}/classes.parquet",
    output:
        report(
            "results/report/{dataset}/{protocol}/embedding_{method}.png",
            caption="../report/embedding.rst",
            category="Encoder features",
            subcategory="{dataset} / {protocol}",
            labels={"dataset": "{dataset}", "protocol": "{protocol}", "encoder": "{method}"},
        ),
    wildcard_constraints:
        method="ce|gap|sugar",
    resources:
        mem_mb=4000,
        runtime=10,
    log:
        "logs/report/{dataset}/{protocol}/embedding_{method}.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm plot-embedding --features {input.features} --classes {input.classes} "
        "--split test --out {output} --title '{wildcards.method} encoder, "
        "{wildcards.dataset} / {wildcards.protocol}' > {log} 2>&1"
