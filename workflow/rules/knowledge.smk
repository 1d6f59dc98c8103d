# Knowledge stage: class descriptions from a language model (cached requests), optional visual
# descriptions from a vision model, and their text embeddings.


rule describe:
    input:
        unpack(inputs("describe")),
    output:
        **outputs("describe"),
    params:
        files=files(),
        flags=flags("describe"),
    priority: priority_of("describe")
    threads: threads_of("describe")
    resources:
        mem_mb=4000,
        runtime=120,
        **PIPE.request_resources(),
    log:
        main=log_of("describe", "dataset"),
        serve=log_of("describe", "dataset", suffix=".serve.log"),
    benchmark:
        benchmark_of("describe", "dataset")
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm describe {params.files} --out {output.descriptions} {params.flags} "
        "--serve-log {log.serve} --serve-threads {threads} --cache-dir {resources.llm_cache} "
        "--concurrency {resources.llm_concurrency} --max-retries {resources.llm_retries} "
        "--timeout {resources.llm_timeout_s} > {log.main} 2>&1"


rule describe_visual:
    input:
        unpack(inputs("describe_visual")),
    output:
        **outputs("describe_visual"),
    params:
        files=files(),
        flags=flags("describe_visual"),
    priority: priority_of("describe_visual")
    threads: threads_of("describe_visual")
    resources:
        mem_mb=8000,
        runtime=240,
        **PIPE.request_resources(),
    log:
        log_of("describe_visual", "dataset"),
    benchmark:
        benchmark_of("describe_visual", "dataset")
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm describe-visual {params.files} --out {output.table} "
        "--save-frames {output.frames} {params.flags} --cache-dir {resources.llm_cache} "
        "--concurrency {resources.llm_concurrency} --max-retries {resources.llm_retries} "
        "--timeout {resources.llm_timeout_s} > {log} 2>&1"


rule encode_text:
    input:
        unpack(inputs("encode_text")),
    output:
        **outputs("encode_text"),
    params:
        files=files(),
        flags=flags("encode_text"),
    priority: priority_of("encode_text")
    threads: threads_of("encode_text")
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        log_of("encode_text", "dataset"),
    benchmark:
        benchmark_of("encode_text", "dataset")
    conda:
        "../../envs/knowledge.yaml"
    shell:
        "actionlm encode-text {params.files} --out {output.embeddings} {params.flags} > {log} 2>&1"
