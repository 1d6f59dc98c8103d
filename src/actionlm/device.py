"""Where a stage computes: the device (CUDA when present, else the CPU, on at most the CPU
threads the stage was given) and the precision its networks run in.

Precision (``--precision``) is a resource like the device, not a training setting: it changes
results only by rounding, so it is never part of a run's config and a checkpoint resumes
under another one. ``auto`` = bf16 autocast on CUDA devices that support it, float32
elsewhere; ``bf16`` = bf16 autocast on any device, the CPU included (PyTorch's CPU autocast);
``fp32`` = no autocast. The LLM stages (LoRA, a recognizer's evaluation) resolve ``auto``
with ``llm_precision`` first: bf16 on a CPU with bf16 matrix units too. Autocast leaves
parameters (the optimiser's master weights) in their own dtype; only the ops it lists run in
bf16, and the stages compute their losses in float32.

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


def bf16_matrix_units(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware: a CUDA device that supports
    bf16, or a CPU with AMX tiles (Intel Xeon 4th generation and later), where oneDNN's bf16
    matmul ran 6.3x faster than float32 (a 384 x 576 by 576 x 1536 product on one thread:
    1,377 against 220 GFLOP/s, ``benchmarks/bench_training_step.py``). Elsewhere on the CPU
    bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and amx is not None and bool(amx())


def llm_precision(device: torch.device, precision: str) -> str:
    """The precision an LLM stage runs ``precision`` in: ``auto`` is bf16 wherever the device
    has bf16 matrix units, a CPU with AMX included, as an LLM's time is matrix products (a
    SmolLM2 LoRA step ran 1.6-1.85x faster there, ``benchmarks/bench_training_step.py``). The
    small networks keep ``auto``'s float32 on every CPU: they gain at most 1.2x from bf16 there,
    and float32 keeps their results the same on any CPU and batch size."""
    autocast_dtype(device, precision)
    return "bf16" if precision == "auto" and bf16_matrix_units(device) else precision


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
