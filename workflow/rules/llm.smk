# LLM assets: the configured language model as a local Hugging Face folder (converted once from
# the bundled GGUF in the embedded default), shared by describe (served) and the LLM stages.


rule prepare_llm:
    output:
        **outputs("prepare_llm"),
    params:
        flags=flags("prepare_llm"),
    priority: priority_of("prepare_llm")
    threads: threads_of("prepare_llm")
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        log_of("prepare_llm", "llm"),
    benchmark:
        benchmark_of("prepare_llm", "llm")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm prepare-llm --out {output.llm} {params.flags} > {log} 2>&1"
