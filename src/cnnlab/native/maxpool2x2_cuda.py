"""2x2 / stride-2 max pooling on channels-last CUDA tensors as two Triton kernels, with autograd.

Why: on an H100, torch's max_pool2d took 29% of the GPU fast recipe's kernel time (fastnet-large,
batch 1024, bf16 channels-last; torch.profiler over one 12-epoch run, 2026-11-23: forward 126 us and
backward 209 us per call, 0.70 s of 2.41 s). Its NHWC kernels store an int64 argmax per output and
zero-fill the input gradient before scattering into it. For non-overlapping 2x2 windows each input
pixel belongs to one window, so, as in the CPU kernel (maxpool2x2.c), a uint8 position (0-3 in scan
order) is enough and the backward writes every input-gradient pixel exactly once, from the output
gradient or zero, with no zero fill: both passes are plain memory-bound streams.

Semantics are torch's, as maxpool2x2.c has them (scan order (0,0), (0,1), (1,0), (1,1); a value
replaces the running maximum when greater or NaN; floor mode: an odd last row or column belongs to
no window and gets zero gradient). One difference from the CPU: torch's CUDA backward passes a
-0.0 gradient through as -0.0 (its CPU backward adds it to zeros, giving +0.0), so this does too.
With relu=True the forward returns relu(max) and marks a window whose output is <= 0 with position
4, which passes no gradient. tests/test_native_pool_cuda.py compares values and gradients with
F.max_pool2d bitwise (it needs a GPU; CI has none, so it runs on the device tool), and
tests/test_native_pool_triton.py checks the kernels on a CPU, in CI: bitwise in Triton's
interpreter, and compiled for an H100 (sm_90).

The kernels run only while cnnlab records a CUDA graph (train/cuda_graph.py enters `recording_graphs()` around its
warm-up passes and the capture; the GPU recipes train that way): a replayed graph launches the
kernels with no Python in between, and there they measured 30 us (forward) and 33 us (backward) per
call against torch's 126 and 209 us, averaged over fastnet-large's three poolings (torch.profiler,
H100, 2026-11-23). Called eagerly, each call also pays Triton's Python launcher and an
autograd.Function, and scripts/bench_maxpool.py's eager timings were mixed (2.46x faster for
(1024, 64, 27, 27), 0.92x and 0.71x for (1024, 256, 13, 13) and (1024, 256, 6, 6)), so eager code
keeps torch's kernels. Triton comes with torch's CUDA wheels; where it is missing (the CPU wheel)
`applies` is False and MaxPool2D uses torch's operator.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from cnnlab.native.build import enabled, tracing
from cnnlab.native.pool2x2_function import MaxPool2x2

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU wheel of torch has no Triton
    triton = None

_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_BLOCK = 1024  # elements per program; both kernels are memory-bound streams
_MAX_ELEMENTS = 2**31 - 1  # int32 offsets in the kernels
_recording = 0  # > 0 inside recording_graphs()


@contextlib.contextmanager
def recording_graphs() -> Iterator[None]:
    """Inside, 2x2 max pooling on channels-last CUDA tensors runs these kernels (see the module doc).

    Enter it around everything a CUDA graph will replay, warm-up passes included, so the kernels
    are compiled before the capture starts (Triton compiles on first use).
    """
    global _recording
    _recording += 1
    try:
        yield
    finally:
        _recording -= 1


if triton is not None:

    @triton.jit
    def _nhwc_coordinates(offs, C, H, W):
        # (n, h, w, c) of flat element offsets into a channels-last (N, H, W, C) tensor, c fastest
        c = offs % C
        t = offs // C
        w = t % W
        t = t // W
        return t // H, t % H, w, c

    @triton.jit
    def _forward_kernel(x_ptr, y_ptr, pos_ptr, total, C, H, W, OH, OW,
                        RELU: tl.constexpr, SAVE_POS: tl.constexpr, BLOCK: tl.constexpr):
        # one program: BLOCK outputs in NHWC order (c fastest), so loads and stores are coalesced
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        n, oh, ow, c = _nhwc_coordinates(offs, C, OH, OW)
        i00 = ((n * H + 2 * oh) * W + 2 * ow) * C + c  # the window's top-left pixel
        i10 = i00 + W * C
        a = tl.load(x_ptr + i00, mask=live, other=0.0)
        b = tl.load(x_ptr + i00 + C, mask=live, other=0.0)
        d = tl.load(x_ptr + i10, mask=live, other=0.0)
        e = tl.load(x_ptr + i10 + C, mask=live, other=0.0)
        fa, fb, fd, fe = a.to(tl.float32), b.to(tl.float32), d.to(tl.float32), e.to(tl.float32)
        top = (fb > fa) | (fb != fb)  # (0,1) beats (0,0): greater, or NaN
        m1 = tl.where(top, b, a)
        bottom = (fe > fd) | (fe != fe)  # (1,1) beats (1,0)
        m2 = tl.where(bottom, e, d)
        f1, f2 = m1.to(tl.float32), m2.to(tl.float32)
        lower = (f2 > f1) | (f2 != f2)  # the bottom row's winner wins
        m = tl.where(lower, m2, m1)
        pos = tl.where(lower, tl.where(bottom, 3, 2), tl.where(top, 1, 0))
        if RELU:
            fm = m.to(tl.float32)
            dead = fm <= 0.0  # false for NaN, which passes through torch.relu and its gradient
            pos = tl.where(dead, 4, pos)
            m = tl.where(fm < 0.0, 0.0, fm).to(m.dtype)  # torch.relu: negatives -> +0.0, -0.0 stays
        tl.store(y_ptr + offs, m, mask=live)
        if SAVE_POS:
            tl.store(pos_ptr + offs, pos.to(tl.uint8), mask=live)

    @triton.jit
    def _backward_kernel(g_ptr, pos_ptr, gx_ptr, total, C, H, W, OH, OW, BLOCK: tl.constexpr):
        # one program: BLOCK input-gradient pixels in NHWC order; each is written once
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < total
        n, h, w, c = _nhwc_coordinates(offs, C, H, W)
        oh, ow = h // 2, w // 2
        covered = live & (oh < OH) & (ow < OW)  # floor mode: an odd last row / column is in no window
        o = ((n * OH + oh) * OW + ow) * C + c
        g = tl.load(g_ptr + o, mask=covered, other=0.0).to(tl.float32)
        k = tl.load(pos_ptr + o, mask=covered, other=255).to(tl.int32)
        mine = k == (h % 2) * 2 + (w % 2)
        tl.store(gx_ptr + offs, tl.where(mine, g, 0.0).to(gx_ptr.dtype.element_ty), mask=live)


def applies(x: torch.Tensor) -> bool:
    """Whether max_pool_2x2 can take x: inside recording_graphs(), a CUDA bf16/fp16/fp32 (N, C, H, W) tensor stored channels-last
    and not also contiguous (with one channel or one pixel both layouts coincide and torch runs its
    NCHW kernel, whose backward turns -0.0 into +0.0), at least 2x2 pixels and under 2**31 elements,
    outside tracing (torch.compile makes its own kernels), with Triton installed and CNNLAB_NATIVE
    not switched off."""
    return (_recording > 0 and triton is not None and x.is_cuda and x.dtype in _DTYPES and x.dim() == 4 and x.shape[0] > 0
            and x.shape[2] >= 2 and x.shape[3] >= 2 and x.numel() <= _MAX_ELEMENTS
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            and not tracing() and enabled())


def _grid(total: int) -> tuple[int]:
    return ((total + _BLOCK - 1) // _BLOCK,)


class _TritonKernels:
    """The two Triton kernels, for pool2x2_function.MaxPool2x2 (which allocates their tensors)."""

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor | None, relu: bool) -> None:
        n, c, h, w = x.shape
        total = y.numel()
        # without a gradient no positions are stored; y stands in for the pointer the kernel never uses
        _forward_kernel[_grid(total)](x, y, y if pos is None else pos, total, c, h, w, h // 2, w // 2,
                                      RELU=relu, SAVE_POS=pos is not None, BLOCK=_BLOCK)

    @staticmethod
    def backward(grad: torch.Tensor, pos: torch.Tensor, grad_in: torch.Tensor) -> None:
        n, c, h, w = grad_in.shape
        total = grad_in.numel()
        _backward_kernel[_grid(total)](grad, pos, grad_in, total, c, h, w, h // 2, w // 2, BLOCK=_BLOCK)


def max_pool_2x2_if_fits(x: torch.Tensor, relu: bool = False) -> torch.Tensor | None:
    """F.max_pool2d(x, 2) (then torch.relu with relu=True) through the Triton kernels where
    `applies(x)`, else None (the caller runs torch's pooling)."""
    return MaxPool2x2.apply(x, relu, _TritonKernels) if applies(x) else None
