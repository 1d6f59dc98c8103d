"""Test helpers for the resumable training stages: kill a training process at a checkpoint and
compare two runs' final weights and curves."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file


def kill_after_checkpoint(process: subprocess.Popen, latest: Path, step: int) -> None:
    """SIGKILL ``process`` as soon as its ``latest.json`` names a step >= ``step``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["step"] >= step:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert process.wait(60) == -signal.SIGKILL, "the run ended before it could be killed"


def assert_same_run(first: Path, second: Path, weights: str) -> None:
    """Equal weights (bit for bit) and equal curves apart from wall time."""
    a, b = load_file(first / weights), load_file(second / weights)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    curves = [pd.read_parquet(run / "curves.parquet").drop(columns="seconds")
              for run in (first, second)]
    pd.testing.assert_frame_equal(*curves)
