# Evaluation on a protocol's test split: an encoder (ce, gap), an LLM recognizer by constrained
# scoring of every candidate class (llm_ar, sugar; zero-shot on the zero-shot protocols and in
# cross runs, with the held-out classes listed in the prompt), the text probe on a recognizer's
# inputs ({llm_ar,sugar}_text), or zero-shot by an encoder's language head ({gap,sugar}_textsim).
# Zero-shot results are averaged per protocol family (seeds, SMIE's splits). An ensemble fuses
# the class scores of evaluated streams and methods (ensembles, ablation fusion variants).


rule evaluate:
    input:
        unpack(inputs("evaluate")),
    output:
        **outputs("evaluate", confusion={
            "caption": "../report/confusion.rst", "category": "Confusion matrices",
            "labels": {"run": "{run}", "dataset": "{dataset}", "protocol": "{protocol}",
                       "method": "{method}"}}),
    wildcard_constraints:
        method=paths.METHODS["evaluate"],
    params:
        files=files("adapter"),  # read beside --model's recognizer.json
        flags=flags("evaluate"),
    priority: priority_of("evaluate")
    threads: threads_of("evaluate")
    resources:
        batch=adapted(Pipeline.inference_batch),
        **PIPE.network_resources("evaluate"),
    log:
        log_of("evaluate", "dataset", "protocol", "method"),
    benchmark:
        benchmark_of("evaluate", "dataset", "protocol", "method")
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm evaluate {params.files} --out $(dirname {output.metrics}) "
        "--batch-size {resources.batch} --device {resources.device} "
        "--precision {resources.precision} --threads {threads} "
        "{params.flags} > {log} 2>&1"


rule zeroshot_summary:
    input:
        adapted(targets.seed_metrics),
    output:
        **outputs("zeroshot_summary"),
    wildcard_constraints:
        method=paths.METHODS["zeroshot_summary"],
    log:
        log_of("zeroshot_summary", "dataset", "family", "method"),
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm zeroshot-summary {input} --out {output.summary} > {log} 2>&1"


rule ensemble:
    input:
        unpack(inputs("ensemble")),
    output:
        **outputs("ensemble"),
    wildcard_constraints:
        ensemble=paths.ensemble_names(list(config["ensembles"])),
    params:
        files=files(),
        flags=flags("ensemble"),
    priority: priority_of("ensemble")
    log:
        log_of("ensemble", "dataset", "protocol", "ensemble"),
    conda:
        "../../envs/models.yaml"
    shell:
        "actionlm ensemble {params.files} --out $(dirname {output.metrics}) "
        "{params.flags} > {log} 2>&1"
