"""The papers as overlays (configs/paper/gap.yaml, llm_ar.yaml, sugar.yaml) on the dataset
overlays (configs/ntu60.yaml, ntu120.yaml, nw_ucla.yaml): a dry run of `all` on this machine
(`snakemake -n -p`) and through the SLURM profile (`--profile slurm -n -p`) plans each paper's
jobs, and every job of a stage carries the paper's values. The values are read from the printed
command of that stage's rule, parsed by the stage's own argparse parser, and from the job's
printed resources; nothing is run (a dry run needs only each dataset's root to exist: an empty
folder here)."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from actionlm.cli import build_parser
from workflow_copy import ROOT, copy_workflow, snakemake_command

DATASETS = ("ntu60", "ntu120", "nw_ucla")
PAPERS = ("gap", "llm_ar", "sugar")
MODES = ("local", "slurm")
# the closed-set protocols of each dataset overlay (configs/*.yaml), its zero-shot benchmarks
# (SynSE's and SMIE's) and their validation protocols; LLM-AR adds its zero-shot seeds
PROTOCOLS = {"ntu60": {"xsub", "xview"}, "ntu120": {"xsub", "xset"}, "nw_ucla": {"view3"}}
BENCHMARKS = {"ntu60": {"synse55_5", "synse48_12", *(f"smie55_5_split{i}" for i in (1, 2, 3))},
              "ntu120": {"synse110_10", "synse96_24",
                         *(f"smie110_10_split{i}" for i in (1, 2, 3))},
              "nw_ucla": set()}
VALIDATION = {d: {f"{p}_val" for p in b} for d, b in BENCHMARKS.items()}
FAMILIES = {"ntu60": {"synse55_5", "synse48_12", "smie55_5"},  # SMIE's 3 splits: one average
            "ntu120": {"synse110_10", "synse96_24", "smie110_10"}, "nw_ucla": set()}
LLM_AR_SEEDS = {f"unseen3_seed{s}" for s in range(5)}


@dataclass
class Job:
    """One job of a dry run: its rule, wildcards, resources and printed shell command."""

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    command: str | None = None

    def tokens(self) -> list[str]:
        """The command's words up to its log redirection, ``$(dirname X)`` resolved."""
        line = re.sub(r"\$\(dirname ([^)]+)\)", lambda m: os.path.dirname(m.group(1)),
                      self.command)
        words = shlex.split(line)
        return words[:words.index(">")] if ">" in words else words

    def parse(self) -> tuple[str, argparse.Namespace]:
        """(actionlm command, its options as the command's own parser reads them)."""
        words = self.tokens()
        start = next(i for i, w in enumerate(words) if w in ("actionlm", "actionlm.cli")) + 1
        stage, options = words[start], words[start + 1:]
        return stage, build_parser(stage).parse_args([stage, *options])

    @property
    def args(self) -> argparse.Namespace:
        return self.parse()[1]


def parse_dry_run(stdout: str) -> list[Job]:
    """The jobs of `snakemake -n -p` output (Snakemake 8/9 layout: a `rule NAME:` line, indented
    `key: value` lines, then `Shell command: ...`)."""
    jobs: list[Job] = []
    for line in stdout.splitlines():
        if m := re.fullmatch(r"(?:local)?rule (\w+):", line.strip()):
            jobs.append(Job(m.group(1)))
        elif not jobs:
            continue
        elif line.startswith("    wildcards: "):
            jobs[-1].wildcards = dict(kv.split("=", 1) for kv in
                                      line.removeprefix("    wildcards: ").split(", "))
        elif line.startswith("    resources: "):
            jobs[-1].resources = dict(kv.split("=", 1) for kv in
                                      line.removeprefix("    resources: ").split(", "))
        elif line.startswith("Shell command: ") and line != "Shell command: None":
            jobs[-1].command = line.removeprefix("Shell command: ")  # None: rule all
    return jobs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the workflow, its configs and the SLURM profile, with an empty folder that
    stands in for every dataset root."""
    work = copy_workflow(tmp_path_factory.mktemp("paper-configs"))
    shutil.copytree(ROOT / "slurm", work / "slurm")
    (work / "raw").mkdir()
    return work


@pytest.fixture(scope="module")
def dry_run(workdir):
    """(paper, dataset, mode) -> the planned jobs, one dry run each (cached)."""
    cache: dict[tuple[str, str, str], list[Job]] = {}

    def run(paper: str, dataset: str, mode: str) -> list[Job]:
        if (paper, dataset, mode) not in cache:
            roots = workdir / f"roots-{dataset}.yaml"
            roots.write_text(yaml.safe_dump({"datasets": {dataset: {"root": "raw"}}}))
            configs = [f"configs/{dataset}.yaml", f"configs/paper/{paper}.yaml", roots.name]
            if mode == "local":
                command, env = snakemake_command("-n", "-p", "all", configs=tuple(configs))
            else:  # as users run it: the profile, no --cores
                env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                       f"{os.environ['PATH']}"}
                command = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-p",
                           "all", "--configfile", *configs]
            result = subprocess.run(command, cwd=workdir, env=env, capture_output=True,
                                    text=True, timeout=1800)
            assert result.returncode == 0, (
                f"{paper} on {dataset} ({mode}): dry run failed\n{result.stderr[-3000:]}")
            cache[paper, dataset, mode] = parse_dry_run(result.stdout)
        return cache[paper, dataset, mode]

    return run


def of_rule(jobs: list[Job], rule: str) -> list[Job]:
    return [job for job in jobs if job.rule == rule]


def assert_options(job: Job, expected: dict) -> None:
    """Each expected option arrived in ``job``'s command with the expected value."""
    args = job.args
    for key, value in expected.items():
        parsed = getattr(args, key)
        if isinstance(value, float):
            assert parsed == pytest.approx(value), (job.command, key)
        elif isinstance(value, (list, tuple)):
            assert list(parsed) == pytest.approx(list(value)), (job.command, key)
        else:
            assert parsed == value, (job.command, key, parsed)


