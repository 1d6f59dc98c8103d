# Knowledge stage: class descriptions from a language model (cached requests), optional visual
# descriptions from a vision model, and their text embeddings.


rule describe:
    input:
        unpack(describe_inputs),
    output:
        "results/knowledge/{dataset}/descriptions.parquet",
    params:
        args=describe_args,
    threads: JOB_THREADS
    resources:
        mem_mb=4000,
        runtime=120,
        **request_resources,
    log:
        "logs/describe/{dataset}.log",
    benchmark:
        "results/benchmarks/describe/{dataset}.tsv"
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm describe --classes {input.classes} --out {output} "
        "{params.args} --cache-dir {resources.llm_cache} --concurrency {resources.llm_concurrency} "
        "--max-retries {resources.llm_retries} --timeout {resources.llm_timeout_s} > {log} 2>&1"


rule describe_visual:
    input:
        classes="results/data/{dataset}/classes.parquet",
        skeletons="results/data/{dataset}/skeletons.parquet",
    output:
        table="results/knowledge/{dataset}/visual.parquet",
        frames=directory("results/knowledge/{dataset}/visual_frames"),
    params:
        args=visual_args,
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=240,
        **request_resources,
    log:
        "logs/describe_visual/{dataset}.log",
    benchmark:
        "results/benchmarks/describe_visual/{dataset}.tsv"
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm describe-visual --classes {input.classes} --skeletons {input.skeletons} "
        "--out {output.table} --save-frames {output.frames} {params.args} "
        "--cache-dir {resources.llm_cache} --concurrency {resources.llm_concurrency} "
        "--max-retries {resources.llm_retries} --timeout {resources.llm_timeout_s} > {log} 2>&1"


rule encode_text:
    input:
        encode_text_inputs,
    output:
        "results/knowledge/{dataset}/text_embeddings.parquet",
    params:
        args=encode_text_args,
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/encode_text/{dataset}.log",
    benchmark:
        "results/benchmarks/encode_text/{dataset}.tsv"
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm encode-text --descriptions {input} --out {output} {params.args} > {log} 2>&1"
