"""benchmarks/bench_workflow.py: the Snakemake log read into jobs and dependencies, the critical
path, idle cores and the jobs that ran alone, on a small invented log (no Snakemake run).

The run, in seconds from its start, on 2 cores:

    0-10   prepare (1 thread)          -> data/a.parquet
    0-5    quick   (1 thread)          -> out/quick.parquet
    5-35   fetch   (1 thread)          -> models/llm (a directory() output)
    10-15  plot    needs prepare, quick
    36-96  train   (2 threads) needs prepare and models/llm/weights.bin (under fetch's folder)
    96     all     needs train, plot

Started first were prepare and quick; the longest chain is fetch (29 s) -> train (60 s) -> all.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks/bench_workflow.py"

LOG = """\
Building DAG of jobs...
Using shell: /usr/bin/bash
Provided cores: 2
Rules claiming more threads will be scaled down.
Job stats:
job        count
-------  -------
prepare        1
quick          1
fetch          1
plot           1
train          1
all            1
total          6

Select jobs to execute...
Execute 2 jobs...
[Sun Dec  6 04:25:00 2026]
localrule prepare:
    output: data/a.parquet
    log: logs/prepare/demo.log
    jobid: 1
    benchmark: results/benchmarks/prepare/demo.tsv
    reason: Missing output files: data/a.parquet
    wildcards: dataset=demo
    resources: tmpdir=/tmp, runtime=30, mem_mb=4000, mem=4 GB, mem_mib=3815
[Sun Dec  6 04:25:00 2026]
localrule quick:
    output: out/quick.parquet
    log: logs/quick/demo.log
    jobid: 2
    reason: Missing output files: out/quick.parquet
    wildcards: dataset=demo
    resources: tmpdir=/tmp, runtime=10, mem_mb=2000, mem=2 GB, mem_mib=1908
Select jobs to execute...
[Sun Dec  6 04:25:05 2026]
Finished jobid: 2 (Rule: quick)
1 of 6 steps (17%) done
Execute 1 jobs...
[Sun Dec  6 04:25:05 2026]
rule fetch:
    output: models/llm
    log: logs/fetch/tiny.log
    jobid: 3
    benchmark: results/benchmarks/fetch/tiny.tsv
    reason: Missing output files: models/llm
    wildcards: llm=tiny
    resources: tmpdir=/tmp, runtime=60, mem_mb=8000, mem=8 GB, mem_mib=7630
Select jobs to execute...
[Sun Dec  6 04:25:10 2026]
Finished jobid: 1 (Rule: prepare)
2 of 6 steps (33%) done
Execute 1 jobs...
[Sun Dec  6 04:25:10 2026]
localrule plot:
    input: data/a.parquet, out/quick.parquet
    output: out/plot.png
    log: logs/plot/demo.log
    jobid: 4
    benchmark: results/benchmarks/plot/demo.tsv
    reason: Missing output files: out/plot.png; Input files updated by another job: data/a.parquet, out/quick.parquet
    wildcards: run=, dataset=demo
    priority: 1
    resources: tmpdir=/tmp, runtime=10, mem_mb=4000, mem=4 GB, mem_mib=3815
Select jobs to execute...
[Sun Dec  6 04:25:15 2026]
Finished jobid: 4 (Rule: plot)
3 of 6 steps (50%) done
Select jobs to execute...
[Sun Dec  6 04:25:35 2026]
Finished jobid: 3 (Rule: fetch)
4 of 6 steps (67%) done
Select jobs to execute...
Execute 1 jobs...
[Sun Dec  6 04:25:36 2026]
rule train:
    input: data/a.parquet, models/llm/weights.bin, configs/train.yaml
    output: models/demo/xsub/best.pt, models/demo/xsub/curves.parquet
    log: logs/train/demo/xsub.log
    jobid: 5
    benchmark: results/benchmarks/train/demo/xsub.tsv
    reason: Missing output files: models/demo/xsub/best.pt; Input files updated by another job: data/a.parquet, models/llm
    wildcards: run=, dataset=demo, protocol=xsub
    threads: 2
    resources: tmpdir=/tmp, runtime=720, device=auto, gpu=1, mem_mb=16000, mem=16 GB, mem_mib=15259
Select jobs to execute...
[Sun Dec  6 04:26:36 2026]
Finished jobid: 5 (Rule: train)
5 of 6 steps (83%) done
Select jobs to execute...
Execute 1 jobs...
[Sun Dec  6 04:26:36 2026]
localrule all:
    input: models/demo/xsub/best.pt, out/plot.png
    jobid: 0
    reason: Input files updated by another job: models/demo/xsub/best.pt, out/plot.png
    resources: tmpdir=/tmp