def assert_limits(jobs: list[Job], rule: str, mem_mb: int, runtime: int) -> None:
    for job in of_rule(jobs, rule):
        assert int(job.resources["mem_mb"]) == mem_mb, (rule, job.resources)
        assert int(job.resources["runtime"]) == runtime, (rule, job.resources)
        assert int(job.resources["gpu"]) == 1, (rule, job.resources)


def cases(papers=PAPERS):
    return [pytest.param(p, d, m, id=f"{p}-{d}-{m}") for p in papers for d in DATASETS
            for m in MODES]


# ---------------------------------------------------------------------------------- GAP

GAP_NTU = {
    "backbone": "ctrgcn", "base_channels": 64, "window": 64, "bodies": 2, "dropout": 0.0,
    "epochs": 110, "repeat": 1, "batch_size": 200, "lr": 0.1, "momentum": 0.9,
    "weight_decay": 5e-4, "warmup_epochs": 5, "schedule": "step", "milestones": [90, 100],
    "gamma": 0.1, "clip_grad": 0.0, "train_interval": [0.5, 1.0], "test_interval": [0.95],
    "rotate": 0.3,
}
# config/ucla/lst_joint.yaml of MartinXM/GAP (and GAP Sec. 4.2)
GAP_NW_UCLA = {
    **GAP_NTU, "window": 52, "bodies": 1, "batch_size": 64, "lr": 0.2, "weight_decay": 4e-4,
    "repeat": 5, "train_interval": [1.0], "test_interval": [1.0], "rotate": 1.0472,
}
GAP_ONLY = {"parts": 4, "gap_weight": 0.8, "global_text": "synonym", "text_tuning": "finetune",
            "text_optimizer": "sgd", "text_backend": "open_clip", "text_model": "ViT-B-32",
            "text_pretrained": "openai"}


