"""The workflow on a real SLURM cluster: `snakemake --profile slurm` (the profile users run)
submits every job through sbatch to slurmctld/slurmd on this machine (tools/slurm-cluster.sh,
with slurmdbd accounting and stand-in GPUs), and `sacct` shows where each job ran. A tiny
synthetic dataset goes through prepare and split (CPU jobs) and train_vqvae (a GPU job) in the
same `--keep-going` run as a dataset whose folder is empty, whose prepare command fails: that
must fail the run (and only that branch).

Needs root and the Debian SLURM packages (installed with apt-get when missing); skipped
otherwise. 2-3.5 minutes on 2 cores; the daemons it starts are stopped at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tools/slurm-cluster.sh"
GPU_TYPE = "tgpu"  # the GRES type the test cluster advertises (ACTIONLM_SLURM_GPU_TYPE)
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def cluster(command: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACTIONLM_SLURM_GPU_TYPE": GPU_TYPE}
    return subprocess.run(["bash", str(CLUSTER), command], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm():
    """A running cluster; stopped afterwards unless it was already running before."""
    if os.geteuid() != 0:
        pytest.skip("starting SLURM daemons needs root")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    installed = cluster("install", timeout=900)
    if installed.returncode != 0:
        pytest.skip(f"could not install the SLURM packages: {installed.stderr.strip()[-500:]}")
    was_running = "slurmctld running" in cluster("status").stdout
    up = cluster("up")
    if up.returncode == 3:
        pytest.skip(up.stderr.strip())
    try:
        assert up.returncode == 0, up.stderr
        yield
    finally:
        if not was_running:
            cluster("stop")


MODEL = "results/models/synthetic/xview/vqvae/vqvae.safetensors"
BROKEN = "results/data/broken/skeletons.parquet"


def run_snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    """`snakemake --profile slurm ...` as a user runs it, with a quick first status check."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm",
         "--slurm-init-seconds-before-status-checks", "2",
         "--configfile", "config.yaml", "overlay.yaml", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=3600,
    )


def accounting(work: Path) -> dict[str, dict[str, str]]:
    """sacct's record of the jobs run from ``work``, by rule and wildcards (the job comment
    the executor plugin sets, e.g. ``rule_split_wildcards_synthetic_xview``; the main run's
    empty ``{run}`` wildcard leaves a doubled underscore, collapsed here)."""
    fields = ["Comment", "Partition", "State", "AllocTRES", "WorkDir"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "-S", "now-3600", "-o", ",".join(fields)],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines()]
    return {re.sub("_+", "_", row["Comment"]): row for row in rows
            if os.path.realpath(row["WorkDir"]) == os.path.realpath(work)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, slurm, smollm2_dir) -> Path:
    """A copy of the workflow and its slurm profile, with a tiny synthetic dataset."""
    work = tmp_path_factory.mktemp("slurm-workflow")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, work / name)
    for folder in ("workflow", "configs", "envs", "slurm"):
        shutil.copytree(ROOT / folder, work / folder)
    (work / "resources/llm").mkdir(parents=True)
    (work / "resources/llm/smollm2").symlink_to(smollm2_dir)  # prepare_llm's output, present
    (work / "empty").mkdir()
    overlay = {
        "run_datasets": ["synthetic"],
        "datasets": {
            "synthetic": {"format": "synthetic", "protocols": ["xview"],
                          "synthetic": {"subjects": 2, "replications": 1, "setups": 1}},
            "broken": {"format": "ntu-raw", "root": "empty", "classes": "ntu60",
                       "protocols": ["xview"]},
        },
        "llm": {"name": "smollm2", "source": str(smollm2_dir)},
        "encoders": {"protocols": ["xview"]},
        "compute": {"gpus": 1, "gpu_model": GPU_TYPE, "gpu_partition": "gpu", "threads": 3},
        "vqvae": {"train": {"epochs": 1, "channels": 16, "depth": 1, "codes": 64,
                            "window": 32, "batch_size": 128}},
    }
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    return work


@pytest.fixture(scope="module")
def run(workdir) -> tuple[subprocess.CompletedProcess, dict[str, dict[str, str]]]:
    """One run for both datasets' targets, and sacct's record of its jobs."""
    result = run_snakemake(workdir, "--keep-going", "--", MODEL, BROKEN)
    return result, accounting(workdir)


def test_jobs_run_through_sbatch_and_gpu_jobs_get_gpus(workdir, run):
    result, jobs = run
    assert (workdir / MODEL).stat().st_size > 0, result.stderr[-3000:]
    assert result.stderr.count("has been submitted with SLURM jobid") == 4
    prepare = jobs["rule_prepare_wildcards_synthetic"]
    split = jobs["rule_split_wildcards_synthetic_xview"]
    train = jobs["rule_train_vqvae_wildcards_synthetic_xview"]
    assert {job["State"] for job in (prepare, split, train)} == {"COMPLETED"}
    # CPU jobs: the default partition, the rule's threads and memory, no GPU.
    for job in (prepare, split):
        assert job["Partition"] == "cpu" and "gres/gpu" not in job["AllocTRES"]
    assert "cpu=2," in prepare["AllocTRES"] and "cpu=1," in split["AllocTRES"]
    # The GPU job: compute.gpu_partition, one GPU of compute.gpu_model (sbatch --gpus=tgpu:1),
    # compute.threads CPUs.
    assert train["Partition"] == "gpu" and "cpu=3," in train["AllocTRES"]
    assert f"gres/gpu:{GPU_TYPE}=1" in train["AllocTRES"].split(",")


def test_a_failing_job_fails_the_run(workdir, run):
    result, jobs = run
    assert result.returncode != 0
    assert "Error in rule prepare" in result.stderr
    failed = {name for name, job in jobs.items() if job["State"] == "FAILED"}
    assert failed == {"rule_prepare_wildcards_broken"}
    assert not (workdir / BROKEN).exists()
    # the command's own one-line error, in the rule's log
    assert "no NTU .skeleton files" in (workdir / "logs/prepare/broken.log").read_text()
