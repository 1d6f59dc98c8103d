# actionlm: skeleton action recognition with language models (GAP, LLM-AR, SUGAR).
# Entry point: config, validation, rule files, `rule all`. Stage logic lives in src/actionlm.

configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/llm.smk"
include: "workflow/rules/knowledge.smk"
include: "workflow/rules/vqvae.smk"


rule all:
    input:
        all_targets(),
    default_target: True
