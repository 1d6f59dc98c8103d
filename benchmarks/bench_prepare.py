"""Throughput and memory of `actionlm prepare --format ntu-raw`.

Prints files/s, MB/s and peak RSS for the pipeline, and the ratio of its wall time against a
baseline run in this same process on the same files: benchmarks/ctrgcn_style_baseline.py, the
reference algorithm done the way CTR-GCN's three scripts do it, single-threaded. Peak RSS is
measured in fresh processes for 400 and 4,000 files to show that memory does not grow with
the number of files.

    python benchmarks/bench_prepare.py                 # copies of the two real NTU files
    python benchmarks/bench_prepare.py --src DIR       # your own NTU .skeleton folder
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ctrgcn_style_baseline import run_baseline  # noqa: E402

SHARED_RAW = Path(__file__).resolve().parents[2] / "shared/datasets/ntu-samples/raw"
REFERENCE = SHARED_RAW.parent / "ctrgcn-reference/centered_frames.npz"


def make_corpus(src: Path, n: int, dest: Path) -> list[Path]:
    """n files named like NTU samples (distinct subjects/replications), cycling through src."""
    originals = sorted(src.glob("*.skeleton"))
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        original = originals[i % len(originals)]
        name = (f"S{1 + i // 4000:03d}C001P{1 + (i // 40) % 100:03d}R{1 + i % 40:03d}"
                f"{original.stem[-4:]}")
        path = dest / f"{name}.skeleton"
        if not path.exists():
            if original.stat().st_dev == dest.stat().st_dev:
                os.link(original, path)
            else:
                shutil.copy(original, path)
        paths.append(path)
    return paths


def check_baseline_is_faithful() -> None:
    """The baseline must reproduce the reference output, or its timing means nothing."""
    if not REFERENCE.exists():
        return
    reference = np.load(REFERENCE)
    out = run_baseline([SHARED_RAW / f"{name}.skeleton" for name in reference])
    for k, name in enumerate(reference):
        assert np.abs(out[k, : len(reference[name])] - reference[name]).max() < 1e-4, name


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (fork-server workers included)."""
    parents, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            status = (stat.parent / "status").read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        rss[pid] = next((int(line.split()[1]) for line in status.splitlines()
                         if line.startswith("VmRSS:")), 0)
    tree, frontier = {root}, [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree.update(kids)
        frontier = kids
    return sum(rss.get(pid, 0) for pid in tree)


def run_pipeline_child(src: Path, out: Path, workers: int) -> dict:
    """Run prepare in a fresh interpreter, sampling the peak RSS of its whole process tree."""
    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from actionlm.data.prepare import prepare\n"
        "t = time.perf_counter()\n"
        f"s = prepare('ntu-raw', Path({str(src)!r}), Path({str(out)!r}), dataset='ntu120', "
        f"protocols=[], workers={workers})\n"
        "print(json.dumps({'wall': time.perf_counter() - t, 'n': s.n_samples}))\n"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env=env)
    peak_kb = 0
    while child.poll() is None:
        peak_kb = max(peak_kb, _tree_rss_kb(child.pid))
        time.sleep(0.05)
    stdout = child.stdout.read()
    if child.returncode:
        raise SystemExit(f"prepare failed with exit code {child.returncode}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["rss_mb"] = peak_kb / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=SHARED_RAW)
    parser.add_argument("--files", type=int, default=4000, help="size of the large run")
    parser.add_argument("--small-files", type=int, default=400, help="size of the small run")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    check_baseline_is_faithful()
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        small = make_corpus(args.src, args.small_files, tmp / "small")
        large = make_corpus(args.src, args.files, tmp / "large")
        mb_small = sum(p.stat().st_size for p in small) / 1e6
        mb_large = sum(p.stat().st_size for p in large) / 1e6
        print(f"cores: {os.cpu_count()}, workers: {args.workers}, "
              f"corpus: {len(small)} files / {mb_small:.0f} MB and "
              f"{len(large)} files / {mb_large:.0f} MB")

        runs = {}
        for label, folder, n_mb in (("small", tmp / "small", mb_small),
                                    ("large", tmp / "large", mb_large)):
            runs[label] = run_pipeline_child(folder, tmp / f"out-{label}", args.workers)
            runs[label]["mb"] = n_mb

        t = time.perf_counter()
        run_baseline(large)
        base_wall = time.perf_counter() - t
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    s, big = runs["small"], runs["large"]
    print(f"baseline (CTR-GCN-style, 1 thread, in this process): {len(large)} files in "
          f"{base_wall:.2f} s = {len(large) / base_wall:.0f} files/s, "
          f"{mb_large / base_wall:.1f} MB/s, "
          f"{1000 * base_wall / len(large):.2f} ms/file, peak RSS {base_rss:.0f} MB")
    for label, r in runs.items():
        print(f"actionlm prepare ({label}): {r['n']} files in {r['wall']:.2f} s = "
              f"{r['n'] / r['wall']:.0f} files/s, {r['mb'] / r['wall']:.1f} MB/s, "
              f"{1000 * r['wall'] / r['n']:.2f} ms/file, "
              f"peak RSS (all processes) {r['rss_mb']:.0f} MB")
    print(f"speed-up vs baseline on the same {len(large)} files: {base_wall / big['wall']:.1f}x")
    print(f"peak RSS, {big['n']} vs {s['n']} files: {big['rss_mb']:.0f} vs {s['rss_mb']:.0f} MB "
          f"({big['rss_mb'] / s['rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
