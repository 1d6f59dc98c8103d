"""Threads and priorities of the jobs (actionlm.pipeline.schedule), on their own and as the
real Snakemake plans the embedded default: the LLM jobs get compute.llm_threads, the small
networks compute.threads, and the knowledge chain and SUGAR's encoder come before the rest."""

from __future__ import annotations

import re

import pytest

from actionlm.pipeline.schedule import job_priority, job_threads, runs_llm
from workflow_copy import copy_workflow, run_snakemake

COMPUTE = {"compute": {"threads": 1, "llm_threads": 2}}


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


def test_priorities_put_the_longest_chain_first_and_llm_jobs_last():
    order = [job_priority("describe", {}), job_priority("train_encoder", {"method": "sugar"}),
             job_priority("train_encoder", {"method": "gap"}),
             job_priority("train_encoder", {"method": "ce"}),
             job_priority("lora", {"method": "sugar"})]
    assert order == sorted(order, reverse=True) and len(set(order)) == len(order)
    assert job_priority("extract_features", {"method": "sugar"}) == order[1]
    assert job_priority("evaluate", {"method": "sugar"}) == order[-1]
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


def test_default_plan_gives_both_cores_to_llm_jobs_only(tmp_path):
    work = copy_workflow(tmp_path)
    result = run_snakemake(work, "-n", "all")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned(result.stdout)
    llm = {k: v for k, v in jobs.items() if k.split()[0] in ("describe", "lora", "prepare_llm")
           or re.match(r"evaluate .*method=(llm_ar|sugar)$", k)}
    assert len(llm) >= 5 and all(threads == 2 for threads, _ in llm.values()), llm
    small = {k: v for k, v in jobs.items()
             if k.split()[0] in ("train_encoder", "train_vqvae", "extract_features")}
    assert small and all(threads == 1 for threads, _ in small.values()), small
    describe = jobs["describe dataset=synthetic"][1]
    sugar = jobs["train_encoder run=, dataset=synthetic, protocol=xsub, method=sugar"][1]
    ce = jobs["train_encoder run=, dataset=synthetic, protocol=xsub, method=ce"][1]
    lora = jobs["lora run=, dataset=synthetic, protocol=xsub, method=sugar"][1]
    assert describe > sugar > ce > lora
