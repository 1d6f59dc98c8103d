"""Where a stage computes: the device (CUDA when present, else the CPU, on at most the CPU
threads the stage was given) and the precision its networks run in.

Precision (``--precision``) is a resource like the device, not a training setting: it changes
results only by rounding, so it is never part of a run's config and a checkpoint resumes
under another one. ``auto`` = bf16 autocast on CUDA devices that support it, float32
elsewhere; ``bf16`` = bf16 autocast on any device, the CPU included (PyTorch's CPU autocast);
``fp32`` = no autocast. Autocast leaves parameters (the optimiser's master weights) in their
own dtype; only the ops it lists run in bf16, and the stages compute their losses in float32.

Shared by every stage that runs a network (text encoders, frame selection, training,
tokenizing, evaluation), so the same code runs on a GPU node and on a laptop.
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext

import torch

from actionlm.errors import ActionlmError

PRECISIONS = ("auto", "bf16", "fp32")


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


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype ``precision`` autocasts to on ``device`` (None: float32, no autocast);
    a precision the device cannot run is an error, raised before any work starts."""
    if precision not in PRECISIONS:
        raise ActionlmError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    bf16_gpu = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "fp32" or (precision == "auto" and not bf16_gpu):
        return None
    if device.type == "cuda" and not bf16_gpu:
        raise ActionlmError(f"--precision bf16: {device} does not support bfloat16 "
                            "(use auto or fp32)")
    return torch.bfloat16


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (see the module docstring)."""
    dtype = autocast_dtype(device, precision)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``, the same option on every stage that runs a network (``parser``: a
    parser or an argument group)."""
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 autocast on a GPU that supports it, else float32; "
                        "bf16: bf16 autocast on any device, the CPU included; fp32: none")


def set_threads(threads: int | None) -> None:
    """Cap torch's CPU threads (a Snakemake rule's {threads}); None keeps torch's default."""
    if threads:
        torch.set_num_threads(threads)
