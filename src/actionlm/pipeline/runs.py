"""Runs: the main config, or the main config with an overlay merged on top; and the settings a
job of a run on one dataset sees.

A run is named by its ``{run}`` wildcard (actionlm.pipeline.paths): ``""`` is the main run,
``streams/{modality}/`` trains and evaluates every method on another skeleton stream (bone,
motion: the encoders' ``network.modality`` and the VQ-VAE's ``train.modality``),
``ablations/{table}/{variant}/`` an ablation variant (its overlay on ``encoders``, ``vqvae``
and ``lora``, or a fusion of streams and methods: ``ensemble``), and
``cross/{source}/{source_protocol}/`` applies the models of the main run on
``source``/``source_protocol`` to another dataset (cross-dataset zero-shot). Which run an
output of a run belongs to is decided by actionlm.pipeline.stages: a stage whose flags an
overlay leaves unchanged resolves to the main run's output (or a stream's).

Settings are layered: the main config, then the dataset's ``per_dataset`` block (a paper's
settings for that dataset: GAP trains NW-UCLA with another schedule than NTU), then the run's
overlay (an ablation varies the setting it runs on). Within ``encoders``, a method's own block
(``encoders.gap.train.lr``) wins over the common keys (actionlm.pipeline.stages).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from actionlm.data.skeleton_layouts import MODALITIES

MAIN = ""
OVERLAY_SECTIONS = ("encoders", "vqvae", "lora")


@dataclass(frozen=True)
class Run:
    name: str  # the {run} wildcard
    overlay: dict = field(default_factory=dict)  # its encoders / vqvae / lora over the main's
    method: str | None = None  # an ablation variant: the recognizer it trains and evaluates
    source: tuple[str, str] | None = None  # cross: the (dataset, protocol) its models are from
    ensemble: dict | None = None  # an ablation variant that fuses runs: members, weights, ...


def deep_merge(base: dict, overlay: dict) -> dict:
    """``base`` with ``overlay`` merged in (nested dicts merged, anything else replaced)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def ablation_name(table: str, variant: str) -> str:
    return f"ablations/{table}/{variant}/"


def cross_name(source: str, protocol: str) -> str:
    return f"cross/{source}/{protocol}/"


def stream_name(modality: str) -> str:
    return f"streams/{modality}/"


def stream_overlay(modality: str) -> dict:
    """Every network of a run on ``modality``: the skeleton encoders and LLM-AR's VQ-VAE."""
    return {"encoders": {"network": {"modality": modality}},
            "vqvae": {"train": {"modality": modality}}}


def make_runs(config: dict) -> dict[str, Run]:
    """Every run the config defines, by name: the main run, one per skeleton stream, each
    ablation variant, and one cross run per source model that a cross_dataset entry applies."""
    runs = {MAIN: Run(MAIN)}
    runs.update({stream_name(m): Run(stream_name(m), stream_overlay(m)) for m in MODALITIES})
    for table, spec in config["ablations"]["tables"].items():
        for variant, overlay in spec["variants"].items():
            sections = {k: v for k, v in overlay.items() if k in OVERLAY_SECTIONS}
            name = ablation_name(table, variant)
            runs[name] = Run(name, sections, method=overlay.get("method", spec["method"]),
                             ensemble=overlay.get("ensemble"))
    for pair in config["cross_dataset"]:
        name = cross_name(pair["source"], pair["source_protocol"])
        runs[name] = Run(name, source=(pair["source"], pair["source_protocol"]))
    return runs


def run_settings(config: dict, run: Run, dataset: str) -> dict:
    """The config a job of ``run`` on ``dataset`` sees: main config < per_dataset < overlay."""
    base = deep_merge(config, config["per_dataset"].get(dataset, {}))
    return deep_merge(base, run.overlay)
