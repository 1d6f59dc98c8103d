"""Test helpers for running the real Snakemake workflow in a scratch copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from actionlm.data.classes import NW_UCLA_CLASSES
from actionlm.pipeline.runs import deep_merge

ROOT = Path(__file__).resolve().parents[1]


def copy_workflow(work: Path) -> Path:
    """Snakefile, config.yaml, workflow/, configs/ and envs/ copied into ``work``."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, work / name)
    for folder in ("workflow", "configs", "envs"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


def run_snakemake(work: Path, *args: str, configs: tuple[str, ...] = (),
                  timeout: int = 3600) -> subprocess.CompletedProcess:
    """Snakemake in ``work`` on 2 cores (with ``--configfile configs`` when given), with this
    interpreter's bin folder on PATH so that rules find the ``actionlm`` command. ``timeout``
    bounds a hang, not a speed: machines of this kind differ ~3x, and a shared one more."""
    command, env = snakemake_command(*args, configs=configs)
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                          timeout=timeout)


def snakemake_command(*args: str, configs: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    """run_snakemake's command line and environment, for a caller that starts it itself."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", *args, "--cores", "2"]
    if configs:
        command += ["--configfile", *configs]
    return command, env


def tiny_nw_ucla(work: Path, shared: Path, llm: Path, **changes: dict) -> Path:
    """A copy of the workflow in ``work`` whose overlay.yaml runs the real NW-UCLA views (view2)
    on tiny models: descriptions imported from GAP-format files in gap/ (no model call), the
    LLM ``llm`` (a prepared folder), one short VQ-VAE epoch, 4-channel encoders for one epoch,
    one LoRA step of LLM-AR; ``changes`` are merged on top."""
    copy_workflow(work)
    write_gap_files(work / "gap", list(NW_UCLA_CLASSES.values()))
    overlay = {
        "run_datasets": ["nw_ucla"],
        "datasets": {"nw_ucla": {"format": "nw-ucla",
                                 "root": str(shared / "datasets/nw-ucla/all_sqe"),
                                 "protocols": ["view2"]}},
        "llm": {"name": "smollm2", "source": str(llm)},
        "knowledge": {"import_gap": "gap"},
        "vqvae": {"train": {"epochs": 1, "channels": 16, "depth": 1, "codes": 64,
                            "window": 32, "batch_size": 128}},
        "encoders": {"protocols": ["view2"],
                     "network": {"base_channels": 4, "window": 16, "bodies": 1},
                     "train": {"epochs": 1, "batch_size": 64, "warmup_epochs": 0,
                               "sugar_kinds": ["part", "paragraph"]}},  # GAP files: no motion
        "lora": {"micro_batch_size": 2, "common": {"max_steps": 1, "batch_size": 2,
                                                   "lora_r": 2, "warmup_steps": 0}},
        "llm_eval": {"methods": ["llm_ar"], "batch_size": 64},
        "zero_shot": {"recognizers": None, "text_similarity": ["gap", "sugar"]},
    }
    (work / "overlay.yaml").write_text(yaml.safe_dump(deep_merge(overlay, changes)))
    return work


def write_gap_files(folder: Path, names: list[str]) -> Path:
    """Parts, synonyms and paragraphs of ``names`` in GAP's released text formats, line k
    describing class k (so ``import_gap_match`` may be name or native-id)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "parts.txt").write_text("".join(
        f"{n};head faces forward;hand moves for {n};arm follows;hip turns;leg steps;foot plants\n"
        for n in names))
    (folder / "synonyms.txt").write_text("".join(  # short phrases, or they read as prose
        f"{n},action {k},move {k},motion {k}\n" for k, n in enumerate(names, 1)))
    (folder / "paragraphs.txt").write_text("".join(
        f"{n},A person does {n}. The body moves, the arms and legs follow, and it ends.\n"
        for n in names))
    return folder
