"""Time 2x2 max pooling, forward + backward, eagerly, on the shapes of fastnet-large's three poolings
(batch 1024 on CUDA, 128 on the CPU; bf16, channels-last): torch's F.max_pool2d against cnnlab's
kernel for the device (Triton on CUDA, C on the CPU). Prints one JSON line per shape: wall
microseconds per call, which include the launch overhead and the accumulation into x.grad. The
Triton kernels' own GPU time is what torch.profiler shows inside the CUDA graphs the GPU recipes
replay (scripts/gpu_sweep.py's `profile`); docs/speed.md has both.

    python scripts/bench_maxpool.py            # on CUDA when there is one
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F

from cnnlab.native import maxpool2x2, maxpool2x2_cuda

SHAPES = [(1024, 64, 27, 27), (1024, 256, 13, 13), (1024, 256, 6, 6)]  # fastnet-large on 28x28 images


def _time(fn, x, grad, device, reps: int) -> float:
    for _ in range(3):
        fn(x).backward(grad)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x).backward(grad)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps * 1e6


def main() -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ours = maxpool2x2_cuda.max_pool_2x2_if_fits if device.type == "cuda" else maxpool2x2.max_pool_2x2_if_fits
    reps = 200 if device.type == "cuda" else 3
    for shape in SHAPES if device.type == "cuda" else [(s[0] // 8, *s[1:]) for s in SHAPES]:
        x = torch.randn(shape, device=device).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        grad = torch.randn(F.max_pool2d(x, 2).shape, device=device).to(torch.bfloat16)
        grad = grad.contiguous(memory_format=torch.channels_last)
        torch_us = _time(lambda t: F.max_pool2d(t, 2), x, grad, device, reps)
        with maxpool2x2_cuda.recording_graphs():  # where the GPU recipes run the Triton kernels
            ours_us = _time(ours, x, grad, device, reps)
        print(json.dumps({"shape": shape, "device": str(device), "torch_us": round(torch_us, 1),
                          "cnnlab_us": round(ours_us, 1), "speedup": round(torch_us / ours_us, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
