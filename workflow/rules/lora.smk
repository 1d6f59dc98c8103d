# LoRA on the frozen LLM (LLM-AR Sec. 3.2 on action sentences; SUGAR Step 3 on encoder features
# through Temporal Query Projection): results/models/{dataset}/{protocol}/{method}/.


rule lora:
    input:
        unpack(lora_inputs),
    output:
        adapter="results/models/{dataset}/{protocol}/{method}/adapter.safetensors",
        spec="results/models/{dataset}/{protocol}/{method}/recognizer.json",
        curves="results/models/{dataset}/{protocol}/{method}/curves.parquet",
    wildcard_constraints:
        method="llm_ar|sugar",
    params:
        args=lora_args,
        inputs=lambda wc, input: " ".join(
            f"--{key} {input[key]}" for key in ("sentences", "vqvae", "features", "descriptions")
            if key in input.keys()
        ),
    priority: CHAIN_PRIORITY
    threads: JOB_THREADS
    resources:
        # micro_batch_size only trades memory for passes (same result): a resource, no rerun
        micro_batch=config["lora"]["micro_batch_size"],
        launcher=distributed_launcher(),
        **gpu_resources(mem_mb=16000, runtime=720),
    log:
        "logs/lora/{dataset}/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/lora/{dataset}/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "{resources.launcher} lora --method {wildcards.method} --llm {input.llm} --classes {input.classes} "
        "{params.inputs} --out results/models/{wildcards.dataset}/{wildcards.protocol}/{wildcards.method} "
        "--micro-batch-size {resources.micro_batch} --device {resources.device} "
        "--threads {threads} {params.args} > {log} 2>&1"
