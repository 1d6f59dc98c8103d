"""Fault injection on the real workflow: SIGKILL of Snakemake's whole process group (what a
scheduler's time limit or scancel does to a job's process tree) during prepare, an encoder's
training, LoRA and an LLM evaluation, each in its own run of the same copy, then a rerun to
completion. No process outlives a kill, the reruns end with the metrics of an uninterrupted run
(CPU training is deterministic and resumes from its checkpoints), and nothing is left behind:
no staging folder, no temp file, no job for `snakemake -n all` to plan.

The data are test_workflow's (NW-UCLA view2 from ../shared, GAP-format texts, the bundled
SmolLM2), with two encoder epochs (the kill comes after the first epoch's checkpoint) and
three LoRA steps (a kill window of seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from workflow_copy import run_snakemake, snakemake_command, tiny_nw_ucla

pytestmark = pytest.mark.slow

CONFIGS = ("config.yaml", "overlay.yaml")
RERUN = ("all", "--rerun-incomplete")  # what the shipped profiles set: users rerun after a kill
POLL_S = 0.02
STAGE_TIMEOUT_S = 400  # a kill point not reached by then is a failure, not a hang
LLM_METHODS = ("llm_ar", "sugar")


def make_copy(folder: Path, shared: Path, llm: Path) -> Path:
    """Both recognizers; two encoder epochs and three LoRA steps, so each kill has a window."""
    return tiny_nw_ucla(folder, shared, llm, encoders={"train": {"epochs": 2}},
                        lora={"common": {"max_steps": 3}},
                        llm_eval={"methods": list(LLM_METHODS)})


def all_metrics(work: Path) -> dict[str, dict]:
    return {str(path.relative_to(work)): json.loads(path.read_text())
            for path in sorted(work.glob("results/**/metrics.json"))}


# --- processes ------------------------------------------------------------------------------

def processes() -> list[dict]:
    """Every live (non-zombie) process: pid, session id, cwd and argv."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if fields[0] in "ZX":
            continue
        found.append({"pid": int(entry), "session": int(fields[3]), "cwd": cwd,
                      "argv": [a.decode(errors="replace") for a in argv if a]})
    return found


def survivors(session: int, work: Path) -> list[dict]:
    """Live processes of the killed session, or (in another session) working in the copy."""
    return [p for p in processes()
            if p["session"] == session or Path(p["cwd"]).is_relative_to(work.resolve())]


def running_stage(session: int, stage: str) -> list[str]:
    """The --out of each `actionlm STAGE` process of the session."""
    outs = []
    for p in processes():
        argv = p["argv"]
        if p["session"] != session or "--out" not in argv:
            continue
        for i, arg in enumerate(argv[:-1]):
            if Path(arg).name == "actionlm" and argv[i + 1] == stage:
                outs.append(argv[argv.index("--out") + 1])
                break
    return outs


# --- kill points: a stage, and when during it (on the job's --out) ---------------------------

def log_of(work: Path, stage: str, out: str, results_folder: str) -> Path:
    """logs/{stage}/{dataset}/{protocol}/{method}.log of an --out results/{folder}/..."""
    return work / "logs" / stage / f"{Path(out).relative_to(results_folder)}.log"


def prepare_loading(work: Path, out: str) -> bool:
    """Its workers are reading the files into the staging folder."""
    out_dir = work / out
    return any(out_dir.parent.glob(f".{out_dir.name}.partial-*"))


def encoder_after_first_epoch(work: Path, out: str) -> bool:
    """An epoch's checkpoint exists and the training has not ended (resume mid-run)."""
    folder = work / out
    return (folder / "checkpoints/latest.json").exists() and not (
        folder / "last.safetensors").exists()


def lora_training(work: Path, out: str) -> bool:
    log = log_of(work, "lora", out, "results/models")
    return log.exists() and "train samples" in log.read_text(errors="replace")


def llm_evaluating(work: Path, out: str) -> bool:
    log = log_of(work, "evaluate", out, "results/eval")
    return Path(out).name in LLM_METHODS and log.exists() and "evaluate:" in log.read_text(
        errors="replace")


KILL_POINTS: list[tuple[str, Callable[[Path, str], bool]]] = [
    ("prepare", prepare_loading),
    ("train-encoder", encoder_after_first_epoch),
    ("lora", lora_training),
    ("evaluate", llm_evaluating),
]


def unlock(work: Path) -> None:
    """A killed Snakemake leaves its lock (.snakemake/locks/): the next one refuses to start
    ("Directory cannot be locked") until `snakemake --unlock`, as a user would run it."""
    result = run_snakemake(work, "--unlock", configs=CONFIGS)
    assert result.returncode == 0, result.stderr[-3000:]


