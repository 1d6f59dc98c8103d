# Evaluation of the LLM recognizers (LLM-AR, SUGAR) by constrained scoring of every class:
# closed set on the standard protocols -> results/eval/{dataset}/{protocol}/{method}/, and
# zero-shot on unseen{K}_seed{S} (held-out classes listed in the prompt) with the linear probe
# that cannot name them -> results/eval/{dataset}/zeroshot/{protocol}/{method}/, averaged over
# the seeds into results/eval/{dataset}/zeroshot/unseen{K}/{method}.json.

rule evaluate_llm:
    input:
        unpack(llm_eval_inputs),
    output:
        **eval_outputs("results/eval/{dataset}/{protocol}/{method}"),
    wildcard_constraints:
        method="llm_ar|sugar",
        protocol=r"(?!unseen)[^/]+",
    params:
        args=llm_eval_args,
    priority: CHAIN_PRIORITY
    threads: JOB_THREADS
    resources:
        batch=config["llm_eval"]["batch_size"],  # scores do not depend on it: no rerun
        **gpu_resources(mem_mb=16000, runtime=120),
    log:
        "logs/evaluate/{dataset}/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method {wildcards.method} "
        "--model results/models/{wildcards.dataset}/{wildcards.protocol}/{wildcards.method} "
        "--data results/data/{wildcards.dataset} --protocol {wildcards.protocol} "
        "--inputs {input.inputs} --out results/eval/{wildcards.dataset}/{wildcards.protocol}/{wildcards.method} "
        "--batch-size {resources.batch} --device {resources.device} --threads {threads} "
        "{params.args} > {log} 2>&1"


rule evaluate_llm_zeroshot:
    input:
        unpack(llm_eval_inputs),
    output:
        **eval_outputs("results/eval/{dataset}/zeroshot/{protocol}/{method}"),
    wildcard_constraints:
        method="llm_ar|sugar",
        protocol=r"unseen\d+_seed\d+",
    params:
        args=llm_eval_args,
    priority: CHAIN_PRIORITY
    threads: JOB_THREADS
    resources:
        batch=config["llm_eval"]["batch_size"],
        **gpu_resources(mem_mb=16000, runtime=120),
    log:
        "logs/evaluate/{dataset}/zeroshot/{protocol}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/zeroshot/{protocol}/{method}.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method {wildcards.method} --zero-shot "
        "--model results/models/{wildcards.dataset}/{wildcards.protocol}/{wildcards.method} "
        "--data results/data/{wildcards.dataset} --protocol {wildcards.protocol} "
        "--inputs {input.inputs} --out results/eval/{wildcards.dataset}/zeroshot/{wildcards.protocol}/{wildcards.method} "
        "--batch-size {resources.batch} --device {resources.device} --threads {threads} "
        "{params.args} > {log} 2>&1"


rule evaluate_linear_probe_zeroshot:
    input:
        unpack(llm_eval_inputs),
    output:
        **eval_outputs("results/eval/{dataset}/zeroshot/{protocol}/{source}_linear"),
    wildcard_constraints:
        source="llm_ar|sugar",
        protocol=r"unseen\d+_seed\d+",
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=30,
    log:
        "logs/evaluate/{dataset}/zeroshot/{protocol}/{source}_linear.log",
    benchmark:
        "results/benchmarks/evaluate/{dataset}/zeroshot/{protocol}/{source}_linear.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method linear_probe --zero-shot "
        "--data results/data/{wildcards.dataset} --protocol {wildcards.protocol} "
        "--inputs {input.inputs} --out results/eval/{wildcards.dataset}/zeroshot/{wildcards.protocol}/{wildcards.source}_linear "
        "--device cpu --threads {threads} > {log} 2>&1"


rule zeroshot_summary:
    input:
        unseen_seed_metrics,
    output:
        "results/eval/{dataset}/zeroshot/unseen{k}/{method}.json",
    wildcard_constraints:
        k=r"\d+",
        method="llm_ar|sugar|llm_ar_linear|sugar_linear",
    log:
        "logs/zeroshot_summary/{dataset}/unseen{k}/{method}.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm zeroshot-summary {input} --out {output} > {log} 2>&1"
