"""Plain NumPy (float64) convolution, pooling, dense, relu and softmax cross-entropy, forward and backward.

This is the oracle: tests check every cnnlab layer and its gradients against these loops, and
`cnnlab explain` uses them to show the lecture's computations. Written for reading, not speed:
one loop over output positions, the sum inside each window spelled out with np.einsum.
Shapes are NCHW like the layers; `pad` is (top, bottom, left, right) zero pixels.
Like the lectures and every CNN framework, "convolution" here is cross-correlation (no kernel flip).
"""

from __future__ import annotations

import math

import numpy as np


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's padding='same' for one dim: out = ceil(size/stride); (before, after), extra after."""
    out = math.ceil(size / stride)
    needed = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return needed // 2, needed - needed // 2


def output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    """The lecture's OH = (H + 2P - FH)/S + 1, rounded down, with FH the dilated kernel span."""
    span = (kernel - 1) * dilation + 1
    return (size + pad_total - span) // stride + 1


def conv2d_forward(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1)):
    """x (N, C, H, W), w (F, C, KH, KW), b (F,) -> y (N, F, OH, OW).

    y[n, f, i, j] = b[f] + sum over c, k, l of x_padded[n, c, i*S + k*D, j*S + l*D] * w[f, c, k, l]
    """
    top, bottom, left, right = pad
    (sh, sw), (dh, dw) = stride, dilation
    n, _, h, width = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = output_size(h, kh, sh, top + bottom, dh)
    ow = output_size(width, kw, sw, left + right, dw)
    y = np.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            # the window under the filter: (N, C, KH, KW), every D-th pixel when dilated
            window = xp[:, :, i * sh: i * sh + (kh - 1) * dh + 1: dh, j * sw: j * sw + (kw - 1) * dw + 1: dw]
            y[:, :, i, j] = np.einsum("nckl,fckl->nf", window, w)  # elementwise products, summed
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1)):
    """Gradients of conv2d_forward: dy (N, F, OH, OW) -> (dx like x, dw like w, db (F,))."""
    top, bottom, left, right = pad
    (sh, sw), (dh, dw_) = stride, dilation
    _, _, h, width = x.shape
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            rows = slice(i * sh, i * sh + (kh - 1) * dh + 1, dh)
            cols = slice(j * sw, j * sw + (kw - 1) * dw_ + 1, dw_)
            g = dy[:, :, i, j]  # (N, F): how much each output value moved the loss
            dw += np.einsum("nf,nckl->fckl", g, xp[:, :, rows, cols])
            dxp[:, :, rows, cols] += np.einsum("nf,fckl->nckl", g, w)
    dx = dxp[:, :, top: top + h, left: left + width]  # the padding's gradient is thrown away
    return dx, dw, dy.sum(axis=(0, 2, 3))


def _pool_windows(h: int, width: int, size, stride, pad):
    """Yield (i, j, row slice, column slice) of each window, clipped to the real (unpadded) pixels."""
    (kh, kw), (sh, sw) = size, stride
    top, bottom, left, right = pad
    for i in range(output_size(h, kh, sh, top + bottom)):
        for j in range(output_size(width, kw, sw, left + right)):
            r0, c0 = i * sh - top, j * sw - left  # window corner in unpadded coordinates
            yield i, j, slice(max(r0, 0), min(r0 + kh, h)), slice(max(c0, 0), min(c0 + kw, width))


def pool2d_forward(x, size=(2, 2), stride=None, pad=(0, 0, 0, 0), mode="max"):
    """x (N, C, H, W) -> (N, C, OH, OW); mode 'max' | 'avg' | 'min' over the real pixels of each window.

    Padded positions are not values: they never win a max or min and are not counted in a mean
    (TensorFlow's padding='same' for pooling).
    """
    stride = stride or size
    n, c, h, width = x.shape
    top, bottom, left, right = pad
    oh = output_size(h, size[0], stride[0], top + bottom)
    ow = output_size(width, size[1], stride[1], left + right)
    reduce = {"max": np.max, "avg": np.mean, "min": np.min}[mode]
    y = np.zeros((n, c, oh, ow))
    for i, j, rows, cols in _pool_windows(h, width, size, stride, pad):
        y[:, :, i, j] = reduce(x[:, :, rows, cols], axis=(2, 3))
    return y


def pool2d_backward(dy, x, size=(2, 2), stride=None, pad=(0, 0, 0, 0), mode="max"):
    """Gradient of pool2d_forward: max/min send dy to the winning pixel, avg spreads it evenly."""
    stride = stride or size
    _, _, h, width = x.shape
    dx = np.zeros_like(x)
    for i, j, rows, cols in _pool_windows(h, width, size, stride, pad):
        window = x[:, :, rows, cols]
        g = dy[:, :, i, j][:, :, None, None]
        if mode == "avg":
            dx[:, :, rows, cols] += g / (window.shape[2] * window.shape[3])
        else:
            flat = window.reshape(*window.shape[:2], -1)
            best = flat.argmax(-1) if mode == "max" else flat.argmin(-1)  # (N, C): first winner
            winner = np.zeros_like(flat)
            np.put_along_axis(winner, best[..., None], 1.0, axis=-1)
            dx[:, :, rows, cols] += g * winner.reshape(window.shape)
    return dx


def dense_forward(x, w, b=None):
    """x (N, IN), w (OUT, IN) as in nn.Linear, b (OUT,) -> (N, OUT) = x w^T + b."""
    y = np.einsum("ni,oi->no", x, w)
    return y + b if b is not None else y


def dense_backward(dy, x, w):
    """Gradients of dense_forward: dy (N, OUT) -> (dx (N, IN), dw (OUT, IN), db (OUT,))."""
    return dy @ w, np.einsum("no,ni->oi", dy, x), dy.sum(axis=0)


def relu_forward(x):
    """max(x, 0) elementwise."""
    return np.maximum(x, 0.0)


def relu_backward(dy, x):
    """dy where x > 0, else 0."""
    return dy * (x > 0)


def softmax(logits):
    """Row-wise softmax of (N, K) logits, shifted by the row max for stability."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) (N, K) against integer labels (N,) -> (loss, dlogits)."""
    n = logits.shape[0]
    p = softmax(logits)
    loss = -np.log(p[np.arange(n), labels]).mean()
    dlogits = p.copy()
    dlogits[np.arange(n), labels] -= 1.0  # d loss / d logits = (softmax - one_hot) / N
    return loss, dlogits / n


def batchnorm_forward(x, gamma, beta, eps):
    """Training-mode batch norm: normalise each channel by the batch mean and (biased) variance."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mean = x.mean(axis=axes).reshape(shape)
    var = x.var(axis=axes).reshape(shape)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """AlexNet's LRN: b_c = a_c / (k + alpha * sum of a_c'^2 over channels c - size//2 .. c + size//2)^beta."""
    c = x.shape[1]
    y = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + size // 2)
        y[:, ch] = x[:, ch] / (k + alpha * (x[:, lo: hi + 1] ** 2).sum(axis=1)) ** beta
    return y
