# LLM-AR linguistic projection: train the hyperbolic VQ-VAE on a protocol's training split,
# then turn every sample of the protocol into an action sentence (discrete tokens).


rule train_vqvae:
    input:
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
        llm=llm_dir(),
    output:
        model="results/models/{dataset}/{protocol}/vqvae/vqvae.safetensors",
        curves="results/models/{dataset}/{protocol}/vqvae/curves.parquet",
        config="results/models/{dataset}/{protocol}/vqvae/config.json",
    params:
        args=lambda wc: cli_flags(config["vqvae"]["train"]),
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    log:
        "logs/train_vqvae/{dataset}/{protocol}.log",
    benchmark:
        "results/benchmarks/train_vqvae/{dataset}/{protocol}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-vqvae --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --llm {input.llm} "
        "--out results/models/{wildcards.dataset}/{wildcards.protocol}/vqvae "
        "--device {resources.device} --threads {threads} {params.args} > {log} 2>&1"


rule tokenize:
    input:
        model=rules.train_vqvae.output.model,
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
    output:
        sentences="results/tokens/{dataset}/{protocol}/action_sentences.parquet",
        usage="results/tokens/{dataset}/{protocol}/codebook_usage.parquet",
        summary="results/tokens/{dataset}/{protocol}/usage.json",
        plot=report(
            "results/tokens/{dataset}/{protocol}/token_frequency.png",
            caption="../report/token_frequency.rst",
            category="Action tokens",
            labels={"dataset": "{dataset}", "protocol": "{protocol}"},
        ),
    params:
        args=lambda wc: cli_flags(config["vqvae"]["tokenize"]),
    priority: CHAIN_PRIORITY
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/tokenize/{dataset}/{protocol}.log",
    benchmark:
        "results/benchmarks/tokenize/{dataset}/{protocol}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm tokenize --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --vqvae {input.model} "
        "--out results/tokens/{wildcards.dataset}/{wildcards.protocol} --threads {threads} "
        "{params.args} > {log} 2>&1"
