# Skeleton encoders: CE baseline, GAP (CE + multi-part contrastive), SUGAR step 2 (MIL-NCE),
# and the frozen encoders' features (SUGAR's LLM input, the report's feature maps).


rule train_encoder:
    input:
        unpack(inputs("train_encoder")),
    output:
        **outputs("train_encoder"),
    wildcard_constraints:
        method=paths.METHODS["train_encoder"],
    params:
        files=files(),
        flags=flags("train_encoder"),
    priority: priority_of("train_encoder")
    threads: threads_of("train_encoder")
    resources:
        **PIPE.network_resources("train_encoder"),
    log:
        log_of("train_encoder", "dataset", "protocol", "method"),
    benchmark:
        benchmark_of("train_encoder", "dataset", "protocol", "method")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-encoder {params.files} --out $(dirname {output.best}) "
        "--device {resources.device} --precision {resources.precision} --threads {threads} "
        "{params.flags} > {log} 2>&1"


rule extract_features:
    input:
        unpack(inputs("extract_features")),
    output:
        **outputs("extract_features"),
    wildcard_constraints:
        method=paths.METHODS["extract_features"],
    params:
        files=files(),
        flags=flags("extract_features"),
    priority: priority_of("extract_features")
    threads: threads_of("extract_features")
    resources:
        batch=config["encoders"]["inference_batch_size"],
        **PIPE.network_resources("extract_features"),
    log:
        log_of("extract_features", "dataset", "protocol", "method"),
    benchmark:
        benchmark_of("extract_features", "dataset", "protocol", "method")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm extract-features {params.files} --out {output.features} "
        "--batch-size {resources.batch} --device {resources.device} "
        "--precision {resources.precision} --threads {threads} "
        "{params.flags} > {log} 2>&1"
