"""Test helpers for running the real Snakemake workflow in a scratch copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_workflow(work: Path) -> Path:
    """Snakefile, config.yaml, workflow/, configs/ and envs/ copied into ``work``."""
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, work / name)
    for folder in ("workflow", "configs", "envs"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


def run_snakemake(work: Path, *args: str, configs: tuple[str, ...] = (),
                  timeout: int = 600) -> subprocess.CompletedProcess:
    """Snakemake in ``work`` on 2 cores (with ``--configfile configs`` when given), with this
    interpreter's bin folder on PATH so that rules find the ``actionlm`` command."""
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
