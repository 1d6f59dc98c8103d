#!/bin/sh
# actionlm from the repository root (snakemake's working directory), without its dependencies
python -m pip install --no-deps --no-build-isolation -e .
