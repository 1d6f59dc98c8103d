"""Wall time of the workflow, per rule, from the tables Snakemake's `benchmark:` directives write
(results/benchmarks/{rule}/{wildcards}.tsv), against the target for the whole embedded default:
at most 15 minutes on 2 cores.

    python benchmarks/bench_workflow.py          # the tables the last run left here
    python benchmarks/bench_workflow.py --run    # a fresh run, timed (see below)

--run links the workflow (Snakefile, config.yaml, workflow/, configs/) into a new scratch folder
(--workdir) and runs `snakemake --cores 2 all` there: no results and no cached model answers, as
on a fresh clone. Per rule: jobs, summed and longest job wall time, peak RSS, CPU time. Totals:
the sum of all job times, and the span from the first job's start to the last job's end, the
run's wall time (jobs overlap on the cores) when all tables come from one run. The target is
judged on the measured wall time with --run, else on the span.

Then, from the Snakemake log of the same run (--log; default the newest .snakemake/log/*.log of
the current folder, or of --workdir with --run), whether the schedule was a good one:

- critical path: the chain of dependent jobs (B depends on A when one of B's inputs is one of A's
  outputs, or lies under it, for directory() outputs) with the largest summed job time, one line
  per job: its start and end in seconds from the run's start, its time and its wait (its start
  minus the end of the job before it on the path: ready but not started). Then the path's sum
  against the run's span: a schedule that starts the critical path first keeps the excess small.
- core use for --cores N: the jobs' CPU seconds against N x span ("cores busy 71 % of the span"),
  the seconds during which running jobs took fewer than N thread slots ("1 core idle for 220 s"),
  and the jobs that ran alone, with their threads (alone with threads 1 on 2 cores: a core idle).

Job times come from the benchmark tables (wall seconds `s`, `cpu_time`) where a job has one,
else from the log's timestamps (1 s resolution: start = the timestamp before the job's block,
end = the one before its `Finished jobid` line); CPU seconds without a table are time x threads.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from graphlib import TopologicalSorter
from pathlib import Path

import pandas as pd

TARGET_S = 15 * 60


def read_benchmarks(folder: Path) -> pd.DataFrame:
    """One row per job: rule (the first folder below ``folder``), job (the rest of the path),
    its wall seconds, peak RSS (MB), CPU seconds, end time (the table's mtime, written as the
    job ends) and the table's path. A table with several rows (``repeat()``) counts with its
    mean."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        relative = path.relative_to(folder).with_suffix("")
        rows.append({
            "rule": relative.parts[0],
            "job": "/".join(relative.parts[1:]),
            "wall_s": table["s"].mean(),
            "max_rss_mb": pd.to_numeric(table["max_rss"], errors="coerce").max(),
            "cpu_s": pd.to_numeric(table["cpu_time"], errors="coerce").mean(),
            "end": path.stat().st_mtime,
            "table": path.as_posix(),
        })
    return pd.DataFrame(rows)


