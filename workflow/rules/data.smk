# Data stage: raw skeletons -> skeletons.parquet (+ classes, rejected), then one split per protocol.


rule prepare:
    input:
        unpack(inputs("prepare")),
    output:
        **outputs("prepare"),
    params:
        files=files(),
        flags=flags("prepare"),
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=config["prepare"]["mem_mb"],
        runtime=config["prepare"]["runtime"],
    log:
        log_of("prepare", "dataset"),
    benchmark:
        benchmark_of("prepare", "dataset")
    conda:
        "../../envs/data.yaml"
    shell:
        "actionlm prepare {params.files} --out $(dirname {output.skeletons}) --protocols none "
        "--workers {threads} {params.flags} > {log} 2>&1"


rule split:
    input:
        unpack(inputs("split")),
    output:
        **outputs("split"),
    params:
        files=files(),
        flags=flags("split"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        log_of("split", "dataset", "protocol"),
    benchmark:
        benchmark_of("split", "dataset", "protocol")
    conda:
        "../../envs/data.yaml"
    shell:
        "actionlm split {params.files} --protocol {wildcards.protocol} --out {output.split} "
        "{params.flags} > {log} 2>&1"
