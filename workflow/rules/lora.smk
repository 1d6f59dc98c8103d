# LoRA on the frozen LLM (LLM-AR Sec. 3.2 on action sentences; SUGAR Step 3 on encoder features
# through Temporal Query Projection).


rule lora:
    input:
        unpack(inputs("lora")),
    output:
        **outputs("lora"),
    wildcard_constraints:
        method=paths.METHODS["lora"],
    params:
        files=files(),
        flags=flags("lora"),
    priority: priority_of("lora")
    threads: threads_of("lora")
    resources:
        micro_batch=config["lora"]["micro_batch_size"],  # memory only: never a rerun
        launcher=PIPE.launcher(),
        **PIPE.network_resources("lora"),
    log:
        log_of("lora", "dataset", "protocol", "method"),
    benchmark:
        benchmark_of("lora", "dataset", "protocol", "method")
    conda:
        "../../envs/models.yaml"
    shell:
        "{resources.launcher} lora {params.files} --out $(dirname {output.spec}) "
        "--micro-batch-size {resources.micro_batch} --device {resources.device} "
        "--precision {resources.precision} --threads {threads} {params.flags} > {log} 2>&1"
