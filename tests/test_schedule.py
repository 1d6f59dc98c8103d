"""Threads and priorities of the jobs (actionlm.pipeline.schedule), on their own and as the
real Snakemake plans the embedded default: the LLM jobs get compute.llm_threads, LoRA
compute.lora_threads, the small networks compute.threads, and the knowledge chain, SUGAR's
encoder and the LoRA runs come before the rest."""

from __future__ import annotations

import re

import pytest

from actionlm.pipeline.schedule import job_priority, job_threads, runs_llm
from workflow_copy import copy_workflow, run_snakemake

COMPUTE = {"compute": {"threads": 1, "llm_threads": 2, "lora_threads": None}}


@pytest.mark.parametrize(("stage", "method", "llm"), [
    ("describe", None, True), ("lora", "sugar", True), ("evaluate", "llm_ar", True),
    ("evaluate", "sugar", True), ("evaluate", "sugar_text", False),
    ("evaluate", "gap_textsim", False), ("evaluate", "ce", False),
    ("train_encoder", "sugar", False), ("encode_text", None, False),
])
def test_llm_jobs_take_llm_threads(stage, method, llm):
    wc = {"method": method} if method else {}
    assert runs_llm(stage, wc) is llm
    assert job_threads(COMPUTE, stage, wc) == (2 if llm else 1)


def test_lora_threads_set_lora_apart_from_the_other_llm_jobs():
    compute = {"compute": {**COMPUTE["compute"], "lora_threads": 3}}
    assert job_threads(compute, "lora", {"method": "llm_ar"}) == 3
    assert job_threads(compute, "evaluate", {"method": "llm_ar"}) == 2
    assert job_threads(compute, "describe", {}) == 2
    assert job_threads(compute, "train_encoder", {"method": "gap"}) == 1


def test_priorities_put_the_longest_chains_first_and_evaluations_last():
    order = [job_priority("describe", {}), job_priority("train_encoder", {"method": "sugar"}),
             job_priority("train_encoder", {"method": "gap"}),
             job_priority("train_encoder", {"method": "ce"}),
             job_priority("evaluate", {"method": "sugar"})]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order)
    assert job_priority("extract_features", {"method": "sugar"}) == order[1]
    for stage in ("train_vqvae", "tokenize", "lora"):  # LLM-AR's chain to its LoRA
        assert job_priority(stage, {"method": "llm_ar"}) == order[1]
    assert job_priority("evaluate", {"method": "llm_ar"}) == order[-1]
    assert job_priority("evaluate", {"method": "gap_textsim"}) == order[3]


def planned(stdout: str) -> dict[str, tuple[int, int]]:
    """rule + wildcards -> (threads, priority) from a dry run's job blocks."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule:
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        threads = re.search(r"threads: (\d+)", block)
        priority = re.search(r"priority: (\d+)", block)
        key = rule.group(1) + (f" {wildcards.group(1)}" if wildcards else "")
        jobs[key] = (int(threads.group(1)) if threads else 1,
                     int(priority.group(1)) if priority else 0)
    return jobs


def test_default_plan_gives_both_cores_to_the_llm_jobs_but_lora(tmp_path):
    work = copy_workflow(tmp_path)
    result = run_snakemake(work, "-n", "all")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned(result.stdout)
    llm = {k: v for k, v in jobs.items() if k.split()[0] in ("describe", "prepare_llm")
           or re.match(r"evaluate .*method=(llm_ar|sugar)$", k)}
    assert len(llm) >= 4 and all(threads == 2 for threads, _ in llm.values()), llm
    one = {k: v for k, v in jobs.items()
           if k.split()[0] in ("train_encoder", "train_vqvae", "extract_features", "lora")}
    assert len([k for k in one if k.startswith("lora")]) == 2
    assert all(threads == 1 for threads, _ in one.values()), one
    describe = jobs["describe dataset=synthetic"][1]
    sugar = jobs["train_encoder run=, dataset=synthetic, protocol=xsub, method=sugar"][1]
    ce = jobs["train_encoder run=, dataset=synthetic, protocol=xsub, method=ce"][1]
    lora = jobs["lora run=, dataset=synthetic, protocol=xsub, method=llm_ar"][1]
    evaluation = jobs["evaluate run=, dataset=synthetic, protocol=xsub, method=sugar"][1]
    assert describe > sugar == lora > ce > evaluation