[Sun Dec  6 04:26:36 2026]
Finished jobid: 0 (Rule: all)
6 of 6 steps (100%) done
Complete log(s): /tmp/demo/.snakemake/log/2026-12-06T042500.000000.snakemake.log
"""

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
TABLES = {  # benchmark path -> (wall s, CPU s); plot's table is missing
    "prepare/demo.tsv": (10.0, 9.0),
    "fetch/tiny.tsv": (29.0, 3.0),
    "train/demo/xsub.tsv": (60.0, 110.0),
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_workflow", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def run(tmp_path) -> Path:
    """A run's folder: the log under .snakemake/log and the benchmark tables."""
    log = tmp_path / ".snakemake/log/2026-12-06T042500.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text(LOG)
    for name, (wall, cpu) in TABLES.items():
        table = tmp_path / "results/benchmarks" / name
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text(HEADER + f"{wall}\t0:00:{wall:02.0f}\t100.0\t200.0\t90.0\t95.0\t0.1\t1.0"
                         f"\t90.0\t{cpu}\n")
    return tmp_path


@pytest.fixture
def jobs(bench, run):
    jobs, unfinished = bench.parse_log(LOG)
    assert unfinished == 0
    bench.attach_benchmarks(jobs, bench.read_benchmarks(run / "results/benchmarks"))
    return {job.jobid: job for job in jobs}


def seconds(jobs: dict, job) -> tuple[float, float]:
    """A job's start and end in seconds from the run's start."""
    start = min(other.start for other in jobs.values())
    return job.start - start, job.end - start


def test_parse_log_reads_every_job_block(jobs):
    assert sorted(jobs) == [0, 1, 2, 3, 4, 5]
    train = jobs[5]
    assert (train.rule, train.label, train.threads) == ("train", "train demo/xsub", 2)
    assert train.inputs == ["data/a.parquet", "models/llm/weights.bin", "configs/train.yaml"]
    assert train.outputs == ["models/demo/xsub/best.pt", "models/demo/xsub/curves.parquet"]
    assert train.benchmark == "results/benchmarks/train/demo/xsub.tsv"
    assert seconds(jobs, train) == (36.0, 96.0)
    assert seconds(jobs, jobs[3]) == (5.0, 35.0)
    assert (jobs[1].threads, jobs[2].benchmark, jobs[0].label, jobs[0].outputs) == (
        1, None, "all", [])


def test_durations_prefer_the_benchmark_tables(jobs):
    assert (jobs[3].duration, jobs[3].cpu_seconds) == (29.0, 3.0)  # log: 30 s
    assert (jobs[5].duration, jobs[5].cpu_seconds) == (60.0, 110.0)
    assert (jobs[4].duration, jobs[4].cpu_seconds) == (5.0, 5.0)  # its table is missing
    assert (jobs[2].duration, jobs[2].cpu_seconds) == (5.0, 5.0)  # no benchmark: directive


def test_dependencies_include_inputs_under_a_directory_output(bench, jobs):
    assert bench.dependencies(list(jobs.values())) == {
        0: {4, 5}, 1: set(), 2: set(), 3: set(), 4: {1, 2}, 5: {1, 3}}


def test_critical_path_is_the_longest_chain_not_the_first_started(bench, jobs):
    listed = list(jobs.values())
    path = bench.critical_path(listed, bench.dependencies(listed))
    assert [job.jobid for job in path] == [3, 5, 0]  # 29 + 60 + 0 s; prepare -> train: 70 s
    run_start = min(job.start for job in listed)
    assert bench.waits(path, run_start) == [5.0, 1.0, 0.0]


def test_idle_cores_and_jobs_alone(bench, jobs):
    listed = list(jobs.values())
    # 15-35 s fetch alone on 1 thread; 35-36 s nothing runs; 36-96 s train alone on 2 threads
    assert bench.idle_core_seconds(listed, 2) == {1: 20.0, 2: 1.0}
    assert bench.alone_seconds(listed) == {5: 60.0, 3: 20.0}
    assert bench.idle_core_seconds(listed, 4) == {2: 75.0, 3: 20.0, 4: 1.0}


def test_started_jobs_without_finished_line_are_left_out(bench):
    running = LOG + """Execute 1 jobs...
[Sun Dec  6 04:26:40 2026]
localrule extra:
    output: out/extra.txt
    jobid: 6
    resources: tmpdir=/tmp
"""
    jobs, unfinished = bench.parse_log(running)
    assert (len(jobs), unfinished) == (6, 1)


def test_main_prints_critical_path_and_core_use(bench, run, monkeypatch, capsys):
    monkeypatch.chdir(run)  # --log defaults to the newest log here
    older = run / ".snakemake/log/2026-12-05T100000.000000.snakemake.log"
    older.write_text("Building DAG of jobs...\n")
    monkeypatch.setattr(sys, "argv", ["bench_workflow.py"])
    bench.main()
    out = capsys.readouterr().out
    assert "6 finished jobs" in out
    assert "critical path 89 s over 3 jobs; run span 96 s: " \
           "the span exceeded the critical path by 7 s" in out
    assert "132 CPU seconds of 2 x 96 s: cores busy 69 % of the span" in out
    assert "fewer than 2 thread slots taken: 1 core idle for 20 s, 2 cores idle for 1 s" in out
    assert "  train demo/xsub: 60 s alone, threads 2\n  fetch tiny: 20 s alone, threads 1" in out