@pytest.mark.parametrize("paper, dataset, mode", cases(["gap"]))
def test_gap_trains_ce_and_gap_on_the_papers_schedule(dry_run, paper, dataset, mode):
    jobs = dry_run(paper, dataset, mode)
    expected = GAP_NW_UCLA if dataset == "nw_ucla" else GAP_NTU
    trained = of_rule(jobs, "train_encoder")
    # GAP on its four streams (Sec. 4.4; the main run is joint), CE on joints
    runs = [""] + [f"streams/{m}/" for m in ("bone", "joint_motion", "bone_motion")]
    # and for zero-shot by text similarity on the benchmarks (and their validation protocols)
    assert {(j.wildcards["method"], j.wildcards["run"], j.wildcards["protocol"])
            for j in trained} == {("ce", "", p) for p in PROTOCOLS[dataset]} | {
        ("gap", run, p) for run in runs for p in PROTOCOLS[dataset]} | {
        ("gap", "", p) for p in BENCHMARKS[dataset] | VALIDATION[dataset]}
    for job in trained:
        modality = job.wildcards["run"].removeprefix("streams/").rstrip("/") or "joint"
        assert job.wildcards["dataset"] == dataset
        assert_options(job, {"method": job.wildcards["method"], "modality": modality, **expected})
        if job.wildcards["method"] == "gap":
            assert_options(job, GAP_ONLY)
        else:  # CE: the same schedule, none of GAP's keys (a GAP key never reruns CE)
            assert not {"--parts", "--gap-weight", "--text-tuning", "--text-optimizer",
                        "--global-text"} & set(job.tokens())
    evaluated = of_rule(jobs, "evaluate")
    assert len(evaluated) == 5 * len(PROTOCOLS[dataset]) + 2 * len(BENCHMARKS[dataset])
    for job in evaluated:
        assert_options(job, {"test_interval": expected["test_interval"][0]})
    similarity = {j.wildcards["protocol"]: j for j in evaluated
                  if j.wildcards["method"] == "gap_textsim"}
    assert set(similarity) == BENCHMARKS[dataset] | VALIDATION[dataset]
    for protocol in BENCHMARKS[dataset]:  # calibrated on its validation protocol's choice
        assert similarity[protocol].args.calibrate_on.parts[-3] == f"{protocol}_val"
    assert {(j.wildcards["family"], j.wildcards["method"])
            for j in of_rule(jobs, "zeroshot_summary")} == {
        (f, "gap_textsim") for f in FAMILIES[dataset]}
    # Tables 2-4's "4 ensemble" with GAP:ensemble.py's weights (configs/nw_ucla.yaml adds the
    # 2-stream fusion; its GAP + SUGAR fusion is left out: this run evaluates no SUGAR)
    fused = {(j.wildcards["ensemble"], j.wildcards["protocol"]): j
             for j in of_rule(jobs, "ensemble")}
    names = {"gap_4stream"} | ({"gap_2stream"} if dataset == "nw_ucla" else set())
    assert set(fused) == {(n, p) for n in names for p in PROTOCOLS[dataset]}
    for (name, _), job in fused.items():
        weights = [0.8, 0.8, 0.2, 0.2] if name == "gap_4stream" else [0.8, 0.8]
        assert_options(job, {"weights": weights, "normalize": "none"})
    for job in of_rule(jobs, "encode_text"):
        assert_options(job, {"backend": "open_clip", "model": "ViT-B-32",
                             "pretrained": "openai"})
    assert not {"train_vqvae", "lora", "prepare_llm", "describe_visual"} & {
        j.rule for j in jobs}
    assert_limits(jobs, "train_encoder", mem_mb=32000, runtime=1440)


# ---------------------------------------------------------------------------------- LLM-AR

LLM_AR_VQVAE = {
    "codes": 512, "codebook": "hyperbolic", "curvature": 1.0, "width": None, "window": 64,
    "lr": 2e-4, "weight_decay": 0.0, "batch_size": 256, "epochs": 0, "max_steps": 300000,
    "omega1": 0.02, "omega2": 0.2, "zipf": True, "context": True, "mmd": True,
    "zipf_alpha": 1.0, "zipf_beta": 2.7,
}
LLM_AR_LORA = {
    "method": "llm_ar", "lora_r": 64, "lora_alpha": 16.0, "lr": 3e-3, "batch_size": 256,
    "micro_batch_size": 4, "epochs": 0, "max_steps": 75000, "gradient_checkpointing": True,
    "lora_targets": "q_proj,v_proj", "lora_dropout": 0.05, "warmup_steps": 100,
    "train_action_embeddings": True,
}


@pytest.mark.parametrize("paper, dataset, mode", cases(["llm_ar"]))
def test_llm_ar_counts_iterations_on_llama_13b(dry_run, paper, dataset, mode):
    jobs = dry_run(paper, dataset, mode)
    protocols = PROTOCOLS[dataset] | BENCHMARKS[dataset] | (
        LLM_AR_SEEDS if dataset == "ntu120" else set())
    (llm,) = of_rule(jobs, "prepare_llm")
    assert_options(llm, {"source": "huggyllama/llama-13b", "dtype": "bfloat16"})
    assert llm.wildcards["llm"] == "llama-13b"
    vqvaes = of_rule(jobs, "train_vqvae")
    assert {j.wildcards["protocol"] for j in vqvaes} == protocols
    for job in vqvaes:
        assert_options(job, {**LLM_AR_VQVAE, "bodies": 1 if dataset == "nw_ucla" else 2})
    loras = of_rule(jobs, "lora")
    assert {(j.wildcards["method"], j.wildcards["protocol"]) for j in loras} == {
        ("llm_ar", p) for p in protocols}
    for job in loras:
        assert_options(job, LLM_AR_LORA)
        assert job.args.llm == Path("resources/llm/llama-13b")
    zero_shot = {(j.wildcards["family"], j.wildcards["method"])
                 for j in of_rule(jobs, "zeroshot_summary")}
    assert zero_shot == {(f, "llm_ar") for f in FAMILIES[dataset]} | (
        {("unseen3", "llm_ar")} if dataset == "ntu120" else set())  # no text probe
    gzsl = {j.wildcards["protocol"] for j in of_rule(jobs, "evaluate") if "--gzsl" in j.tokens()}
    assert gzsl == BENCHMARKS[dataset]  # LLM-AR's unseen3_seed{S} have no seen test samples
    assert not of_rule(jobs, "train_encoder")
    assert_limits(jobs, "lora", mem_mb=64000, runtime=4320)
    assert_limits(jobs, "train_vqvae", mem_mb=32000, runtime=1440)


