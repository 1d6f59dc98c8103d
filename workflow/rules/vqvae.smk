# LLM-AR linguistic projection: train the hyperbolic VQ-VAE on a protocol's training split,
# then turn every sample of the protocol into an action sentence (discrete tokens).


rule train_vqvae:
    input:
        unpack(inputs("train_vqvae")),
    output:
        **outputs("train_vqvae"),
    params:
        files=files(),
        flags=flags("train_vqvae"),
    priority: priority_of("train_vqvae")
    threads: threads_of("train_vqvae")
    resources:
        **PIPE.network_resources("train_vqvae"),
    log:
        log_of("train_vqvae", "dataset", "protocol"),
    benchmark:
        benchmark_of("train_vqvae", "dataset", "protocol")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-vqvae {params.files} --out $(dirname {output.model}) "
        "--device {resources.device} --precision {resources.precision} --threads {threads} "
        "{params.flags} > {log} 2>&1"


rule tokenize:
    input:
        unpack(inputs("tokenize")),
    output:
        **outputs("tokenize", plot={
            "caption": "../report/token_frequency.rst", "category": "Action tokens",
            "labels": {"run": "{run}", "dataset": "{dataset}", "protocol": "{protocol}"}}),
    params:
        files=files(),
    priority: priority_of("tokenize")
    threads: threads_of("tokenize")
    resources:
        batch=config["vqvae"]["tokenize"]["batch_size"],
        **PIPE.network_resources("tokenize"),
    log:
        log_of("tokenize", "dataset", "protocol"),
    benchmark:
        benchmark_of("tokenize", "dataset", "protocol")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm tokenize {params.files} --out $(dirname {output.sentences}) "
        "--batch-size {resources.batch} --device {resources.device} "
        "--precision {resources.precision} --threads {threads} > {log} 2>&1"
