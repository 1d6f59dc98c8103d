# actionlm: skeleton action recognition with language models (GAP, LLM-AR, SUGAR).
# Entry point: config, validation, rule files, `rule all`. Stage logic lives in src/actionlm.

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/llm.smk"
include: "workflow/rules/knowledge.smk"
include: "workflow/rules/vqvae.smk"
include: "workflow/rules/encoders.smk"
include: "workflow/rules/lora.smk"
include: "workflow/rules/llm_eval.smk"
include: "workflow/rules/cross_dataset.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/ablations.smk"


rule all:
    input:
        all_targets(),
    default_target: True
