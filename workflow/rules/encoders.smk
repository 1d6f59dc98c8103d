# Skeleton encoders: CE baseline, GAP (CE + multi-part contrastive), SUGAR step 2 (MIL-NCE);
# their test-split evaluation and the frozen encoders' features (SUGAR's LLM input, report map).


rule train_encoder:
    input:
        unpack(encoder_inputs),
    output:
        best="results/models/{dataset}/{protocol}/encoders/{method}/best.safetensors",
        last="results/models/{dataset}/{protocol}/encoders/{method}/last.safetensors",
        curves="results/models/{dataset}/{protocol}/encoders/{method}/curves.parquet",
        config="results/models/{dataset}/{protocol}/encoders/{method}/config.json",
    wildcard_constraints:
        method="ce|gap|sugar",
    params:
        args=encoder_args,
        texts=lambda wc, input: f"--texts {input.texts}" if "texts" in input.keys() else "",
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=16000, runtime=720),
    log:
        "logs/train_encoder/{dataset}/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/train_encoder/{dataset}/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-encoder --method {wildcards.method} --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} {params.texts} "
        "--out results/models/{wildcards.dataset}/{wildcards.protocol}/encoders/{wildcards.method} "
        "--device {resources.device} --threads {threads} {params.args} > {log} 2>&1"


rule evaluate_encoder:
    input:
        model=rules.train_encoder.output.best,
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
    output:
        predictions="results/eval/{dataset}/{protocol}/{method}/predictions.parquet",
        metrics="results/eval/{dataset}/{protocol}/{method}/metrics.json",
        confusion=report(
            "results/eval/{dataset}/{protocol}/{method}/confusion.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            labels={"dataset": "{dataset}", "protocol": "{protocol}", "method": "{method}"},
        ),
    wildcard_constraints:
        method="ce|gap",
    params:
        interval=config["encoders"]["train"]["test_interval"][0],
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=60),
    log:
        "logs/evaluate/{dataset}/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method {wildcards.method} --model {input.model} "
        "--data results/data/{wildcards.dataset} --protocol {wildcards.protocol} "
        "--out results/eval/{wildcards.dataset}/{wildcards.protocol}/{wildcards.method} "
        "--test-interval {params.interval} --device {resources.device} --threads {threads} "
        "> {log} 2>&1"


rule extract_features:
    input:
        model=rules.train_encoder.output.best,
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
    output:
        "results/features/{dataset}/{protocol}/{method}/features.parquet",
    wildcard_constraints:
        method="ce|gap|sugar",
    params:
        interval=config["encoders"]["train"]["test_interval"][0],
    priority: CHAIN_PRIORITY
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=60),
    log:
        "logs/extract_features/{dataset}/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/extract_features/{dataset}/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm extract-features --model {input.model} --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --out {output} --test-interval {params.interval} "
        "--device {resources.device} --threads {threads} > {log} 2>&1"