def start(work: Path, log: Path) -> subprocess.Popen:
    command, env = snakemake_command(*RERUN, configs=CONFIGS)
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_during(work: Path, stage: str, when: Callable[[Path, str], bool], log: Path) -> dict:
    """One run of `snakemake all`, killed (its whole process group) once a job of ``stage``
    is where ``when`` says; what happened, and which processes outlived the kill. The kill
    lands wherever the other running job is, inside an atomic write too: the temp file it
    leaves is removed by the next write in its folder (actionlm.io.remove_leftovers)."""
    started = time.monotonic()
    unlock(work)
    proc = start(work, log)
    session = proc.pid  # start_new_session: session id = process group id = its pid
    hit = None
    try:
        while proc.poll() is None and time.monotonic() - started < STAGE_TIMEOUT_S:
            hit = next((out for out in running_stage(session, stage) if when(work, out)), None)
            if hit is not None:
                break
            time.sleep(POLL_S)
    finally:
        try:
            os.killpg(session, signal.SIGKILL)
        except ProcessLookupError:  # the group ended by itself (kill point missed)
            pass
        proc.wait()
    left: list[dict] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = survivors(session, work)
        if not left:
            break
        time.sleep(0.1)
    for p in left:  # ours: never leave them running for the next run
        try:
            os.kill(p["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"stage": stage, "job": hit, "after_s": round(time.monotonic() - started, 1),
            "survivors": [(p["pid"], " ".join(p["argv"])[:200]) for p in left],
            "log_tail": log.read_text(errors="replace")[-2000:]}


# --- the runs --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared, smollm2_dir) -> dict:
    """The workflow run once, uninterrupted."""
    work = make_copy(tmp_path_factory.mktemp("reference"), shared, smollm2_dir)
    started = time.monotonic()
    result = run_snakemake(work, "all", configs=CONFIGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"work": work, "seconds": time.monotonic() - started, "metrics": all_metrics(work)}


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, shared, smollm2_dir) -> dict:
    """Another copy, killed at each kill point in turn (one run each), then run to the end."""
    work = make_copy(tmp_path_factory.mktemp("faulted"), shared, smollm2_dir)
    started = time.monotonic()
    kills = [kill_during(work, stage, when, work / f"run-{i}.log")
             for i, (stage, when) in enumerate(KILL_POINTS)]
    unlock(work)
    final = run_snakemake(work, *RERUN, configs=CONFIGS)
    return {"work": work, "kills": kills, "final": final,
            "seconds": time.monotonic() - started}


def test_every_kill_point_was_hit(faulted):
    hit = [(k["stage"], k["job"], k["after_s"]) for k in faulted["kills"]]
    missed = [k for k in faulted["kills"] if k["job"] is None]
    assert not missed, f"kill points missed: {hit}\n{missed[0]['log_tail']}"


def test_no_process_outlives_a_kill(faulted):
    for kill in faulted["kills"]:
        assert kill["survivors"] == [], f"after a kill during {kill['stage']}: {kill}"


def test_rerun_after_the_kills_completes_with_the_reference_metrics(faulted, reference):
    final = faulted["final"]
    assert final.returncode == 0, final.stderr[-3000:]
    metrics = all_metrics(faulted["work"])
    assert sorted(metrics) == sorted(reference["metrics"])
    assert len(metrics) == 4  # ce, gap, llm_ar, sugar on view2
    for path, expected in reference["metrics"].items():
        got = metrics[path]
        for key in ("top1", "top5", "n", "confusion"):
            assert got[key] == expected[key], f"{path}: {key} differs after the kills"
        assert got == expected, path


def test_kills_leave_no_staging_folder_or_temp_file(faulted):
    results = faulted["work"] / "results"
    assert list(results.glob("data/.*.partial-*")) == []
    assert list(results.glob("**/.*.tmp")) == []
    assert [p for p in results.rglob(".*") if ".partial" in p.name or ".tmp" in p.name] == []
    # prepare-llm's staging (.NAME.PID.partial, .NAME.PID.old), killed along with prepare
    assert list((faulted["work"] / "resources").rglob(".*.partial")) == []
    assert list((faulted["work"] / "resources").rglob(".*.old")) == []


def test_nothing_left_to_do_after_the_rerun(faulted):
    dry = run_snakemake(faulted["work"], "-n", "all", configs=CONFIGS)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_report_counts(faulted, reference):
    """The kill points and the timings, shown with -rP."""
    assert [k["stage"] for k in faulted["kills"]] == [stage for stage, _ in KILL_POINTS]
    print(f"reference run: {reference['seconds']:.0f} s; faulted runs, kills and rerun: "
          f"{faulted['seconds']:.0f} s")
    for kill in faulted["kills"]:
        print(f"killed during {kill['stage']} ({kill['job']}) after {kill['after_s']} s")
