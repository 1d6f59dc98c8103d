# LLM assets: the configured language model as a local Hugging Face folder (converted once from
# the bundled GGUF in the embedded default), shared by describe (served) and the LLM stages.


rule prepare_llm:
    output:
        directory("resources/llm/{llm}"),
    params:
        source=config["llm"]["source"],
        dtype=config["llm"]["dtype"],
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "logs/prepare_llm/{llm}.log",
    benchmark:
        "results/benchmarks/prepare_llm/{llm}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm prepare-llm --source {params.source:q} --dtype {params.dtype} "
        "--out {output} > {log} 2>&1"
