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
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

TARGET_S = 15 * 60


def read_benchmarks(folder: Path) -> pd.DataFrame:
    """One row per job: rule (the first folder below ``folder``), job (the rest of the path),
    its wall seconds, peak RSS (MB), CPU seconds and end time (the table's mtime, written as the
    job ends). A table with several rows (``repeat()``) counts with its mean."""
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
    parser.add_argument("--run", action="store_true",
                        help="first run the whole default in a fresh folder (--workdir)")
    parser.add_argument("--workdir", type=Path, help="with --run: a folder that does not exist "
                        "yet (default: a new one under the system's temp folder)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    elapsed = None
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


if __name__ == "__main__":
    main()