# ---------------------------------------------------------------------------------- SUGAR

SUGAR_ENCODER = {
    "method": "sugar", "backbone": "ctrgcn", "base_channels": 64, "window": 64,
    "epochs": 200, "batch_size": 200, "lr": 0.01, "schedule": "step", "gamma": 0.1,
    "milestones": [108, 169], "momentum": 0.9, "weight_decay": 4e-4, "warmup_epochs": 5,
    "clip_grad": 0.0, "train_interval": [0.5, 1.0], "test_interval": [0.95], "rotate": 0.3,
    "text_tuning": "frozen", "sugar_kinds": ["motion", "visual"],
}
SUGAR_LORA = {
    "method": "sugar", "lora_r": 64, "lora_alpha": 16.0, "lr": 2e-5, "batch_size": 128,
    "epochs": 1, "max_steps": 0, "micro_batch_size": 4, "gradient_checkpointing": True,
    "bridge": "tqp", "queries": 128, "warmup_steps": 0,
}


@pytest.mark.parametrize("paper, dataset, mode", cases(["sugar"]))
def test_sugar_encoder_and_tqp_lora_on_llama_2_7b(dry_run, paper, dataset, mode):
    jobs = dry_run(paper, dataset, mode)
    (llm,) = of_rule(jobs, "prepare_llm")
    assert_options(llm, {"source": "meta-llama/Llama-2-7b-hf", "dtype": "bfloat16"})
    trained = of_rule(jobs, "train_encoder")
    assert {(j.wildcards["method"], j.wildcards["protocol"]) for j in trained} == {
        ("sugar", p) for p in PROTOCOLS[dataset] | BENCHMARKS[dataset] | VALIDATION[dataset]}
    for job in trained:
        # bodies stay the dataset's: one person in NW-UCLA (configs/nw_ucla.yaml), else two
        assert_options(job, {**SUGAR_ENCODER, "bodies": 1 if dataset == "nw_ucla" else 2})
    loras = of_rule(jobs, "lora")
    assert {(j.wildcards["method"], j.wildcards["protocol"]) for j in loras} == {
        ("sugar", p) for p in PROTOCOLS[dataset] | BENCHMARKS[dataset]}
    for job in loras:
        assert_options(job, SUGAR_LORA)
        assert job.args.descriptions == Path(f"results/knowledge/{dataset}/descriptions.parquet")
        assert job.args.features.parts[-2:] == ("sugar", "features.parquet")
    for job in of_rule(jobs, "extract_features"):
        assert_options(job, {"test_interval": 0.95})
    (visual,) = of_rule(jobs, "describe_visual")
    assert_options(visual, {"model": "gpt-4o"})
    # zero-shot: SUGAR's LLM, the text probe on its features, its text head
    assert {j.wildcards["method"] for j in of_rule(jobs, "evaluate")} == {"sugar"} | (
        {"sugar_text", "sugar_textsim"} if BENCHMARKS[dataset] else set())
    assert not {"train_vqvae", "tokenize"} & {j.rule for j in jobs}
    assert_limits(jobs, "train_encoder", mem_mb=32000, runtime=1440)
    assert_limits(jobs, "lora", mem_mb=32000, runtime=480)


# ---------------------------------------------------------------------------------- all papers


@pytest.mark.parametrize("paper, dataset, mode", cases())
def test_descriptions_come_from_an_endpoint(dry_run, paper, dataset, mode):
    """No paper overlay serves its LLM for descriptions (LLaMA base models have no chat
    template); GAP and SUGAR ask the same endpoint model and share results/knowledge/; LLM-AR
    reads no text and asks nothing."""
    describe = of_rule(dry_run(paper, dataset, mode), "describe")
    if paper == "llm_ar":
        assert describe == []
        return
    assert len(describe) == 1
    assert_options(describe[0], {"model": "gpt-3.5-turbo", "serve_model_dir": None,
                                 "allow_incomplete": False})


@pytest.mark.parametrize("paper, dataset, mode", cases())
def test_every_printed_command_parses(dry_run, paper, dataset, mode):
    """Every command the plan would run is a valid command line of its stage."""
    for job in dry_run(paper, dataset, mode):
        if job.command is not None:
            try:
                job.parse()
            except SystemExit:
                pytest.fail(f"rule {job.rule} would run an invalid command: {job.command}")
