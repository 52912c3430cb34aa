"""A one-channel image's 3x3 'same' convolution, ReLU and 2x2 max pooling in one pass
(conv1pool.c), with autograd for the weights and bias.

This is the first block of the lectures' grayscale CNNs (seed-cnn; the README's own example):
Conv2D(filters >= 16, 3, padding='same', activation='relu') then MaxPool2D(2) on MNIST-like
images. Sequential runs it through `conv_relu_pool_if_fits`, which uses the kernel where `applies`
says it computes exactly that block: values agree with torch's path to the last place of the bf16 rounding (the
tests allow a handful of one-ulp differences from oneDNN's summation order), and the weight and
bias gradients to float rounding. On the 2-core CPU it turns seed-cnn's first block from the
largest part of a training step into a small one (docs/speed.md).
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.native.build import NativeLibrary, tracing
from cnnlab.native.maxpool2x2 import MIN_CHANNELS

_P, _L, _I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
LIBRARY = NativeLibrary("conv1pool.c", {
    # (x, w, bias, y, positions, N, H, W, C, relu, bf16, threads)
    "cnnlab_conv1pool_fwd": ([_P, _P, _P, _P, _P, _L, _L, _L, _L, _I, _I, _I], None),
    # (N, C) -> floats of scratch the backward needs
    "cnnlab_conv1pool_bwd_scratch": ([_L, _L], _L),
    # (grad y, positions, x, grad w, grad bias, scratch, N, H, W, C, bf16, threads)
    "cnnlab_conv1pool_bwd": ([_P, _P, _P, _P, _P, _P, _L, _L, _L, _L, _I, _I], None),
})


def _bf16_autocast() -> bool | None:
    """True under CPU autocast to bf16, False without CPU autocast, None under another autocast dtype."""
    if not torch.is_autocast_enabled("cpu"):
        return False
    return True if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether conv_relu_pool(conv, x) computes conv's 3x3 'same' convolution of x (then ReLU and
    2x2 pooling, which the caller checks): x a CPU fp32 (N, 1, H, W) batch that needs no gradient
    (the images), conv 1 -> at least 16 channels, 3x3, stride 1, padding 1, fp32 weights, and
    fp32 or CPU bf16 autocast; outside tracing, with the C library built and loaded."""
    return (not tracing() and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.shape[1] == 1 and x.shape[2] >= 2 and x.shape[3] >= 2 and x.shape[0] > 0
            and not x.requires_grad and conv.in_channels == 1 and conv.out_channels >= MIN_CHANNELS
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.weight.dtype == torch.float32 and conv.weight.device.type == "cpu"
            and _bf16_autocast() is not None and LIBRARY.get() is not None)


