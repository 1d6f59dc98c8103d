"""The workflow's own logic, testable without Snakemake: artifact paths (``paths``), runs and
overlays (``runs``), each stage's inputs, flags and owning run (``stages``), the targets of
``all``, the report and the ablation tables (``targets``) and the config checks (``checks``).

The Snakefile's rules are thin adapters: each declares a stage's outputs from
``paths.OUTPUTS``, its inputs and params from ``Pipeline.inputs``/``Pipeline.flags``, and runs
one ``actionlm`` command. This package imports no stage code (no torch), so Snakemake starts
fast and the package's tests run in milliseconds.
"""

from actionlm.pipeline.stages import Pipeline

__all__ = ["Pipeline"]
