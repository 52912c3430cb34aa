"""Compute settings that make training fast without changing what is computed: threads, layout,
bf16 autocast where the hardware has it, cuDNN autotuning, and a compile helper.

What pays, measured on the 2-core AMD EPYC (avx512_bf16, no AMX) this project is built on, seed-cnn,
batch 128 (docs/speed.md has the figures): bf16 autocast together with channels_last (oneDNN's
blocked bf16 kernels; either one alone gains little); whole-set tensor slicing instead of a
DataLoader; fused optimizers (train/optim.py); cnnlab's own C kernels for max pooling and a
grayscale CNN's first block (cnnlab/native, used by the layers whenever the tensors allow, in every
precision). What did not: torch.compile on the CPU (inductor's code for these small convolutions
ran 3x slower than oneDNN eager even after warm-up). On CUDA the same switches are the standard
ones (airbench, the PyTorch performance tuning guide:
https://pytorch.org/tutorials/recipes/recipes/tuning_guide.html).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the usable cores, one per core); returns the count.

    Args:
        threads: how many; None for `usable_cores()`. More threads than cores only adds contention.
    """
    n = usable_cores() if threads is None else max(int(threads), 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def configure_device(device: torch.device | str) -> None:
    """Process-wide switches for fast training on `device`: cuDNN autotuning and TF32 on CUDA."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest conv algorithm once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def best_precision(device: torch.device | str) -> str:
    """'bf16' where autocast to bfloat16 runs natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else 'fp32'."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"  # mps: bf16 autocast support varies by macOS version


def fast_settings(device: torch.device | str) -> dict:
    """TrainConfig overrides for the fastest setting on `device` that computes the same training.

    Precision and layout change, the model, data, batch size and optimizer do not; compile stays
    off on the CPU (measured slower there) and is left to the caller on CUDA (pays for long runs only).
    """
    precision = best_precision(device)
    # channels_last helps oneDNN only together with bf16; on CUDA it helps tensor cores either way
    channels_last = torch.device(device).type == "cuda" or precision == "bf16"
    return {"precision": precision, "channels_last": channels_last, "compile": False}


def compiled(model: nn.Module, enabled: bool = True, **compile_kw) -> nn.Module:
    """torch.compile(model), made once and reused: a second call returns the same compiled module.

    Args:
        model: the module to compile; its parameters are shared with the result.
        enabled: False returns `model` itself (so call sites need no branch).
        **compile_kw: passed to torch.compile (e.g. mode="max-autotune").
    """
    if not enabled:
        return model
    cache = model.__dict__.setdefault("_cnnlab_compiled", {})  # not a submodule: no state_dict entry
    key = tuple(sorted(compile_kw.items()))
    if key not in cache:
        cache[key] = torch.compile(model, **compile_kw)
    return cache[key]
