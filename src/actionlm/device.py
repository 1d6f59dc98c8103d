"""Where a stage computes: CUDA with bf16 autocast when present, else the CPU in float32, on
at most the CPU threads the stage was given.

Shared by every stage that runs a network (text encoders, frame selection, training,
tokenizing), so the same code runs on a GPU node and on a laptop.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from actionlm.errors import ActionlmError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` = the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ActionlmError(
            f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:1)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ActionlmError(f"--device {name}: CUDA is not available on this machine")
    return device


def autocast(device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast on CUDA devices that support it; full float32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads (a Snakemake rule's {threads}); None keeps torch's default."""
    if threads:
        torch.set_num_threads(threads)