class _ConvReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                bf16: bool) -> torch.Tensor:
        n, _, h, w = x.shape
        c = weight.shape[0]
        # what torch's convolution sees: under autocast, input, weight and bias rounded to bf16
        work = (lambda t: t.to(torch.bfloat16).float()) if bf16 else (lambda t: t)
        # one channel: NCHW and NHWC alike; padded with zeros for 'same': (N, H + 2, W + 2)
        images = F.pad(work(x.detach().reshape(n, h, w)), (1, 1, 1, 1)).contiguous()
        taps = work(weight.detach()).reshape(c, 9).t().contiguous()  # (9, C): tap-major, channels fastest
        b = None if bias is None else work(bias.detach()).contiguous()
        y = torch.empty((n, c, h // 2, w // 2), dtype=torch.bfloat16 if bf16 else torch.float32,
                        memory_format=torch.channels_last)
        need = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        pos = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8) if need else None
        LIBRARY.get().cnnlab_conv1pool_fwd(images.data_ptr(), taps.data_ptr(), None if b is None else b.data_ptr(),
                                           y.data_ptr(), None if pos is None else pos.data_ptr(),
                                           n, h, w, c, int(relu), int(bf16), LIBRARY.threads())
        ctx.save_for_backward(images, pos, weight, bias)
        ctx.bf16, ctx.has_bias, ctx.weight_shape, ctx.relu = bf16, bias is not None, weight.shape, relu
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        images, pos, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # backward(create_graph=True): a gradient to differentiate again
            return (None, *_differentiable_grads(images, weight, bias, grad, ctx.relu, ctx.bf16), None, None)
        n, h, w = images.shape[0], images.shape[1] - 2, images.shape[2] - 2
        c = ctx.weight_shape[0]
        grad = grad.to(torch.bfloat16 if ctx.bf16 else torch.float32).contiguous(memory_format=torch.channels_last)
        dtaps = torch.empty((9, c))
        dbias = torch.empty(c) if ctx.has_bias else None
        lib = LIBRARY.get()
        scratch = torch.empty(lib.cnnlab_conv1pool_bwd_scratch(n, c))  # per-chunk partial sums
        lib.cnnlab_conv1pool_bwd(grad.data_ptr(), pos.data_ptr(), images.data_ptr(), dtaps.data_ptr(),
                                 None if dbias is None else dbias.data_ptr(), scratch.data_ptr(), n, h, w, c,
                                 int(ctx.bf16), LIBRARY.threads())
        dweight = dtaps.t().reshape(ctx.weight_shape)
        if ctx.bf16:  # autocast's weight and bias gradients are bf16, cast back to the fp32 parameters
            dweight = dweight.to(torch.bfloat16).float()
            dbias = None if dbias is None else dbias.to(torch.bfloat16).float()
        return None, dweight, dbias, None, None


def _differentiable_grads(images, weight, bias, grad, relu: bool, bf16: bool):
    """(grad weight, grad bias) of max_pool2d(relu(conv(x)), 2) computed again with torch's
    operators, keeping the graph, for a double backward (a gradient penalty); the C backward
    has no second derivative. images: the (N, H + 2, W + 2) padded input the forward saved."""
    with torch.enable_grad():
        # the forward's rounding under bf16 autocast, as differentiable casts
        work = (lambda t: t.to(torch.bfloat16).float()) if bf16 else (lambda t: t)  # noqa: E731
        x = images[:, None, 1:-1, 1:-1]
        z = F.conv2d(x, work(weight), None if bias is None else work(bias), padding=1)
        y = F.max_pool2d(torch.relu(z) if relu else z, 2)
        wrt = [weight] if bias is None else [weight, bias]
        grads = torch.autograd.grad(y, wrt, grad.to(y.dtype), create_graph=True)
    return grads[0], (grads[1] if bias is not None else None)


def conv_relu_pool_if_fits(conv: nn.Conv2d, x: torch.Tensor, relu: bool = True) -> torch.Tensor | None:
    """conv_relu_pool(conv, x, relu) where `applies(conv, x)`, else None (the caller runs the
    layers); one check, for Sequential's hot path."""
    return _ConvReluPool.apply(x, conv.weight, conv.bias, relu, bool(_bf16_autocast())) if applies(conv, x) else None


def conv_relu_pool(conv: nn.Conv2d, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """max_pool2d(relu(conv(x)), 2) (relu optional) in one pass; (N, 1, H, W) -> (N, C, H//2, W//2),
    bf16 under CPU bf16 autocast, else fp32, channels-last.

    Raises:
        ValueError: conv and x are not what the kernel computes (see `applies`); run the layers.
    """
    y = conv_relu_pool_if_fits(conv, x, relu)  # the C code trusts shapes and layouts: never give it others
    if y is None:
        why = LIBRARY.reason or ("it takes a CPU fp32 (N, 1, H, W) batch without gradient and a 3x3, stride-1, "
                                 f"padding-1 convolution to at least {MIN_CHANNELS} channels")
        raise ValueError(f"conv_relu_pool cannot take this convolution and input: {why}")
    return y
