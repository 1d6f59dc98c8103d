"""`actionlm lora` under torchrun: two CPU processes (gloo) train the same adapter as one
process with the same global batch, and only one of them writes."""

from __future__ import annotations

import os
import subprocess
import sys

from safetensors.torch import load_file

from actionlm.cli import main
from actionlm.llm.recognizer import ADAPTER_FILE
from test_lora import llm_ar_inputs, lora_argv  # noqa: F401  (module fixture, argument builder)

SETTINGS = ("--max-steps", "3", "--batch-size", "4", "--micro-batch-size", "1",
            "--lora-dropout", "0", "--lr", "1e-3", "--log-every", "1", "--checkpoint-every", "0")


def test_two_processes_train_what_one_process_trains(llm_ar_inputs, tmp_path):  # noqa: F811
    assert main(lora_argv(llm_ar_inputs, tmp_path / "one", *SETTINGS)) == 0
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "actionlm.cli", *lora_argv(llm_ar_inputs, tmp_path / "two", *SETTINGS)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "process 1 of 2" in run.stderr
    one, two = (load_file(tmp_path / d / ADAPTER_FILE) for d in ("one", "two"))
    gap = max((one[n] - two[n]).abs().max().item() for n in one)
    assert set(one) == set(two) and gap < 1e-4, gap
    # training moved LoRA's B matrices (zero at the start) far more than the two runs differ
    moved = max(t.abs().max().item() for n, t in one.items() if "lora_B" in n)
    assert moved > 100 * max(gap, 1e-9)
