# The papers' ablation tables as targets: `snakemake ablation_<table>` (one per entry of
# config `ablations.tables`) or `snakemake ablations` (all). A variant is a config overlay on
# `encoders`, `vqvae` and `lora`; its models are trained and evaluated by the main stages'
# commands under results/ablations/{table}/{dataset}/{protocol}/{variant}/, and a stage whose
# flags the overlay leaves unchanged reuses the main run's output (the tqp variant of the
# bridge table trains no new encoder). Summaries: results/report/ablations/{table}.md/.csv.


rule ablation_train_encoder:
    input:
        unpack(ablation_encoder_inputs),
    output:
        best=f"{ABLATION}/encoder/best.safetensors",
        last=f"{ABLATION}/encoder/last.safetensors",
        curves=f"{ABLATION}/encoder/curves.parquet",
        config=f"{ABLATION}/encoder/config.json",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        method=lambda wc: encoder_method(ablation_method(wc)),
        args=lambda wc: encoder_flags(encoder_method(ablation_method(wc)), ablation_config(wc)),
        texts=lambda wc, input: f"--texts {input.texts}" if "texts" in input.keys() else "",
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=16000, runtime=720),
    log:
        f"logs/{ABLATION_KEY}/train_encoder.log",
    benchmark:
        f"results/benchmarks/{ABLATION_KEY}/train_encoder.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-encoder --method {params.method} --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} {params.texts} --out $(dirname {output.best}) "
        "--device {resources.device} --threads {threads} {params.args} > {log} 2>&1"


rule ablation_extract_features:
    input:
        model=f"{ABLATION}/encoder/best.safetensors",
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
    output:
        f"{ABLATION}/features.parquet",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        interval=lambda wc: ablation_config(wc)["encoders"]["train"]["test_interval"][0],
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=60),
    log:
        f"logs/{ABLATION_KEY}/extract_features.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm extract-features --model {input.model} --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --out {output} --test-interval {params.interval} "
        "--device {resources.device} --threads {threads} > {log} 2>&1"


rule ablation_train_vqvae:
    input:
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
        llm=llm_dir(),
    output:
        model=f"{ABLATION}/vqvae/vqvae.safetensors",
        curves=f"{ABLATION}/vqvae/curves.parquet",
        config=f"{ABLATION}/vqvae/config.json",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        args=lambda wc: cli_flags(ablation_config(wc)["vqvae"]["train"]),
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=8000, runtime=240),
    log:
        f"logs/{ABLATION_KEY}/train_vqvae.log",
    benchmark:
        f"results/benchmarks/{ABLATION_KEY}/train_vqvae.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm train-vqvae --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --llm {input.llm} --out $(dirname {output.model}) "
        "--device {resources.device} --threads {threads} {params.args} > {log} 2>&1"


rule ablation_tokenize:
    input:
        model=f"{ABLATION}/vqvae/vqvae.safetensors",
        skeletons="results/data/{dataset}/skeletons.parquet",
        split="results/data/{dataset}/splits/{protocol}.parquet",
    output:
        sentences=f"{ABLATION}/tokens/action_sentences.parquet",
        usage=f"{ABLATION}/tokens/codebook_usage.parquet",
        summary=f"{ABLATION}/tokens/usage.json",
        plot=f"{ABLATION}/tokens/token_frequency.png",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        args=lambda wc: cli_flags(config["vqvae"]["tokenize"]),
    threads: JOB_THREADS
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        f"logs/{ABLATION_KEY}/tokenize.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm tokenize --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --vqvae {input.model} "
        "--out $(dirname {output.sentences}) --threads {threads} {params.args} > {log} 2>&1"


rule ablation_lora:
    input:
        unpack(ablation_lora_inputs),
    output:
        adapter=f"{ABLATION}/recognizer/adapter.safetensors",
        spec=f"{ABLATION}/recognizer/recognizer.json",
        curves=f"{ABLATION}/recognizer/curves.parquet",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        method=ablation_method,
        args=lambda wc: lora_flags(ablation_method(wc), ablation_config(wc)),
        inputs=lambda wc, input: " ".join(
            f"--{key} {input[key]}" for key in ("sentences", "vqvae", "features", "descriptions")
            if key in input.keys()
        ),
    threads: JOB_THREADS
    resources:
        micro_batch=config["lora"]["micro_batch_size"],
        launcher=distributed_launcher(),
        **gpu_resources(mem_mb=16000, runtime=720),
    log:
        f"logs/{ABLATION_KEY}/lora.log",
    benchmark:
        f"results/benchmarks/{ABLATION_KEY}/lora.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "{resources.launcher} lora --method {params.method} --llm {input.llm} --classes {input.classes} "
        "{params.inputs} --out $(dirname {output.spec}) --micro-batch-size {resources.micro_batch} "
        "--device {resources.device} --threads {threads} {params.args} > {log} 2>&1"


rule ablation_evaluate:
    input:
        unpack(ablation_eval_inputs),
    output:
        predictions=f"{ABLATION}/predictions.parquet",
        metrics=f"{ABLATION}/metrics.json",
        confusion=f"{ABLATION}/confusion.png",
    wildcard_constraints:
        **ABLATION_WILDCARDS,
    params:
        method=ablation_method,
        args=ablation_eval_args,
    threads: JOB_THREADS
    resources:
        **gpu_resources(mem_mb=16000, runtime=120),
    log:
        f"logs/{ABLATION_KEY}/evaluate.log",
    benchmark:
        f"results/benchmarks/{ABLATION_KEY}/evaluate.tsv"
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate --method {params.method} --data results/data/{wildcards.dataset} "
        "--protocol {wildcards.protocol} --out $(dirname {output.metrics}) {params.args} "
        "--device {resources.device} --threads {threads} > {log} 2>&1"


rule ablation_summary:
    input:
        lambda wc: ablation_metrics(wc.table),
    output:
        md=report("results/report/ablations/{table}.md", caption="../report/ablation.rst",
                  category="Ablations", labels={"table": "{table}", "format": "markdown"}),
        csv=report("results/report/ablations/{table}.csv", caption="../report/ablation.rst",
                   category="Ablations", labels={"table": "{table}", "format": "csv"}),
    params:
        published=ablation_published,
        paper=lambda wc: shlex.quote(config["ablations"]["tables"][wc.table].get("paper", "")),
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/report/ablations/{table}.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "actionlm report {input} --root results/ablations/{wildcards.table} --row-name variant "
        "--title 'Ablation {wildcards.table}' {params.published} --published-label {params.paper} "
        "--out-md {output.md} --out-csv {output.csv} > {log} 2>&1"


localrules:
    ablation_summary,


for _table in config["ablations"]["tables"]:

    rule:
        name:
            f"ablation_{_table}"
        input:
            f"results/report/ablations/{_table}.md",


rule ablations:
    input:
        [f"results/report/ablations/{t}.md" for t in config["ablations"]["tables"]],
