"""The autograd.Function that both 2x2 max-pooling kernels share: the C one (maxpool2x2.py, CPU)
and the Triton one (maxpool2x2_cuda.py, CUDA).

Both kernels work the same way: the forward writes y = max over each non-overlapping 2x2 window
(with relu=True, relu(max)) and, when a gradient will be needed, each window's winner as a uint8
(0-3 in scan order; 4 where the ReLU closed the window); the backward writes every input-gradient
pixel exactly once, from the output gradient or zero, so neither pass zero-fills. This Function
allocates those tensors, all channels-last, and hands them to a `Kernels` object, which only launches.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Kernels(Protocol):
    """One device's pair of kernels. Tensors are channels-last (N, C, H, W) in memory order NHWC;
    `pos` is (N, H//2, W//2, C) uint8, or None when no gradient is needed."""

    def forward(self, x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor | None, relu: bool) -> None: ...

    def backward(self, grad: torch.Tensor, pos: torch.Tensor, grad_in: torch.Tensor) -> None: ...


class MaxPool2x2(torch.autograd.Function):
    """MaxPool2x2.apply(x, relu, kernels): (N, C, H, W) -> (N, C, H//2, W//2), floor mode (an odd
    last row or column belongs to no window and gets zero gradient)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, relu: bool, kernels: Kernels) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        # each window's winner, stored (N, H/2, W/2, C) like y; only for the backward
        pos = (torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8, device=x.device)
               if ctx.needs_input_grad[0] else None)
        if y.numel():
            kernels.forward(x, y, pos, bool(relu))
        ctx.save_for_backward(pos)
        ctx.kernels = kernels
        ctx.input_shape = (n, c, h, w)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (pos,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient to differentiate again
            return scatter_to_winners(grad, pos, ctx.input_shape), None, None
        grad = grad.contiguous(memory_format=torch.channels_last)
        # channels-last like the input; the kernel writes every element, so no zero fill
        grad_in = torch.empty(ctx.input_shape, dtype=grad.dtype, device=grad.device,
                              memory_format=torch.channels_last)
        if grad_in.numel():
            ctx.kernels.backward(grad, pos, grad_in)
        return grad_in, None, None


def scatter_to_winners(grad: torch.Tensor, pos: torch.Tensor, input_shape: tuple[int, int, int, int]) -> torch.Tensor:
    """The kernels' backward in differentiable torch operators, for a double backward (a gradient
    penalty): each window's output gradient goes to its winner, zero elsewhere.

    Args:
        grad: (N, C, H//2, W//2) output gradient.
        pos: (N, H//2, W//2, C) uint8 winners, 0-3 in scan order ((0,0), (0,1), (1,0), (1,1)) or 4
            where the ReLU closed the window.
        input_shape: (N, C, H, W); an odd last row or column gets zero.
    """
    n, c, h, w = input_shape
    oh, ow = h // 2, w // 2
    won = pos.unsqueeze(-1) == torch.arange(4, dtype=torch.uint8, device=pos.device)  # (N, OH, OW, C, 4)
    g = grad.permute(0, 2, 3, 1).unsqueeze(-1)  # (N, OH, OW, C, 1)
    # where, not a product with the mask: an inf or nan gradient must not turn the zeros into nan
    windows = torch.where(won, g, torch.zeros((), dtype=grad.dtype, device=grad.device))
    full = windows.reshape(n, oh, ow, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, c, 2 * oh, 2 * ow)
    return torch.nn.functional.pad(full, (0, w - 2 * ow, 0, h - 2 * oh))
