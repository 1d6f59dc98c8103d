# Data stage: raw skeletons -> skeletons.parquet (+ classes, rejected), then one split per protocol.


rule prepare:
    input:
        prepare_source,
    output:
        skeletons="results/data/{dataset}/skeletons.parquet",
        classes="results/data/{dataset}/classes.parquet",
        rejected="results/data/{dataset}/rejected.parquet",
        embedded_splits="results/data/{dataset}/embedded_splits.parquet",
    params:
        args=prepare_args,
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=config["prepare"]["mem_mb"],
        runtime=config["prepare"]["runtime"],
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "actionlm prepare --out results/data/{wildcards.dataset} --protocols none "
        "--workers {threads} {params.args} > {log} 2>&1"


rule split:
    input:
        rules.prepare.output,
    output:
        "results/data/{dataset}/splits/{protocol}.parquet",
    params:
        val_fraction=lambda wc: dataset_config(wc.dataset)["val_fraction"],
        seed=lambda wc: dataset_config(wc.dataset)["seed"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/split/{dataset}/{protocol}.log",
    benchmark:
        "results/benchmarks/split/{dataset}/{protocol}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "actionlm split --data results/data/{wildcards.dataset} --protocol {wildcards.protocol} "
        "--val-fraction {params.val_fraction} --seed {params.seed} > {log} 2>&1"
