"""`actionlm prepare` as a scheduler sees it: killed with SIGKILL mid-run (a time limit, the OOM
killer) it leaves no process and, once rerun, no staging folder; its tables are the same
whichever folder they are written to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from actionlm.data.prepare import prepare
from actionlm.data.synthetic import SYNTHETIC_ACTIONS

SMALL = {"n_subjects": 2, "n_replications": 1}


def prepare_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "actionlm.cli", "prepare", "--format", "synthetic",
            "--out", str(out), "--workers", "2", "--protocols", "none"]


def pool_workers(main: psutil.Process, phase: str) -> list[psutil.Process]:
    """The running workers of the pool that generates files (forked by ``main``) or of the
    one that decodes them (forked by the fork server)."""
    try:
        children = main.children()
        if phase == "generate":
            return [p for p in children if "multiprocessing" not in " ".join(p.cmdline())]
        servers = [p for p in children if "forkserver" in " ".join(p.cmdline())]
        return [worker for server in servers for worker in server.children()]
    except psutil.Error:
        return []


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # dead; only not reaped (PID 1)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("phase", ["generate", "decode"])
def test_killed_prepare_leaves_no_process_and_its_rerun_no_staging_folder(tmp_path, phase):
    out = tmp_path / "synthetic"
    run = subprocess.Popen(prepare_command(out), cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    main = psutil.Process(run.pid)
    left: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(pool_workers(main, phase)) < 2 and run.poll() is None:
            assert time.monotonic() < deadline, f"no {phase} workers after 120 s"
            time.sleep(0.01)
        assert run.poll() is None, f"prepare ended before its {phase} workers were seen"
        descendants = main.children(recursive=True)
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while not all(map(gone, descendants)) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [p for p in descendants if not gone(p)]
        assert not left, [" ".join(p.cmdline())[:120] for p in left]
        assert len(list(tmp_path.glob(".synthetic.partial-*"))) == 1
    finally:
        for process in left:
            process.kill()

    rerun = subprocess.run(prepare_command(out), cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(tmp_path.glob(".synthetic.partial-*"))
    assert pq.read_metadata(out / "skeletons.parquet").num_rows == 1140


def test_rerun_removes_only_staging_folders_of_dead_runs_of_this_host(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    host = socket.gethostname()
    dead = tmp_path / f".out.partial-{host}-{int(finished.stdout)}-k1ll3d"
    live = tmp_path / f".out.partial-{host}-{os.getpid()}-runn1ng"
    elsewhere = tmp_path / f".out.partial-other-host-{int(finished.stdout)}-rem0te"
    unclear = tmp_path / ".out.partial-4b2x9q"
    for folder in (dead, live, elsewhere, unclear):
        (folder / "raw").mkdir(parents=True)
    prepare("synthetic", None, tmp_path / "out", dataset=None,
            actions=list(SYNTHETIC_ACTIONS[:1]), protocols=[], workers=1, synthetic=SMALL)
    assert sorted(tmp_path.glob(".out.partial-*")) == sorted([live, elsewhere, unclear])


def test_synthetic_tables_are_the_same_in_any_folder(tmp_path):
    """`source` names the raw file by its place in the output folder (raw/...), not the
    staging folder it was read from, which is gone and differs from run to run."""
    actions = list(SYNTHETIC_ACTIONS[:2])
    for name in ("a", "b/deeper"):
        prepare("synthetic", None, tmp_path / name, dataset=None, actions=actions,
                protocols=["xview"], workers=1, synthetic=SMALL)
    for table in ("skeletons.parquet", "splits/xview.parquet"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b/deeper" / table).read_bytes()
    sources = pq.read_table(tmp_path / "a/skeletons.parquet", columns=["source"])["source"]
    assert sources.to_pylist()[0].startswith("raw/S001C001P001R001A")
    assert all((tmp_path / "a" / source).is_file() for source in sources.to_pylist())
