"""2x2 / stride-2 max pooling on channels-last CPU tensors through maxpool2x2.c, with autograd.

`applies(x)` says whether the C kernel can take x; `max_pool_2x2(x)` equals F.max_pool2d(x, 2)
bitwise, values and gradients (tests/test_native_pool.py), and is ~3x faster on the 2-core CPU
for the lecture CNN's first pooling: (128, 16, 28, 28) bf16 forward + backward ~0.4 ms against
0.9-1.1 ms (docs/speed.md). `max_pool_2x2(x, relu=True)` is relu(max_pool2d(x, 2)) in one pass.
MaxPool2D calls `max_pool_2x2_if_fits` for 2x2 windows, stride 2, no padding (with relu on
Sequential's pool-first path).
"""

from __future__ import annotations

import ctypes

import torch

from cnnlab.native.build import NativeLibrary, tracing
from cnnlab.native.pool2x2_function import MaxPool2x2

_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
LIBRARY = NativeLibrary("maxpool2x2.c", {
    # (x, y, positions, N, H, W, C, relu, bf16, threads)
    "cnnlab_maxpool2x2_fwd": ([_P, _P, _P, _L, _L, _L, _L, _I, _I, _I], None),
    # (grad y, positions, grad x, N, H, W, C, bf16, threads)
    "cnnlab_maxpool2x2_bwd": ([_P, _P, _P, _L, _L, _L, _L, _I, _I], None),
})
_DTYPES = (torch.bfloat16, torch.float32)
MIN_CHANNELS = 16  # LANES in vec16.h


def applies(x: torch.Tensor) -> bool:
    """Whether max_pool_2x2 can take x: a CPU bf16/fp32 (N, C, H, W) tensor stored channels-last
    (NHWC in memory), with at least 16 channels (the kernel's vector width: fewer would need a
    scalar loop, which measured slower than torch) and at least 2x2 pixels, outside tracing, with
    the C library built and loaded."""
    return (not tracing() and x.device.type == "cpu" and x.dtype in _DTYPES and x.dim() == 4
            and x.shape[1] >= MIN_CHANNELS and x.shape[2] >= 2 and x.shape[3] >= 2 and x.shape[0] > 0
            and x.is_contiguous(memory_format=torch.channels_last) and LIBRARY.get() is not None)


class _CKernels:
    """maxpool2x2.c's two functions, for pool2x2_function.MaxPool2x2 (which allocates their tensors)."""

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor | None, relu: bool) -> None:
        n, c, h, w = x.shape
        LIBRARY.get().cnnlab_maxpool2x2_fwd(x.data_ptr(), y.data_ptr(), None if pos is None else pos.data_ptr(),
                                            n, h, w, c, int(relu), int(x.dtype == torch.bfloat16), LIBRARY.threads())

    @staticmethod
    def backward(grad: torch.Tensor, pos: torch.Tensor, grad_in: torch.Tensor) -> None:
        n, c, h, w = grad_in.shape
        LIBRARY.get().cnnlab_maxpool2x2_bwd(grad.data_ptr(), pos.data_ptr(), grad_in.data_ptr(), n, h, w, c,
                                            int(grad.dtype == torch.bfloat16), LIBRARY.threads())


def max_pool_2x2_if_fits(x: torch.Tensor, relu: bool = False) -> torch.Tensor | None:
    """max_pool_2x2(x, relu) where `applies(x)`, else None (the caller runs torch's pooling); one
    check, for the layers' hot path."""
    return MaxPool2x2.apply(x, relu, _CKernels) if applies(x) else None


def max_pool_2x2(x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """F.max_pool2d(x, 2) through the C kernel, or with relu=True torch.relu(F.max_pool2d(x, 2)) in
    the same pass. (N, C, H, W) -> (N, C, H//2, W//2).

    Raises:
        ValueError: x is not a tensor the kernel can read (see `applies`); use F.max_pool2d.
    """
    y = max_pool_2x2_if_fits(x, relu)  # the C code trusts the layout it is handed: never give it another
    if y is None:
        why = LIBRARY.reason or (f"it takes channels-last CPU bf16/fp32 tensors with at least {MIN_CHANNELS} "
                                 f"channels and 2x2 pixels, not {x.dtype} {tuple(x.shape)} on {x.device}")
        raise ValueError(f"max_pool_2x2 cannot take this tensor: {why}; use torch's F.max_pool2d(x, 2)")
    return y