def per_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: job count, summed and longest wall time, peak RSS, summed CPU time."""
    return (
        jobs.groupby("rule")
        .agg(jobs=("job", "size"), wall_s=("wall_s", "sum"), longest_s=("wall_s", "max"),
             max_rss_mb=("max_rss_mb", "max"), cpu_s=("cpu_s", "sum"))
        .sort_values("wall_s", ascending=False)
    )


def span_seconds(jobs: pd.DataFrame) -> float:
    """First job start to last job end."""
    return float(jobs["end"].max() - (jobs["end"] - jobs["wall_s"]).min())


TIMESTAMP = re.compile(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
JOB_HEADING = re.compile(r"(?:local)?(?:rule|checkpoint) (\w+):")
JOB_FIELD = re.compile(r"    (\w+): (.*)")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: \w+\)")


@dataclass
class Job:
    """One job of a Snakemake log; times in seconds since the epoch."""

    jobid: int
    rule: str
    wildcards: str
    inputs: list[str]
    outputs: list[str]
    threads: int
    benchmark: str | None
    start: float
    end: float
    wall_s: float | None = None
    cpu_s: float | None = None

    @property
    def label(self) -> str:
        """Rule and wildcard values, e.g. ``train_encoder synthetic/xsub/ce``."""
        values = [item.partition("=")[2] for item in self.wildcards.split(", ")]
        return " ".join([self.rule, "/".join(value for value in values if value)]).strip()

    @property
    def duration(self) -> float:
        """Wall seconds from the benchmark table, else from the log's timestamps."""
        return self.end - self.start if self.wall_s is None else self.wall_s

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds from the benchmark table, else time x threads."""
        return self.duration * self.threads if self.cpu_s is None else self.cpu_s


def newest_log(folder: Path) -> Path | None:
    """The newest ``.snakemake/log/*.snakemake.log`` under ``folder`` (names are start times)."""
    logs = sorted((folder / ".snakemake/log").glob("*.snakemake.log"))
    return logs[-1] if logs else None


def parse_log(text: str) -> tuple[list[Job], int]:
    """The finished jobs of a Snakemake log, and how many started jobs have no ``Finished``
    line (still running or failed). A job run twice (``--retries``) counts with its last try."""
    blocks: dict[int, tuple[float, dict[str, str]]] = {}  # job id: start, fields
    ends: dict[int, float] = {}
    stamp, start, block = 0.0, 0.0, None
    for line in text.splitlines():
        if match := TIMESTAMP.fullmatch(line):
            stamp, block = datetime.strptime(match[1], "%a %b %d %H:%M:%S %Y").timestamp(), None
        elif match := JOB_HEADING.fullmatch(line):
            start, block = stamp, {"rule": match[1]}
        elif block is not None and (match := JOB_FIELD.fullmatch(line)):
            block[match[1]] = match[2]
            if match[1] == "jobid":
                blocks[int(match[2])] = start, block
        elif match := FINISHED.fullmatch(line):
            ends[int(match[1])] = stamp
        else:
            block = None
    jobs = [job_from_block(jobid, block, start, ends[jobid])
            for jobid, (start, block) in blocks.items() if jobid in ends]
    return jobs, len(blocks) - len(jobs)


def job_from_block(jobid: int, block: dict[str, str], start: float, end: float) -> Job:
    """A Job from the fields of its log block (``input: a, b`` ... ``threads: 2``)."""
    def paths(field: str) -> list[str]:
        return block[field].split(", ") if block.get(field) else []

    return Job(jobid=jobid, rule=block["rule"], wildcards=block.get("wildcards", ""),
               inputs=paths("input"), outputs=paths("output"),
               threads=int(block.get("threads", 1)), benchmark=block.get("benchmark"),
               start=start, end=end)


def attach_benchmarks(jobs: list[Job], tables: pd.DataFrame) -> None:
    """Sets each job's wall and CPU seconds from its benchmark table: the row of ``tables``
    (read_benchmarks) whose path ends with the job's ``benchmark:`` path."""
    for job in jobs:
        if job.benchmark is None:
            continue
        row = tables[("/" + tables["table"]).str.endswith("/" + job.benchmark)]
        if not row.empty:
            job.wall_s = float(row["wall_s"].iloc[0])
            cpu = row["cpu_s"].iloc[0]
            job.cpu_s = None if pd.isna(cpu) else float(cpu)


def dependencies(jobs: list[Job]) -> dict[int, set[int]]:
    """Per job id, the ids of the jobs that wrote one of its inputs, or a folder holding one
    (a directory() output)."""
    writer = {output.rstrip("/"): job.jobid for job in jobs for output in job.outputs}
    return {
        job.jobid: {writer[path] for item in job.inputs
                    for path in (item, *map(str, Path(item).parents)) if path in writer}
        - {job.jobid}
        for job in jobs
    }


def critical_path(jobs: list[Job], deps: dict[int, set[int]]) -> list[Job]:
    """The chain of dependent jobs with the largest summed duration, first job first. Of
    equal chains the one ending last in dependency order: it keeps jobs of no time at its end,
    such as ``all``."""
    by_id = {job.jobid: job for job in jobs}
    longest: dict[int, tuple[float, int | None]] = {}
    order = list(TopologicalSorter(deps).static_order())
    for jobid in order:
        before = max(deps[jobid], key=lambda dep: longest[dep][0], default=None)
        sum_before = 0.0 if before is None else longest[before][0]
        longest[jobid] = (by_id[jobid].duration + sum_before, before)
    jobid: int | None = max(reversed(order), key=lambda key: longest[key][0])
    path = []
    while jobid is not None:
        path.append(by_id[jobid])
        jobid = longest[jobid][1]
    return path[::-1]


def waits(path: list[Job], run_start: float) -> list[float]:
    """Per job of a path: its start minus the end of the job before it (the first job: minus
    the run's start)."""
    ends = [run_start] + [job.end for job in path[:-1]]
    return [job.start - end for job, end in zip(path, ends)]


def intervals(jobs: list[Job]) -> list[tuple[float, list[Job]]]:
    """The run cut at every job start and end: per piece, its seconds and the jobs running."""
    times = sorted({time for job in jobs for time in (job.start, job.end)})
    return [(end - start, [job for job in jobs if job.start <= start and job.end >= end])
            for start, end in zip(times, times[1:])]


def idle_core_seconds(jobs: list[Job], cores: int) -> dict[int, float]:
    """Seconds during which 1, 2 ... ``cores`` cores were idle: fewer thread slots taken by
    the running jobs than ``cores``."""
    idle: dict[int, float] = {}
    for seconds, running in intervals(jobs):
        free = cores - min(cores, sum(job.threads for job in running))
        if free:
            idle[free] = idle.get(free, 0.0) + seconds
    return dict(sorted(idle.items()))


def alone_seconds(jobs: list[Job]) -> dict[int, float]:
    """Per job id that ran alone for a while, the seconds it did, longest first."""
    alone: dict[int, float] = {}
    for seconds, running in intervals(jobs):
        if len(running) == 1:
            alone[running[0].jobid] = alone.get(running[0].jobid, 0.0) + seconds
    return dict(sorted(alone.items(), key=lambda item: -item[1]))


def run_bounds(jobs: list[Job]) -> tuple[float, float]:
    """The first job's start and the run's span: to the last job's end, in seconds."""
    start = min(job.start for job in jobs)
    return start, max(job.end for job in jobs) - start


def print_critical_path(jobs: list[Job]) -> None:
    """The critical path, a line per job, and its sum against the run's span."""
    run_start, span = run_bounds(jobs)
    path = critical_path(jobs, dependencies(jobs))
    table = pd.DataFrame({
        "job": [job.label for job in path],
        "start_s": [job.start - run_start for job in path],
        "end_s": [job.end - run_start for job in path],
        "time_s": [job.duration for job in path],
        "wait_s": waits(path, run_start),
    })
    total = table["time_s"].sum()
    print("\ncritical path (the chain of dependent jobs with the largest summed time):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"critical path {total:.0f} s over {len(path)} jobs; run span {span:.0f} s: "
          f"the span exceeded the critical path by {span - total:.0f} s")


def print_core_use(jobs: list[Job], cores: int) -> None:
    """CPU seconds against cores x span, idle-core seconds, the jobs that ran alone."""
    span = run_bounds(jobs)[1]
    busy = sum(job.cpu_seconds for job in jobs)
    share = f"{100 * busy / (cores * span):.0f} %" if span else "- %"
    print(f"\ncore use on {cores} cores: {busy:.0f} CPU seconds of {cores} x {span:.0f} s: "
          f"cores busy {share} of the span")
    idle = idle_core_seconds(jobs, cores)
    print("fewer than {} thread slots taken: {}".format(cores, ", ".join(
        f"{free} core{'s' * (free > 1)} idle for {seconds:.0f} s"
        for free, seconds in idle.items()) or "never"))
    by_id = {job.jobid: job for job in jobs}
    print("jobs that ran alone (fewer threads than cores: a core idle meanwhile):")
    alone = alone_seconds(jobs)
    for jobid, seconds in alone.items():
        print(f"  {by_id[jobid].label}: {seconds:.0f} s alone, threads {by_id[jobid].threads}")
    if not alone:
        print("  none")


def report_log(log: Path, tables: pd.DataFrame, cores: int) -> None:
    """The critical path and the core use of the run that ``log`` records."""
    jobs, unfinished = parse_log(log.read_text())
    print(f"\nfrom {log}: {len(jobs)} finished jobs")
    if unfinished:
        print(f"({unfinished} started jobs without a Finished line, still running or failed, "
              "left out)")
    if not jobs:
        return
    attach_benchmarks(jobs, tables)
    print_critical_path(jobs)
    print_core_use(jobs, cores)


def run_workflow(workdir: Path, cores: int) -> float:
    """`snakemake --cores {cores} all` in ``workdir``, a new folder linking this checkout's
    workflow; returns the wall seconds."""
    root = Path(__file__).resolve().parents[1]
    workdir.mkdir(parents=True)
    for name in ("Snakefile", "config.yaml", "workflow", "configs"):
        (workdir / name).symlink_to(root / name)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "all"],
                   cwd=workdir, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--log", type=Path, help="the run's Snakemake log (default: the newest "
                        ".snakemake/log/*.snakemake.log here, or in --workdir with --run)")
    parser.add_argument("--run", action="store_true",
                        help="first run the whole default in a fresh folder (--workdir)")
    parser.add_argument("--workdir", type=Path, help="with --run: a folder that does not exist "
                        "yet (default: a new one under the system's temp folder)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    elapsed, workdir = None, Path(".")
    if args.run:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="actionlm-default-")) / "run"
        elapsed = run_workflow(workdir, args.cores)
        args.benchmarks = workdir / "results/benchmarks"
    jobs = read_benchmarks(args.benchmarks)
    if jobs.empty:
        sys.exit(f"no benchmark tables under {args.benchmarks}: run the workflow (or --run) first")
    table = per_rule(jobs)
    print(table.to_string(float_format=lambda v: f"{v:.1f}"))
    total, span = jobs["wall_s"].sum(), span_seconds(jobs)
    print(f"\n{len(jobs)} jobs: summed job time {total:.0f} s ({total / 60:.1f} min); "
          f"first start to last end {span:.0f} s ({span / 60:.1f} min)")
    wall, measured = span, "first start to last end"
    if elapsed is not None:
        wall, measured = elapsed, f"fresh `snakemake --cores {args.cores} all`"
    verdict = "met" if wall <= TARGET_S else "NOT met"
    print(f"target: whole default <= {TARGET_S // 60} min; {measured}: {wall / 60:.1f} min "
          f"= {wall / TARGET_S:.2f} of it ({verdict})")
    log = args.log or newest_log(workdir)
    if log is None:
        print(f"\nno Snakemake log under {workdir / '.snakemake/log'}: critical path and core "
              "use left out (--log)")
        return
    report_log(log, jobs, args.cores)


if __name__ == "__main__":
    main()
