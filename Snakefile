# actionlm: skeleton action recognition with language models (GAP, LLM-AR, SUGAR).
# One rule per `actionlm` command; every variant of a stage (main run, ablation variant,
# cross-dataset source) is a run of the same rules (src/actionlm/pipeline: paths, runs, flags).

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/llm.smk"
include: "workflow/rules/knowledge.smk"
include: "workflow/rules/vqvae.smk"
include: "workflow/rules/encoders.smk"
include: "workflow/rules/lora.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        targets.all_targets(PIPE),
    default_target: True
