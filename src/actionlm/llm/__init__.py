"""LLM stage: the frozen LLM as an action recognizer (LLM-AR, SUGAR): LoRA fine-tuning, the
prompts and answers, candidate scoring and the TQP bridge. The prepared LLM folder itself is
read through actionlm.data.prepare_llm; evaluation lives in actionlm.eval.llm."""
