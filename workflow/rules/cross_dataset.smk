# Cross-dataset zero-shot (SUGAR "Zero-shot", LLM-AR Sec. 4.4): the source protocol's VQ-VAE
# and SUGAR encoder turn the target dataset's skeletons into inputs under
# results/cross/{source}/{source_protocol}/{target}/{target_protocol}/, and the source's
# recognizer ranks the classes of the target protocol's test split (listed in the instruction)
# -> results/eval/cross/.../{method}/. Both commands refuse a target whose skeleton layout
# differs from the one the source model was trained on (NTU 25 joints vs NW-UCLA 20).

# evaluate_llm's {dataset} could swallow cross/{source}/{source_protocol}/{target}
ruleorder: evaluate_llm_cross > evaluate_llm


rule tokenize_cross:
    input:
        model="results/models/{source}/{source_protocol}/vqvae/vqvae.safetensors",
        skeletons="results/data/{target}/skeletons.parquet",
        split="results/data/{target}/splits/{target_protocol}.parquet",
    output:
        sentences=f"results/cross/{CROSS}/action_sentences.parquet",
        usage=f"results/cross/{CROSS}/codebook_usage.parquet",
        summary=f"results/cross/{CROSS}/usage.json",
        plot=f"results/cross/{CROSS}/token_frequency.png",
    wildcard_constraints:
        **CROSS_WILDCARDS,
    params:
        args=lambda wc: cli_flags(config["vqvae"]["tokenize"]),
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        f"logs/cross/tokenize/{CROSS}.log",
    benchmark:
        f"results/benchmarks/cross/tokenize/{CROSS}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm tokenize --data results/data/{wildcards.target} "
        "--protocol {wildcards.target_protocol} --vqvae {input.model} "
        "--out $(dirname {output.sentences}) --threads {threads} "
        "{params.args} > {log} 2>&1"


rule extract_features_cross:
    input:
        model="results/models/{source}/{source_protocol}/encoders/sugar/best.safetensors",
        skeletons="results/data/{target}/skeletons.parquet",
        split="results/data/{target}/splits/{target_protocol}.parquet",
    output:
        f"results/cross/{CROSS}/features.parquet",
    wildcard_constraints:
        **CROSS_WILDCARDS,
    params:
        interval=config["encoders"]["train"]["test_interval"][0],
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=60),
    log:
        f"logs/cross/extract_features/{CROSS}.log",
    benchmark:
        f"results/benchmarks/cross/extract_features/{CROSS}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm extract-features --model {input.model} --data results/data/{wildcards.target} "
        "--protocol {wildcards.target_protocol} --out {output} --test-interval {params.interval} "
        "--device {resources.device} --threads {threads} > {log} 2>&1"


rule evaluate_llm_cross:
    input:
        unpack(cross_eval_inputs),
    output:
        **eval_outputs(f"results/eval/cross/{CROSS}/{{method}}",
                       labels={"source": "{source} / {source_protocol}",
                               "target": "{target} / {target_protocol}", "method": "{method}"}),
    wildcard_constraints:
        method="llm_ar|sugar",
        **CROSS_WILDCARDS,
    params:
        args=llm_eval_args,
    threads: JOB_THREADS
    resources:
        batch=config["llm_eval"]["batch_size"],  # scores do not depend on it: no rerun
        **gpu_resources(mem_mb=16000, runtime=120),
    log:
        f"logs/evaluate/cross/{CROSS}/{{method}}.log",
    benchmark:
        f"results/benchmarks/evaluate/cross/{CROSS}/{{method}}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method {wildcards.method} --zero-shot "
        "--model results/models/{wildcards.source}/{wildcards.source_protocol}/{wildcards.method} "
        "--data results/data/{wildcards.target} --protocol {wildcards.target_protocol} "
        "--inputs {input.inputs} --out $(dirname {output.metrics}) "
        "--batch-size {resources.batch} --device {resources.device} --threads {threads} "
        "{params.args} > {log} 2>&1"
